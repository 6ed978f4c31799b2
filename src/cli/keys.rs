//! `keycard keys generate|list` and `keycard jwks`.

use std::{io::Write, path::Path, sync::Arc};

use aws_lc_rs::{
    encoding::AsDer,
    rand::{SecureRandom, SystemRandom},
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair,
    },
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::json;

use super::{CliResult, Failure, output::Output};
use crate::{
    KeycardConfig,
    jwt::{Algorithm, JwtKey, KeyRing},
};

/// A freshly generated key: PKCS#8 PEM (asymmetric) or a base64 secret (HMAC).
enum Generated {
    Pem(String),
    Secret(String),
}

fn crypto_failed<E>(_: E) -> Failure {
    Failure::other("key generation failed (crypto provider error)")
}

fn generate_key(alg: Algorithm, bits: u32) -> CliResult<Generated> {
    let der = match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map_err(crypto_failed)?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 | Algorithm::ES384 => {
            let curve = if alg == Algorithm::ES256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            EcdsaKeyPair::generate(curve)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(crypto_failed)?
                .as_ref()
                .to_vec()
        }
        Algorithm::RS256 | Algorithm::PS256 => {
            let size = match bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                _ => {
                    return Err(Failure::config(format!(
                        "--bits {bits}: RSA keys are 2048, 3072 or 4096 bits"
                    )));
                }
            };
            let pair = RsaKeyPair::generate(size).map_err(crypto_failed)?;
            AsDer::as_der(&pair)
                .map_err(crypto_failed)?
                .as_ref()
                .to_vec()
        }
        _ => {
            let mut secret = vec![0u8; alg.min_secret_len().unwrap_or(64)];
            SystemRandom::new()
                .fill(&mut secret)
                .map_err(crypto_failed)?;
            return Ok(Generated::Secret(STANDARD.encode(secret)));
        }
    };
    Ok(Generated::Pem(pem("PRIVATE KEY", &der)))
}

/// RFC 7468 text: the DER in base64, 64 characters a line.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn generate(out: &Output, alg: &str, bits: u32, path: Option<&Path>) -> CliResult {
    let alg: Algorithm = alg
        .parse()
        .map_err(|e| Failure::config(format!("--alg `{alg}`: {e}")))?;
    let generated = generate_key(alg, bits)?;
    // Load it back as keycard will: a key that does not load is never handed out.
    let key = match &generated {
        Generated::Pem(pem) => JwtKey::from_pem("generated", alg, pem),
        Generated::Secret(secret) => STANDARD
            .decode(secret)
            .map_err(|_| crate::Error::new(crate::ErrorKind::Internal))
            .and_then(|raw| JwtKey::hmac("generated", alg, &raw)),
    }
    .map_err(|e| Failure::from_error("the generated key does not load", &e))?;
    let (format, text) = match &generated {
        Generated::Pem(pem) => ("pkcs8-pem", pem.as_str()),
        Generated::Secret(secret) => ("base64-secret", secret.as_str()),
    };
    let public = key.public_jwk().cloned();
    match path {
        Some(path) => {
            write_new(path, text)?;
            if out.json {
                return out.json(&json!({
                    "alg": alg.as_str(), "format": format, "path": path, "public_jwk": public,
                }));
            }
            out.print(&format!(
                "wrote a {alg} {} to {}",
                if alg.is_symmetric() {
                    "secret (base64)"
                } else {
                    "private key (PKCS#8 PEM)"
                },
                path.display()
            ))
        }
        None if out.json => {
            let field = if alg.is_symmetric() { "secret" } else { "pem" };
            out.json(&json!({
                "alg": alg.as_str(), "format": format, field: text, "public_jwk": public,
            }))
        }
        None => out.print(text.trim_end()),
    }
}

/// Writes `text` to a file that must not exist yet, readable by its owner only.
fn write_new(path: &Path, text: &str) -> CliResult {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| Failure::other(format!("cannot write `{}`: {e}", path.display())))
}

/// The key ring `jwt.keys` configures, loaded without touching any store.
fn key_ring(config: &KeycardConfig) -> CliResult<Arc<KeyRing>> {
    let jwt = config.jwt.as_ref().ok_or_else(|| {
        Failure::config("no [jwt] section: the configured strategy has no key ring")
    })?;
    if jwt.keys.is_empty() {
        return Err(Failure::config(if jwt.jwks.is_some() {
            "no local keys: jwt.jwks configures a verifier-only service (its keys are the remote JWKS)"
        } else {
            "no keys configured (jwt.keys is empty): every process would sign with its own \
             ephemeral key; add [[jwt.keys]] entries (see `keycard keys generate`)"
        }));
    }
    KeyRing::from_config(&jwt.keys)
        .map(Arc::new)
        .map_err(|e| Failure::from_error("bad key configuration", &e))
}

pub(crate) fn list(out: &Output, config: &KeycardConfig) -> CliResult {
    let ring = key_ring(config)?;
    let signer = ring.signer().map(|k| k.kid().to_owned());
    let keys: Vec<JwtKey> = ring.kids().iter().filter_map(|k| ring.get(k)).collect();
    if out.json {
        let keys: Vec<_> = keys
            .iter()
            .map(|k| {
                json!({
                    "kid": k.kid(),
                    "alg": k.algorithm().as_str(),
                    "signing": signer.as_deref() == Some(k.kid()),
                    "private": k.can_sign(),
                    "published": k.public_jwk().is_some(),
                })
            })
            .collect();
        return out.json(&keys);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.kid().to_owned(),
                k.algorithm().as_str().to_owned(),
                yes_no(signer.as_deref() == Some(k.kid())),
                yes_no(k.can_sign()),
                yes_no(k.public_jwk().is_some()),
            ]
        })
        .collect();
    out.table(&["KID", "ALG", "SIGNING", "PRIVATE", "IN JWKS"], &rows)
}

pub(crate) fn jwks(out: &Output, config: &KeycardConfig) -> CliResult {
    let ring = key_ring(config)?;
    // The JWKS is JSON either way.
    out.json(&ring.jwks())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_a_key_keycard_loads() {
        for alg in Algorithm::ALL {
            let key = match generate_key(alg, 2048).unwrap() {
                Generated::Pem(pem) => {
                    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{alg}");
                    assert!(pem.lines().all(|l| l.len() <= 64), "{alg}");
                    JwtKey::from_pem("k", alg, &pem).unwrap()
                }
                Generated::Secret(s) => {
                    JwtKey::hmac("k", alg, &STANDARD.decode(s).unwrap()).unwrap()
                }
            };
            assert!(key.can_sign(), "{alg}");
            assert_eq!(key.public_jwk().is_some(), !alg.is_symmetric(), "{alg}");
        }
        assert!(generate_key(Algorithm::RS256, 1024).is_err());
    }
}
