//! JSON Web Keys (RFC 7517): the public form keycard publishes, and the parser for keys it loads.

use serde::{Deserialize, Serialize};

/// A public JSON Web Key as published in a JWKS. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP` (Ed25519), `EC` or `RSA`.
    pub kty: String,
    /// Intended use; keycard publishes `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Key ID, matched against a token's `kid` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithm the key is pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Curve (`Ed25519`, `P-256`, `P-384`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public key (OKP) or x coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// y coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// A JWK Set (`{"keys": [...]}`), as served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The public keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The key with `kid`, if any.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A JWK as loaded from config or a remote set, possibly with private members. Deliberately not
/// `Debug`: it may hold a secret.
#[derive(Deserialize)]
pub(crate) struct JwkInput {
    pub(crate) kty: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) alg: Option<String>,
    #[serde(rename = "use", default)]
    pub(crate) use_: Option<String>,
    #[serde(default)]
    pub(crate) key_ops: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) crv: Option<String>,
    #[serde(default)]
    pub(crate) x: Option<String>,
    #[serde(default)]
    pub(crate) y: Option<String>,
    #[serde(default)]
    pub(crate) n: Option<String>,
    #[serde(default)]
    pub(crate) e: Option<String>,
    #[serde(default)]
    pub(crate) d: Option<String>,
    #[serde(default)]
    pub(crate) p: Option<String>,
    #[serde(default)]
    pub(crate) q: Option<String>,
    #[serde(default)]
    pub(crate) dp: Option<String>,
    #[serde(default)]
    pub(crate) dq: Option<String>,
    #[serde(default)]
    pub(crate) qi: Option<String>,
    #[serde(default)]
    pub(crate) oth: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) k: Option<String>,
}

impl JwkInput {
    /// Whether the JWK carries any private member.
    pub(crate) fn has_private(&self) -> bool {
        self.d.is_some()
            || self.p.is_some()
            || self.q.is_some()
            || self.dp.is_some()
            || self.dq.is_some()
            || self.qi.is_some()
            || self.k.is_some()
    }

    /// `use` and `key_ops` allow signature verification.
    pub(crate) fn usable_for_signatures(&self) -> bool {
        let use_ok = self.use_.as_deref().is_none_or(|u| u == "sig");
        let ops_ok = self
            .key_ops
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| o == "verify" || o == "sign"));
        use_ok && ops_ok
    }
}
