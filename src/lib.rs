#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod error;
pub mod events;
pub mod principal;
pub mod store;
pub mod strategy;
pub mod token;

pub use error::{Error, ErrorKind, Result};
pub use principal::{Principal, PrincipalSpec, SessionRef};
pub use strategy::{SessionStrategy, StrategyKind};
