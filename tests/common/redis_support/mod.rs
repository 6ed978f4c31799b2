//! Helpers shared by the Redis store tests: record builders, Redis-specific scenarios, throwaway
//! `redis-server` processes and a Redis Cluster harness.

pub mod cluster;
pub mod scenarios;
pub mod server;

use std::time::{Duration, SystemTime};

use super::{random_id, truncate_millis};

use keycard::{
    store::{RefreshRecord, SessionRecord},
    token::{OpaqueToken, TokenHash},
};

/// A key prefix no other test (or engineer) uses, so tests never see each other's keys.
pub fn unique_prefix() -> String {
    format!("kctest-{}", random_id().expect("random id"))
}

/// A subject no other test uses.
pub fn unique_subject() -> String {
    format!("user-{}", random_id().expect("random id"))
}

/// The current time, truncated to whole milliseconds (the precision stores keep).
pub fn now() -> SystemTime {
    truncate_millis(SystemTime::now())
}

/// A fresh token hash.
pub fn fresh_id() -> TokenHash {
    OpaqueToken::generate().expect("token").hash()
}

/// A session of `subject` created at `at`, idle 30 min, absolute 8 h.
pub fn session_at(subject: &str, at: SystemTime) -> SessionRecord {
    SessionRecord {
        id: fresh_id(),
        subject: subject.to_owned(),
        roles: vec!["user".into()],
        attributes: serde_json::json!({"tenant": "t1", "n": 1})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        created_at: at,
        last_seen_at: at,
        authenticated_at: at,
        expires_at: at + Duration::from_secs(30 * 60),
        absolute_expires_at: at + Duration::from_secs(8 * 3600),
        user_agent: Some("test-agent/1.0".into()),
        ip: Some("127.0.0.1".into()),
        data: None,
        idle_timeout: None,
        persistent: true,
    }
}

/// A session of `subject` created now.
pub fn session(subject: &str) -> SessionRecord {
    session_at(subject, now())
}

/// The first token of a new refresh family of `subject`, idle 1 h, absolute 30 days.
pub fn family_head(subject: &str, at: SystemTime) -> RefreshRecord {
    RefreshRecord {
        id: fresh_id(),
        family: random_id().expect("random id"),
        subject: subject.to_owned(),
        roles: vec!["user".into()],
        attributes: serde_json::Map::new(),
        issued_at: at,
        expires_at: at + Duration::from_secs(3600),
        family_created_at: at,
        family_expires_at: at + Duration::from_secs(30 * 86400),
        authenticated_at: at,
        used_at: None,
        user_agent: None,
        ip: Some("10.0.0.1".into()),
        idle_timeout: None,
        persistent: true,
    }
}
