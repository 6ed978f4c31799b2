//! [`ThrottleStore`]: attempt counters for login throttling, shared by every instance that uses
//! the same store.
//!
//! A counter is named by a [`ThrottleKey`] (a 32-byte hash of what it counts: an identifier or a
//! client address, never the value itself) and follows one [`ThrottleRule`]. Each call of
//! [`ThrottleStore::attempt`] is one atomic step of the same state machine in every backend
//! (a mutex in memory, one upsert in SQL, one Lua script in Redis), so of N concurrent attempts
//! at most `max_attempts` are admitted per window.
//!
//! # The state machine
//! A counter holds `attempts`, the end of its window, the length of its last lockout and the
//! instant it is forgotten. At time `now`, an attempt:
//! 1. on a forgotten counter (or none): starts a window of `window` with one attempt, admitted;
//! 2. after the window (or lockout) ended: starts a new window with one attempt, admitted, and
//!    remembers the last lockout length;
//! 3. during a lockout (`attempts > max_attempts`): changes nothing and is refused until the
//!    lockout ends;
//! 4. otherwise counts one more attempt: admitted while `attempts <= max_attempts`; the attempt
//!    that goes over locks the counter for `lockout` (the first time), then each further
//!    lockout lasts `lockout_growth` times the previous one, at most `max_lockout`.
//!
//! A counter is forgotten (and its lockout streak with it) `max_lockout` after its window or
//! lockout ended.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use super::StoreResult;
use crate::clock::{from_millis, to_millis};

/// The name of one attempt counter: a 32-byte hash of what it counts.
///
/// Built by [`LoginThrottle`](crate::throttle::LoginThrottle) from an identifier or a client
/// address (with a server-side key when one is configured); stores keep only these bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleKey([u8; 32]);

impl ThrottleKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the bytes (Redis key names, event payloads).
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash, but of a low-entropy value: print a prefix only.
        write!(f, "ThrottleKey({}…)", &self.hex()[..8])
    }
}

/// The limits one counter follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleRule {
    /// Attempts admitted per window (at least 1).
    pub max_attempts: u32,
    /// Length of a window, from its first attempt.
    pub window: Duration,
    /// Length of the first lockout.
    pub lockout: Duration,
    /// Each further lockout lasts this many times the previous one (at least 1).
    pub lockout_growth: f64,
    /// Longest lockout; also how long a counter is remembered after its window or lockout.
    pub max_lockout: Duration,
}

impl ThrottleRule {
    pub(crate) fn max(&self) -> i64 {
        i64::from(self.max_attempts.max(1))
    }

    pub(crate) fn window_ms(&self) -> i64 {
        millis(self.window)
    }

    pub(crate) fn lockout_ms(&self) -> i64 {
        millis(self.lockout)
    }

    pub(crate) fn max_lockout_ms(&self) -> i64 {
        millis(self.max_lockout).max(self.lockout_ms())
    }

    /// The growth factor in thousandths, as the SQL and Lua versions compute it.
    pub(crate) fn growth_permille(&self) -> i64 {
        // Validated to [1, 1000] by the config; clamped here so no input can overflow.
        (self.lockout_growth.clamp(1.0, 1000.0) * 1000.0).round() as i64
    }

    /// The lockout that follows one of `previous` ms (0: none yet).
    pub(crate) fn next_lockout(&self, previous: i64) -> i64 {
        if previous > 0 {
            (previous.saturating_mul(self.growth_permille()) / 1000).min(self.max_lockout_ms())
        } else {
            self.lockout_ms()
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The outcome of [`ThrottleStore::attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The attempt counts and may proceed.
    Admitted {
        /// The end of the window it was counted in; names the window for
        /// [`ThrottleStore::refund`].
        window_end: SystemTime,
    },
    /// The counter is locked; nothing was counted.
    Refused {
        /// How long until the lockout ends.
        retry_after: Duration,
    },
}

/// Storage for attempt counters ([module docs](self)).
///
/// Object safe, used as `Arc<dyn ThrottleStore>`. Implementations must make each
/// [`attempt`](ThrottleStore::attempt) one atomic step: concurrent attempts on one key never
/// admit more than `max_attempts` per window, on one instance or many.
#[async_trait]
pub trait ThrottleStore: Send + Sync + fmt::Debug + 'static {
    /// Counts one attempt on `key` at `now` under `rule`, atomically, and says whether it is
    /// admitted.
    async fn attempt(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        now: SystemTime,
    ) -> StoreResult<Admission>;

    /// Gives back one admitted attempt, if the counter is still in the window that ends at
    /// `window_end` and not locked (a success that should not count against a client address).
    async fn refund(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
    ) -> StoreResult<()>;

    /// Forgets `key`'s counter and lockout streak (a successful login).
    async fn reset(&self, key: &ThrottleKey) -> StoreResult<()>;

    /// Removes counters forgotten before `now`. Returns how many were removed (stores whose
    /// entries expire by themselves return 0).
    async fn sweep(&self, now: SystemTime) -> StoreResult<u64>;
}

/// One counter, as the in-memory store keeps it and as the SQL and Lua versions compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counter {
    pub(crate) attempts: i64,
    pub(crate) window_end: i64,
    pub(crate) expires_at: i64,
    pub(crate) lockout_ms: i64,
}

impl Counter {
    /// One attempt at `now` (ms): the counter after it. The reference version of the state
    /// machine; the SQL statement and the Lua script implement the same steps.
    pub(crate) fn step(self, rule: &ThrottleRule, now: i64) -> Self {
        let (window, keep, max) = (rule.window_ms(), rule.max_lockout_ms(), rule.max());
        if self.expires_at <= now {
            // Forgotten (or new).
            return Self {
                attempts: 1,
                window_end: now + window,
                expires_at: now + window + keep,
                lockout_ms: 0,
            };
        }
        if self.window_end <= now {
            return Self {
                attempts: 1,
                window_end: now + window,
                expires_at: now + window + keep,
                lockout_ms: self.lockout_ms,
            };
        }
        if self.attempts > max {
            return self;
        }
        if self.attempts < max {
            return Self {
                attempts: self.attempts + 1,
                ..self
            };
        }
        let lockout = rule.next_lockout(self.lockout_ms);
        Self {
            attempts: self.attempts + 1,
            window_end: now + lockout,
            expires_at: now + lockout + keep,
            lockout_ms: lockout,
        }
    }

    /// What a counter after a step says about the attempt.
    pub(crate) fn admission(
        attempts: i64,
        window_end: i64,
        rule: &ThrottleRule,
        now: i64,
    ) -> Admission {
        if attempts > rule.max() && window_end > now {
            let ms = u64::try_from(window_end - now).unwrap_or(0);
            Admission::Refused {
                retry_after: Duration::from_millis(ms),
            }
        } else {
            Admission::Admitted {
                window_end: from_millis(window_end),
            }
        }
    }

    /// The counter after a refund of an attempt admitted in the window ending at `window_end`.
    pub(crate) fn refunded(self, rule: &ThrottleRule, window_end: SystemTime) -> Self {
        if self.window_end == to_millis(window_end)
            && self.attempts > 0
            && self.attempts <= rule.max()
        {
            Self {
                attempts: self.attempts - 1,
                ..self
            }
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ThrottleRule {
        ThrottleRule {
            max_attempts: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(10),
            lockout_growth: 2.0,
            max_lockout: Duration::from_secs(25),
        }
    }

    #[test]
    fn admits_the_limit_then_locks_with_growing_lockouts() {
        let r = rule();
        let mut c = Counter::default();
        let now = 1_000_000;
        for _ in 0..3 {
            c = c.step(&r, now);
            assert!(matches!(
                Counter::admission(c.attempts, c.window_end, &r, now),
                Admission::Admitted { .. }
            ));
        }
        c = c.step(&r, now);
        assert_eq!(
            Counter::admission(c.attempts, c.window_end, &r, now),
            Admission::Refused {
                retry_after: Duration::from_secs(10)
            }
        );
        // Locked: nothing changes.
        assert_eq!(c.step(&r, now + 5_000), c);
        // After the lockout: a fresh window, then a lockout twice as long, then capped.
        let mut t = now + 10_000;
        for expected in [20_000, 25_000, 25_000] {
            for _ in 0..3 {
                c = c.step(&r, t);
            }
            c = c.step(&r, t);
            assert_eq!(
                Counter::admission(c.attempts, c.window_end, &r, t),
                Admission::Refused {
                    retry_after: Duration::from_millis(expected as u64)
                }
            );
            t += expected;
        }
        // Forgotten max_lockout after the last lockout: the streak starts again.
        let later = c.window_end + 25_000;
        c = c.step(&r, later);
        assert_eq!(c.lockout_ms, 0);
        assert_eq!(c.attempts, 1);
    }

    #[test]
    fn refunds_only_in_the_same_unlocked_window() {
        let r = rule();
        let c = Counter::default().step(&r, 0).step(&r, 0);
        let end = from_millis(c.window_end);
        assert_eq!(c.refunded(&r, end).attempts, 1);
        assert_eq!(c.refunded(&r, from_millis(c.window_end + 1)).attempts, 2);
        let locked = c.step(&r, 0).step(&r, 0);
        assert_eq!(locked.refunded(&r, from_millis(locked.window_end)), locked);
    }
}
