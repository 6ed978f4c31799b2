//! The Redis store on a 6-node Redis Cluster (3 primaries, 3 replicas) that the tests start
//! themselves on free loopback ports: the shared store conformance suite and the Redis scenarios
//! on one cluster shared by this binary, and failover tests on dedicated clusters.

#![cfg(feature = "redis")]

use crate::common;
use crate::common::redis_support;

use std::time::{Duration, Instant};

use keycard::store::{SessionStore, StoreErrorKind, redis::RedisOptions};
use redis_support::{
    cluster::Cluster,
    now,
    scenarios::Target,
    server::{cli, signal},
    session, unique_subject,
};

fn target() -> Target {
    Target::new(Cluster::shared().urls(), true)
}

common::conformance::store_conformance!(target().store().await);
redis_support::scenarios::redis_scenarios!(target());

fn fast(target: &Target) -> RedisOptions {
    let mut options = target.options();
    options.timeout = Duration::from_millis(1000);
    options.connection_timeout = Duration::from_millis(300);
    options.response_timeout = Duration::from_millis(500);
    options
}

/// Kill the primary that owns a session while a bounded loop of loads runs: loads fail with a
/// `StoreError` (never `Ok(None)` or another record) until the replica is promoted, then succeed
/// again with the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_fails_closed_then_recovers() {
    let cluster = Cluster::start(1000);
    let target = Target::new(cluster.urls(), true);
    let options = fast(&target);
    let store = target.store_with(options.clone()).await;
    let mut durable = options.clone();
    durable.wait_replicas = 1;
    durable.wait_timeout = Duration::from_secs(2);
    durable.response_timeout = Duration::from_secs(3);
    durable.timeout = Duration::from_secs(5);
    let durable = target.store_with(durable).await;

    // Written with WAIT 1, so the replica holds it before the primary dies.
    let subject = unique_subject();
    let record = session(&subject);
    durable.create(&record, None).await.unwrap();
    let key = target.session_key(&record.id);
    let victim = cluster.primary_for(&key);

    let start = Instant::now();
    let mut killed_at = None;
    let mut errors = 0u32;
    let mut first_error = None;
    let mut last_error = None;
    let mut streak = 0u32;
    let mut kinds = Vec::new();
    for i in 0..200 {
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
        if i == 5 {
            cluster.kill_node(victim);
            killed_at = Some(Instant::now());
        }
        let t0 = Instant::now();
        match store.load(&record.id, now()).await {
            Ok(Some(r)) => {
                assert_eq!(r, record, "served a different record");
                streak += 1;
            }
            Ok(None) => panic!("served an anonymous answer at iteration {i}"),
            Err(e) => {
                assert!(killed_at.is_some(), "error before the kill: {e:?}");
                assert!(
                    matches!(
                        e.kind(),
                        StoreErrorKind::Unavailable | StoreErrorKind::Timeout
                    ),
                    "{e:?}"
                );
                assert!(
                    t0.elapsed() < options.timeout + Duration::from_millis(500),
                    "a failing load took {:?}",
                    t0.elapsed()
                );
                if !kinds.contains(&e.kind()) {
                    kinds.push(e.kind());
                }
                errors += 1;
                first_error.get_or_insert(Instant::now());
                last_error = Some(Instant::now());
                streak = 0;
            }
        }
        if errors > 0 && streak >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let killed_at = killed_at.expect("the primary was killed");
    assert!(errors > 0, "no request failed while the primary was down");
    assert!(
        streak >= 10,
        "no recovery within the window ({errors} errors)"
    );
    let window = last_error.map(|t| t - killed_at).unwrap_or_default();
    eprintln!(
        "failover: {errors} failed loads ({kinds:?}), first {:?} and last {window:?} after the \
         kill; recovered without a new store",
        first_error.map(|t| t - killed_at)
    );
    assert_ne!(
        cluster.primary_for(&key),
        victim,
        "the replica was promoted"
    );

    // The promoted replica serves the index and writes too.
    let listed = store.list(&subject, now()).await.unwrap();
    assert_eq!(listed, vec![record.clone()]);
    let fresh = session(&subject);
    store.create(&fresh, None).await.unwrap();
    assert!(store.delete(&subject, &record.id).await.unwrap());
    assert_eq!(store.list(&subject, now()).await.unwrap(), vec![fresh]);
}

/// Redis replication is asynchronous: a write the primary acknowledged but had not yet sent to
/// its replica is lost when the replica takes over. With `wait_replicas` the same write is
/// reported as not durable instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_loses_unreplicated_acknowledged_writes() {
    let cluster = Cluster::start(1000);
    let target = Target::new(cluster.urls(), true);
    let options = fast(&target);
    let store = target.store_with(options.clone()).await;
    let mut durable = options.clone();
    durable.wait_replicas = 1;
    durable.wait_timeout = Duration::from_millis(200);
    let durable = target.store_with(durable).await;

    // Two sessions whose keys live on the same primary.
    let subject = unique_subject();
    let lost = session(&subject);
    let primary = cluster.primary_for(&target.session_key(&lost.id));
    let waited = loop {
        let r = session(&subject);
        if cluster.primary_for(&target.session_key(&r.id)) == primary {
            break r;
        }
    };
    let replica = cluster
        .replica_of(primary)
        .expect("the primary has a replica");

    // Cut replication (stop the replica, then drop its link on the primary so nothing more
    // reaches its socket buffer), write, lose the primary, let the stale replica take over.
    signal(cluster.pid(replica), "-STOP");
    cli(primary, &["CLIENT", "KILL", "TYPE", "replica"]);
    let acked = store.create(&lost, None).await;
    let refused = durable.create(&waited, None).await;
    cluster.kill_node(primary);
    signal(cluster.pid(replica), "-CONT");
    assert!(
        acked.is_ok(),
        "the primary acknowledged the write: {acked:?}"
    );
    let err = refused.expect_err("WAIT reports the unreplicated write");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);

    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match store.load(&lost.id, now()).await {
            Ok(v) => break v,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(after, None, "the acknowledged session was lost on failover");
    assert_eq!(cluster.primary_for(&target.session_key(&lost.id)), replica);
    eprintln!("failover lost an acknowledged session write; the WAIT store refused it instead");
}
