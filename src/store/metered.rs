//! [`Metered`]: a store decorator that times every call into
//! [`STORE_CALL_DURATION`](crate::metrics::STORE_CALL_DURATION), by store and operation (its
//! trait impls come from [`decorate_stores!`](super::decorate::decorate_stores)), while a
//! recorder would keep the duration ([`timing`](crate::metrics::timing)); otherwise a call is
//! passed through without a clock read. Server sessions need no decorator for their session
//! store: they time each call in place.

use std::{sync::Arc, time::Duration};

use super::{SessionStore, StoreResult};

/// Times every call of `inner` (when a recorder would keep the duration); adds nothing else (its
/// deadline is the inner store's).
#[derive(Debug)]
pub(crate) struct Metered<S: ?Sized> {
    inner: Arc<S>,
}

impl<S: ?Sized> Metered<S> {
    pub(crate) fn new(inner: Arc<S>) -> Self {
        Self { inner }
    }

    async fn run<R>(
        &self,
        op: &'static metrics::Key,
        call: impl Future<Output = StoreResult<R>>,
    ) -> StoreResult<R> {
        crate::metrics::store_call(op, call).await
    }

    fn deadline(&self) -> Option<Duration>
    where
        S: SessionStore,
    {
        self.inner.call_timeout()
    }
}

super::decorate::decorate_stores!(Metered, run, deadline);
