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
//! A counter holds, for its current window, the attempts admitted (`attempts`: in flight or
//! failed) and the failures reported, plus the end of the window, the length of its last
//! lockout and the instant it is forgotten. At time `now`:
//!
//! - [`attempt`](ThrottleStore::attempt) on a forgotten counter (or none), or after the window
//!   (or lockout) ended, starts a new window with one attempt: admitted. While the counter is
//!   locked (`failures >= max_attempts`) it is refused until the lockout ends. Otherwise it is
//!   admitted while fewer than `max_attempts` are admitted in the window, and else answered
//!   [`Admission::Full`]: every allowed attempt is in flight or has failed, so no more than
//!   `max_attempts` ever reach the password check per window, however many run at once.
//! - [`failed`](ThrottleStore::failed) counts a failure of the window the attempt was admitted
//!   in; the failure that reaches `max_attempts` locks the counter for `lockout` (the first
//!   time), then each further lockout lasts `lockout_growth` times the previous one, at most
//!   `max_lockout`.
//! - [`succeeded`](ThrottleStore::succeeded) gives the attempt back and forgets the failures,
//!   the lockout streak and any lockout; [`refund`](ThrottleStore::refund) only gives the
//!   attempt back; [`reset`](ThrottleStore::reset) forgets the counter.
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
    /// The attempt counts and may proceed; report its failure with [`ThrottleStore::failed`].
    Admitted {
        /// The end of the window it was counted in; names the window for
        /// [`ThrottleStore::failed`] and [`ThrottleStore::refund`].
        window_end: SystemTime,
    },
    /// Every attempt the window allows is in flight or has failed: nothing was counted. Try
    /// again shortly (a success frees attempts; failures lock the counter).
    Full,
    /// The counter is locked; nothing was counted.
    Refused {
        /// How long until the lockout ends.
        retry_after: Duration,
    },
}

/// Storage for attempt counters (see the [`LoginThrottle`](crate::throttle::LoginThrottle) rules).
///
/// Object safe, used as `Arc<dyn ThrottleStore>`. Implementations must make each call one
/// atomic step: concurrent attempts on one key never admit more than `max_attempts` per window,
/// on one instance or many.
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

    /// Counts the failure of an attempt admitted in the window that ends at `window_end`
    /// (nothing when that window is over or the counter is already locked), and locks the
    /// counter when failures reach `max_attempts`.
    async fn failed(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()>;

    /// Counts the success of an attempt admitted in the window that ends at `window_end`: gives
    /// back the attempt (when that window is current) and the failed ones, forgets the lockout
    /// streak, and ends a lockout. Attempts still in flight stay counted.
    async fn succeeded(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()>;

    /// Gives back one attempt admitted in the window that ends at `window_end`, if that window
    /// is still current (a success that should not count against a client address).
    async fn refund(&self, key: &ThrottleKey, window_end: SystemTime) -> StoreResult<()>;

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
    pub(crate) failures: i64,
    pub(crate) window_end: i64,
    pub(crate) expires_at: i64,
    pub(crate) lockout_ms: i64,
}

/// What an attempt did to a counter (also the `step` column and the script's reply).
pub(crate) mod step {
    /// Locked: refused, nothing changed.
    pub(crate) const LOCKED: i64 = 0;
    /// A new window after a forgotten counter.
    pub(crate) const FRESH: i64 = 1;
    /// Counted in the current window.
    pub(crate) const COUNTED: i64 = 2;
    /// A new window after the last one or a lockout ended (the lockout streak is kept).
    pub(crate) const RENEWED: i64 = 4;
    /// The window's attempts are all taken: nothing changed.
    pub(crate) const FULL: i64 = 5;
}

impl Counter {
    /// One attempt at `now` (ms): the counter after it and the step taken. The reference
    /// version of the state machine; the SQL statement and the Lua script take the same steps.
    pub(crate) fn attempt(self, rule: &ThrottleRule, now: i64) -> (Self, i64) {
        let (window, keep, max) = (rule.window_ms(), rule.max_lockout_ms(), rule.max());
        let renewed = |lockout_ms| Self {
            attempts: 1,
            failures: 0,
            window_end: now + window,
            expires_at: now + window + keep,
            lockout_ms,
        };
        if self.expires_at <= now {
            (renewed(0), step::FRESH)
        } else if self.window_end <= now {
            (renewed(self.lockout_ms), step::RENEWED)
        } else if self.failures >= max {
            (self, step::LOCKED)
        } else if self.attempts < max {
            let next = Self {
                attempts: self.attempts + 1,
                ..self
            };
            (next, step::COUNTED)
        } else {
            (self, step::FULL)
        }
    }

    /// What the step of an attempt means, with the window end after it.
    pub(crate) fn admission(step: i64, window_end: i64, now: i64) -> Admission {
        match step {
            step::LOCKED => Admission::Refused {
                retry_after: Duration::from_millis(u64::try_from(window_end - now).unwrap_or(0)),
            },
            step::FULL => Admission::Full,
            _ => Admission::Admitted {
                window_end: from_millis(window_end),
            },
        }
    }

    /// The counter after a failure of an attempt admitted in the window ending at `window_end`.
    pub(crate) fn failed(self, rule: &ThrottleRule, window_end: SystemTime, now: i64) -> Self {
        if self.window_end != to_millis(window_end) || self.failures >= rule.max() {
            return self;
        }
        let failures = self.failures + 1;
        if failures < rule.max() {
            return Self { failures, ..self };
        }
        let lockout = rule.next_lockout(self.lockout_ms);
        Self {
            attempts: self.attempts,
            failures,
            window_end: now + lockout,
            expires_at: now + lockout + rule.max_lockout_ms(),
            lockout_ms: lockout,
        }
    }

    /// The counter after a success of an attempt admitted in the window ending at `window_end`.
    pub(crate) fn succeeded(self, rule: &ThrottleRule, window_end: SystemTime, now: i64) -> Self {
        // The failed attempts and this one are given back; those still in flight stay.
        let this = i64::from(self.window_end == to_millis(window_end));
        Self {
            attempts: (self.attempts - self.failures - this).max(0),
            failures: 0,
            window_end: if self.failures >= rule.max() {
                now
            } else {
                self.window_end
            },
            lockout_ms: 0,
            ..self
        }
    }

    /// The counter after a refund of an attempt admitted in the window ending at `window_end`.
    pub(crate) fn refunded(self, window_end: SystemTime) -> Self {
        if self.window_end == to_millis(window_end) && self.attempts > 0 {
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

    /// `n` attempts at `now`, each failing.
    fn fail(mut c: Counter, r: &ThrottleRule, now: i64, n: usize) -> Counter {
        for _ in 0..n {
            let (next, step) = c.attempt(r, now);
            let Admission::Admitted { window_end } = Counter::admission(step, next.window_end, now)
            else {
                panic!("refused: {next:?}");
            };
            c = next.failed(r, window_end, now);
        }
        c
    }

    fn refused(c: Counter, r: &ThrottleRule, now: i64) -> Admission {
        let (next, step) = c.attempt(r, now);
        assert_eq!(next, c, "a refused attempt changes nothing");
        Counter::admission(step, next.window_end, now)
    }

    #[test]
    fn failures_lock_with_growing_lockouts() {
        let r = rule();
        let now = 1_000_000;
        let mut c = fail(Counter::default(), &r, now, 3);
        let locked = |retry: i64| Admission::Refused {
            retry_after: Duration::from_millis(retry as u64),
        };
        assert_eq!(refused(c, &r, now), locked(10_000));
        assert_eq!(refused(c, &r, now + 4_000), locked(6_000));
        // After the lockout: a fresh window, then a lockout twice as long, then capped.
        let mut t = now + 10_000;
        for expected in [20_000, 25_000, 25_000] {
            c = fail(c, &r, t, 3);
            assert_eq!(refused(c, &r, t), locked(expected));
            t += expected;
        }
        // Forgotten max_lockout after the last lockout: the streak starts again.
        let later = c.window_end + 25_000;
        let (c, step) = c.attempt(&r, later);
        assert_eq!((step, c.lockout_ms, c.attempts), (step::FRESH, 0, 1));
    }

    #[test]
    fn attempts_in_flight_fill_the_window_without_locking() {
        let r = rule();
        let mut c = Counter::default();
        let mut ends = Vec::new();
        for _ in 0..3 {
            let (next, step) = c.attempt(&r, 0);
            ends.push(Counter::admission(step, next.window_end, 0));
            c = next;
        }
        assert_eq!(refused(c, &r, 0), Admission::Full);
        // A refund frees one attempt; a stale window's refund or failure changes nothing.
        let Admission::Admitted { window_end } = ends[0] else {
            panic!()
        };
        assert_eq!(c.refunded(from_millis(1)), c);
        assert_eq!(c.failed(&r, from_millis(1), 0), c);
        let c = c.refunded(window_end);
        assert_eq!(c.attempt(&r, 0).1, step::COUNTED);
    }
}
