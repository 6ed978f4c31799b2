//! [`JwtStrategyBuilder`]: the stores, events and clock of a [`JwtStrategy`], assembled with its
//! checked configuration and its keys.

use std::{fmt, sync::Arc, time::Duration};

use tokio::sync::oneshot;

#[cfg(feature = "remote-jwks")]
use super::remote::RemoteJwks;
use super::strategy::{Inner, JwtStrategy, KeySource, RefreshSettings};
use crate::{
    clock::{Clock, SystemClock},
    error::{Error, Result},
    events::Events,
    jwt::{
        JwtConfig, KeyRing,
        cache::TokenCache,
        claims::Validation,
        key_load::{ConfiguredKeys, probe_crypto_provider},
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
        c.check()?;
        probe_crypto_provider()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "jwt",
                "the JWT strategy must be built inside a tokio runtime",
            )
        })?;

        let mut shutdown = Vec::new();
        let keys = match ConfiguredKeys::load(c, self.ring)? {
            ConfiguredKeys::Local(ring) => {
                if ring.signer().is_none() {
                    tracing::info!(
                        "keycard: the JWT key ring has no signer; login and refresh will fail"
                    );
                }
                KeySource::Local(ring)
            }
            #[cfg(feature = "remote-jwks")]
            ConfiguredKeys::Remote(remote) => {
                let (tx, rx) = oneshot::channel();
                shutdown.push(tx);
                KeySource::Remote(RemoteJwks::start(
                    &remote,
                    self.clock.clone(),
                    &runtime,
                    rx,
                )?)
            }
        };
        let (refresh_store, revocations) =
            timed_stores(self.refresh_store, self.revocations, self.store_timeout)?;

        let (mirror, stop_mirror) = start_mirror(c, &revocations, &self.clock, &runtime);
        shutdown.push(stop_mirror);

        Ok(JwtStrategy {
            inner: Arc::new(Inner {
                validation: Validation {
                    issuer: c.issuer.as_str().into(),
                    audience: c.audience.as_str().into(),
                    leeway_ms: ms(c.leeway),
                    max_ttl_secs: i64::try_from(c.max_lifetime().as_secs()).unwrap_or(i64::MAX),
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

/// The revocation mirror, kept current from `revocations` by a task on `runtime` until the
/// returned sender is dropped.
fn start_mirror(
    config: &JwtConfig,
    revocations: &Arc<dyn RevocationStore>,
    clock: &Arc<dyn Clock>,
    runtime: &tokio::runtime::Handle,
) -> (Arc<Mirror>, oneshot::Sender<()>) {
    // An epoch older than this cannot void a token that still verifies.
    let horizon = config.max_lifetime() + config.leeway * 2 + Duration::from_secs(60);
    let mirror = Arc::new(Mirror::new(horizon));
    let (tx, rx) = oneshot::channel();
    runtime.spawn(
        revocation::Task {
            mirror: Arc::downgrade(&mirror),
            store: revocations.clone(),
            clock: clock.clone(),
            poll_interval: config.revocation_poll_interval,
            shutdown: rx,
        }
        .run(),
    );
    (mirror, tx)
}

/// The stores, each defaulting to one shared [`MemoryStore`], behind a timeout (fail closed).
fn timed_stores(
    refresh_store: Option<Arc<dyn RefreshStore>>,
    revocations: Option<Arc<dyn RevocationStore>>,
    timeout: Duration,
) -> Result<(Arc<dyn RefreshStore>, Arc<dyn RevocationStore>)> {
    let (refresh_store, revocations) = match (refresh_store, revocations) {
        (Some(r), Some(v)) => (r, v),
        (r, v) => {
            let memory = Arc::new(MemoryStore::new());
            (
                r.unwrap_or_else(|| memory.clone()),
                v.unwrap_or_else(|| memory.clone()),
            )
        }
    };
    if timeout.is_zero() {
        return Err(Error::config("session.store_timeout", "must be positive"));
    }
    Ok((
        Arc::new(Timed::new(refresh_store, timeout)),
        Arc::new(Timed::new(revocations, timeout)),
    ))
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

#[cfg(all(test, not(feature = "remote-jwks")))]
mod tests {
    use super::*;
    use crate::{ErrorKind, jwt::RemoteJwksConfig};

    /// Without the feature, `jwt.jwks` is refused at build time (never silently ignored).
    #[tokio::test]
    async fn remote_jwks_needs_its_feature() {
        let mut config = JwtConfig::new("https://auth.example", "api");
        config.jwks = Some(RemoteJwksConfig::new("https://auth.example/jwks.json"));
        let e = JwtStrategy::builder(config).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert_eq!(
            e.message(),
            "invalid config `jwt.jwks`: needs the cargo feature remote-jwks"
        );
    }
}
