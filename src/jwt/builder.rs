//! [`JwtStrategyBuilder`]: the stores, events and clock of a [`JwtStrategy`], assembled with its
//! checked configuration and its keys.

use std::{fmt, sync::Arc, time::Duration};

use tokio::sync::oneshot;

use super::strategy::{Inner, JwtStrategy, KeySource, RefreshSettings};
use crate::{
    clock::{Clock, SystemClock},
    error::{Error, Result},
    events::Events,
    jwt::{
        JwtConfig, KeyRing,
        cache::TokenCache,
        claims::Validation,
        config::{MAX_ACCESS_TTL, MAX_CACHE_SIZE, MAX_LEEWAY, MAX_REFRESH_GRACE},
        keys::JwtKey,
        remote::{RemoteJwks, RemoteSettings, refresher},
    },
    revocation::{self, Mirror},
    store::{MemoryStore, RefreshStore, RevocationStore, timeout::Timed},
};

/// Builds a [`JwtStrategy`]. Stores default to one shared in-process [`MemoryStore`], events to
/// `tracing` only, and the clock to the system clock.
#[must_use]
pub struct JwtStrategyBuilder {
    config: JwtConfig,
    ring: Option<Arc<KeyRing>>,
    refresh_store: Option<Arc<dyn RefreshStore>>,
    revocations: Option<Arc<dyn RevocationStore>>,
    events: Events,
    clock: Arc<dyn Clock>,
    store_timeout: Duration,
}

impl fmt::Debug for JwtStrategyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtStrategyBuilder")
            .field("config", &self.config)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

impl JwtStrategyBuilder {
    /// Uses this key ring instead of `config.keys` (which must then be empty). Keep a clone of the
    /// `Arc` to rotate keys at run time.
    pub fn key_ring(mut self, ring: Arc<KeyRing>) -> Self {
        self.ring = Some(ring);
        self
    }

    /// Where refresh families live.
    pub fn refresh_store(mut self, store: Arc<dyn RefreshStore>) -> Self {
        self.refresh_store = Some(store);
        self
    }

    /// Where access-token revocations live (shared by every instance).
    pub fn revocation_store(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocations = Some(store);
        self
    }

    /// Where security events go.
    pub fn events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The clock (tests move a [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Store calls slower than this fail with 503 (fail closed). Default 2 seconds.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Validates the configuration, loads and self-tests the keys, and starts the background
    /// tasks (revocation mirror; remote JWKS refresh). Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the offending field (`jwt.issuer`, `jwt.keys[0].pem`, ...).
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn build(self) -> Result<JwtStrategy> {
        let c = &self.config;
        if c.issuer.trim().is_empty() {
            return Err(Error::config("jwt.issuer", "required"));
        }
        if c.audience.trim().is_empty() {
            return Err(Error::config("jwt.audience", "required"));
        }
        if c.access_ttl < Duration::from_secs(1) || c.access_ttl > MAX_ACCESS_TTL {
            return Err(Error::config(
                "jwt.access_ttl",
                "must be between 1s and 60m",
            ));
        }
        if c.access_ttl.subsec_nanos() != 0 {
            return Err(Error::config("jwt.access_ttl", "must be whole seconds"));
        }
        let max_lifetime = c.max_token_lifetime.unwrap_or(c.access_ttl);
        if max_lifetime < c.access_ttl || max_lifetime > MAX_ACCESS_TTL {
            return Err(Error::config(
                "jwt.max_token_lifetime",
                "must be between jwt.access_ttl and 60m",
            ));
        }
        if c.leeway > MAX_LEEWAY {
            return Err(Error::config("jwt.leeway", "must be at most 300s"));
        }
        if c.refresh.idle.is_zero() {
            return Err(Error::config("jwt.refresh.idle", "must be positive"));
        }
        if c.refresh.absolute.is_zero() {
            return Err(Error::config("jwt.refresh.absolute", "must be positive"));
        }
        if c.refresh.grace > MAX_REFRESH_GRACE {
            return Err(Error::config("jwt.refresh.grace", "must be at most 60s"));
        }
        if c.cache_size > MAX_CACHE_SIZE {
            return Err(Error::config("jwt.cache_size", "must be at most 1000000"));
        }
        if c.revocation_poll_interval < Duration::from_millis(10) {
            return Err(Error::config(
                "jwt.revocation_poll_interval",
                "must be at least 10ms",
            ));
        }
        // The crypto provider must work before the first request: sign and verify a probe with
        // a throwaway key (configured keys are self-tested as they load).
        JwtKey::generate("keycard-crypto-probe", crate::jwt::Algorithm::EdDSA).map_err(|e| {
            Error::config(
                "jwt",
                "the crypto provider (aws-lc-rs) failed its self-test",
            )
            .with_source(e)
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "jwt",
                "the JWT strategy must be built inside a tokio runtime",
            )
        })?;

        let mut shutdown = Vec::new();
        let keys = match (&c.jwks, self.ring, c.keys.is_empty()) {
            (Some(_), Some(_), _) | (Some(_), None, false) => {
                return Err(Error::config(
                    "jwt.jwks",
                    "verifier-only mode (jwks) excludes local keys",
                ));
            }
            (Some(remote), None, true) => {
                let url = remote.validate()?;
                let jwks = Arc::new(RemoteJwks::new(
                    RemoteSettings {
                        url,
                        refresh_interval: remote.refresh_interval,
                        refetch_cooldown: remote.refetch_cooldown,
                        max_stale: remote.max_stale,
                        timeout: remote.timeout,
                    },
                    self.clock.clone(),
                )?);
                let (tx, rx) = oneshot::channel();
                shutdown.push(tx);
                runtime.spawn(refresher(Arc::downgrade(&jwks), rx));
                KeySource::Remote(jwks)
            }
            (None, Some(_), false) => {
                return Err(Error::config(
                    "jwt.keys",
                    "keys come from the key ring given to the builder",
                ));
            }
            (None, Some(ring), true) => KeySource::Local(ring),
            (None, None, true) => {
                if !c.ephemeral_key {
                    return Err(Error::config(
                        "jwt.keys",
                        "no keys: configure jwt.keys, jwt.jwks, or set jwt.ephemeral_key = true",
                    ));
                }
                let ring = KeyRing::ephemeral()?;
                tracing::warn!(
                    kid = ?ring.kids(),
                    "keycard: generated an ephemeral Ed25519 signing key; tokens will not survive a restart"
                );
                KeySource::Local(Arc::new(ring))
            }
            (None, None, false) => {
                let mut loaded = Vec::with_capacity(c.keys.len());
                let mut signer = None;
                for (i, k) in c.keys.iter().enumerate() {
                    let key = k.load(i)?;
                    if loaded.iter().any(|o: &JwtKey| o.kid() == key.kid()) {
                        return Err(Error::config(
                            &format!("jwt.keys[{i}].kid"),
                            "duplicate kid",
                        ));
                    }
                    if k.signing {
                        if signer.is_some() {
                            return Err(Error::config(
                                &format!("jwt.keys[{i}].signing"),
                                "only one key may sign",
                            ));
                        }
                        signer = Some(key.kid().to_owned());
                    }
                    loaded.push(key);
                }
                let Some(signer) = signer else {
                    return Err(Error::config(
                        "jwt.keys",
                        "exactly one key needs signing = true",
                    ));
                };
                let ring = KeyRing::new(loaded, Some(&signer))
                    .map_err(|e| Error::config("jwt.keys", e.message()))?;
                KeySource::Local(Arc::new(ring))
            }
        };
        if let KeySource::Local(ring) = &keys
            && ring.signer().is_none()
        {
            tracing::info!("keycard: the JWT key ring has no signer; login and refresh will fail");
        }

        let (refresh_store, revocations) = match (self.refresh_store, self.revocations) {
            (Some(r), Some(v)) => (r, v),
            (r, v) => {
                let memory = Arc::new(MemoryStore::new());
                (
                    r.unwrap_or_else(|| memory.clone()),
                    v.unwrap_or_else(|| memory.clone()),
                )
            }
        };
        if self.store_timeout.is_zero() {
            return Err(Error::config("session.store_timeout", "must be positive"));
        }
        let refresh_store: Arc<dyn RefreshStore> =
            Arc::new(Timed::new(refresh_store, self.store_timeout));
        let revocations: Arc<dyn RevocationStore> =
            Arc::new(Timed::new(revocations, self.store_timeout));

        let leeway_ms = ms(c.leeway);
        let max_ttl_secs = i64::try_from(max_lifetime.as_secs()).unwrap_or(i64::MAX);
        // An epoch older than this cannot void a token that still verifies.
        let horizon = max_lifetime + c.leeway * 2 + Duration::from_secs(60);
        let mirror = Arc::new(Mirror::new(horizon));
        let (tx, rx) = oneshot::channel();
        shutdown.push(tx);
        runtime.spawn(
            revocation::Task {
                mirror: Arc::downgrade(&mirror),
                store: revocations.clone(),
                clock: self.clock.clone(),
                poll_interval: c.revocation_poll_interval,
                shutdown: rx,
            }
            .run(),
        );

        Ok(JwtStrategy {
            inner: Arc::new(Inner {
                validation: Validation {
                    issuer: c.issuer.as_str().into(),
                    audience: c.audience.as_str().into(),
                    leeway_ms,
                    max_ttl_secs,
                },
                access_ttl_secs: i64::try_from(c.access_ttl.as_secs()).unwrap_or(i64::MAX),
                refresh: RefreshSettings {
                    idle: c.refresh.idle,
                    absolute: c.refresh.absolute,
                    grace: c.refresh.grace,
                },
                keys,
                cache: TokenCache::new(c.cache_size),
                mirror,
                refresh_store,
                revocations,
                events: self.events,
                clock: self.clock,
                _shutdown: shutdown,
            }),
        })
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl JwtStrategy {
    /// Builds the strategy from config (see [`JwtStrategyBuilder::build`]). Await
    /// [`JwtStrategy::ready`] before serving.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the offending field.
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn from_config(
        config: &JwtConfig,
        refresh_store: Arc<dyn RefreshStore>,
        revocations: Arc<dyn RevocationStore>,
        events: Events,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        Self::builder(config.clone())
            .refresh_store(refresh_store)
            .revocation_store(revocations)
            .events(events)
            .clock(clock)
            .build()
    }

    /// A builder starting from `config`.
    pub fn builder(config: JwtConfig) -> JwtStrategyBuilder {
        JwtStrategyBuilder {
            config,
            ring: None,
            refresh_store: None,
            revocations: None,
            events: Events::default(),
            clock: Arc::new(SystemClock),
            store_timeout: Duration::from_secs(2),
        }
    }
}
