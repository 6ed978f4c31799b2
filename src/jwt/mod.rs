//! JWT building blocks: keys and key rotation, access-token validation, the JWKS (published, and
//! consumed with the cargo feature `remote-jwks`), the revocation mirror and the verified-token
//! cache. The strategy itself is [`JwtStrategy`].
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use keycard::jwt::{Algorithm, JwtConfig, JwtKey, JwtStrategy, KeyRing};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> keycard::Result<()> {
//! let ring = Arc::new(KeyRing::new([JwtKey::generate("k1", Algorithm::EdDSA)?], Some("k1"))?);
//! let strategy = JwtStrategy::builder(JwtConfig::new("https://auth.example", "api"))
//!     .key_ring(ring.clone())
//!     .build()?;
//! strategy.ready().await?;
//! // Serve the public keys next to your routes:
//! let app: axum::Router = axum::Router::new().merge(strategy.jwks_router());
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! # What a token must be to be accepted
//! - at most 8 KiB, compact JWS (three base64url segments, no padding);
//! - header: `typ` of `at+jwt` or `application/at+jwt` (case-insensitive), a `kid` naming a key
//!   of the ring, an `alg` equal to that key's algorithm; no `crit`, `jku`, `jwk`, `x5u`, `x5c`,
//!   `x5t`, `b64`, `zip`, `enc`, `cty`; no duplicate members;
//! - a valid signature by that key;
//! - claims: `iss` and `aud` exactly as configured (`aud` may be an array containing it), `sub`,
//!   `jti`, integer `exp` and `iat`, optional `nbf`, `auth_time`, `sid`, `roles` (array of
//!   strings); `exp` not past (with leeway), `nbf` and `iat` not in the future (with leeway),
//!   `exp - iat` within the configured maximum; no duplicate claims, no claim of the wrong type;
//! - not revoked: `jti` not denylisted, family (`sid`) not revoked, `iat` not before the subject's
//!   epoch.
//!
//! Unregistered claims become [`Principal::attributes`](crate::Principal::attributes).
//!
//! # Security
//! - The algorithm comes from the key, never from the token; `none` is never accepted; HMAC keys
//!   cannot be confused with public keys because each key is pinned to one algorithm.
//! - HMAC (`HS*`) secrets are shared: any holder can mint tokens. Prefer EdDSA or ECDSA.
//! - ECDSA signatures are accepted in either of their two valid forms (`s` and `n - s`, "high S"),
//!   as RFC 7518 requires nothing else; the verified-token cache is keyed by the whole token and
//!   revocation by `jti`, so malleability gains an attacker nothing.
//! - Ephemeral keys ([`KeyRing::ephemeral`]) die with the process.

mod alg;
mod builder;
pub(crate) mod cache;
pub(crate) mod claims;
mod config;
mod data;
mod encoding;
mod jwk;
pub(crate) mod jws;
mod key_load;
mod key_parse;
mod keys;
#[cfg(feature = "remote-jwks")]
pub(crate) mod remote;
mod session;
mod strategy;

pub use alg::{Algorithm, UnknownAlgorithm};
pub use builder::JwtStrategyBuilder;
pub use cache::DEFAULT_CACHE_SIZE;
pub use claims::RESERVED_CLAIMS;
pub use config::{JwtConfig, KeyConfig, RefreshConfig, RemoteJwksConfig};
pub use jwk::{Jwk, Jwks};
pub use jws::MAX_TOKEN_LEN;
pub use keys::{JwtKey, KeyRing};
pub use strategy::{JWKS_PATH, JwtStrategy};
