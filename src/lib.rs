#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod csrf;
pub mod error;
pub mod events;
mod extract;
mod keycard;
pub mod layer;
pub mod principal;
pub mod store;
pub mod strategy;
pub mod token;
pub mod transport;

pub use config::KeycardConfig;
pub use error::{Error, ErrorKind, Result};
pub use extract::{Auth, FiveMinutes, HighRisk, ListedSession, MaxAuthAge, Rejection, RequireRole, Role};
pub use keycard::{Keycard, KeycardBuilder};
pub use layer::{ResponseFuture, SessionLayer, SessionService};
pub use principal::{Principal, PrincipalSpec, SessionRef};
pub use strategy::{SessionStrategy, StrategyKind};
