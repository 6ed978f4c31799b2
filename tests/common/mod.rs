//! The one harness every test binary includes (`#[path = "../common/mod.rs"] mod common;` in
//! each `tests/<binary>/main.rs`): record builders for the stores, the store conformance suite
//! and every support module. Not every binary uses every item.
#![allow(dead_code, unused_macros, unused_imports)]

/// The demo application (`examples/demo/app.rs`), built in process by the hostile and demo tests.
#[path = "../../examples/demo/app.rs"]
pub mod app;
pub mod browser_support;
pub mod conformance;
pub mod demo;
pub mod demo_bin;
pub mod fault_proxy;
#[cfg(all(feature = "jwt", feature = "sqlite"))]
pub mod hostile_support;
pub mod http_client;
#[cfg(feature = "test-suite")]
pub mod http_suite;
/// Kept at `tests/jwt_support` because `benches/jwt.rs` includes it from there too.
#[cfg(feature = "jwt")]
#[path = "../jwt_support/mod.rs"]
pub mod jwt_support;
pub mod log_capture;
#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "redis")]
pub mod redis_support;
#[cfg(feature = "test-suite")]
pub mod test_app;

use std::time::{Duration, SystemTime};

use keycard::token::OpaqueToken;

/// Truncates to whole milliseconds, the precision every store keeps.
pub fn truncate_millis(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).expect("in range"))
}

/// Milliseconds since the Unix epoch, the form stores persist.
pub fn to_millis(t: SystemTime) -> i64 {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    i64::try_from(ms).expect("in range")
}

/// The PostgreSQL server the tests use: `DATABASE_URL` when it names one, else
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn pg_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The MySQL/MariaDB server the tests use: `MYSQL_URL`, else `mysql://root@127.0.0.1:3306/test`.
pub fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// The Redis node the tests use: `REDIS_URL`, else `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A random identifier (about 130 bits, base64url), for names no other test uses.
pub fn random_id() -> keycard::Result<String> {
    OpaqueToken::generate().map(|t| t.expose_secret()[..22].to_owned())
}

/// The record builders and values of keycard's own store checks.
#[cfg(feature = "test-suite")]
pub use keycard::testing::store::fixtures::{millis, now, refresh, secs, session, subject, token};
