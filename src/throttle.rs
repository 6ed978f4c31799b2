//! Login throttling across instances: a [`LoginThrottle`] counts credential checks per
//! identifier and, separately, per client address, in the configured store, and refuses them
//! with 429 once over the limit, before the password is checked.
//!
//! The app calls it around its own password check: [`LoginThrottle::check`] (or the
//! [`Throttle`] extractor, which knows the client address) reserves one attempt atomically in
//! the store and answers a [`ThrottleGuard`]; after the check the app reports
//! [`ThrottleGuard::success`] (the identifier's counter is reset) or
//! [`ThrottleGuard::failure`]. Over the limit, `check` answers a [`Rejection`] that renders as
//! `429 Too Many Requests` with `Retry-After` and `{"error":"too_many_attempts",…}`; with the
//! store down it answers 503 (fail closed), unless `on_store_error = "allow"`.
//!
//! # Example
//! ```
//! use axum::{Json, Router, routing::post};
//! use keycard::{Auth, Principal, Rejection, throttle::Throttle};
//! # fn password_ok(_: &str, _: &str) -> bool { true }
//!
//! #[derive(serde::Deserialize)]
//! struct Login { username: String, password: String }
//!
//! async fn login(throttle: Throttle, auth: Auth, Json(body): Json<Login>) -> Result<(), Rejection> {
//!     let guard = throttle.check(&body.username).await?; // 429 or 503 before any password check
//!     if !password_ok(&body.username, &body.password) {
//!         guard.failure().await;
//!         return Err(keycard::Error::new(keycard::ErrorKind::InvalidCredential).into());
//!     }
//!     guard.success().await;
//!     auth.login(Principal::builder(&body.username)).await?;
//!     Ok(())
//! }
//! let app: Router = Router::new().route("/login", post(login));
//! ```
//!
//! # What is counted
//! - At most `max_attempts` checks of one identifier are admitted per window, in flight or
//!   failed; the failure that reaches the limit locks the identifier (429 until the lockout
//!   ends). A success resets the identifier's counter, so concurrent logins with the right
//!   password go through one after another (a check waits up to `wait` for a free attempt). The
//!   client address is counted the same way with its own limit, and a success gives it its
//!   attempt back. A guard dropped without a report keeps its attempt until the window ends.
//! - The identifier is hashed before it reaches the store (HMAC-SHA-256 with `throttle.secret`
//!   when set, else SHA-256), so neither the store nor events hold it. Known and unknown
//!   identifiers take the same path: the throttle never knows which exist. Pass the identifier
//!   as your user lookup normalizes it (e.g. lowercased), or variants get separate counters.
//! - IPv6 clients are counted per /64 prefix (one host usually holds a whole /64); IPv4-mapped
//!   addresses count as IPv4.
//! - The limits, window and lockout growth are those of [`ThrottleConfig`]; see
//!   [`ThrottleStore`] for the exact state machine.
//!
//! # Security caveats
//! Per-identifier lockout lets anyone lock a known username out for a while by failing on
//! purpose; the lockout is bounded by `max_lockout` and the per-address limit slows such an
//! attacker down. Throttling complements, and does not replace, slow password hashing.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use axum_core::extract::FromRequestParts;
use hmac::{Hmac, Mac};
use http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    clock::{Clock, SystemClock},
    error::{Error, ErrorKind, Result},
    events::{Events, SecurityEvent},
    extract::Rejection,
    store::{Admission, MemoryStore, ThrottleKey, ThrottleRule, ThrottleStore, timeout::within},
};

/// What a check does when the throttle store fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Refuse the check with 503 (fail closed). The default.
    #[default]
    Deny,
    /// Let the check through unthrottled and log the failure. Weakens security: an attacker who
    /// can slow the store down gets unlimited guesses.
    Allow,
}

/// How the identifier appears in [`SecurityEvent::LoginThrottled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventIdentifier {
    /// The hex of the identifier's keyed hash (its throttle key). The default.
    #[default]
    Hashed,
    /// Left out.
    Omitted,
}

/// The `[throttle]` section of the config: limits of the login throttle.
///
/// ```toml
/// [throttle]
/// max_attempts = 5            # per identifier and window
/// window = "60s"
/// address_max_attempts = 50   # per client address and window; 0 turns it off
/// lockout = "60s"             # the first lockout
/// lockout_growth = 2.0        # each further lockout is this many times longer
/// max_lockout = "15m"
/// wait = "2s"                 # while the window's checks are all in flight
/// on_store_error = "deny"     # 503 when the store is down; "allow" weakens security
/// event_identifier = "hashed" # or "omitted"
/// # secret = "at least 32 bytes, the same on every instance"
/// ```
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Checks admitted per identifier per window; the next one locks the identifier. Default 5.
    pub max_attempts: u32,
    /// The counting window, from its first check. Default `"60s"`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Checks admitted per client address per window (successes are given back). Default 50;
    /// `0` turns the per-address limit off (weakens security).
    pub address_max_attempts: u32,
    /// Length of the first lockout. Default `"60s"`.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// Each further lockout of the same counter lasts this many times the previous one. Default
    /// `2.0`; range 1 to 1000.
    pub lockout_growth: f64,
    /// Longest lockout; a counter (and its lockout streak) is also forgotten this long after its
    /// window or lockout ended. Default `"15m"`.
    #[serde(with = "humantime_serde")]
    pub max_lockout: Duration,
    /// How long a check waits while every check the window allows is in flight (concurrent
    /// logins of one identifier), before answering 429 with `Retry-After: 1`. Default `"2s"`.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// When the store fails: `deny` (503, the default) or `allow`.
    pub on_store_error: OnStoreError,
    /// The identifier in security events: `hashed` (the default) or `omitted`.
    pub event_identifier: EventIdentifier,
    /// Key of the HMAC-SHA-256 that names counters (at least 32 bytes, the same on every
    /// instance). Default: none, and counters are named by plain SHA-256, which someone who
    /// reads the store can test guesses of identifiers against.
    pub secret: Option<String>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            window: Duration::from_secs(60),
            address_max_attempts: 50,
            lockout: Duration::from_secs(60),
            lockout_growth: 2.0,
            max_lockout: Duration::from_secs(15 * 60),
            wait: Duration::from_secs(2),
            on_store_error: OnStoreError::Deny,
            event_identifier: EventIdentifier::Hashed,
            secret: None,
        }
    }
}

impl fmt::Debug for ThrottleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleConfig")
            .field("max_attempts", &self.max_attempts)
            .field("window", &self.window)
            .field("address_max_attempts", &self.address_max_attempts)
            .field("lockout", &self.lockout)
            .field("lockout_growth", &self.lockout_growth)
            .field("max_lockout", &self.max_lockout)
            .field("wait", &self.wait)
            .field("on_store_error", &self.on_store_error)
            .field("event_identifier", &self.event_identifier)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ThrottleConfig {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_attempts == 0 {
            return Err(Error::config("throttle.max_attempts", "must be at least 1"));
        }
        if self.window.is_zero() {
            return Err(Error::config("throttle.window", "must be positive"));
        }
        if self.lockout.is_zero() {
            return Err(Error::config("throttle.lockout", "must be positive"));
        }
        if !(1.0..=1000.0).contains(&self.lockout_growth) {
            return Err(Error::config(
                "throttle.lockout_growth",
                "must be between 1 and 1000",
            ));
        }
        if self.max_lockout < self.lockout {
            return Err(Error::config(
                "throttle.max_lockout",
                "must be at least throttle.lockout",
            ));
        }
        if self.max_lockout > Duration::from_secs(365 * 86_400) {
            return Err(Error::config(
                "throttle.max_lockout",
                "must be at most a year",
            ));
        }
        if self.wait > Duration::from_secs(60) {
            return Err(Error::config("throttle.wait", "must be at most 60s"));
        }
        if self.secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(Error::config(
                "throttle.secret",
                "must be at least 32 bytes",
            ));
        }
        Ok(())
    }

    fn rule(&self, max_attempts: u32) -> ThrottleRule {
        ThrottleRule {
            max_attempts,
            window: self.window,
            lockout: self.lockout,
            lockout_growth: self.lockout_growth,
            max_lockout: self.max_lockout,
        }
    }
}

/// The login throttle: cheap to clone, shared by every request. Get the configured one from
/// [`Keycard::throttle`](crate::Keycard::throttle), or in a handler through [`Throttle`].
#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    store: Arc<dyn ThrottleStore>,
    config: ThrottleConfig,
    identifier: ThrottleRule,
    address: Option<ThrottleRule>,
    clock: Arc<dyn Clock>,
    events: Events,
    timeout: Duration,
}

impl fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    /// A throttle keeping its counters in `store`, with the system clock, no event hook and a
    /// 2-second store timeout.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the field when `config` is invalid.
    pub fn new(store: Arc<dyn ThrottleStore>, config: ThrottleConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                identifier: config.rule(config.max_attempts),
                address: (config.address_max_attempts > 0)
                    .then(|| config.rule(config.address_max_attempts)),
                config,
                clock: Arc::new(SystemClock),
                events: Events::default(),
                timeout: Duration::from_secs(2),
            }),
        })
    }

    /// The default throttle of a keycard built in code: counters in process memory (one
    /// instance only), default limits.
    pub(crate) fn in_memory(clock: Arc<dyn Clock>, events: Events) -> Self {
        let config = ThrottleConfig::default();
        Self {
            inner: Arc::new(Inner {
                store: Arc::new(MemoryStore::new()),
                identifier: config.rule(config.max_attempts),
                address: Some(config.rule(config.address_max_attempts)),
                config,
                clock,
                events,
                timeout: Duration::from_secs(2),
            }),
        }
    }

    /// Uses `clock` for windows and lockouts.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        Arc::make_mut(&mut self.inner).clock = clock;
        self
    }

    /// Sends [`SecurityEvent::LoginThrottled`] to `events`.
    pub fn with_events(mut self, events: Events) -> Self {
        Arc::make_mut(&mut self.inner).events = events;
        self
    }

    /// Bounds each store call by `timeout` (then [`OnStoreError`] applies). Default 2 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }

    /// The limits in force.
    pub fn config(&self) -> &ThrottleConfig {
        &self.inner.config
    }

    /// The store holding the counters (for sweeps).
    pub fn store(&self) -> &Arc<dyn ThrottleStore> {
        &self.inner.store
    }

    /// Reserves one credential check of `identifier` from `client` (when known). Call it before
    /// checking the password, and report the outcome on the returned guard.
    ///
    /// When every check the window allows is already in flight, it waits (up to
    /// `throttle.wait`) for one to finish: concurrent logins with the right password go through
    /// one after another, concurrent wrong ones end in a lockout.
    ///
    /// # Errors
    /// A [`Rejection`] of [`ErrorKind::TooManyAttempts`] (429 with `Retry-After`) when the
    /// identifier or the address is over its limit: the password must not be checked. With
    /// [`OnStoreError::Deny`], [`ErrorKind::StoreUnavailable`] (503) when the store fails.
    pub async fn check(
        &self,
        identifier: &str,
        client: Option<IpAddr>,
    ) -> Result<ThrottleGuard, Rejection> {
        let inner = &self.inner;
        let id_key = self.key(b"identifier", identifier.as_bytes());
        let mut address = None;
        if let (Some(ip), Some(rule)) = (client, &inner.address) {
            let key = self.key(b"address", &address_bytes(ip));
            match self.reserve(&key, rule).await? {
                Reserved::Refused(retry_after) => {
                    return Err(self.refuse(&id_key, client, "address", retry_after));
                }
                Reserved::Admitted(window_end) => address = Some((key, window_end)),
                Reserved::Unchecked => {}
            }
        }
        let identifier_window = match self.reserve(&id_key, &inner.identifier).await {
            Ok(Reserved::Admitted(window_end)) => Some(window_end),
            Ok(Reserved::Unchecked) => None,
            outcome => {
                // The address's attempt never reached a password check.
                if let Some((key, window_end)) = &address {
                    let refund = within(inner.timeout, inner.store.refund(key, *window_end));
                    if let Err(e) = refund.await {
                        tracing::warn!(error = ?e, "keycard login throttle: refunding an attempt failed");
                    }
                }
                return match outcome {
                    Ok(Reserved::Refused(retry_after)) => {
                        Err(self.refuse(&id_key, client, "identifier", retry_after))
                    }
                    Err(rejection) => Err(rejection),
                    Ok(_) => unreachable!("admissions are handled above"),
                };
            }
        };
        Ok(ThrottleGuard {
            throttle: self.clone(),
            identifier: (id_key, identifier_window),
            address,
        })
    }

    /// Forgets `identifier`'s counter and lockout streak (an operator unlocking an account).
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`] when the store fails.
    pub async fn reset(&self, identifier: &str) -> Result<()> {
        let key = self.key(b"identifier", identifier.as_bytes());
        within(self.inner.timeout, self.inner.store.reset(&key))
            .await
            .map_err(Error::from)
    }

    /// One attempt on `key`, waiting while the window is full.
    async fn reserve(&self, key: &ThrottleKey, rule: &ThrottleRule) -> Result<Reserved, Rejection> {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + inner.config.wait;
        let mut pause = Duration::from_millis(10);
        loop {
            let now = inner.clock.now();
            match within(inner.timeout, inner.store.attempt(key, rule, now)).await {
                Ok(Admission::Admitted { window_end }) => {
                    return Ok(Reserved::Admitted(window_end));
                }
                Ok(Admission::Refused { retry_after }) => {
                    return Ok(Reserved::Refused(retry_after));
                }
                Ok(Admission::Full) => {
                    if tokio::time::Instant::now() + pause > deadline {
                        return Ok(Reserved::Refused(Duration::from_secs(1)));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) if inner.config.on_store_error == OnStoreError::Allow => {
                    tracing::warn!(error = ?e, "keycard login throttle: store failed; check let through");
                    return Ok(Reserved::Unchecked);
                }
                Err(e) => return Err(Error::from(e).into()),
            }
        }
    }

    fn refuse(
        &self,
        identifier: &ThrottleKey,
        ip: Option<IpAddr>,
        scope: &'static str,
        retry_after: Duration,
    ) -> Rejection {
        let shown = match self.inner.config.event_identifier {
            EventIdentifier::Hashed => Some(identifier.hex()),
            EventIdentifier::Omitted => None,
        };
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        self.inner.events.emit(SecurityEvent::LoginThrottled {
            identifier: shown,
            ip,
            scope,
            retry_after_secs: secs.max(1),
        });
        Error::new(ErrorKind::TooManyAttempts)
            .with_retry_after(retry_after)
            .into()
    }

    /// The counter name of `value` in `scope`: HMAC-SHA-256 under the secret, else SHA-256.
    fn key(&self, scope: &[u8], value: &[u8]) -> ThrottleKey {
        let parts: [&[u8]; 4] = [b"keycard-throttle\0", scope, b"\0", value];
        let bytes: [u8; 32] = match &self.inner.config.secret {
            Some(secret) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                parts.iter().for_each(|p| mac.update(p));
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut digest = Sha256::new();
                parts.iter().for_each(|p| digest.update(p));
                digest.finalize().into()
            }
        };
        ThrottleKey::from_bytes(bytes)
    }
}

/// What [`LoginThrottle::reserve`] got.
enum Reserved {
    /// Counted in the window ending then.
    Admitted(std::time::SystemTime),
    /// Refused for this long.
    Refused(Duration),
    /// The store failed and the config lets the check through uncounted.
    Unchecked,
}

/// The bytes an address is counted under: IPv4 (also when IPv4-mapped), or an IPv6 /64.
fn address_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => {
                let s = v6.segments();
                let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                prefix.octets().to_vec()
            }
        },
    }
}

/// One admitted credential check. Report its outcome: [`ThrottleGuard::success`] or
/// [`ThrottleGuard::failure`]; dropping it counts as a failure.
#[must_use = "report the password check's outcome with success() or failure()"]
#[derive(Debug)]
pub struct ThrottleGuard {
    throttle: LoginThrottle,
    /// The identifier's key and the window its attempt counts in (`None`: the store failed and
    /// the check went through uncounted).
    identifier: (ThrottleKey, Option<std::time::SystemTime>),
    address: Option<(ThrottleKey, std::time::SystemTime)>,
}

impl ThrottleGuard {
    /// The password was right: resets the identifier's counter (its failures, lockout streak
    /// and this attempt; attempts still in flight stay counted) and gives the address its
    /// attempt back. A store failure here is logged, not returned: the login itself succeeded.
    pub async fn success(self) {
        let inner = &self.throttle.inner;
        if let (key, Some(window_end)) = &self.identifier {
            let now = inner.clock.now();
            let reset = inner
                .store
                .succeeded(key, &inner.identifier, *window_end, now);
            if let Err(e) = within(inner.timeout, reset).await {
                tracing::warn!(error = ?e, "keycard login throttle: resetting a counter failed");
            }
        }
        if let Some((key, window_end)) = &self.address {
            let refund = within(inner.timeout, inner.store.refund(key, *window_end)).await;
            if let Err(e) = refund {
                tracing::warn!(error = ?e, "keycard login throttle: refunding an attempt failed");
            }
        }
    }

    /// The password was wrong: counts a failure of the identifier and of the address; the one
    /// that reaches the limit locks the counter. A store failure here is logged: the attempt
    /// stays counted until its window ends.
    pub async fn failure(self) {
        let inner = &self.throttle.inner;
        let now = inner.clock.now();
        let (key, window) = &self.identifier;
        let mut failed = Vec::with_capacity(2);
        if let Some(window_end) = window {
            failed.push((key, &inner.identifier, *window_end));
        }
        if let (Some((key, window_end)), Some(rule)) = (&self.address, &inner.address) {
            failed.push((key, rule, *window_end));
        }
        for (key, rule, window_end) in failed {
            let counted = within(
                inner.timeout,
                inner.store.failed(key, rule, window_end, now),
            );
            if let Err(e) = counted.await {
                tracing::warn!(error = ?e, "keycard login throttle: counting a failure failed");
            }
        }
    }
}

/// Extractor: the keycard's [`LoginThrottle`] with the request's client address (axum's
/// `ConnectInfo`, when the server provides it). Needs [`SessionLayer`](crate::SessionLayer).
#[derive(Debug, Clone)]
pub struct Throttle {
    throttle: LoginThrottle,
    client: Option<IpAddr>,
}

impl Throttle {
    /// [`LoginThrottle::check`] with this request's client address.
    ///
    /// # Errors
    /// As [`LoginThrottle::check`].
    pub async fn check(&self, identifier: &str) -> Result<ThrottleGuard, Rejection> {
        self.throttle.check(identifier, self.client).await
    }

    /// The client address the checks count against.
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Throttle {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ctx = crate::extract::context(parts)?;
        Ok(Self {
            throttle: ctx.shared.throttle.clone(),
            client: ctx.client_ip(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_per_host_or_slash_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(address_bytes(a), address_bytes(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(address_bytes(mapped), address_bytes(v4));
    }

    #[test]
    fn config_errors_name_the_field() {
        let mut c = ThrottleConfig {
            lockout_growth: 0.5,
            ..ThrottleConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .message()
                .contains("throttle.lockout_growth")
        );
        c.lockout_growth = 2.0;
        c.secret = Some("short".into());
        assert!(
            c.validate()
                .unwrap_err()
                .message()
                .contains("throttle.secret")
        );
        assert!(!format!("{c:?}").contains("short"));
    }

    #[test]
    fn keys_depend_on_scope_and_secret() {
        let plain =
            LoginThrottle::new(Arc::new(MemoryStore::new()), ThrottleConfig::default()).unwrap();
        let keyed = LoginThrottle::new(
            Arc::new(MemoryStore::new()),
            ThrottleConfig {
                secret: Some("k".repeat(32)),
                ..ThrottleConfig::default()
            },
        )
        .unwrap();
        let a = plain.key(b"identifier", b"alice");
        assert_ne!(a, plain.key(b"address", b"alice"));
        assert_ne!(a, keyed.key(b"identifier", b"alice"));
        assert!(!a.hex().contains("alice"));
    }
}
