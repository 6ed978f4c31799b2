//! [`Keycard`]: the configured authentication system, and its builder.

use std::{fmt, sync::Arc, time::Duration};

pub(crate) mod from_config;

use crate::{
    clock::{Clock, SystemClock},
    config::StrategyKind,
    context::Shared,
    credential::CredentialSource,
    csrf::CsrfConfig,
    error::{Challenge, Error, Result},
    events::{EventHook, Events},
    layer::SessionLayer,
    strategy::SessionStrategy,
    throttle::LoginThrottle,
    transport::TransportSettings,
};

/// A configured keycard: the strategy plus transport, CSRF and event settings.
///
/// Build it from config with [`Keycard::from_config`](crate::Keycard::from_config) or in code
/// with [`Keycard::builder`], then install [`Keycard::layer`] on a router. Cheap to clone.
#[derive(Clone)]
pub struct Keycard {
    shared: Arc<Shared>,
    #[cfg(feature = "jwt")]
    jwt: Option<crate::jwt::JwtStrategy>,
    configured: Option<StrategyKind>,
    _tasks: Arc<Tasks>,
}

/// Background tasks (sweeps, feeds) aborted when the last [`Keycard`] clone is dropped.
#[derive(Default)]
pub(crate) struct Tasks(pub(crate) Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl fmt::Debug for Keycard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keycard")
            .field("strategy", &self.shared.strategy)
            .field("transport", &self.shared.transport)
            .field("csrf", &self.shared.csrf)
            .finish()
    }
}

impl Keycard {
    /// Starts a builder.
    pub fn builder() -> KeycardBuilder {
        KeycardBuilder::default()
    }

    /// The tower layer to add to a router.
    pub fn layer(&self) -> SessionLayer {
        SessionLayer::new(self.shared.clone())
    }

    /// The strategy.
    pub fn strategy(&self) -> &Arc<dyn SessionStrategy> {
        &self.shared.strategy
    }

    /// The strategy named in config, when this keycard was built by
    /// [`Keycard::from_config`]; `None` when built in code.
    pub fn configured_strategy(&self) -> Option<StrategyKind> {
        self.configured
    }

    /// The login throttle: the one from config (counters in the configured store), the one given
    /// to [`KeycardBuilder::throttle`], or by default one with default limits and counters in
    /// process memory. Handlers reach it with the [`Throttle`](crate::throttle::Throttle)
    /// extractor.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.shared.throttle
    }

    /// The transport settings in force.
    pub fn transport(&self) -> &TransportSettings {
        &self.shared.transport
    }

    /// The JWT strategy, for the `jwt` and `hybrid` strategies: its JWKS handler
    /// ([`JwtStrategy::jwks_router`](crate::jwt::JwtStrategy::jwks_router)) and key ring.
    #[cfg(feature = "jwt")]
    pub fn jwt(&self) -> Option<&crate::jwt::JwtStrategy> {
        self.jwt.as_ref()
    }
}

/// Builds a [`Keycard`] in code; the equivalent of [`KeycardConfig`](crate::KeycardConfig).
#[derive(Default)]
pub struct KeycardBuilder {
    strategy: Option<Arc<dyn SessionStrategy>>,
    #[cfg(feature = "jwt")]
    jwt: Option<crate::jwt::JwtStrategy>,
    transport: Option<TransportSettings>,
    csrf: CsrfConfig,
    hook: Option<EventHook>,
    clock: Option<Arc<dyn Clock>>,
    client_policy: Option<crate::policy::ClientPolicy>,
    data_limits: crate::store::DataLimits,
    throttle: Option<LoginThrottle>,
    configured: Option<StrategyKind>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for KeycardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeycardBuilder")
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl KeycardBuilder {
    /// The strategy to use (required).
    pub fn strategy(mut self, strategy: impl SessionStrategy) -> Self {
        self.strategy = Some(Arc::new(strategy));
        self
    }

    /// A JWT (or hybrid) strategy, keeping it reachable through [`Keycard::jwt`] for the JWKS
    /// handler and key rotation.
    #[cfg(feature = "jwt")]
    pub fn jwt(mut self, strategy: crate::jwt::JwtStrategy) -> Self {
        self.strategy = Some(Arc::new(strategy.clone()));
        self.jwt = Some(strategy);
        self
    }

    /// The strategy, already shared.
    pub fn shared_strategy(mut self, strategy: Arc<dyn SessionStrategy>) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Transport settings. Default: the session cookie `__Host-keycard` for server sessions;
    /// Bearer (and no cookie) for token strategies.
    pub fn transport(mut self, transport: TransportSettings) -> Self {
        self.transport = Some(transport);
        self
    }

    /// CSRF settings. Default: on, no trusted origins.
    pub fn csrf(mut self, csrf: CsrfConfig) -> Self {
        self.csrf = csrf;
        self
    }

    /// The hook that receives layer-level security events (CSRF refusals). Strategies take their
    /// own [`Events`] at construction; [`Keycard::from_config`](crate::Keycard::from_config)
    /// wires one hook into both.
    pub fn event_hook(mut self, hook: EventHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The clock used for request-time checks such as [`HighRisk`](crate::HighRisk)'s
    /// authentication age. Default: the system clock. Give strategies the same clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Limits on [`SessionData`](crate::SessionData). Default:
    /// [`DataLimits::default`](crate::store::DataLimits).
    pub fn data_limits(mut self, limits: crate::store::DataLimits) -> Self {
        self.data_limits = limits;
        self
    }

    /// What to do when a session is used from another client address. Default: nothing.
    pub fn client_policy(mut self, policy: crate::policy::ClientPolicy) -> Self {
        self.client_policy = Some(policy);
        self
    }

    /// The login throttle. Default: default limits, counters in process memory (exact on one
    /// instance only; give several instances one built on a shared store).
    pub fn throttle(mut self, throttle: LoginThrottle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    pub(crate) fn configured(mut self, kind: StrategyKind) -> Self {
        self.configured = Some(kind);
        self
    }

    pub(crate) fn task(mut self, task: tokio::task::JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }

    /// Builds the keycard.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when no strategy was given or the transport settings are unsafe
    /// (a `__Host-` cookie without `Secure`, an empty cookie name, a cookie domain with insecure
    /// cookies, a name other than `__Secure-…` or an invalid domain).
    pub fn build(self) -> Result<Keycard> {
        let strategy = self
            .strategy
            .ok_or_else(|| Error::config("strategy", "no strategy configured"))?;
        let tokens = strategy.credential_source() == CredentialSource::Bearer;
        let transport = self.transport.unwrap_or_else(|| TransportSettings {
            read_cookie: !tokens,
            read_bearer: tokens,
            ..TransportSettings::default()
        });
        validate_transport(&transport)?;
        self.csrf.validate()?;
        let challenge = if transport.read_bearer {
            Challenge::Bearer
        } else {
            Challenge::Cookie
        };
        let clock: Arc<dyn Clock> = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let throttle = self.throttle.unwrap_or_else(|| {
            LoginThrottle::in_memory(clock.clone(), Events::new(self.hook.clone()))
        });
        let name = self
            .configured
            .map_or_else(|| strategy.name(), StrategyKind::as_str);
        Ok(Keycard {
            shared: Arc::new(Shared {
                metrics: crate::metrics::StrategyMetrics::new(name),
                strategy,
                transport,
                csrf: self.csrf,
                events: Events::new(self.hook),
                challenge,
                clock,
                client_policy: self.client_policy,
                data_limits: self.data_limits,
                throttle,
            }),
            #[cfg(feature = "jwt")]
            jwt: self.jwt,
            configured: self.configured,
            _tasks: Arc::new(Tasks(self.tasks)),
        })
    }
}

fn validate_transport(t: &TransportSettings) -> Result<()> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    if !valid_name(&t.cookie_name) {
        return Err(Error::config("cookie.name", "not a valid cookie name"));
    }
    if (t.cookie_name.starts_with("__Host-") || t.cookie_name.starts_with("__Secure-"))
        && !t.secure.is_on()
    {
        return Err(Error::config(
            "cookie.secure",
            "a __Host- or __Secure- cookie requires secure = true",
        ));
    }
    if let Some(domain) = &t.cookie_domain {
        crate::transport::check_domain(domain).map_err(|e| Error::config("cookie.domain", e))?;
        if !t.secure.is_on() {
            return Err(Error::config(
                "cookie.domain",
                "a cookie shared across subdomains requires secure = true",
            ));
        }
        if !t.cookie_name.starts_with("__Secure-") {
            return Err(Error::config(
                "cookie.name",
                "a cookie with a domain must have the __Secure- prefix (a __Host- cookie cannot carry Domain)",
            ));
        }
    }
    if let Some(name) = &t.refresh_cookie_name {
        if !valid_name(name) {
            return Err(Error::config(
                "cookie.refresh_name",
                "not a valid cookie name",
            ));
        }
        if name.starts_with("__Host-") && t.refresh_cookie_path != "/" {
            return Err(Error::config(
                "cookie.refresh_name",
                "a __Host- cookie must have Path=/; use __Secure- for a path-scoped refresh cookie",
            ));
        }
    }
    if !t.read_cookie && !t.read_bearer {
        return Err(Error::config("cookie", "no credential transport enabled"));
    }
    if t.max_cookie_bytes == 0 || t.max_authorization_bytes == 0 {
        return Err(Error::config("limits", "limits must be positive"));
    }
    Ok(())
}

/// Spawns a periodic task; used for store sweeps.
pub(crate) fn spawn_every<F, Fut>(every: Duration, mut f: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            f().await;
        }
    })
}
