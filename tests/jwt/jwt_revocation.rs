//! Revocation across instances and through the cache; the mirror's fallback to the store when its
//! feed is lost; polling stores; a store that is down at start.
#![cfg(feature = "jwt")]

use crate::common::jwt_support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures_util::StreamExt;
use jwt_support::*;
use keycard::{
    ErrorKind, SessionStrategy,
    clock::ManualClock,
    jwt::{Algorithm, JwtConfig, JwtStrategy, KeyRing},
    store::{MemoryStore, Revocation, RevocationFeed, RevocationStore, StoreError, StoreResult},
};
use parking_lot::Mutex;
use tokio::sync::mpsc;

#[tokio::test]
async fn jti_family_and_epoch_revocations_reach_a_second_instance_at_once() {
    let h = harness(Algorithm::EdDSA).await;
    let b = h.second_instance().await;

    let first = h.login("alice").await;
    let p = b.authenticate(bearer(&access(&first))).await.unwrap(); // cached in B
    h.strategy.logout(&p).await.unwrap();
    assert_kind(auth(&b, &access(&first)).await, ErrorKind::Revoked);

    let second = h.login("alice").await;
    auth(&b, &access(&second)).await.unwrap();
    assert!(
        h.strategy
            .revoke("alice", &second.principal.session().id)
            .await
            .unwrap()
    );
    assert_kind(auth(&b, &access(&second)).await, ErrorKind::Revoked);

    let third = h.login("alice").await;
    let fourth = h.login("alice").await;
    auth(&b, &access(&third)).await.unwrap();
    h.strategy.logout_all("alice").await.unwrap();
    assert_kind(auth(&b, &access(&third)).await, ErrorKind::Revoked);
    assert_kind(auth(&b, &access(&fourth)).await, ErrorKind::Revoked);

    // And the other way round.
    let fifth = h.login("alice").await;
    h.auth(&access(&fifth)).await.unwrap();
    b.logout_all("alice").await.unwrap();
    assert_kind(h.auth(&access(&fifth)).await, ErrorKind::Revoked);
    // A login on B right after its logout-all is valid on A.
    let sixth = b
        .login(spec("alice"), &Default::default(), Default::default())
        .await
        .unwrap();
    h.auth(&access(&sixth)).await.unwrap();
}

#[tokio::test]
async fn a_cache_hit_still_refuses_revoked_and_expired_tokens() {
    let h = harness(Algorithm::ES256).await;
    let a = h.login("alice").await;
    let p = h.auth(&access(&a)).await.unwrap();
    assert_eq!(h.strategy.cached_tokens(), 1);
    h.strategy.logout(&p).await.unwrap();
    assert_kind(h.auth(&access(&a)).await, ErrorKind::Revoked);

    let b = h.login("bob").await;
    h.auth(&access(&b)).await.unwrap();
    h.strategy.logout_all("bob").await.unwrap();
    assert_kind(h.auth(&access(&b)).await, ErrorKind::Revoked);

    let c = h.login("carol").await;
    h.auth(&access(&c)).await.unwrap();
    h.clock.advance(Duration::from_secs(661));
    assert_kind(h.auth(&access(&c)).await, ErrorKind::Expired);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let h = harness_with(Algorithm::EdDSA, |c| c.cache_size = 16).await;
    for _ in 0..100 {
        let t = access(&h.login("alice").await);
        h.auth(&t).await.unwrap();
        assert!(h.strategy.cached_tokens() <= 16);
    }
    let off = harness_with(Algorithm::EdDSA, |c| c.cache_size = 0).await;
    let t = access(&off.login("alice").await);
    off.auth(&t).await.unwrap();
    off.auth(&t).await.unwrap();
    assert_eq!(off.strategy.cached_tokens(), 0);
}

/// A revocation store whose feed, loads and checks the test controls.
#[derive(Debug, Clone)]
struct Controlled {
    inner: MemoryStore,
    ctl: Arc<Ctl>,
}

#[derive(Debug, Default)]
struct Ctl {
    polling: AtomicBool,
    fail_subscribe: AtomicBool,
    fail_load: AtomicBool,
    fail_is_revoked: AtomicBool,
    is_revoked_calls: AtomicUsize,
    subscribes: AtomicUsize,
    feeds: Mutex<Vec<mpsc::UnboundedSender<StoreResult<Revocation>>>>,
}

impl Controlled {
    fn new(polling: bool) -> Self {
        let ctl = Ctl::default();
        ctl.polling.store(polling, Ordering::SeqCst);
        Self {
            inner: MemoryStore::new(),
            ctl: Arc::new(ctl),
        }
    }

    /// Breaks every open feed with an error.
    fn break_feeds(&self) {
        for tx in self.ctl.feeds.lock().drain(..) {
            let _ = tx.send(Err(StoreError::unavailable("connection reset")));
        }
    }

    fn calls(&self) -> usize {
        self.ctl.is_revoked_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RevocationStore for Controlled {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        self.inner.revoke(revocation).await?;
        self.ctl
            .feeds
            .lock()
            .retain(|tx| tx.send(Ok(revocation.clone())).is_ok());
        Ok(())
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        if self.ctl.fail_load.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("load refused"));
        }
        self.inner.load(now).await
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        self.ctl.is_revoked_calls.fetch_add(1, Ordering::SeqCst);
        if self.ctl.fail_is_revoked.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("is_revoked refused"));
        }
        self.inner.is_revoked(jti, subject, issued_at).await
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        self.ctl.subscribes.fetch_add(1, Ordering::SeqCst);
        if self.ctl.fail_subscribe.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("subscribe refused"));
        }
        if self.ctl.polling.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.ctl.feeds.lock().push(tx);
        Ok(Some(
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
            )
            .boxed(),
        ))
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.inner.sweep(now).await
    }
}

struct Setup {
    strategy: JwtStrategy,
    other: JwtStrategy,
    store: Controlled,
}

async fn setup(store: Controlled, tweak: impl Fn(&mut JwtConfig)) -> Setup {
    let (_, key) = Signer::for_alg(Algorithm::EdDSA, "test-key");
    let ring = Arc::new(KeyRing::new([key], Some("test-key")).unwrap());
    let mut config = config();
    tweak(&mut config);
    let clock = ManualClock::new();
    let make = || {
        JwtStrategy::builder(config.clone())
            .key_ring(ring.clone())
            .refresh_store(Arc::new(store.inner.clone()))
            .revocation_store(Arc::new(store.clone()))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    };
    let strategy = make();
    let other = make();
    Setup {
        strategy,
        other,
        store,
    }
}

/// Waits (up to 3 s) until authenticating `token` is a ready (local) future.
async fn wait_until_local(s: &JwtStrategy, token: &str) {
    for _ in 0..300 {
        if s.authenticate(bearer(token)).is_ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mirror never became live again");
}

#[tokio::test]
async fn a_lost_feed_falls_back_to_the_store_until_resubscribed() {
    let s = setup(Controlled::new(false), |_| {}).await;
    s.strategy.ready().await.unwrap();
    s.other.ready().await.unwrap();
    let issued = s
        .strategy
        .login(spec("alice"), &Default::default(), Default::default())
        .await
        .unwrap();
    let token = access(&issued);
    let fut = s.strategy.authenticate(bearer(&token));
    assert!(fut.is_ready());
    fut.await.unwrap();
    assert_eq!(s.store.calls(), 0);

    s.store.break_feeds();
    // The next request notices, and asks the store (twice: jti and family).
    let fut = s.strategy.authenticate(bearer(&token));
    assert!(!fut.is_ready(), "a stale mirror must not be trusted");
    fut.await.unwrap();
    assert!(s.store.calls() >= 1);

    // A revocation made while no feed delivers it is still seen, via the store.
    s.store.ctl.fail_subscribe.store(true, Ordering::SeqCst);
    s.store.break_feeds();
    s.other.logout_all("alice").await.unwrap();
    assert_kind(auth(&s.strategy, &token).await, ErrorKind::Revoked);
    // With the store failing too, the answer is 503, never a guess.
    s.store.ctl.fail_is_revoked.store(true, Ordering::SeqCst);
    let fresh = access(
        &s.other
            .login(spec("bob"), &Default::default(), Default::default())
            .await
            .unwrap(),
    );
    assert_kind(auth(&s.strategy, &fresh).await, ErrorKind::StoreUnavailable);

    // The feed comes back: the mirror reloads and is trusted again, with the revocation in it.
    s.store.ctl.fail_is_revoked.store(false, Ordering::SeqCst);
    s.store.ctl.fail_subscribe.store(false, Ordering::SeqCst);
    wait_until_local(&s.strategy, &token).await;
    assert_kind(auth(&s.strategy, &token).await, ErrorKind::Revoked);
    auth(&s.strategy, &fresh).await.unwrap();
    assert!(s.store.ctl.subscribes.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn a_polling_store_is_seen_within_the_poll_interval() {
    let s = setup(Controlled::new(true), |c| {
        c.revocation_poll_interval = Duration::from_millis(50)
    })
    .await;
    s.strategy.ready().await.unwrap();
    s.other.ready().await.unwrap();
    let issued = s
        .strategy
        .login(spec("alice"), &Default::default(), Default::default())
        .await
        .unwrap();
    let token = access(&issued);
    let p = auth(&s.other, &token).await.unwrap();
    s.strategy.logout(&p).await.unwrap();
    // Immediately revoked where it was made...
    assert_kind(auth(&s.strategy, &token).await, ErrorKind::Revoked);
    // ...and on the other instance within a few poll intervals.
    let started = tokio::time::Instant::now();
    loop {
        match auth(&s.other, &token).await {
            Err(e) if e.kind() == ErrorKind::Revoked => break,
            Ok(_) if started.elapsed() < Duration::from_millis(500) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("not revoked in time: {other:?}"),
        }
    }
    assert_eq!(s.store.calls(), 0, "a live polling mirror answers locally");

    // Polls failing for two intervals make the mirror stale: the store is asked.
    s.store.ctl.fail_load.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other_token = access(
        &s.strategy
            .login(spec("bob"), &Default::default(), Default::default())
            .await
            .unwrap(),
    );
    let fut = s.other.authenticate(bearer(&other_token));
    assert!(!fut.is_ready());
    fut.await.unwrap();
    assert!(s.store.calls() > 0);
    s.store.ctl.fail_load.store(false, Ordering::SeqCst);
    wait_until_local(&s.other, &other_token).await;
}

#[tokio::test]
async fn a_store_down_at_start_fails_ready_and_fails_closed() {
    let store = Controlled::new(false);
    store.ctl.fail_subscribe.store(true, Ordering::SeqCst);
    let s = setup(store, |_| {}).await;
    assert_kind(s.strategy.ready().await, ErrorKind::StoreUnavailable);
    let token = access(
        &s.strategy
            .login(spec("alice"), &Default::default(), Default::default())
            .await
            .unwrap(),
    );
    // Stale mirror: every verification asks the store.
    auth(&s.strategy, &token).await.unwrap();
    s.store.ctl.fail_is_revoked.store(true, Ordering::SeqCst);
    assert_kind(auth(&s.strategy, &token).await, ErrorKind::StoreUnavailable);
    // Recovery without a restart.
    s.store.ctl.fail_is_revoked.store(false, Ordering::SeqCst);
    s.store.ctl.fail_subscribe.store(false, Ordering::SeqCst);
    wait_until_local(&s.strategy, &token).await;
    auth(&s.strategy, &token).await.unwrap();
}

#[tokio::test]
async fn dropping_the_strategy_stops_its_background_task() {
    let store = Controlled::new(false);
    let s = setup(store.clone(), |_| {}).await;
    s.strategy.ready().await.unwrap();
    s.other.ready().await.unwrap();
    drop(s);
    for _ in 0..100 {
        if Arc::strong_count(&store.ctl) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Only our own handle remains once both strategies and their tasks are gone.
    assert_eq!(Arc::strong_count(&store.ctl), 1);
}
