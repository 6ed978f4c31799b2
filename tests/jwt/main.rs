//! The JWT strategy: claims, configuration, keys, refresh families, remote JWKS, revocation and
//! signatures.

#[path = "../common/mod.rs"]
mod common;

mod jwt_claims;
mod jwt_config;
mod jwt_keys;
mod jwt_refresh;
mod jwt_remote;
mod jwt_revocation;
mod jwt_signatures;
mod wycheproof;
