//! The signature algorithms keycard accepts, each pinned to a key.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A JWS signature algorithm (RFC 7518 names).
///
/// Every key in a [`KeyRing`](super::KeyRing) is pinned to exactly one algorithm; a token's `alg`
/// header must name that algorithm exactly (case-sensitive) or the token is refused. The header
/// never chooses the algorithm.
///
/// # Security
/// The `HS*` algorithms use a *shared secret*: every service that can verify a token can also mint
/// one. Prefer [`Algorithm::EdDSA`] (the default) or the ECDSA algorithms; use HMAC only when a
/// single service both issues and verifies tokens. HMAC keys are never published in a JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 signatures (RFC 8037). The default.
    #[default]
    EdDSA,
    /// ECDSA over P-256 with SHA-256.
    ES256,
    /// ECDSA over P-384 with SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256; keys of 2048 to 4096 bits.
    RS256,
    /// RSASSA-PSS with SHA-256 and MGF1; keys of 2048 to 4096 bits.
    PS256,
    /// HMAC with SHA-256; secrets of at least 32 random bytes.
    HS256,
    /// HMAC with SHA-384; secrets of at least 48 random bytes.
    HS384,
    /// HMAC with SHA-512; secrets of at least 64 random bytes.
    HS512,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 8] = [
        Self::EdDSA,
        Self::ES256,
        Self::ES384,
        Self::RS256,
        Self::PS256,
        Self::HS256,
        Self::HS384,
        Self::HS512,
    ];

    /// The JOSE name, e.g. `"EdDSA"` or `"ES256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    /// Whether this is an HMAC (shared-secret) algorithm.
    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    /// The minimum secret length in bytes for HMAC algorithms (the hash output size).
    pub fn min_secret_len(self) -> Option<usize> {
        match self {
            Self::HS256 => Some(32),
            Self::HS384 => Some(48),
            Self::HS512 => Some(64),
            _ => None,
        }
    }

    /// The exact signature length in bytes, where fixed by the algorithm (RSA depends on the key).
    pub(crate) fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Self::EdDSA | Self::ES256 => Some(64),
            Self::ES384 => Some(96),
            Self::HS256 => Some(32),
            Self::HS384 => Some(48),
            Self::HS512 => Some(64),
            Self::RS256 | Self::PS256 => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string is not one of the supported algorithm names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgorithm;

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "unsupported algorithm (expected one of EdDSA, ES256, ES384, RS256, PS256, HS256, HS384, HS512)",
        )
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses the exact (case-sensitive) JOSE name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(UnknownAlgorithm)
    }
}
