//! The store conformance suite against SQLite, one temporary database file per test.
#![cfg(feature = "sqlite")]

use crate::common;

use std::{path::PathBuf, sync::Once};

use keycard::{
    ErrorKind,
    store::sql::{SqlOptions, SqlStore},
};

fn scratch_dir() -> PathBuf {
    static CLEAN: Once = Once::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-sqlite");
    // Remove the previous run's files once per test process.
    CLEAN.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn db_path() -> PathBuf {
    scratch_dir().join(format!("{}.db", crate::common::random_id().unwrap()))
}

/// The URL of a new database file.
fn fresh_url() -> String {
    format!("sqlite://{}", db_path().display())
}

async fn store_at(url: &str) -> SqlStore {
    SqlStore::connect(url, SqlOptions::default()).await.unwrap()
}

// Only the conformance suite (feature `test-suite`) builds fresh stores this way.
#[cfg_attr(not(feature = "test-suite"), allow(dead_code))]
async fn store() -> SqlStore {
    store_at(&fresh_url()).await
}

common::conformance::store_conformance!(store().await);

#[tokio::test]
async fn creates_the_file_and_migrates_idempotently() {
    let path = db_path();
    let url = format!("sqlite://{}", path.display());
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    assert!(path.exists());
    store.migrate().await.unwrap();
    store.close().await;
    let again = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    again.migrate().await.unwrap();
}

#[cfg(feature = "test-suite")]
#[tokio::test]
async fn in_memory_database_works() {
    let store = SqlStore::connect("sqlite::memory:", SqlOptions::default())
        .await
        .unwrap();
    common::conformance::session_round_trip(std::sync::Arc::new(store)).await;
}

#[tokio::test]
async fn bad_urls_are_config_errors_naming_the_field() {
    for url in ["no-scheme-here", "oracle://db/x", "sqlite://?mode=bogus"] {
        let err = SqlStore::connect(url, SqlOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err:?}");
        assert!(err.message().contains("database.url"), "{url}: {err}");
    }
}

#[tokio::test]
async fn a_missing_directory_is_unavailable() {
    let url = format!("sqlite://{}/missing/dir/x.db", scratch_dir().display());
    let err = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StoreUnavailable, "{err:?}");
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_backend_not_compiled_in_is_a_config_error() {
    let err = SqlStore::connect("postgres://localhost/x", SqlOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("postgres"), "{err}");
}

#[tokio::test]
async fn undecodable_sessions_are_errors() {
    let url = fresh_url();
    let store = std::sync::Arc::new(store_at(&url).await);
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    common::conformance::sql_undecodable_sessions_are_errors(
        store,
        &raw,
        &[("id", "substr(id, 1, 31)"), ("subject", "X'FF'")],
    )
    .await;
}
