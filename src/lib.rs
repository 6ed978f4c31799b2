#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod config;
mod config_env;
mod context;
mod credential;
pub mod csrf;
pub mod dangerous;
mod error;
pub mod events;
mod extract;
pub mod handlers;
mod keycard;
mod layer;
pub mod metrics;
pub mod policy;
mod principal;
mod revocation;
mod session_data;
pub mod store;
pub mod strategy;
#[cfg(feature = "test-suite")]
pub mod testing;
pub mod throttle;
pub mod token;
pub mod transport;

#[cfg(feature = "jwt")]
pub mod jwt;

pub use auth::{Auth, ListedSession, Login};
pub use config::{KeycardConfig, StrategyKind};
pub use error::{Error, ErrorKind, Result};
pub use extract::{FiveMinutes, HighRisk, MaxAuthAge, Rejection, RequireRole, Role};
pub use keycard::{Keycard, KeycardBuilder};
pub use layer::{ResponseFuture, SessionLayer, SessionService};
pub use principal::{Principal, PrincipalBuilder, PrincipalSpec, SessionRef};
pub use session_data::{DataKey, SessionData};
pub use strategy::SessionStrategy;

/// Hooks for the fuzz targets (`fuzz/`), the property tests (`tests/proptest_parsers.rs`) and the
/// Wycheproof vectors (`tests/wycheproof.rs`).
///
/// **Not public API.** Hidden from the documentation, outside any semver promise, and liable to
/// change or disappear in any release. It only re-exposes crate-internal parsers with owned
/// results, and the JWS signature check, so that they can be driven with arbitrary input.
#[doc(hidden)]
pub mod __fuzz {
    use http::HeaderMap;

    use crate::{ErrorKind, transport::TransportSettings};

    /// What the transport found in a request's headers, as owned values.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Read {
        /// The primary credential's value (cookie or bearer), or why it is unusable.
        pub credential: Option<Result<String, ErrorKind>>,
        /// The refresh cookie's value, when configured and present exactly once.
        pub refresh: Option<String>,
    }

    /// Runs the transport's credential reading (cookies and `Authorization`) on `headers`.
    ///
    /// # Errors
    /// The [`ErrorKind`] of a refusal (a limit exceeded).
    pub fn read_credentials(
        settings: &TransportSettings,
        headers: &HeaderMap,
    ) -> Result<Read, ErrorKind> {
        let found = crate::transport::read(settings, headers).map_err(|e| e.kind())?;
        Ok(Read {
            // As the layer answers: a Bearer value that is not a b64token is malformed.
            credential: found.credential.map(|c| {
                c.and_then(|l| {
                    if l.is_well_formed() {
                        Ok(l.value().to_owned())
                    } else {
                        Err(ErrorKind::MalformedRequest)
                    }
                })
            }),
            refresh: found.refresh.map(|l| l.value().to_owned()),
        })
    }

    /// The `Authorization: Bearer` parser: `None` for another scheme, else the token's byte range
    /// or why it is malformed.
    pub fn parse_bearer(value: &[u8]) -> Option<Result<std::ops::Range<usize>, ErrorKind>> {
        crate::transport::parse_bearer(value)
    }

    /// Loads `config` exactly as the JWT strategy loads an entry of `jwt.keys` (errors name
    /// `jwt.keys[0]`).
    ///
    /// # Errors
    /// The configuration error keycard would report for that key.
    #[cfg(feature = "jwt")]
    pub fn load_key(config: &crate::jwt::KeyConfig) -> crate::Result<crate::jwt::JwtKey> {
        config.load(0)
    }

    /// Checks `signature` over `message` with `key`: the signature step of token verification,
    /// which a token reaches with its signing input (`header.payload`) and decoded signature.
    #[cfg(feature = "jwt")]
    pub fn verify_signature(key: &crate::jwt::JwtKey, message: &[u8], signature: &[u8]) -> bool {
        key.verify(message, signature)
    }
}
