//! The Redis store on a single node: the shared store conformance suite and the Redis scenarios
//! against `REDIS_URL` (default `redis://127.0.0.1:6379`, each test under its own key prefix),
//! and fail-closed behaviour against throwaway `redis-server` processes that the tests kill,
//! pause and restart.

#![cfg(feature = "redis")]

use crate::common;
use crate::common::redis_support;

use std::time::{Duration, Instant};

use keycard::{
    ErrorKind,
    store::{
        SessionStore, StoreErrorKind,
        redis::{RedisOptions, RedisStore},
    },
};
use redis_support::{
    now,
    scenarios::Target,
    server::{Standalone, free_port, signal},
    session, unique_subject,
};

use crate::common::redis_url;

fn target() -> Target {
    Target::new(vec![redis_url()], false)
}

common::conformance::store_conformance!(target().store().await);
redis_support::scenarios::redis_scenarios!(target());

fn fast_options() -> RedisOptions {
    let mut options = RedisOptions::default();
    options.key_prefix = redis_support::unique_prefix();
    options.timeout = Duration::from_millis(800);
    options.connection_timeout = Duration::from_millis(300);
    options.response_timeout = Duration::from_millis(500);
    options
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_config_errors() {
    let err = RedisStore::connect("http://nope").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("redis.url"), "{}", err.message());
    let err = RedisStore::connect_cluster(&[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("redis.cluster_urls"));
    let err = RedisStore::connect_cluster(&["redis://ok:1".into(), "::bad::".into()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("redis.cluster_urls"));
    let mut options = RedisOptions::default();
    options.key_prefix = "a{b}".into();
    let err = RedisStore::connect_with(&redis_url(), options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("redis.key_prefix"));
}

/// Nothing listens on the port: connecting fails as `StoreUnavailable`, quickly.
#[tokio::test]
async fn unreachable_redis_fails_closed_at_connect() {
    let port = free_port();
    let started = Instant::now();
    let err = RedisStore::connect_with(&format!("redis://127.0.0.1:{port}"), fast_options())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StoreUnavailable);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Redis dies under a connected store: every load fails with a `StoreError` within the timeout
/// (never `Ok(None)`), and the store recovers by itself when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_closed_and_recovers() {
    let mut server = Standalone::start();
    let store = RedisStore::connect_with(&server.url(), fast_options())
        .await
        .unwrap();
    let record = session(&unique_subject());
    store.create(&record, None).await.unwrap();
    assert!(store.load(&record.id, now()).await.unwrap().is_some());

    server.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let result = store.load(&record.id, now()).await;
        let elapsed = started.elapsed();
        let err = result.expect_err("a dead Redis must not answer");
        assert!(
            matches!(
                err.kind(),
                StoreErrorKind::Unavailable | StoreErrorKind::Timeout
            ),
            "{err:?}"
        );
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    // Back, but empty (no persistence): the session is gone, which is an answer, not an error.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        match store.load(&record.id, now()).await {
            Ok(v) => break v,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no recovery within 10 s: {e:?}"),
        }
    };
    assert!(recovered.is_none());
    let again = session(&unique_subject());
    store.create(&again, None).await.unwrap();
    assert!(store.load(&again.id, now()).await.unwrap().is_some());
}

/// A hung Redis (SIGSTOP) yields a timeout within the store timeout; it answers again after
/// SIGCONT without a new store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_and_recovers() {
    let server = Standalone::start();
    let options = fast_options();
    let timeout = options.timeout;
    let store = RedisStore::connect_with(&server.url(), options)
        .await
        .unwrap();
    let record = session(&unique_subject());
    store.create(&record, None).await.unwrap();

    signal(server.pid(), "-STOP");
    let started = Instant::now();
    let err = store.load(&record.id, now()).await.unwrap_err();
    let elapsed = started.elapsed();
    signal(server.pid(), "-CONT");
    assert!(
        matches!(
            err.kind(),
            StoreErrorKind::Timeout | StoreErrorKind::Unavailable
        ),
        "{err:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_millis(500),
        "took {elapsed:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.load(&record.id, now()).await {
            Ok(Some(r)) => {
                assert_eq!(r, record);
                break;
            }
            Ok(None) => panic!("the session vanished"),
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The revocation feed ends with an error when its connection dies, and when Redis hangs (found
/// by the heartbeat), so that a mirror never believes a dead feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_feed_ends_when_redis_is_lost() {
    use futures_util::StreamExt;
    use keycard::store::RevocationStore;

    let mut options = fast_options();
    options.feed_heartbeat = Duration::from_millis(200);
    for hang in [false, true] {
        let mut server = Standalone::start();
        let store = RedisStore::connect_with(&server.url(), options.clone())
            .await
            .unwrap();
        let mut feed = store.subscribe().await.unwrap().expect("a push channel");
        let started = Instant::now();
        if hang {
            signal(server.pid(), "-STOP");
        } else {
            server.kill();
        }
        let end = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("the feed notices within 5 s");
        assert!(matches!(end, Some(Err(_))), "hang={hang}: {end:?}");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), feed.next())
                .await
                .expect("ended")
                .is_none()
        );
        eprintln!("hang={hang}: feed ended after {:?}", started.elapsed());
        if hang {
            signal(server.pid(), "-CONT");
        }
    }
}

/// `WAIT` durability on a node without replicas: the write is applied but reported as not
/// durable.
#[tokio::test]
async fn wait_without_replicas_reports_unavailable() {
    let server = Standalone::start();
    let mut options = fast_options();
    options.wait_replicas = 1;
    options.wait_timeout = Duration::from_millis(50);
    let store = RedisStore::connect_with(&server.url(), options)
        .await
        .unwrap();
    let err = store
        .create(&session(&unique_subject()), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    assert!(err.to_string().contains("unavailable"));
}
