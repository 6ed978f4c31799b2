//! [`FaultyStore`]: a store decorator that an outage switch makes fail.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::store::{SessionStore, StoreError, StoreErrorKind, StoreResult};

/// Wraps a store and, while [failing](Self::fail), answers every call with
/// [`StoreErrorKind::Unavailable`] without touching the inner store: an outage for stores that
/// have no network to cut (in-memory, SQLite), so that a
/// [`StrategyHarness`](super::strategy::StrategyHarness) can make its store fail and recover.
///
/// It implements each store trait its inner store implements. Clones share the inner store and
/// the switch. A revocation feed subscribed before the outage keeps flowing (the outage refuses
/// new subscriptions only).
///
/// ```
/// use std::sync::Arc;
/// use keycard::{store::{MemoryStore, SessionStore}, testing::FaultyStore};
///
/// let store = FaultyStore::new(Arc::new(MemoryStore::new()));
/// let for_the_strategy: Arc<dyn SessionStore> = Arc::new(store.clone());
/// store.fail(); // every call through `for_the_strategy` now fails
/// store.recover();
/// # let _ = for_the_strategy;
/// ```
pub struct FaultyStore<S: ?Sized> {
    inner: Arc<S>,
    failing: Arc<AtomicBool>,
}

impl<S: ?Sized> FaultyStore<S> {
    /// Wraps `inner`; the store starts healthy.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts the outage: every call fails from now on.
    pub fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Ends the outage: calls reach the inner store again.
    pub fn recover(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }

    /// Whether the outage is on.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// The inner store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Runs `call` unless the outage is on.
    async fn guard<R>(
        &self,
        _op: &'static metrics::Key,
        call: impl Future<Output = StoreResult<R>>,
    ) -> StoreResult<R> {
        if self.is_failing() {
            return Err(StoreError::new(StoreErrorKind::Unavailable));
        }
        call.await
    }

    /// The inner store's own deadline.
    fn own_deadline(&self) -> Option<Duration>
    where
        S: SessionStore,
    {
        self.inner.call_timeout()
    }
}

impl<S: ?Sized> Clone for FaultyStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            failing: self.failing.clone(),
        }
    }
}

impl<S: ?Sized + fmt::Debug> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("failing", &self.is_failing())
            .finish()
    }
}

crate::store::decorate::decorate_stores!(FaultyStore, guard, own_deadline);
