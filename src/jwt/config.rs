//! [`JwtConfig`]: the `[jwt]` section of keycard's configuration.
//!
//! ```toml
//! [jwt]
//! issuer = "https://auth.example.com"
//! audience = "https://api.example.com"
//! access_ttl = "10m"
//!
//! [[jwt.keys]]
//! kid = "2026-01"
//! alg = "EdDSA"
//! pem_file = "/run/secrets/jwt-2026-01.pem"
//! signing = true
//!
//! [jwt.refresh]
//! idle = "7d"
//! absolute = "30d"
//! ```
//!
//! Every duration is a [`humantime`] string (`"90s"`, `"10m"`, `"7d"`). Errors name the offending
//! field, e.g. ``invalid config `jwt.keys[0].pem`: ...``.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{alg::Algorithm, cache::DEFAULT_CACHE_SIZE};
use crate::error::{Error, Result};

/// Longest access-token lifetime keycard accepts (60 min).
pub(crate) const MAX_ACCESS_TTL: Duration = Duration::from_secs(60 * 60);
/// Largest accepted clock leeway (300 s).
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default refresh grace window (30 s): see [`RefreshConfig::grace`].
pub(crate) const DEFAULT_REFRESH_GRACE: Duration = Duration::from_secs(30);
/// Largest refresh grace window (60 s).
pub(crate) const MAX_REFRESH_GRACE: Duration = Duration::from_secs(60);
/// Shortest accepted cool-down between refetches of a remote JWKS (10 s).
#[cfg(feature = "remote-jwks")]
pub(crate) const MIN_REFETCH_COOLDOWN: Duration = Duration::from_secs(10);
/// Largest verified-token cache.
pub(crate) const MAX_CACHE_SIZE: usize = 1_000_000;

fn default_access_ttl() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_cache_size() -> usize {
    DEFAULT_CACHE_SIZE
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

/// Settings of the JWT strategy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` claim of issued tokens, and the only issuer accepted (exact match). Required.
    pub issuer: String,
    /// The `aud` claim of issued tokens, and the audience a token must name (exact match).
    /// Required.
    pub audience: String,
    /// Lifetime of access tokens. Default `10m`; at most `60m`; whole seconds.
    #[serde(default = "default_access_ttl", with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Largest `exp - iat` accepted when verifying. Default: `access_ttl` (tokens keycard issues
    /// have exactly that lifetime); at most `60m`. Raise it only to accept tokens of another
    /// issuer (verifier-only mode) with longer lifetimes.
    #[serde(default, with = "humantime_serde")]
    pub max_token_lifetime: Option<Duration>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default `60s`; at most `300s`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// The key ring: exactly one key must have `signing = true` unless `jwks` is set. Default
    /// empty (which needs `ephemeral_key` or `jwks`).
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// With no `keys`, generate an Ed25519 key at start. Default `false`. For demos and single
    /// instances only: tokens die with the process and other instances cannot verify them.
    #[serde(default)]
    pub ephemeral_key: bool,
    /// Refresh-token families.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// Entries in the verified-token cache. Default `10000`; `0` disables the cache; at most
    /// `1000000`. Each entry holds the token and its principal (about 1 KiB).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// How often revocations are reloaded when the store has no push feed. Default `1s`;
    /// at least `10ms`. Also the bound on how late such a store's revocations are seen.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub revocation_poll_interval: Duration,
    /// Verifier-only mode: take verification keys from this remote JWKS instead of `keys`.
    /// Default: none. Needs the cargo feature `remote-jwks`; without it, a strategy configured
    /// with `jwks` refuses to start.
    #[serde(default)]
    pub jwks: Option<RemoteJwksConfig>,
}

impl JwtConfig {
    /// A config with the given issuer and audience and every other field at its default.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl: default_access_ttl(),
            max_token_lifetime: None,
            leeway: default_leeway(),
            keys: Vec::new(),
            ephemeral_key: false,
            refresh: RefreshConfig::default(),
            cache_size: default_cache_size(),
            revocation_poll_interval: default_poll_interval(),
            jwks: None,
        }
    }

    /// The largest `exp - iat` accepted when verifying: `max_token_lifetime`, or `access_ttl`
    /// when unset.
    pub(crate) fn max_lifetime(&self) -> Duration {
        self.max_token_lifetime.unwrap_or(self.access_ttl)
    }

    /// Checks every setting against its bounds ([`MAX_ACCESS_TTL`], [`MAX_LEEWAY`],
    /// [`MAX_REFRESH_GRACE`], [`MAX_CACHE_SIZE`]); keys and the remote JWKS are checked as they
    /// load.
    ///
    /// # Errors
    /// A config error naming the first offending field (`jwt.issuer`, `jwt.access_ttl`, ...).
    pub(crate) fn check(&self) -> Result<()> {
        if self.issuer.trim().is_empty() {
            return Err(Error::config("jwt.issuer", "required"));
        }
        if self.audience.trim().is_empty() {
            return Err(Error::config("jwt.audience", "required"));
        }
        if self.access_ttl < Duration::from_secs(1) || self.access_ttl > MAX_ACCESS_TTL {
            return Err(Error::config(
                "jwt.access_ttl",
                "must be between 1s and 60m",
            ));
        }
        if self.access_ttl.subsec_nanos() != 0 {
            return Err(Error::config("jwt.access_ttl", "must be whole seconds"));
        }
        let max_lifetime = self.max_lifetime();
        if max_lifetime < self.access_ttl || max_lifetime > MAX_ACCESS_TTL {
            return Err(Error::config(
                "jwt.max_token_lifetime",
                "must be between jwt.access_ttl and 60m",
            ));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(Error::config("jwt.leeway", "must be at most 300s"));
        }
        if self.refresh.idle.is_zero() {
            return Err(Error::config("jwt.refresh.idle", "must be positive"));
        }
        if self.refresh.absolute.is_zero() {
            return Err(Error::config("jwt.refresh.absolute", "must be positive"));
        }
        if self.refresh.grace > MAX_REFRESH_GRACE {
            return Err(Error::config("jwt.refresh.grace", "must be at most 60s"));
        }
        if self.cache_size > MAX_CACHE_SIZE {
            return Err(Error::config("jwt.cache_size", "must be at most 1000000"));
        }
        if self.revocation_poll_interval < Duration::from_millis(10) {
            return Err(Error::config(
                "jwt.revocation_poll_interval",
                "must be at least 10ms",
            ));
        }
        Ok(())
    }
}

/// One key of the ring. Exactly one of `pem`, `pem_file`, `jwk`, `secret`, `secret_file`.
/// `Debug` redacts the key material; `Serialize` does not (it round-trips the config), so prefer
/// `pem_file`/`secret_file` over inline secrets.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key ID, sent in the `kid` header and published in the JWKS. Required, 1–256 bytes.
    pub kid: String,
    /// Algorithm the key is pinned to. Default `EdDSA`.
    #[serde(default)]
    pub alg: Algorithm,
    /// PEM text: a private key (signs and verifies) or a public key (verifies).
    #[serde(default)]
    pub pem: Option<String>,
    /// Path of a PEM file.
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
    /// A JWK, as a table or a JSON string (`oct` for HMAC).
    #[serde(default)]
    pub jwk: Option<Value>,
    /// HMAC secret, base64 (standard or URL-safe, padding optional). `HS*` only.
    #[serde(default)]
    pub secret: Option<String>,
    /// Path of a file holding an HMAC secret in base64. `HS*` only.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Whether this key signs new tokens. Default `false`; exactly one key must sign.
    #[serde(default)]
    pub signing: bool,
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match (
            &self.pem,
            &self.pem_file,
            &self.jwk,
            &self.secret,
            &self.secret_file,
        ) {
            (Some(_), ..) => "pem",
            (_, Some(_), ..) => "pem_file",
            (_, _, Some(_), ..) => "jwk",
            (_, _, _, Some(_), _) => "secret",
            (.., Some(_)) => "secret_file",
            _ => "none",
        };
        f.debug_struct("KeyConfig")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("source", &source)
            .field("pem_file", &self.pem_file)
            .field("secret_file", &self.secret_file)
            .field("material", &"[redacted]")
            .field("signing", &self.signing)
            .finish()
    }
}

fn default_idle() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_absolute() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_grace() -> Duration {
    DEFAULT_REFRESH_GRACE
}

/// Refresh-token families.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// A refresh token unused for this long expires. Default `7d`.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle: Duration,
    /// A family (one login) ends this long after login whatever its use. Default `30d`.
    #[serde(default = "default_absolute", with = "humantime_serde")]
    pub absolute: Duration,
    /// Grace window for a lost refresh response. Default `30s`; at most `60s`; `0s` turns it off.
    ///
    /// The rule: a refresh token spent less than `grace` ago may be exchanged again **only
    /// while it is the immediate predecessor of the family's unused head**. Such a retry gets a
    /// *new* head; the successor it replaces (which the client never received) stops working at
    /// once, so a family always has exactly one live head. Everything else is reuse and revokes
    /// the family and its access tokens, as with a zero window: a spent token presented after the
    /// window (counted from its first use), a token whose successor has itself been used, any
    /// older token. The window is never extended by a retry.
    ///
    /// Why the default: a client whose `/refresh` response is lost (a dropped connection, a
    /// mobile network switch, a timed-out proxy) retries with the token it still holds; with no
    /// window that retry is indistinguishable from a replay and logs the user out everywhere the
    /// family reached. Common HTTP clients time out after 10 to 30 seconds (OkHttp's read timeout
    /// is 10 s), so 30 s (SuperTokens' default) covers a timeout and one retry. What it costs: a
    /// thief who replays a stolen refresh token within 30 s of its legitimate use, before the
    /// client's next refresh, takes the family over instead of revoking it (the client's own head
    /// is then refused). Set `0s` to make every second use of a refresh token revoke its family.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            idle: default_idle(),
            absolute: default_absolute(),
            grace: default_grace(),
        }
    }
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_max_stale() -> Duration {
    Duration::from_secs(3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A remote JWKS to take verification keys from (verifier-only mode, cargo feature
/// `remote-jwks`). It parses under every `jwt` build, so a config file reads the same.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksConfig {
    /// The JWKS URL. Required; `https`, or `http` to a loopback address only.
    pub url: String,
    /// How often the set is refetched. Default `5m`; at least `10s`.
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Least time between two refetches triggered by unknown `kid`s. Default `30s`; at least
    /// `10s`.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub refetch_cooldown: Duration,
    /// How long after the last successful fetch cached keys are still used; after that every
    /// verification fails with 503 until a fetch succeeds. Default `1h`; at least
    /// `refresh_interval`.
    #[serde(default = "default_max_stale", with = "humantime_serde")]
    pub max_stale: Duration,
    /// Timeout of one fetch. Default `5s`; 100 ms to 60 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl RemoteJwksConfig {
    /// A remote JWKS at `url` with default timings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh_interval: default_refresh_interval(),
            refetch_cooldown: default_cooldown(),
            max_stale: default_max_stale(),
            timeout: default_timeout(),
        }
    }

    #[cfg(feature = "remote-jwks")]
    pub(crate) fn validate(&self) -> Result<reqwest::Url> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| Error::config("jwt.jwks.url", "not a valid URL").with_source(e))?;
        let loopback = url.host_str().is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(Error::config(
                    "jwt.jwks.url",
                    "must be https (plain http only to a loopback address)",
                ));
            }
        }
        if self.refresh_interval < MIN_REFETCH_COOLDOWN {
            return Err(Error::config(
                "jwt.jwks.refresh_interval",
                "must be at least 10s",
            ));
        }
        if self.refetch_cooldown < MIN_REFETCH_COOLDOWN {
            return Err(Error::config(
                "jwt.jwks.refetch_cooldown",
                "must be at least 10s",
            ));
        }
        if self.max_stale < self.refresh_interval {
            return Err(Error::config(
                "jwt.jwks.max_stale",
                "must be at least jwt.jwks.refresh_interval",
            ));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(60) {
            return Err(Error::config(
                "jwt.jwks.timeout",
                "must be between 100ms and 60s",
            ));
        }
        Ok(url)
    }
}
