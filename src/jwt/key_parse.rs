//! Keys from their text forms: [`JwtKey::from_pem`] (PKCS#8, SEC1, PKCS#1, SubjectPublicKeyInfo),
//! [`JwtKey::from_jwk`] (RFC 7517) and the public keys of a remote JWK Set.
//!
//! Every key parsed here goes through the checks and the self-test of [`super::keys`]; error
//! messages never contain key material.

use std::path::Path;

use aws_lc_rs::{
    rsa::KeyPairComponents,
    signature::{
        self, EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey, RsaKeyPair, RsaPublicKeyComponents,
    },
};
use serde_json::Value;

use super::{
    alg::Algorithm,
    encoding::{b64url, pem_blocks},
    jwk::JwkInput,
    keys::{
        JwtKey, SignKey, check_kid, curve_of, ecdsa_signing, key_err, rsa_params, verification_alg,
    },
};
use crate::error::Result;

/// A required base64url member of a JWK, decoded.
fn member(name: &'static str, value: &Option<String>) -> Result<Vec<u8>> {
    let s = value
        .as_deref()
        .ok_or_else(|| key_err(format!("the JWK lacks `{name}`")))?;
    b64url(s).map_err(|_| key_err(format!("the JWK's `{name}` is not base64url")))
}

impl JwtKey {
    /// Loads a key from PEM text.
    ///
    /// Private keys (`PRIVATE KEY` PKCS#8; `EC PRIVATE KEY` SEC1; `RSA PRIVATE KEY` PKCS#1) give a
    /// key that signs and verifies; public keys (`PUBLIC KEY` SubjectPublicKeyInfo; `RSA PUBLIC
    /// KEY` PKCS#1) give a verify-only key. HMAC algorithms cannot be loaded from PEM (use
    /// [`JwtKey::hmac`] or an `oct` JWK).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the PEM is malformed, encrypted, of another key type than `alg`,
    /// an RSA key outside 2048–4096 bits, or fails the self-test. Messages never contain key
    /// material.
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn from_pem(kid: impl Into<String>, alg: Algorithm, pem: &str) -> Result<Self> {
        let kid = kid.into();
        check_kid(&kid)?;
        if alg.is_symmetric() {
            return Err(key_err(format!(
                "{alg} keys are shared secrets and cannot be loaded from PEM; use a secret or an oct JWK"
            )));
        }
        let blocks = pem_blocks(pem).map_err(key_err)?;
        let [block] = blocks.as_slice() else {
            return Err(key_err("expected exactly one key in the PEM text"));
        };
        let der = block.der.as_slice();
        match block.label.as_str() {
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                let signer = load_private_der(alg, &block.label, der)?;
                Self::from_signer(kid, alg, signer)
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                let algorithm = verification_alg(alg)
                    .ok_or_else(|| key_err("unsupported algorithm for a public key"))?;
                let parsed = ParsedPublicKey::new(algorithm, der)
                    .map_err(|_| key_err(format!("the PEM public key is not a valid {alg} key")))?;
                Self::from_public(kid, alg, parsed, None)
            }
            "ENCRYPTED PRIVATE KEY" => Err(key_err(
                "encrypted private keys are not supported; decrypt it first (openssl pkcs8)",
            )),
            other => Err(key_err(format!("unsupported PEM block `{other}`"))),
        }
    }

    /// Loads a key from a PEM file (see [`JwtKey::from_pem`]).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the file cannot be read or holds no usable key.
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn from_pem_file(
        kid: impl Into<String>,
        alg: Algorithm,
        path: impl AsRef<Path>,
    ) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| key_err(format!("cannot read `{}`", path.display())).with_source(e))?;
        Self::from_pem(kid, alg, &text)
    }

    /// Loads a key from a JSON Web Key (RFC 7517): `OKP`/`Ed25519`, `EC` `P-256`/`P-384`, `RSA`,
    /// or `oct` for HMAC. With private members (`d`, or `k` for `oct`) the key signs and verifies;
    /// without, it only verifies. Members `kid` and `alg`, when present in the JWK, must match
    /// `kid` and `alg`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the JWK is malformed, does not match `alg`, or is refused.
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn from_jwk(kid: impl Into<String>, alg: Algorithm, jwk: &Value) -> Result<Self> {
        let kid = kid.into();
        check_kid(&kid)?;
        let input = JwkInput::deserialize_value(jwk)?;
        if input.kid.as_deref().is_some_and(|k| k != kid) {
            return Err(key_err("the JWK's `kid` differs from the configured kid"));
        }
        if input.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
            return Err(key_err(
                "the JWK's `alg` differs from the configured algorithm",
            ));
        }
        if !input.usable_for_signatures() {
            return Err(key_err("the JWK's `use`/`key_ops` do not allow signatures"));
        }
        Self::from_jwk_input(kid, alg, &input, true)
    }

    /// Parses one key of a remote JWKS: public members only, `kid` required, `alg` taken from the
    /// JWK or inferred from its type (`OKP` → EdDSA, `EC` by curve, `RSA` → RS256). Symmetric and
    /// private keys are refused.
    #[cfg(feature = "remote-jwks")]
    pub(crate) fn from_remote_jwk(jwk: &Value) -> std::result::Result<Self, String> {
        let input = JwkInput::deserialize_value(jwk).map_err(|e| e.message().to_owned())?;
        let kid = input.kid.clone().ok_or("no kid")?;
        check_kid(&kid).map_err(|e| e.message().to_owned())?;
        if !input.usable_for_signatures() {
            return Err("use/key_ops exclude signatures".into());
        }
        if input.kty == "oct" || input.has_private() {
            return Err("symmetric or private keys are never taken from a remote JWKS".into());
        }
        let alg = match input.alg.as_deref() {
            Some(a) => a
                .parse::<Algorithm>()
                .map_err(|_| format!("unsupported alg `{a}`"))?,
            None => match (input.kty.as_str(), input.crv.as_deref()) {
                ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
                ("EC", Some("P-256")) => Algorithm::ES256,
                ("EC", Some("P-384")) => Algorithm::ES384,
                ("RSA", _) => Algorithm::RS256,
                _ => return Err("unsupported key type".into()),
            },
        };
        Self::from_jwk_input(kid, alg, &input, false).map_err(|e| e.message().to_owned())
    }

    fn from_jwk_input(
        kid: String,
        alg: Algorithm,
        input: &JwkInput,
        allow_private: bool,
    ) -> Result<Self> {
        let private = input.has_private();
        if private && !allow_private {
            return Err(key_err("private JWK members are not accepted here"));
        }
        match alg {
            Algorithm::EdDSA => Self::from_okp_jwk(kid, alg, input),
            Algorithm::ES256 | Algorithm::ES384 => Self::from_ec_jwk(kid, alg, input),
            Algorithm::RS256 | Algorithm::PS256 => Self::from_rsa_jwk(kid, alg, input),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                if input.kty != "oct" {
                    return Err(key_err(format!("{alg} needs an oct JWK")));
                }
                let k = member("k", &input.k)?;
                Self::hmac(kid, alg, &k)
            }
        }
    }

    /// An Ed25519 key from an `OKP` JWK.
    fn from_okp_jwk(kid: String, alg: Algorithm, input: &JwkInput) -> Result<Self> {
        if input.kty != "OKP" || input.crv.as_deref() != Some("Ed25519") {
            return Err(key_err("EdDSA needs an OKP JWK with crv Ed25519"));
        }
        let x = member("x", &input.x)?;
        if input.d.is_some() {
            let d = member("d", &input.d)?;
            let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x)
                .map_err(|_| key_err("the Ed25519 JWK's d and x do not match"))?;
            Self::from_signer(kid, alg, SignKey::Ed25519(pair))
        } else {
            let parsed = ParsedPublicKey::new(&signature::ED25519, &x)
                .map_err(|_| key_err("the JWK's `x` is not an Ed25519 public key"))?;
            Self::from_public(kid, alg, parsed, None)
        }
    }

    /// A P-256 or P-384 key from an `EC` JWK.
    fn from_ec_jwk(kid: String, alg: Algorithm, input: &JwkInput) -> Result<Self> {
        let (crv, len) = curve_of(alg).ok_or_else(|| key_err("unsupported curve"))?;
        if input.kty != "EC" || input.crv.as_deref() != Some(crv) {
            return Err(key_err(format!("{alg} needs an EC JWK with crv {crv}")));
        }
        let x = member("x", &input.x)?;
        let y = member("y", &input.y)?;
        if x.len() != len || y.len() != len {
            return Err(key_err("the JWK's coordinates have the wrong length"));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        if input.d.is_some() {
            let d = member("d", &input.d)?;
            let signing = ecdsa_signing(alg).ok_or_else(|| key_err("unsupported curve"))?;
            let pair = EcdsaKeyPair::from_private_key_and_public_key(signing, &d, &point)
                .map_err(|_| key_err("the EC JWK's private and public parts do not match"))?;
            Self::from_signer(kid, alg, SignKey::Ecdsa(pair))
        } else {
            let algorithm = verification_alg(alg).ok_or_else(|| key_err("unsupported curve"))?;
            let parsed = ParsedPublicKey::new(algorithm, &point)
                .map_err(|_| key_err(format!("the JWK is not a valid {crv} point")))?;
            Self::from_public(kid, alg, parsed, None)
        }
    }

    /// An RS256 or PS256 key from an `RSA` JWK (two primes only).
    fn from_rsa_jwk(kid: String, alg: Algorithm, input: &JwkInput) -> Result<Self> {
        if input.kty != "RSA" {
            return Err(key_err(format!("{alg} needs an RSA JWK")));
        }
        if input.oth.is_some() {
            return Err(key_err("multi-prime RSA keys are not supported"));
        }
        let n = member("n", &input.n)?;
        let e = member("e", &input.e)?;
        let params = rsa_params(alg).ok_or_else(|| key_err("unsupported algorithm"))?;
        if input.d.is_some() {
            let components = KeyPairComponents {
                public_key: RsaPublicKeyComponents {
                    n: &n[..],
                    e: &e[..],
                },
                d: member("d", &input.d)?,
                p: member("p", &input.p)?,
                q: member("q", &input.q)?,
                dP: member("dp", &input.dp)?,
                dQ: member("dq", &input.dq)?,
                qInv: member("qi", &input.qi)?,
            };
            let pair = RsaKeyPair::from_components(&components)
                .map_err(|_| key_err("the RSA JWK's components are not a valid key"))?;
            Self::from_signer(kid, alg, SignKey::Rsa(pair))
        } else {
            let parsed = RsaPublicKeyComponents {
                n: &n[..],
                e: &e[..],
            }
            .to_parsed_public_key(params)
            .map_err(|_| key_err("the JWK is not a valid RSA public key"))?;
            Self::from_public(kid, alg, parsed, None)
        }
    }
}

fn load_private_der(alg: Algorithm, label: &str, der: &[u8]) -> Result<SignKey> {
    let wrong = || key_err(format!("the PEM private key is not a valid {alg} key"));
    match alg {
        Algorithm::EdDSA if label == "PRIVATE KEY" => {
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(SignKey::Ed25519)
                .map_err(|_| wrong())
        }
        Algorithm::ES256 | Algorithm::ES384 if label != "RSA PRIVATE KEY" => {
            let signing = ecdsa_signing(alg).ok_or_else(wrong)?;
            let pair = if label == "PRIVATE KEY" {
                EcdsaKeyPair::from_pkcs8(signing, der)
            } else {
                EcdsaKeyPair::from_private_key_der(signing, der)
            };
            pair.map(SignKey::Ecdsa).map_err(|_| wrong())
        }
        Algorithm::RS256 | Algorithm::PS256 if label != "EC PRIVATE KEY" => {
            let pair = if label == "PRIVATE KEY" {
                RsaKeyPair::from_pkcs8(der)
            } else {
                RsaKeyPair::from_der(der)
            };
            pair.map(SignKey::Rsa).map_err(|_| wrong())
        }
        _ => Err(wrong()),
    }
}

impl JwkInput {
    fn deserialize_value(value: &Value) -> Result<Self> {
        let owned;
        let value = match value {
            Value::String(s) => {
                owned = serde_json::from_str::<Value>(s)
                    .map_err(|_| key_err("the JWK is not valid JSON"))?;
                &owned
            }
            other => other,
        };
        if !value.is_object() {
            return Err(key_err("a JWK must be a JSON object"));
        }
        <JwkInput as serde::Deserialize>::deserialize(value)
            .map_err(|e| key_err(format!("malformed JWK: {}", redact_serde(&e))))
    }
}

/// serde messages quote offending values, which may be secret; keep only the shape of the error.
fn redact_serde(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => "a member is missing or has the wrong type",
        Category::Syntax | Category::Eof => "invalid JSON",
        Category::Io => "I/O error",
    }
}
