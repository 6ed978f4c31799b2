//! The store conformance suite against PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Tests share the database and isolate themselves
//! with random subjects.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use keycard::{
    ErrorKind,
    store::sql::{SqlOptions, SqlStore},
};

fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn store() -> SqlStore {
    let mut options = SqlOptions::default();
    options.max_connections = 8;
    SqlStore::connect(&url(), options).await.unwrap()
}

common::conformance::store_conformance!(store().await);

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let mut options = SqlOptions::default();
    options.connect_timeout = Duration::from_secs(2);
    let err = SqlStore::connect("postgresql://postgres@127.0.0.1:1/test", options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StoreUnavailable, "{err:?}");
}
