//! [`KeycardConfig`]: serde configuration for [`Keycard::from_config`](crate::Keycard::from_config).
//!
//! ```toml
//! strategy = "database"          # database | redis | jwt | hybrid
//!
//! [database]
//! url = "sqlite://keycard.db"    # sqlite:, postgres: or mysql:
//!
//! [session]
//! idle_timeout = "30m"
//! absolute_timeout = "12h"
//! max_sessions = 5
//! on_limit = "evict_oldest"
//! ```
//!
//! Durations are strings such as `"90s"`, `"30m"`, `"12h"`, `"30days"`. Unknown fields are
//! errors, and every error names the field at fault.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    clock::Clock,
    csrf::CsrfConfig,
    error::{Error, Result},
    events::EventHook,
    store::{LimitPolicy, SessionLimit},
    strategy::server::ServerSettings,
    transport::TransportSettings,
};

/// The strategy named in config (`strategy = "..."`).
///
/// `hybrid` is the JWT strategy deployed with [`HighRisk`](crate::HighRisk) routes: ordinary
/// routes verify the access token locally, and high-risk routes also confirm the refresh family
/// server-side ([`SessionStrategy::verify_live`](crate::strategy::SessionStrategy::verify_live))
/// and demand a recent authentication. That check belongs to the route, not to a strategy, so
/// `hybrid` builds exactly what `jwt` builds; the name is kept so that a deployment says what it
/// relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StrategyKind {
    /// Opaque session IDs over a SQL store.
    Database,
    /// Opaque session IDs over Redis.
    Redis,
    /// Signed access tokens and refresh-token families.
    Jwt,
    /// The JWT strategy, with [`HighRisk`](crate::HighRisk) routes checked server-side.
    Hybrid,
}

impl StrategyKind {
    /// The config name (`"database"`, `"redis"`, `"jwt"`, `"hybrid"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Redis => "redis",
            Self::Jwt => "jwt",
            Self::Hybrid => "hybrid",
        }
    }

    /// Whether the primary credential is a signed access token (Bearer) rather than a session
    /// cookie.
    pub fn uses_tokens(self) -> bool {
        matches!(self, Self::Jwt | Self::Hybrid)
    }
}

/// Where a server session's token travels (`transport = "..."`, strategies `database` and
/// `redis`).
///
/// What a login (or a rotation, or a step-up) returns: the session token is always in
/// [`Issued::session_token`](crate::strategy::Issued::session_token), for the handler to
/// return to a client that reads it from the body. The layer sets the session cookie under
/// `cookie`; never under `bearer`; under `both` unless the request itself carried a Bearer
/// credential (a native client renewing its token gets no cookie). Under `both` a handler
/// should hand the token out only to clients that asked for it (a native app), never to a
/// page's script, which would defeat `HttpOnly`.
///
/// A request carrying the session cookie *and* a Bearer credential is refused (400) rather than
/// guessed; CSRF checks do not apply to Bearer requests (browsers never attach the header on
/// their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionTransport {
    /// The session cookie only (the default).
    #[default]
    Cookie,
    /// `Authorization: Bearer <session token>` only; no cookie is set or read.
    Bearer,
    /// Either one (never both in one request); login sets the cookie unless the request
    /// carried a Bearer credential.
    Both,
}

impl SessionTransport {
    /// Whether the session cookie is read and set, and whether `Authorization: Bearer` is read.
    pub(crate) fn reads(self) -> (bool, bool) {
        match self {
            Self::Cookie => (true, false),
            Self::Bearer => (false, true),
            Self::Both => (true, true),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeycardConfig {
    /// Which strategy to use: `database`, `redis`, `jwt` or `hybrid`. Required.
    pub strategy: StrategyKind,
    /// Server-session timeouts and limits.
    #[serde(default)]
    pub session: SessionConfig,
    /// Where the session token of `database` and `redis` travels: `cookie` (the default),
    /// `bearer` (`Authorization: Bearer`, for native and API clients) or `both` (see
    /// [`SessionTransport`]). Default: none, the strategy's own (a cookie for server sessions,
    /// Bearer for `jwt`/`hybrid`, whose cookie is `cookie.access_token_cookie`); setting it for
    /// `jwt`/`hybrid` is refused.
    #[serde(default)]
    pub transport: Option<SessionTransport>,
    /// Cookie names and attributes.
    #[serde(default)]
    pub cookie: CookieConfig,
    /// Input limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Limits on session data (`[data]`; see [`DataLimits`](crate::store::DataLimits)).
    #[serde(default)]
    pub data: crate::store::DataLimits,
    /// CSRF protection.
    #[serde(default)]
    pub csrf: CsrfConfig,
    /// Login throttling ([`LoginThrottle`](crate::throttle::LoginThrottle), counters in the
    /// strategy's store).
    #[serde(default)]
    pub throttle: crate::throttle::ThrottleConfig,
    /// The SQL store (`database` strategy; refresh families for `jwt`/`hybrid`).
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// The Redis store (`redis` strategy; refresh families for `jwt`/`hybrid` when set).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// JWT settings (`jwt` and `hybrid`).
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub jwt: Option<crate::jwt::JwtConfig>,
}

impl KeycardConfig {
    /// Parses TOML. Errors name the offending field.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            Error::with_message(
                crate::ErrorKind::Config,
                format!("invalid config: {}", e.message()),
            )
            .with_source(e)
        })
    }

    /// A config for `strategy` with every other section at its default.
    pub fn new(strategy: StrategyKind) -> Self {
        Self {
            strategy,
            session: SessionConfig::default(),
            transport: None,
            cookie: CookieConfig::default(),
            limits: LimitsConfig::default(),
            data: crate::store::DataLimits::default(),
            csrf: CsrfConfig::default(),
            throttle: crate::throttle::ThrottleConfig::default(),
            database: None,
            redis: None,
            #[cfg(feature = "jwt")]
            jwt: None,
        }
    }
}

/// Server-session settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Idle timeout. Default `"30m"`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Absolute timeout. Default `"12h"`.
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// Sliding renewal writes at most once per this fraction of the idle timeout. Default `0.1`
    /// (every 3 minutes with a 30-minute idle timeout). Range (0, 1].
    pub renewal_fraction: f64,
    /// Maximum live sessions per subject. Default: unlimited.
    pub max_sessions: Option<u32>,
    /// At the limit: `reject` the new login (403) or `evict_oldest`. Default `reject`.
    pub on_limit: LimitPolicy,
    /// Store calls slower than this answer 503. Default `"2s"`.
    #[serde(with = "humantime_serde")]
    pub store_timeout: Duration,
    /// How often expired records are swept. Default `"5m"`.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// The opt-in local read cache (see [`CacheSettings`](crate::strategy::CacheSettings)). Default: off.
    pub cache: Option<SessionCacheConfig>,
    /// What to do when a session is used from another client address: `allow` (report only),
    /// `step_up` or `terminate` (see [`policy`](crate::policy)). Default: no check.
    pub on_ip_change: Option<crate::policy::IpChangeAction>,
    /// Anonymous sessions for callers who write session data before logging in (`database` and
    /// `redis`; see [`AnonymousSettings`](crate::strategy::AnonymousSettings)). Default: off.
    pub anonymous: Option<crate::strategy::AnonymousSettings>,
}

/// The server-session read cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionCacheConfig {
    /// Most sessions cached (entries). Default 10000.
    pub capacity: usize,
    /// Revocation polling interval for stores without a push channel (SQLite, MySQL). Default
    /// `"1s"`.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for SessionCacheConfig {
    fn default() -> Self {
        let d = crate::strategy::cache::CacheSettings::default();
        Self {
            capacity: d.capacity,
            poll_interval: d.poll_interval,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            renewal_fraction: 0.1,
            max_sessions: None,
            on_limit: LimitPolicy::Reject,
            store_timeout: Duration::from_secs(2),
            sweep_interval: Duration::from_secs(300),
            cache: None,
            on_ip_change: None,
            anonymous: None,
        }
    }
}

impl SessionConfig {
    /// Validates and converts to [`ServerSettings`].
    pub fn settings(&self) -> Result<ServerSettings> {
        if self.idle_timeout.is_zero() {
            return Err(Error::config("session.idle_timeout", "must be positive"));
        }
        if self.absolute_timeout < self.idle_timeout {
            return Err(Error::config(
                "session.absolute_timeout",
                "must be at least session.idle_timeout",
            ));
        }
        if !(self.renewal_fraction > 0.0 && self.renewal_fraction <= 1.0) {
            return Err(Error::config(
                "session.renewal_fraction",
                "must be in (0, 1]",
            ));
        }
        if self.max_sessions == Some(0) {
            return Err(Error::config("session.max_sessions", "must be at least 1"));
        }
        if self.store_timeout.is_zero() {
            return Err(Error::config("session.store_timeout", "must be positive"));
        }
        if self.sweep_interval.is_zero() {
            return Err(Error::config("session.sweep_interval", "must be positive"));
        }
        Ok(ServerSettings {
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            renewal_interval: self.idle_timeout.mul_f64(self.renewal_fraction),
            limit: self.max_sessions.map(|max| SessionLimit {
                max,
                policy: self.on_limit,
            }),
            store_timeout: self.store_timeout,
            anonymous: self.anonymous,
        })
    }
}

/// Cookie settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieConfig {
    /// Session cookie name (or access-token cookie for `jwt`/`hybrid`). Default `__Host-keycard`.
    /// Matched byte for byte.
    pub name: String,
    /// Whether cookies carry `Secure`. Default `true`; `false` weakens security (plain-HTTP
    /// development only) and requires a name without `__Host-`/`__Secure-`.
    pub secure: bool,
    /// `jwt`/`hybrid`: also accept and set the access token in the cookie. Default `false`.
    pub access_token_cookie: bool,
    /// `jwt`/`hybrid`: send the refresh token in a cookie scoped to `refresh_path`. Default
    /// `false` (refresh tokens travel in JSON bodies).
    pub refresh_cookie: bool,
    /// Refresh cookie name. Default `__Secure-keycard-refresh`.
    pub refresh_name: String,
    /// Path the refresh cookie is scoped to. Default `/refresh`.
    pub refresh_path: String,
    /// Share the session cookie across subdomains: `Domain` attribute, e.g. `"example.com"`.
    /// Default: none (a host-only `__Host-` cookie). With a domain the default name becomes
    /// `__Secure-keycard`; insecure cookies, a `__Host-` name and a domain that is not a plain
    /// host name (leading dot, IP address, single label) are refused at start. Every host under
    /// the domain then receives the session token (see
    /// [cookie scope](crate::transport#cookie-scope)).
    pub domain: Option<String>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "__Host-keycard".into(),
            secure: true,
            access_token_cookie: false,
            refresh_cookie: false,
            refresh_name: "__Secure-keycard-refresh".into(),
            refresh_path: "/refresh".into(),
            domain: None,
        }
    }
}

/// Limits on credential input, checked before any decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest `Authorization` header, in bytes. Default 8192.
    pub max_authorization_bytes: usize,
    /// Largest session cookie value, in bytes. Default 4096.
    pub max_cookie_bytes: usize,
    /// Most cookies in one request. Default 150.
    pub max_cookies: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let t = TransportSettings::default();
        Self {
            max_authorization_bytes: t.max_authorization_bytes,
            max_cookie_bytes: t.max_cookie_bytes,
            max_cookies: t.max_cookies,
        }
    }
}

/// SQL store settings. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path.db`, `postgres://…` or `mysql://…`. Required.
    pub url: String,
    /// Pool size. Default 10.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Run the bundled migrations at start. Default `true`.
    #[serde(default = "yes")]
    pub migrate: bool,
}

pub(crate) fn default_max_connections() -> u32 {
    10
}

fn yes() -> bool {
    true
}

/// Redis store settings: `url` for one node, or `cluster_urls` for a Redis Cluster. `Debug`
/// hides URL passwords.
#[derive(Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// A single node, e.g. `redis://127.0.0.1:6379`.
    pub url: Option<String>,
    /// Cluster seed nodes.
    pub cluster_urls: Vec<String>,
    /// Prefix of every key. Default `keycard`.
    pub key_prefix: Option<String>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("migrate", &self.migrate)
            .finish()
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field(
                "cluster_urls",
                &self
                    .cluster_urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// `scheme://user:password@host/…` with the password replaced by `[redacted]`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') {
                ":[redacted]"
            } else {
                ""
            };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// What `from_config` needs besides the config: an event hook and a clock.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// Receives security events.
    pub hook: Option<EventHook>,
    /// Clock (default: system clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// A client policy built in code (e.g. with a region resolver); overrides
    /// `session.on_ip_change`.
    pub client_policy: Option<crate::policy::ClientPolicy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_passwords() {
        assert_eq!(
            redact_url("postgres://kc:hunter2@db:5432/kc?sslmode=require"),
            "postgres://kc:[redacted]@db:5432/kc?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379"),
            "redis://:[redacted]@127.0.0.1:6379"
        );
        assert_eq!(redact_url("sqlite://keycard.db"), "sqlite://keycard.db");
        let db = DatabaseConfig {
            url: "mysql://root:s3cret@h/test".into(),
            max_connections: 1,
            migrate: true,
        };
        assert!(!format!("{db:?}").contains("s3cret"));
    }

    #[test]
    fn parses_durations_and_names_bad_fields() {
        let c = KeycardConfig::from_toml(
            "strategy = \"database\"\n[session]\nidle_timeout = \"10m\"\nmax_sessions = 3\non_limit = \"evict_oldest\"\n[database]\nurl = \"sqlite::memory:\"\n",
        )
        .unwrap();
        assert_eq!(c.session.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.session.on_limit, LimitPolicy::EvictOldest);
        let err =
            KeycardConfig::from_toml("strategy = \"database\"\n[session]\nidle_timeot = \"1m\"\n")
                .unwrap_err();
        assert!(err.message().contains("idle_timeot"), "{}", err.message());
        let err = KeycardConfig::from_toml("strategy = \"magic\"\n").unwrap_err();
        assert!(err.message().contains("magic"), "{}", err.message());
        let mut bad = KeycardConfig::new(StrategyKind::Database);
        bad.session.absolute_timeout = Duration::from_secs(1);
        assert!(
            bad.session
                .settings()
                .unwrap_err()
                .message()
                .contains("session.absolute_timeout")
        );
    }
}
