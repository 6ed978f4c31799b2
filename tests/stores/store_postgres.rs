//! The store conformance suite against PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Tests share the database and isolate themselves
//! with random subjects.
#![cfg(feature = "postgres")]

use crate::common;

use std::time::Duration;

use keycard::{
    ErrorKind,
    store::sql::{SqlOptions, SqlStore},
};

use crate::common::pg_url as url;

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

/// The pool does not ping a connection before each use (that would be a second round trip per
/// lookup). When the server ends every pooled connection (a restart, `pg_terminate_backend`, an
/// idle-connection reaper), the next lookup, write and transaction still succeed on new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_are_replaced_without_an_error() {
    use keycard::store::SessionStore;
    use std::sync::Arc;

    // The pool's connections carry a name of their own, so that only they are terminated.
    let name = format!("keycard-stale-{}", common::subject());
    let separator = if url().contains('?') { '&' } else { '?' };
    let mut options = SqlOptions::default();
    options.max_connections = 4;
    let store = Arc::new(
        SqlStore::connect(
            &format!("{}{separator}application_name={name}", url()),
            options,
        )
        .await
        .unwrap(),
    );
    let user = common::subject();
    let t0 = common::now();
    let record = common::session(&user, t0, common::secs(3600));
    store.create(&record, None).await.unwrap();
    // Several lookups at once leave several connections idle in the pool.
    let lookups = (0..4).map(|_| {
        let store = store.clone();
        let id = record.id;
        tokio::spawn(async move { store.load(&id, t0).await })
    });
    for lookup in futures_util::future::join_all(lookups).await {
        assert!(lookup.unwrap().unwrap().is_some());
    }

    let admin = sqlx::PgPool::connect(&url()).await.unwrap();
    let ours = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
    let pooled: i64 = sqlx::query_scalar(ours)
        .bind(&name)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(pooled >= 1, "the pool holds connections");
    // In the select list, so that only the rows the filter kept are terminated.
    let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1";
    let terminated: Vec<bool> = sqlx::query_scalar(terminate)
        .bind(&name)
        .fetch_all(&admin)
        .await
        .unwrap();
    assert_eq!(terminated.len() as i64, pooled);
    assert!(
        terminated.iter().all(|t| *t),
        "every pooled connection was terminated"
    );
    // Termination is asynchronous: wait until the server has ended them.
    for _ in 0..200 {
        let left: i64 = sqlx::query_scalar(ours)
            .bind(&name)
            .fetch_one(&admin)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let loaded = store
        .load(&record.id, t0)
        .await
        .expect("a read on a new connection");
    assert_eq!(loaded.as_ref(), Some(&record));
    // And once more, for writes: a single statement and a transaction.
    let terminated: Vec<bool> = sqlx::query_scalar(terminate)
        .bind(&name)
        .fetch_all(&admin)
        .await
        .unwrap();
    assert!(!terminated.is_empty() && terminated.iter().all(|t| *t));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let seen = t0 + common::secs(1);
    assert!(
        store
            .touch(&record.id, seen, seen + common::secs(3600))
            .await
            .expect("a write on a new connection")
    );
    let second = common::session(&user, t0, common::secs(3600));
    let limit = keycard::store::SessionLimit {
        max: 5,
        policy: keycard::store::LimitPolicy::Reject,
    };
    store
        .create(&second, Some(limit))
        .await
        .expect("a transaction on a new connection");
    assert_eq!(store.delete_all(&user).await.unwrap(), 2);
}

#[tokio::test]
async fn undecodable_sessions_are_errors() {
    let store = std::sync::Arc::new(store().await);
    let raw = sqlx::PgPool::connect(&url()).await.unwrap();
    common::conformance::sql_undecodable_sessions_are_errors(store, &raw, &[]).await;
}
