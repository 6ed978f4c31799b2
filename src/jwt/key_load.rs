//! Keys from configuration: the crypto-provider probe, each entry of `jwt.keys` loaded and
//! checked, and the keys a strategy starts with (the ring given to the builder, a ring loaded from
//! `jwt.keys`, an ephemeral ring, or the remote JWKS of `jwt.jwks`).

use std::sync::Arc;

use base64::{
    Engine,
    engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig},
};

use super::{
    alg::Algorithm,
    config::{JwtConfig, KeyConfig, RemoteJwksConfig},
    keys::{JwtKey, KeyRing},
};
use crate::error::{Error, Result};

/// Checks that the crypto provider works before the first request: signs and verifies a probe
/// with a throwaway key (configured keys are self-tested as they load).
///
/// # Errors
/// A config error naming `jwt` when the provider fails.
pub(crate) fn probe_crypto_provider() -> Result<()> {
    JwtKey::generate("keycard-crypto-probe", Algorithm::EdDSA).map_err(|e| {
        Error::config(
            "jwt",
            "the crypto provider (aws-lc-rs) failed its self-test",
        )
        .with_source(e)
    })?;
    Ok(())
}

/// The keys a JWT strategy starts with.
pub(crate) enum ConfiguredKeys {
    /// A local ring: the one given to the builder, one loaded from `jwt.keys`, or an ephemeral
    /// one.
    Local(Arc<KeyRing>),
    /// Verifier-only mode: the remote JWKS of `jwt.jwks`.
    #[cfg(feature = "remote-jwks")]
    Remote(RemoteJwksConfig),
}

impl ConfiguredKeys {
    /// The keys `config` asks for, `given` being the ring handed to the builder (if any). A given
    /// ring excludes `jwt.keys`; `jwt.jwks` excludes both; with none of them, `jwt.ephemeral_key`
    /// must be set.
    ///
    /// # Errors
    /// A config error naming `jwt.jwks`, `jwt.keys` or the offending `jwt.keys[i]` field.
    pub(crate) fn load(config: &JwtConfig, given: Option<Arc<KeyRing>>) -> Result<Self> {
        match (&config.jwks, given, config.keys.is_empty()) {
            (Some(_), Some(_), _) | (Some(_), None, false) => Err(Error::config(
                "jwt.jwks",
                "verifier-only mode (jwks) excludes local keys",
            )),
            (Some(remote), None, true) => Self::remote(remote),
            (None, Some(_), false) => Err(Error::config(
                "jwt.keys",
                "keys come from the key ring given to the builder",
            )),
            (None, Some(ring), true) => Ok(Self::Local(ring)),
            (None, None, true) => {
                ephemeral_ring(config.ephemeral_key).map(|ring| Self::Local(Arc::new(ring)))
            }
            (None, None, false) => {
                KeyRing::from_config(&config.keys).map(|ring| Self::Local(Arc::new(ring)))
            }
        }
    }

    #[cfg(feature = "remote-jwks")]
    fn remote(config: &RemoteJwksConfig) -> Result<Self> {
        Ok(Self::Remote(config.clone()))
    }

    /// Without the `remote-jwks` feature there is no HTTP client to fetch a JWKS with: the
    /// configuration is refused at start-up rather than ignored.
    #[cfg(not(feature = "remote-jwks"))]
    fn remote(_: &RemoteJwksConfig) -> Result<Self> {
        Err(Error::config(
            "jwt.jwks",
            "needs the cargo feature remote-jwks",
        ))
    }
}

/// With no keys configured: an ephemeral ring, if `jwt.ephemeral_key` asks for one.
fn ephemeral_ring(requested: bool) -> Result<KeyRing> {
    if !requested {
        return Err(Error::config(
            "jwt.keys",
            "no keys: configure jwt.keys, jwt.jwks, or set jwt.ephemeral_key = true",
        ));
    }
    let ring = KeyRing::ephemeral()?;
    tracing::warn!(
        kid = ?ring.kids(),
        "keycard: generated an ephemeral Ed25519 signing key; tokens will not survive a restart"
    );
    Ok(ring)
}

impl KeyRing {
    /// The ring of `jwt.keys`: every entry loaded, `kid`s distinct, exactly one signing.
    ///
    /// # Errors
    /// A config error naming `jwt.keys` or the offending `jwt.keys[i]` field.
    pub(crate) fn from_config(keys: &[KeyConfig]) -> Result<Self> {
        let mut loaded = Vec::with_capacity(keys.len());
        let mut signer = None;
        for (i, k) in keys.iter().enumerate() {
            let key = k.load(i)?;
            if loaded.iter().any(|o: &JwtKey| o.kid() == key.kid()) {
                return Err(Error::config(
                    &format!("jwt.keys[{i}].kid"),
                    "duplicate kid",
                ));
            }
            if k.signing {
                if signer.is_some() {
                    return Err(Error::config(
                        &format!("jwt.keys[{i}].signing"),
                        "only one key may sign",
                    ));
                }
                signer = Some(key.kid().to_owned());
            }
            loaded.push(key);
        }
        let Some(signer) = signer else {
            return Err(Error::config(
                "jwt.keys",
                "exactly one key needs signing = true",
            ));
        };
        KeyRing::new(loaded, Some(&signer)).map_err(|e| Error::config("jwt.keys", e.message()))
    }
}

const LENIENT_B64: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);

fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT_B64)
        .decode(&text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT_B64).decode(&text))
        .ok()
}

impl KeyConfig {
    /// Loads the key; errors name `jwt.keys[index].<field>`.
    pub(crate) fn load(&self, index: usize) -> Result<JwtKey> {
        let at = |field: &str| format!("jwt.keys[{index}].{field}");
        let sources = [
            self.pem.is_some(),
            self.pem_file.is_some(),
            self.jwk.is_some(),
            self.secret.is_some(),
            self.secret_file.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => {
                return Err(Error::config(
                    &format!("jwt.keys[{index}]"),
                    "set one of pem, pem_file, jwk, secret or secret_file",
                ));
            }
            1 => {}
            _ => {
                return Err(Error::config(
                    &format!("jwt.keys[{index}]"),
                    "set only one of pem, pem_file, jwk, secret or secret_file",
                ));
            }
        }
        let rewrap = |field: &str| {
            let field = at(field);
            move |e: Error| Error::config(&field, e.message())
        };
        let kid = self.kid.clone();
        let key = if let Some(pem) = &self.pem {
            JwtKey::from_pem(kid, self.alg, pem).map_err(rewrap("pem"))?
        } else if let Some(path) = &self.pem_file {
            JwtKey::from_pem_file(kid, self.alg, path).map_err(rewrap("pem_file"))?
        } else if let Some(jwk) = &self.jwk {
            JwtKey::from_jwk(kid, self.alg, jwk).map_err(rewrap("jwk"))?
        } else {
            let (field, text) = match (&self.secret, &self.secret_file) {
                (Some(s), _) => ("secret", s.clone()),
                (None, Some(path)) => (
                    "secret_file",
                    std::fs::read_to_string(path).map_err(|e| {
                        Error::config(
                            &at("secret_file"),
                            format!("cannot read `{}`", path.display()),
                        )
                        .with_source(e)
                    })?,
                ),
                (None, None) => unreachable_source(index)?,
            };
            let secret = decode_secret(&text)
                .ok_or_else(|| Error::config(&at(field), "the secret is not base64"))?;
            JwtKey::hmac(kid, self.alg, &secret).map_err(rewrap(field))?
        };
        if self.signing && !key.can_sign() {
            return Err(Error::config(
                &at("signing"),
                "this key has no private part and cannot sign",
            ));
        }
        Ok(key)
    }
}

fn unreachable_source(index: usize) -> Result<(&'static str, String)> {
    Err(Error::config(
        &format!("jwt.keys[{index}]"),
        "no key material",
    ))
}
