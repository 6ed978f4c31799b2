//! The in-process mirror of revocations: the `jti` denylist, revoked refresh families (and, for
//! the server-session cache, revoked sessions) and per-subject epochs, kept current from a
//! [`RevocationStore`]. Shared by the JWT strategy and the server-session read cache.
//!
//! # How it stays current
//! At start the mirror subscribes to the store's feed and then loads every revocation in force
//! (subscribe first, so nothing published in between is missed; applying is idempotent). While
//! the feed is live, each request first drains whatever the feed has already delivered, so a
//! revocation published through another instance sharing an in-process store is seen by the very
//! next request; over a network feed (Redis pub/sub, `LISTEN/NOTIFY`) the bound is the feed's
//! delivery latency. A background task consumes the feed otherwise. The feed is polled with a
//! waker that raises a flag before waking the task, so a request polls the feed only when the
//! feed has signalled something since the last poll: in the steady state the check is one atomic
//! load.
//!
//! When the store has no feed (`subscribe` returns `None`) the mirror reloads every
//! `poll_interval` (default 1 s): a revocation made elsewhere is seen within that interval.
//!
//! When the feed errors or ends, or polling fails for two intervals, the mirror is **stale**:
//! every request asks the store ([`RevocationStore::is_revoked`]) until the feed is re-subscribed
//! and the mirror reloaded. A stale mirror is never trusted.
//!
//! # Family revocations
//! Revoking a refresh family (logout, `revoke`, rotation, refresh-token reuse) must also void the
//! family's outstanding access tokens, whose `jti`s the server does not keep. keycard records it
//! as a denylist entry named `sid:<family>` (keycard's `jti`s never contain `:`), valid for the
//! longest access-token lifetime, and checks every token's `sid` against it.
//!
//! # Epochs
//! Epochs are compared with millisecond precision: keycard's tokens carry a private `iat_ms`
//! claim beside the whole-second `iat`. A log-out-everywhere at time T records the epoch `T + 1 ms`
//! (so a token issued in the same millisecond, before it, is void), and a token issued after it is
//! stamped no earlier than the epoch (so a login right after it works). Tokens without `iat_ms`
//! use `iat` × 1000, which errs towards voiding.

use std::{
    collections::HashMap,
    future::poll_fn,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};

use crate::{
    clock::{Clock, to_millis},
    error::{Error, ErrorKind, Result},
    store::{Revocation, RevocationFeed, RevocationStore},
};

/// Prefix of denylist entries that revoke a whole refresh family.
pub(crate) const FAMILY_PREFIX: &str = "sid:";

/// The outcome of a mirror check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Not revoked, according to a current mirror.
    Live,
    /// Revoked.
    Revoked,
    /// The mirror is stale: ask the store.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    Starting,
    Fresh,
    Failed(String),
}

/// A map of the mirror; seeded `foldhash`, since every request may look up three keys.
type Map = HashMap<Box<str>, i64, foldhash::fast::RandomState>;

#[derive(Default)]
struct State {
    jtis: Map,
    families: Map,
    epochs: Map,
}

/// The waker the feed is polled with: it raises `pending` (something was delivered, or the feed
/// changed state) and wakes the background task.
#[derive(Default)]
struct FeedSignal {
    pending: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for FeedSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.pending.store(true, Ordering::Release);
        if let Some(task) = &*self.task.lock() {
            task.wake_by_ref();
        }
    }
}

pub(crate) struct Mirror {
    state: RwLock<State>,
    /// The mirror is trusted while the monotonic time (ms since `started`) is below this:
    /// `i64::MAX` while a push feed is live, `i64::MIN` when stale. Monotonic (tokio) time, not
    /// the injectable wall clock, so that a stalled poller is noticed whatever the clock says.
    fresh_until: AtomicI64,
    started: tokio::time::Instant,
    feed: Mutex<Option<RevocationFeed>>,
    signal: Arc<FeedSignal>,
    /// `signal` as a [`Waker`].
    signal_waker: Waker,
    status: watch::Sender<Status>,
    /// Epochs older than `now - horizon` can no longer void an unexpired token and are pruned.
    horizon_ms: i64,
}

impl Mirror {
    pub(crate) fn new(horizon: Duration) -> Self {
        let signal = Arc::new(FeedSignal {
            pending: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            state: RwLock::new(State::default()),
            fresh_until: AtomicI64::new(i64::MIN),
            started: tokio::time::Instant::now(),
            feed: Mutex::new(None),
            signal_waker: Waker::from(signal.clone()),
            signal,
            status: watch::Sender::new(Status::Starting),
            horizon_ms: i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Checks a token against the mirror.
    #[inline]
    pub(crate) fn check(
        &self,
        subject: &str,
        jti: &str,
        sid: &str,
        iat_ms: i64,
        now_ms: i64,
    ) -> Check {
        self.drain();
        let fresh_until = self.fresh_until.load(Ordering::Acquire);
        if fresh_until != i64::MAX && self.mono_ms() >= fresh_until {
            return Check::Unknown;
        }
        let state = self.state.read();
        let denied = |map: &Map, k: &str| map.get(k).is_some_and(|&until| until > now_ms);
        if denied(&state.jtis, jti)
            || denied(&state.families, sid)
            || state.epochs.get(subject).is_some_and(|&e| iat_ms < e)
        {
            Check::Revoked
        } else {
            Check::Live
        }
    }

    /// The subject's epoch in milliseconds, if the mirror knows one.
    #[cfg(feature = "jwt")]
    pub(crate) fn epoch_ms(&self, subject: &str) -> Option<i64> {
        self.state.read().epochs.get(subject).copied()
    }

    /// Applies one revocation (idempotent; epochs only move forward).
    pub(crate) fn apply(&self, revocation: &Revocation) {
        let mut state = self.state.write();
        match revocation {
            Revocation::Jti { jti, until } => {
                let until = to_millis(*until);
                let (map, key) = match jti.strip_prefix(FAMILY_PREFIX) {
                    Some(family) => (&mut state.families, family),
                    None => (&mut state.jtis, jti.as_str()),
                };
                let e = map.entry(key.into()).or_insert(until);
                *e = (*e).max(until);
            }
            Revocation::Epoch { subject, epoch } => {
                let epoch = to_millis(*epoch);
                let e = state.epochs.entry(subject.as_str().into()).or_insert(epoch);
                *e = (*e).max(epoch);
            }
        }
    }

    /// Forgets denylist entries past their `until` and epochs older than the horizon.
    pub(crate) fn sweep(&self, now_ms: i64) {
        let mut state = self.state.write();
        state.jtis.retain(|_, until| *until > now_ms);
        state.families.retain(|_, until| *until > now_ms);
        let oldest = now_ms.saturating_sub(self.horizon_ms);
        state.epochs.retain(|_, e| *e > oldest);
    }

    fn mono_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX - 1)
    }

    fn mark_stale(&self) {
        crate::metrics::revocation_feed_connected(false);
        self.fresh_until.store(i64::MIN, Ordering::Release);
    }

    /// Installs a freshly subscribed feed.
    fn set_feed(&self, feed: Option<RevocationFeed>) {
        *self.feed.lock() = feed;
        self.signal.pending.store(true, Ordering::Release);
    }

    /// Applies whatever the feed has delivered since it was last polled, without waiting; nothing
    /// to do (one atomic load) unless the feed has signalled since.
    ///
    /// When it has, this waits for the feed lock rather than skipping: the background task
    /// applies what it takes from the feed while holding that lock, so once this returns, every
    /// revocation the feed delivered before the check is in the mirror.
    #[inline]
    fn drain(&self) {
        if self.signal.pending.load(Ordering::Acquire) {
            // A lost feed is reported to the task by the signal's wake.
            let _ = self.poll_feed();
        }
    }

    /// Polls the feed until it is pending, applying every item under the feed lock. `Ready` when
    /// the feed failed or ended (it is then dropped and the mirror marked stale) or there is none.
    fn poll_feed(&self) -> Poll<Option<crate::store::StoreError>> {
        let mut slot = self.feed.lock();
        // Lowered before polling: whatever arrives during or after the poll raises it again.
        self.signal.pending.store(false, Ordering::Release);
        let Some(feed) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        let mut cx = Context::from_waker(&self.signal_waker);
        loop {
            match feed.poll_next_unpin(&mut cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(revocation))) => {
                    self.apply(&revocation);
                    crate::metrics::revocation_feed_event();
                }
                Poll::Ready(end) => {
                    *slot = None;
                    self.mark_stale();
                    // Make sure the task hears of it, whoever polled.
                    self.signal_waker.wake_by_ref();
                    return Poll::Ready(end.and_then(|r| r.err()));
                }
            }
        }
    }

    /// The background task's side of the feed: resolves when the feed fails or ends.
    async fn consume_feed(&self) -> Option<crate::store::StoreError> {
        poll_fn(|cx| {
            {
                let mut task = self.signal.task.lock();
                if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *task = Some(cx.waker().clone());
                }
            }
            self.poll_feed()
        })
        .await
    }

    /// Resolves once the first subscribe-and-load has succeeded, or fails with its error.
    pub(crate) async fn ready(&self) -> Result<()> {
        let mut rx = self.status.subscribe();
        let status = rx
            .wait_for(|s| *s != Status::Starting)
            .await
            .map(|s| s.clone())
            .unwrap_or(Status::Failed("the revocation task stopped".into()));
        match status {
            Status::Failed(why) => Err(Error::with_message(
                ErrorKind::StoreUnavailable,
                format!("the revocation store is unavailable: {why}"),
            )),
            _ => Ok(()),
        }
    }

    fn report(&self, status: Status) {
        self.status.send_if_modified(|s| {
            // Only the first outcome matters to `ready`; later ones are recorded for completeness.
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

/// Parameters of the background task.
pub(crate) struct Task {
    pub(crate) mirror: Weak<Mirror>,
    pub(crate) store: Arc<dyn RevocationStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) poll_interval: Duration,
    pub(crate) shutdown: oneshot::Receiver<()>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Task {
    /// Keeps the mirror current until the strategy is dropped.
    pub(crate) async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(mirror) = self.mirror.upgrade() else {
                return;
            };
            let ok = tokio::select! {
                _ = &mut self.shutdown => return,
                ok = session(&mirror, &*self.store, &*self.clock, self.poll_interval) => ok,
            };
            mirror.mark_stale();
            drop(mirror);
            backoff = if ok {
                Duration::from_millis(50)
            } else {
                (backoff * 2).min(MAX_BACKOFF)
            };
            tokio::select! {
                _ = &mut self.shutdown => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

/// One subscription (or polling) session. Returns whether it got as far as a fresh mirror.
async fn session(
    mirror: &Mirror,
    store: &dyn RevocationStore,
    clock: &dyn Clock,
    poll_interval: Duration,
) -> bool {
    let feed = match store.subscribe().await {
        Ok(feed) => feed,
        Err(e) => {
            tracing::warn!(error = %e, "keycard: cannot subscribe to revocations; checking the store per request");
            mirror.report(Status::Failed(e.to_string()));
            return false;
        }
    };
    let Some(feed) = feed else {
        return poll(mirror, store, clock, poll_interval).await;
    };
    mirror.set_feed(Some(feed));
    match store.load(clock.now()).await {
        Ok(all) => all.iter().for_each(|r| mirror.apply(r)),
        Err(e) => {
            tracing::warn!(error = %e, "keycard: cannot load revocations; checking the store per request");
            mirror.set_feed(None);
            mirror.report(Status::Failed(e.to_string()));
            return false;
        }
    }
    mirror.fresh_until.store(i64::MAX, Ordering::Release);
    crate::metrics::revocation_feed_connected(true);
    mirror.report(Status::Fresh);
    tracing::debug!("keycard: revocation mirror is live");
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            lost = mirror.consume_feed() => {
                match lost {
                    Some(e) => tracing::warn!(error = %e, "keycard: revocation feed lost; checking the store per request"),
                    None => tracing::warn!("keycard: revocation feed ended; checking the store per request"),
                }
                return true;
            }
            _ = sweep.tick() => mirror.sweep(to_millis(clock.now())),
        }
    }
}

/// Polling mode, for stores without a feed.
async fn poll(
    mirror: &Mirror,
    store: &dyn RevocationStore,
    clock: &dyn Clock,
    interval: Duration,
) -> bool {
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let mut last_sweep = i64::MIN;
    loop {
        let now = clock.now();
        match store.load(now).await {
            Ok(all) => {
                all.iter().for_each(|r| mirror.apply(r));
                // Trusted until two intervals pass without a successful poll.
                let until = mirror
                    .mono_ms()
                    .saturating_add(interval_ms.saturating_mul(2))
                    .min(i64::MAX - 1);
                mirror.fresh_until.store(until, Ordering::Release);
                crate::metrics::revocation_feed_connected(true);
                let now_ms = to_millis(clock.now());
                mirror.report(Status::Fresh);
                if now_ms.saturating_sub(last_sweep) > 30_000 {
                    mirror.sweep(now_ms);
                    last_sweep = now_ms;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "keycard: cannot poll revocations");
                mirror.report(Status::Failed(e.to_string()));
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Asks the store directly whether a token is revoked (the stale-mirror fallback).
#[cfg(feature = "jwt")]
pub(crate) async fn check_store(
    store: &dyn RevocationStore,
    subject: &str,
    jti: &str,
    sid: &str,
    iat_ms: i64,
) -> Result<bool> {
    let issued_at = crate::clock::from_millis(iat_ms);
    let family = format!("{FAMILY_PREFIX}{sid}");
    let (by_jti, by_family) = futures_util::future::join(
        store.is_revoked(jti, subject, issued_at),
        store.is_revoked(&family, subject, issued_at),
    )
    .await;
    Ok(by_jti? || by_family?)
}
