//! [`ThrottleStore`] on Redis: one hash per counter (`P:{t:<key>}`, a slot of its own), and one
//! Lua script per attempt implementing the state machine of [`crate::store::ThrottleStore`], so
//! concurrent attempts from any number of instances are serialized by Redis.

use std::{sync::LazyLock, time::SystemTime};

use async_trait::async_trait;
use redis::Script;

use super::{RedisStore, connection::store_err};
use crate::{
    clock::to_millis,
    store::{Admission, Counter, StoreResult, ThrottleKey, ThrottleRule, ThrottleStore},
};

/// One attempt. KEYS: the counter. ARGV: now, max, window, keep, lockout, growth (‰), max
/// lockout. Returns {attempts, window_end} after the attempt. The same steps as
/// `Counter::step`; `now` is the caller's clock, like the SQL stores.
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key = KEYS[1]
local now, max, window, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lockout, growth, maxlock = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local v = redis.call('HMGET', key, 'a', 'w', 'e', 'l')
local a, w, e, l = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
local function fmt(n) return string.format('%.0f', n) end
if e <= now then
  a, w, e, l = 1, now + window, now + window + keep, 0
elseif w <= now then
  a, w, e = 1, now + window, now + window + keep
elseif a > max then
  return {a, fmt(w)}
elseif a < max then
  a = a + 1
else
  local next = lockout
  if l > 0 then next = math.min(math.floor(l * growth / 1000), maxlock) end
  a, w, e, l = a + 1, now + next, now + next + keep, next
end
redis.call('HSET', key, 'a', a, 'w', fmt(w), 'e', fmt(e), 'l', fmt(l))
redis.call('PEXPIREAT', key, fmt(e))
return {a, fmt(w)}
"#,
    )
});

/// Gives back one attempt. KEYS: the counter. ARGV: window end, max.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HMGET', KEYS[1], 'a', 'w')
local a = tonumber(v[1])
if a and v[2] == ARGV[1] and a > 0 and a <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'a', a - 1)
end
return 0
"#,
    )
});

impl RedisStore {
    async fn attempt_inner(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        now: i64,
    ) -> StoreResult<Admission> {
        let mut conn = self.writer();
        let name = self.inner.keys.throttle(key);
        let (attempts, window_end): (i64, i64) = ATTEMPT
            .key(&name)
            .arg(now)
            .arg(rule.max())
            .arg(rule.window_ms())
            .arg(rule.max_lockout_ms())
            .arg(rule.lockout_ms())
            .arg(rule.growth_permille())
            .arg(rule.max_lockout_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        self.durability().wait(&mut conn, &name).await?;
        Ok(Counter::admission(attempts, window_end, rule, now))
    }

    async fn refund_inner(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
    ) -> StoreResult<()> {
        let mut conn = self.writer();
        let _: i64 = REFUND
            .key(self.inner.keys.throttle(key))
            .arg(to_millis(window_end).to_string())
            .arg(rule.max())
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn reset_inner(&self, key: &ThrottleKey) -> StoreResult<()> {
        let mut conn = self.writer();
        let name = self.inner.keys.throttle(key);
        let _: i64 = redis::cmd("DEL")
            .arg(&name)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        self.durability().wait(&mut conn, &name).await
    }
}

#[async_trait]
impl ThrottleStore for RedisStore {
    async fn attempt(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        now: SystemTime,
    ) -> StoreResult<Admission> {
        self.run(self.attempt_inner(key, rule, to_millis(now)))
            .await
    }

    async fn refund(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
    ) -> StoreResult<()> {
        self.run(self.refund_inner(key, rule, window_end)).await
    }

    async fn reset(&self, key: &ThrottleKey) -> StoreResult<()> {
        self.run(self.reset_inner(key)).await
    }

    /// Counters expire on the server (`PEXPIREAT`): nothing to sweep.
    async fn sweep(&self, _now: SystemTime) -> StoreResult<u64> {
        Ok(0)
    }
}
