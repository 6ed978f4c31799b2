//! The one mechanism that bounds store calls by a timeout, so that a hung backend fails closed
//! (503) instead of holding requests: [`within`] runs one call under it, and [`Timed`] wraps any
//! store so that every call runs [`within`] it (its trait impls come from
//! [`decorate_stores!`](super::decorate::decorate_stores)).

#[cfg(feature = "jwt")]
use std::sync::Arc;
use std::time::Duration;

use super::{SessionStore, StoreError, StoreErrorKind, StoreResult};

/// A store whose every call fails with [`StoreErrorKind::Timeout`] after `timeout` (the JWT
/// strategy's refresh and revocation stores).
#[cfg(feature = "jwt")]
#[derive(Debug)]
pub(crate) struct Timed<S: ?Sized> {
    inner: Arc<S>,
    timeout: Duration,
}

#[cfg(feature = "jwt")]
impl<S: ?Sized> Timed<S> {
    /// Bounds every call of `inner` by `timeout`.
    pub(crate) fn new(inner: Arc<S>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    async fn run<R>(
        &self,
        op: &'static metrics::Key,
        call: impl Future<Output = StoreResult<R>>,
    ) -> StoreResult<R> {
        crate::metrics::store_call(op, within(self.timeout, call)).await
    }

    fn deadline(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

/// Runs a store call under `timeout`: [`StoreErrorKind::Timeout`] when it takes longer.
pub(crate) async fn within<R>(
    timeout: Duration,
    call: impl Future<Output = StoreResult<R>>,
) -> StoreResult<R> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::new(StoreErrorKind::Timeout)))
}

/// The timeout a caller must still apply to `store`'s calls to bound them by `timeout`: `None`
/// when the store already puts a deadline no longer than that on its own calls
/// ([`SessionStore::call_timeout`]), so that a call never runs two timers.
pub(crate) fn needed(store: &dyn SessionStore, timeout: Duration) -> Option<Duration> {
    match store.call_timeout() {
        Some(own) if own <= timeout => None,
        _ => Some(timeout),
    }
}

#[cfg(feature = "jwt")]
super::decorate::decorate_stores!(Timed, run, deadline);

#[cfg(all(test, feature = "jwt"))]
mod tests {
    use std::time::SystemTime;

    use async_trait::async_trait;

    use super::*;
    use crate::{
        store::{CreateOutcome, DataLimits, DataPatch, MemoryStore, SessionLimit, SessionRecord},
        token::TokenHash,
    };

    /// A session store that never answers.
    #[derive(Debug)]
    struct Hung;

    #[async_trait]
    impl SessionStore for Hung {
        async fn create(
            &self,
            _: &SessionRecord,
            _: Option<SessionLimit>,
        ) -> StoreResult<CreateOutcome> {
            std::future::pending().await
        }
        async fn load(&self, _: &TokenHash, _: SystemTime) -> StoreResult<Option<SessionRecord>> {
            std::future::pending().await
        }
        async fn touch(&self, _: &TokenHash, _: SystemTime, _: SystemTime) -> StoreResult<bool> {
            std::future::pending().await
        }
        async fn rotate(&self, _: &TokenHash, _: &SessionRecord) -> StoreResult<bool> {
            std::future::pending().await
        }
        async fn delete(&self, _: &str, _: &TokenHash) -> StoreResult<bool> {
            std::future::pending().await
        }
        async fn delete_all(&self, _: &str) -> StoreResult<u64> {
            std::future::pending().await
        }
        async fn list(&self, _: &str, _: SystemTime) -> StoreResult<Vec<SessionRecord>> {
            std::future::pending().await
        }
        async fn sweep(&self, _: SystemTime) -> StoreResult<u64> {
            std::future::pending().await
        }
        async fn update_data(
            &self,
            _: &TokenHash,
            _: &DataPatch,
            _: &DataLimits,
            _: SystemTime,
        ) -> StoreResult<bool> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_store_times_out() {
        let store = Timed::new(Arc::new(Hung), Duration::from_millis(50));
        assert_eq!(store.call_timeout(), Some(Duration::from_millis(50)));
        let err = store
            .load(&TokenHash::from_bytes([7; 32]), SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Timeout);
        let err = store.delete_all("alice").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Timeout);
        let err = within(Duration::from_millis(50), Hung.sweep(SystemTime::now()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Timeout);
    }

    #[tokio::test]
    async fn no_second_timer_for_a_store_bounded_within_the_timeout() {
        assert_eq!(
            needed(&MemoryStore::new(), Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        let timed = Timed::new(Arc::new(MemoryStore::new()), Duration::from_secs(1));
        assert_eq!(needed(&timed, Duration::from_secs(2)), None);
        assert_eq!(needed(&timed, Duration::from_secs(1)), None);
        assert_eq!(
            needed(&timed, Duration::from_millis(500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            timed
                .load(&TokenHash::from_bytes([1; 32]), SystemTime::now())
                .await
                .unwrap(),
            None
        );
    }
}
