//! [`ThrottleStore`] on Redis: one hash per counter (`P:{t:<key>}`, a slot of its own), and one
//! Lua script per attempt, failure or refund implementing the state machine of [`crate::store::ThrottleStore`], so
//! concurrent attempts from any number of instances are serialized by Redis.

use std::{sync::LazyLock, time::SystemTime};

use async_trait::async_trait;
use redis::Script;

use super::{RedisStore, connection::store_err};
use crate::{
    clock::to_millis,
    store::{Admission, Counter, StoreResult, ThrottleKey, ThrottleRule, ThrottleStore},
};

/// One attempt. KEYS: the counter. ARGV: now, max, window, keep. Returns {step, window_end}
/// (the steps of `Counter::attempt`: 0 locked, 1 fresh, 2 counted, 4 renewed, 5 full). `now`
/// is the caller's clock, like the SQL stores.
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key = KEYS[1]
local now, max, window, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', key, 'a', 'f', 'w', 'e', 'l')
local a, f, w, e, l = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0, tonumber(v[5]) or 0
local function fmt(n) return string.format('%.0f', n) end
local step
if e <= now then
  step, a, f, w, e, l = 1, 1, 0, now + window, now + window + keep, 0
elseif w <= now then
  step, a, f, w, e = 4, 1, 0, now + window, now + window + keep
elseif f >= max then
  return {0, fmt(w)}
elseif a < max then
  step, a = 2, a + 1
else
  return {5, fmt(w)}
end
redis.call('HSET', key, 'a', a, 'f', f, 'w', fmt(w), 'e', fmt(e), 'l', fmt(l))
redis.call('PEXPIREAT', key, fmt(e))
return {step, fmt(w)}
"#,
    )
});

/// A failure. KEYS: the counter. ARGV: now, window end, max, keep, lockout, growth (‰), max
/// lockout. The failure that reaches `max` locks the counter (`Counter::failed`).
static FAILED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key = KEYS[1]
local v = redis.call('HMGET', key, 'f', 'w', 'l')
local f, l = tonumber(v[1]), tonumber(v[3]) or 0
local now, max, keep = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lockout, growth, maxlock = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if not f or v[2] ~= ARGV[2] or f >= max then return 0 end
f = f + 1
if f < max then
  redis.call('HSET', key, 'f', f)
  return 0
end
local function fmt(n) return string.format('%.0f', n) end
local next = lockout
if l > 0 then next = math.min(math.floor(l * growth / 1000), maxlock) end
redis.call('HSET', key, 'f', f, 'w', fmt(now + next), 'e', fmt(now + next + keep), 'l', fmt(next))
redis.call('PEXPIREAT', key, fmt(now + next + keep))
return 1
"#,
    )
});

/// A success. KEYS: the counter. ARGV: now, window end, max (`Counter::succeeded`).
static SUCCEEDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key = KEYS[1]
local v = redis.call('HMGET', key, 'a', 'f', 'w')
local a, f = tonumber(v[1]), tonumber(v[2]) or 0
if not a then return 0 end
a = a - f
if v[3] == ARGV[2] then a = a - 1 end
if a < 0 then a = 0 end
local w = v[3]
if f >= tonumber(ARGV[3]) then w = ARGV[1] end
redis.call('HSET', key, 'a', a, 'f', 0, 'w', w, 'l', 0)
return 0
"#,
    )
});

/// Gives back one attempt. KEYS: the counter. ARGV: window end.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HMGET', KEYS[1], 'a', 'w')
local a = tonumber(v[1])
if a and v[2] == ARGV[1] and a > 0 then
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
        let (step, window_end): (i64, i64) = ATTEMPT
            .key(&name)
            .arg(now)
            .arg(rule.max())
            .arg(rule.window_ms())
            .arg(rule.max_lockout_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        self.durability().wait(&mut conn, &name).await?;
        Ok(Counter::admission(step, window_end, now))
    }

    async fn failed_inner(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        let mut conn = self.writer();
        let name = self.inner.keys.throttle(key);
        let _: i64 = FAILED
            .key(&name)
            .arg(to_millis(now))
            .arg(to_millis(window_end).to_string())
            .arg(rule.max())
            .arg(rule.max_lockout_ms())
            .arg(rule.lockout_ms())
            .arg(rule.growth_permille())
            .arg(rule.max_lockout_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        self.durability().wait(&mut conn, &name).await
    }

    async fn succeeded_inner(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        let mut conn = self.writer();
        let name = self.inner.keys.throttle(key);
        let _: i64 = SUCCEEDED
            .key(&name)
            .arg(to_millis(now).to_string())
            .arg(to_millis(window_end).to_string())
            .arg(rule.max())
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        self.durability().wait(&mut conn, &name).await
    }

    async fn refund_inner(&self, key: &ThrottleKey, window_end: SystemTime) -> StoreResult<()> {
        let mut conn = self.writer();
        let _: i64 = REFUND
            .key(self.inner.keys.throttle(key))
            .arg(to_millis(window_end).to_string())
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

    async fn failed(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        self.run(self.failed_inner(key, rule, window_end, now))
            .await
    }

    async fn succeeded(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        self.run(self.succeeded_inner(key, rule, window_end, now))
            .await
    }

    async fn refund(&self, key: &ThrottleKey, window_end: SystemTime) -> StoreResult<()> {
        self.run(self.refund_inner(key, window_end)).await
    }

    async fn reset(&self, key: &ThrottleKey) -> StoreResult<()> {
        self.run(self.reset_inner(key)).await
    }

    /// Counters expire on the server (`PEXPIREAT`): nothing to sweep.
    async fn sweep(&self, _now: SystemTime) -> StoreResult<u64> {
        Ok(0)
    }
}
