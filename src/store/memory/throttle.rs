//! [`ThrottleStore`] in memory: the reference state machine ([`Counter`]) under the store's
//! mutex.

use std::time::SystemTime;

use async_trait::async_trait;

use super::MemoryStore;
use crate::{
    clock::to_millis,
    store::{Admission, Counter, StoreResult, ThrottleKey, ThrottleRule, ThrottleStore},
};

#[async_trait]
impl ThrottleStore for MemoryStore {
    async fn attempt(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        now: SystemTime,
    ) -> StoreResult<Admission> {
        let now = to_millis(now);
        let mut state = self.inner.lock();
        let counter = state.throttle.entry(*key).or_default();
        let (next, step) = counter.attempt(rule, now);
        *counter = next;
        Ok(Counter::admission(step, next.window_end, now))
    }

    async fn failed(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        if let Some(counter) = self.inner.lock().throttle.get_mut(key) {
            *counter = counter.failed(rule, window_end, to_millis(now));
        }
        Ok(())
    }

    async fn succeeded(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        if let Some(counter) = self.inner.lock().throttle.get_mut(key) {
            *counter = counter.succeeded(rule, window_end, to_millis(now));
        }
        Ok(())
    }

    async fn refund(&self, key: &ThrottleKey, window_end: SystemTime) -> StoreResult<()> {
        if let Some(counter) = self.inner.lock().throttle.get_mut(key) {
            *counter = counter.refunded(window_end);
        }
        Ok(())
    }

    async fn reset(&self, key: &ThrottleKey) -> StoreResult<()> {
        self.inner.lock().throttle.remove(key);
        Ok(())
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let now = to_millis(now);
        let mut state = self.inner.lock();
        let before = state.throttle.len();
        state.throttle.retain(|_, c| c.expires_at > now);
        Ok(u64::try_from(before - state.throttle.len()).unwrap_or(0))
    }
}
