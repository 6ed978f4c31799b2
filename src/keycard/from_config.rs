//! [`Keycard::from_config`]: the strategy, its stores and the background tasks a
//! [`KeycardConfig`] names, assembled.

use std::{future::Future, pin::Pin, sync::Arc};

use super::{Keycard, spawn_every};
use crate::{
    clock::{Clock, SystemClock},
    config::{CookieConfig, KeycardConfig, Runtime, StrategyKind},
    error::{Error, Result},
    events::Events,
    store::{RevocationStore, SessionStore, ThrottleStore},
    strategy::{ServerSessions, ServerSettings},
    throttle::LoginThrottle,
    transport::TransportSettings,
};

impl Keycard {
    /// Builds a keycard from config: connects the store (running migrations unless disabled),
    /// builds the strategy and starts the background sweep.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the field when the config is
    /// invalid or names a backend whose cargo feature is off;
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) when the store cannot
    /// be reached at start.
    pub async fn from_config(config: &KeycardConfig) -> Result<Self> {
        Self::from_config_with(config, Runtime::default()).await
    }

    /// [`Keycard::from_config`] with an event hook and a clock.
    pub async fn from_config_with(config: &KeycardConfig, runtime: Runtime) -> Result<Self> {
        // Boxed as a `Send` future here, where its lifetimes are concrete: the store drivers'
        // connection futures borrow in closures, which rustc otherwise cannot prove `Send` for
        // every lifetime, and that refused `tokio::spawn(async move { from_config(&c).await })`.
        let build: Pin<Box<dyn Future<Output = Result<Self>> + Send + '_>> =
            Box::pin(Self::assemble(config, runtime));
        build.await
    }

    async fn assemble(config: &KeycardConfig, runtime: Runtime) -> Result<Self> {
        let clock = runtime.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let events = Events::new(runtime.hook.clone());
        let session_settings = config.session.settings()?;
        let transport = transport_settings(config)?;
        let mut builder = Keycard::builder()
            .transport(transport)
            .csrf(config.csrf.clone())
            .data_limits(config.data)
            .clock(clock.clone());
        if let Some(hook) = runtime.hook {
            builder = builder.event_hook(hook);
        }
        let policy = runtime.client_policy.or_else(|| {
            config
                .session
                .on_ip_change
                .map(crate::policy::ClientPolicy::new)
        });
        if let Some(policy) = policy {
            builder = builder.client_policy(policy);
        }
        let sweep_every = config.session.sweep_interval;
        config.throttle.validate()?;
        let throttle_store: Arc<dyn ThrottleStore>;
        match config.strategy {
            StrategyKind::Database | StrategyKind::Redis => {
                let (store, revocations, throttles) = if config.strategy == StrategyKind::Database {
                    sql_session_store(config).await?
                } else {
                    redis_session_store(config).await?
                };
                throttle_store = throttles;
                let mut strategy = ServerSessions::new(store.clone(), session_settings)
                    .with_clock(clock.clone())
                    .with_events(events.clone());
                if let Some(cache) = &config.session.cache {
                    if cache.poll_interval.is_zero() {
                        return Err(Error::config(
                            "session.cache.poll_interval",
                            "must be positive",
                        ));
                    }
                    let settings = crate::strategy::cache::CacheSettings {
                        capacity: cache.capacity,
                        poll_interval: cache.poll_interval,
                    };
                    strategy = strategy.with_cache(settings, revocations);
                    strategy.ready().await?;
                }
                let sweep_clock = clock.clone();
                builder = builder
                    .strategy(strategy)
                    .task(spawn_every(sweep_every, move || {
                        let store = store.clone();
                        let clock = sweep_clock.clone();
                        async move {
                            if let Err(e) = store.sweep(clock.now()).await {
                                tracing::warn!(error = ?e, "keycard session sweep failed");
                            }
                        }
                    }));
            }
            StrategyKind::Jwt | StrategyKind::Hybrid => {
                let (b, throttles) = token_strategy(
                    config,
                    builder,
                    events.clone(),
                    clock.clone(),
                    session_settings,
                )
                .await?;
                builder = b;
                throttle_store = throttles;
            }
        }
        let throttle = LoginThrottle::new(throttle_store.clone(), config.throttle.clone())?
            .with_clock(clock.clone())
            .with_events(events)
            .with_timeout(config.session.store_timeout);
        builder = builder
            .throttle(throttle)
            .task(spawn_every(sweep_every, move || {
                let store = throttle_store.clone();
                let now = clock.now();
                async move {
                    if let Err(e) = store.sweep(now).await {
                        tracing::warn!(error = ?e, "keycard throttle sweep failed");
                    }
                }
            }));
        builder.configured(config.strategy).build()
    }
}

pub(crate) fn transport_settings(config: &KeycardConfig) -> Result<TransportSettings> {
    let tokens = config.strategy.uses_tokens();
    let c = &config.cookie;
    // With a domain, the default name becomes `__Secure-keycard`; another `__Host-` name with a
    // domain is refused when the settings are validated.
    let cookie_name = match &c.domain {
        Some(_) if c.name == CookieConfig::default().name => "__Secure-keycard".to_owned(),
        _ => c.name.clone(),
    };
    let (read_cookie, read_bearer) = match (tokens, config.transport) {
        (true, None) => (c.access_token_cookie, true),
        (true, Some(_)) => {
            return Err(Error::config(
                "transport",
                "only for database and redis; jwt and hybrid carry Bearer tokens (and the cookie with cookie.access_token_cookie)",
            ));
        }
        (false, transport) => transport.unwrap_or_default().reads(),
    };
    Ok(TransportSettings {
        cookie_name,
        cookie_domain: c.domain.clone(),
        read_cookie,
        read_bearer,
        refresh_cookie_name: (tokens && c.refresh_cookie).then(|| c.refresh_name.clone()),
        refresh_cookie_path: c.refresh_path.clone(),
        secure: crate::transport::CookieSecurity(c.secure),
        max_authorization_bytes: config.limits.max_authorization_bytes,
        max_cookie_bytes: config.limits.max_cookie_bytes,
        max_cookies: config.limits.max_cookies,
    })
}

#[cfg(feature = "_sql")]
pub(crate) async fn sql_store(config: &KeycardConfig) -> Result<crate::store::sql::SqlStore> {
    let db = config
        .database
        .as_ref()
        .ok_or_else(|| Error::config("database.url", "required for this strategy"))?;
    let options = crate::store::sql::SqlOptions {
        max_connections: db.max_connections,
        run_migrations: db.migrate,
        ..Default::default()
    };
    crate::store::sql::SqlStore::connect(&db.url, options).await
}

/// A session store, the revocation store that publishes its cache invalidations, and the
/// store of the login throttle's counters (all one backend).
type ServerStores = (
    Arc<dyn SessionStore>,
    Arc<dyn RevocationStore>,
    Arc<dyn ThrottleStore>,
);

async fn sql_session_store(config: &KeycardConfig) -> Result<ServerStores> {
    #[cfg(feature = "_sql")]
    {
        let s = Arc::new(sql_store(config).await?);
        Ok((s.clone(), s.clone(), s))
    }
    #[cfg(not(feature = "_sql"))]
    {
        let _ = config;
        Err(Error::config(
            "strategy",
            "`database` needs one of the cargo features sqlite, postgres or mysql",
        ))
    }
}

#[cfg(feature = "redis")]
pub(crate) async fn redis_store(config: &KeycardConfig) -> Result<crate::store::redis::RedisStore> {
    use crate::store::redis::{RedisOptions, RedisStore};
    let r = config
        .redis
        .as_ref()
        .ok_or_else(|| Error::config("redis.url", "required for this strategy"))?;
    let mut options = RedisOptions {
        // One deadline for a store call: the strategy relies on the store's own (see
        // `SessionStore::call_timeout`).
        timeout: config.session.store_timeout,
        ..RedisOptions::default()
    };
    if let Some(prefix) = &r.key_prefix {
        options.key_prefix = prefix.clone();
    }
    match (&r.url, r.cluster_urls.is_empty()) {
        (Some(url), true) => RedisStore::connect_with(url, options).await,
        (None, false) => RedisStore::connect_cluster_with(&r.cluster_urls, options).await,
        (Some(_), false) => Err(Error::config(
            "redis.cluster_urls",
            "set either redis.url or redis.cluster_urls, not both",
        )),
        (None, true) => Err(Error::config("redis.url", "required for this strategy")),
    }
}

async fn redis_session_store(config: &KeycardConfig) -> Result<ServerStores> {
    #[cfg(feature = "redis")]
    {
        let s = Arc::new(redis_store(config).await?);
        Ok((s.clone(), s.clone(), s))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = config;
        Err(Error::config(
            "strategy",
            "`redis` needs the cargo feature redis",
        ))
    }
}

#[cfg(feature = "jwt")]
async fn token_strategy(
    config: &KeycardConfig,
    builder: crate::KeycardBuilder,
    events: Events,
    clock: Arc<dyn Clock>,
    _session: ServerSettings,
) -> Result<(crate::KeycardBuilder, Arc<dyn ThrottleStore>)> {
    use crate::store::{MemoryStore, RefreshStore};
    let jwt = config
        .jwt
        .as_ref()
        .ok_or_else(|| Error::config("jwt", "the jwt section is required for this strategy"))?;
    if config.session.max_sessions.is_some() {
        // Refused rather than silently ignored: refresh families are not limited (yet).
        return Err(Error::config(
            "session.max_sessions",
            "applies to the database and redis strategies only",
        ));
    }
    type TokenStores = (
        Arc<dyn RefreshStore>,
        Arc<dyn RevocationStore>,
        Arc<dyn ThrottleStore>,
    );
    let (refresh, revocation, throttles): TokenStores = {
        #[cfg(feature = "redis")]
        let redis = config.redis.is_some();
        #[cfg(not(feature = "redis"))]
        let redis = false;
        if redis {
            #[cfg(feature = "redis")]
            {
                let s = Arc::new(redis_store(config).await?);
                (s.clone(), s.clone(), s)
            }
            #[cfg(not(feature = "redis"))]
            unreachable!("redis is false without the feature")
        } else if config.database.is_some() {
            #[cfg(feature = "_sql")]
            {
                let s = Arc::new(sql_store(config).await?);
                (s.clone(), s.clone(), s)
            }
            #[cfg(not(feature = "_sql"))]
            return Err(Error::config(
                "database.url",
                "needs one of the cargo features sqlite, postgres or mysql",
            ));
        } else {
            tracing::warn!(
                "keycard: no database or redis configured; refresh families live in memory"
            );
            let s = Arc::new(MemoryStore::new());
            (s.clone(), s.clone(), s)
        }
    };
    let strategy = crate::jwt::JwtStrategy::builder(jwt.clone())
        .refresh_store(refresh)
        .revocation_store(revocation)
        .events(events)
        .clock(clock)
        .store_timeout(config.session.store_timeout)
        .build()?;
    strategy.ready().await?;
    Ok((builder.jwt(strategy), throttles))
}

#[cfg(not(feature = "jwt"))]
async fn token_strategy(
    _config: &KeycardConfig,
    _builder: crate::KeycardBuilder,
    _events: Events,
    _clock: Arc<dyn Clock>,
    _session: ServerSettings,
) -> Result<(crate::KeycardBuilder, Arc<dyn ThrottleStore>)> {
    Err(Error::config(
        "strategy",
        "`jwt` and `hybrid` need the cargo feature jwt",
    ))
}
