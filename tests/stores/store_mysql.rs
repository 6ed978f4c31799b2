//! The store conformance suite against MySQL/MariaDB (`MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306/test`). Tests share the database and isolate themselves with
//! random subjects.
#![cfg(feature = "mysql")]

use crate::common;

use keycard::store::sql::{SqlOptions, SqlStore};

use crate::common::mysql_url as url;

async fn store() -> SqlStore {
    let mut options = SqlOptions::default();
    options.max_connections = 8;
    SqlStore::connect(&url(), options).await.unwrap()
}

common::conformance::store_conformance!(store().await);

#[cfg(feature = "test-suite")]
#[tokio::test]
async fn the_mariadb_scheme_is_accepted() {
    let url = url().replacen("mysql:", "mariadb:", 1);
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    common::conformance::session_round_trip(std::sync::Arc::new(store)).await;
}

#[tokio::test]
async fn undecodable_sessions_are_errors() {
    let store = std::sync::Arc::new(store().await);
    let raw = sqlx::MySqlPool::connect(&url()).await.unwrap();
    common::conformance::sql_undecodable_sessions_are_errors(store, &raw, &[("subject", "X'FF'")])
        .await;
}
