//! [`Timed`]: a decorator that bounds every call of a store by a timeout, so that a hung backend
//! fails closed (503) instead of holding requests.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use super::{
    RefreshRecord, RefreshStore, Revocation, RevocationFeed, RevocationStore, RotateOutcome,
    RotateRequest, StoreError, StoreErrorKind, StoreResult,
};

/// Wraps a store so that every call fails with [`StoreErrorKind::Timeout`] after `timeout`.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use keycard::store::{MemoryStore, RefreshStore, timeout::Timed};
///
/// let store: Arc<dyn RefreshStore> = Arc::new(MemoryStore::new());
/// let bounded: Arc<dyn RefreshStore> = Arc::new(Timed::new(store, Duration::from_secs(2)));
/// # let _ = bounded;
/// ```
#[derive(Debug)]
pub struct Timed<T: ?Sized> {
    inner: Arc<T>,
    timeout: Duration,
}

impl<T: ?Sized> Timed<T> {
    /// Bounds every call of `inner` by `timeout`.
    pub fn new(inner: Arc<T>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    async fn run<R>(&self, fut: impl Future<Output = StoreResult<R>>) -> StoreResult<R> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(StoreError::new(StoreErrorKind::Timeout)))
    }
}

#[async_trait]
impl RefreshStore for Timed<dyn RefreshStore> {
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool> {
        self.run(self.inner.insert(record)).await
    }

    async fn rotate(&self, request: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        self.run(self.inner.rotate(request)).await
    }

    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        self.run(self.inner.family_live(family, now)).await
    }

    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        self.run(self.inner.delete_family(subject, family)).await
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.run(self.inner.delete_all(subject)).await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        self.run(self.inner.list(subject, now)).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.inner.sweep(now)).await
    }
}

#[async_trait]
impl RevocationStore for Timed<dyn RevocationStore> {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        self.run(self.inner.revoke(revocation)).await
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        self.run(self.inner.load(now)).await
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        self.run(self.inner.is_revoked(jti, subject, issued_at))
            .await
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        // Bounds subscribing; the feed's items arrive whenever they are published.
        self.run(self.inner.subscribe()).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.inner.sweep(now)).await
    }
}
