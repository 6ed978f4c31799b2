//! The demo application in process: its real router ([`super::app`]) on a keycard built from a
//! config, as the hostile and end-to-end tests drive it. The demo as a process is
//! [`super::demo_bin`].

use std::sync::Arc;

use argon2::Params;
use axum::Router;
use keycard::{Keycard, KeycardConfig, StrategyKind, clock::ManualClock, config::DatabaseConfig};

use super::app;

/// Cheap argon2 parameters, so that tests can log in many times.
pub fn light_argon2() -> Params {
    Params::new(256, 1, 1, None).expect("valid argon2 params")
}

/// The demo router on `keycard`, with the seeded users hashed with [`light_argon2`].
pub fn router(keycard: Keycard) -> Router {
    let users = app::Users::seeded_with(light_argon2()).expect("hash demo users");
    app::app(keycard, users)
}

/// A keycard from config on the manual clock.
pub async fn from_config(config: &KeycardConfig, clock: &ManualClock) -> keycard::Result<Keycard> {
    let runtime = keycard::config::Runtime {
        clock: Some(Arc::new(clock.clone())),
        ..keycard::config::Runtime::default()
    };
    Keycard::from_config_with(config, runtime).await
}

/// [`from_config`], which must succeed.
pub async fn keycard(config: &KeycardConfig, clock: &ManualClock) -> Keycard {
    // As the demo does: anonymous sessions for the server-session strategies.
    let mut config = config.clone();
    if !config.strategy.uses_tokens() && config.session.anonymous.is_none() {
        config.session.anonymous = Some(keycard::strategy::AnonymousSettings::default());
    }
    from_config(&config, clock)
        .await
        .unwrap_or_else(|e| panic!("keycard from config: {e} ({e:?})"))
}

/// A config with `strategy` on the SQL store at `url` (migrated, 4 connections).
pub fn database_config(strategy: StrategyKind, url: &str) -> KeycardConfig {
    let mut config = KeycardConfig::new(strategy);
    config.database = Some(DatabaseConfig {
        url: url.to_owned(),
        max_connections: 4,
        migrate: true,
    });
    config
}

/// A fresh SQLite file under the target's temporary directory, removed (with its journal files)
/// when dropped.
pub struct TempDb(std::path::PathBuf);

impl TempDb {
    pub fn new() -> Self {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-demo-db");
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir.join(format!(
            "{}.db",
            crate::common::random_id().expect("random id")
        )))
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}
