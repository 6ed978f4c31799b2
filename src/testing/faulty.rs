//! [`FaultyStore`]: a store decorator that an outage switch makes fail.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use crate::{
    store::{
        CreateOutcome, RefreshRecord, RefreshStore, Revocation, RevocationFeed, RevocationStore,
        RotateOutcome, RotateRequest, SessionLimit, SessionRecord, SessionStore, StoreError,
        StoreErrorKind, StoreResult,
    },
    token::TokenHash,
};

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

    fn check(&self) -> StoreResult<()> {
        if self.is_failing() {
            Err(StoreError::new(StoreErrorKind::Unavailable))
        } else {
            Ok(())
        }
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

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for FaultyStore<S> {
    fn call_timeout(&self) -> Option<Duration> {
        self.inner.call_timeout()
    }

    async fn create(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        self.check()?;
        self.inner.create(record, limit).await
    }

    async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>> {
        self.check()?;
        SessionStore::load(&*self.inner, id, now).await
    }

    async fn touch(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool> {
        self.check()?;
        self.inner.touch(id, last_seen_at, expires_at).await
    }

    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        self.check()?;
        SessionStore::rotate(&*self.inner, old, new).await
    }

    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
        self.check()?;
        self.inner.delete(subject, id).await
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.check()?;
        SessionStore::delete_all(&*self.inner, subject).await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        self.check()?;
        SessionStore::list(&*self.inner, subject, now).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.check()?;
        SessionStore::sweep(&*self.inner, now).await
    }
}

#[async_trait]
impl<S: RefreshStore + ?Sized> RefreshStore for FaultyStore<S> {
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool> {
        self.check()?;
        self.inner.insert(record).await
    }

    async fn rotate(&self, request: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        self.check()?;
        RefreshStore::rotate(&*self.inner, request).await
    }

    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        self.check()?;
        self.inner.family_live(family, now).await
    }

    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        self.check()?;
        self.inner.delete_family(subject, family).await
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.check()?;
        RefreshStore::delete_all(&*self.inner, subject).await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        self.check()?;
        RefreshStore::list(&*self.inner, subject, now).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.check()?;
        RefreshStore::sweep(&*self.inner, now).await
    }
}

#[async_trait]
impl<S: RevocationStore + ?Sized> RevocationStore for FaultyStore<S> {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        self.check()?;
        self.inner.revoke(revocation).await
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        self.check()?;
        RevocationStore::load(&*self.inner, now).await
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        self.check()?;
        self.inner.is_revoked(jti, subject, issued_at).await
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        self.check()?;
        self.inner.subscribe().await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.check()?;
        RevocationStore::sweep(&*self.inner, now).await
    }
}
