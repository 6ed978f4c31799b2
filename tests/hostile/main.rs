//! Hostile input: the hostile suite and its races through the real demo router, forged JWTs,
//! property tests of the parsers, and no secret in logs.

#[path = "../common/mod.rs"]
mod common;

mod hostile;
mod hostile_races;
mod jwt_forgery;
#[cfg(feature = "test-suite")]
mod no_secrets_in_logs;
#[cfg(feature = "jwt")]
mod proptest_parsers;
