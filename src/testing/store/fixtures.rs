//! Records and values the checks are built from, public so that a store's own tests can build
//! the same ones: sessions and refresh families of fresh subjects, at the millisecond precision
//! every store keeps.
//!
//! ```
//! use keycard::testing::store::fixtures::{now, secs, session, subject};
//!
//! let record = session(&subject(), now(), secs(60));
//! assert_eq!(record.expires_at, record.created_at + secs(60));
//! ```

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::{
    clock::truncate_millis,
    store::{RefreshRecord, SessionRecord},
    token::{OpaqueToken, TokenHash, random_id},
};

/// A subject no other check uses, so that checks sharing one database stay isolated.
pub fn subject() -> String {
    format!("user-{}", random_id().expect("the OS random source"))
}

/// A fresh, random token hash.
pub fn token() -> TokenHash {
    OpaqueToken::generate()
        .expect("the OS random source")
        .hash()
}

/// The current time at the millisecond precision every store keeps.
pub fn now() -> SystemTime {
    truncate_millis(SystemTime::now())
}

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Attributes with nesting, arrays, numbers and `null`, which every store must keep as given.
pub fn attributes() -> Map<String, Value> {
    match json!({"tenant": "acme", "level": 3, "nested": {"list": [1, "two", null], "ok": true}}) {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
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
        family: random_id().expect("the OS random source"),
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
