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

use keycard::{
    store::{RefreshRecord, SessionRecord},
    token::{OpaqueToken, TokenHash},
};
use serde_json::{Map, Value, json};

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

/// A subject no other test uses, so that tests sharing one database stay isolated.
pub fn subject() -> String {
    format!("user-{}", random_id().unwrap())
}

/// A fresh, random token hash.
pub fn token() -> TokenHash {
    OpaqueToken::generate().unwrap().hash()
}

/// The current time at the millisecond precision every store keeps.
pub fn now() -> SystemTime {
    truncate_millis(SystemTime::now())
}

/// Seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Milliseconds.
pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn attributes() -> Map<String, Value> {
    match json!({"tenant": "acme", "level": 3, "nested": {"list": [1, "two", null], "ok": true}}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// A session of `subject` created at `created`, live for `idle`, with an absolute expiry of one
/// day.
pub fn session(subject: &str, created: SystemTime, idle: Duration) -> SessionRecord {
    SessionRecord {
        id: token(),
        subject: subject.to_owned(),
        roles: vec!["admin".into(), "user".into()],
        attributes: attributes(),
        created_at: created,
        last_seen_at: created,
        authenticated_at: created,
        expires_at: created + idle,
        absolute_expires_at: created + secs(86_400),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) ünïcødé".into()),
        ip: Some("2001:db8::1".into()),
        data: None,
        idle_timeout: None,
        persistent: true,
    }
}

/// The first refresh token of a new family of `subject`, issued at `issued`, with the given
/// token idle lifetime and family lifetime.
pub fn refresh(
    subject: &str,
    issued: SystemTime,
    idle: Duration,
    family_lifetime: Duration,
) -> RefreshRecord {
    let family_expires_at = issued + family_lifetime;
    RefreshRecord {
        id: token(),
        family: random_id().unwrap(),
        subject: subject.to_owned(),
        roles: vec!["user".into()],
        attributes: attributes(),
        issued_at: issued,
        expires_at: (issued + idle).min(family_expires_at),
        family_created_at: issued,
        family_expires_at,
        authenticated_at: issued,
        used_at: None,
        user_agent: None,
        ip: Some("192.0.2.7".into()),
        idle_timeout: None,
        persistent: true,
    }
}
