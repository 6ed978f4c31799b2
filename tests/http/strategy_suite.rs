//! The public strategy suite (`keycard::testing::strategy`) against every strategy and backend:
//! server sessions on the in-memory store, SQLite, PostgreSQL, MySQL, Redis (one node) and Redis
//! Cluster; the JWT strategy (a token API) and the hybrid strategy (the JWT strategy behind
//! `HighRisk` routes); and a strategy defined here, outside `src/`, to show that a strategy
//! written outside keycard runs the same suite through the real layer.
//!
//! The JWT strategy also runs on PostgreSQL. Outages: PostgreSQL, MySQL and Redis are stalled
//! behind a TCP proxy (`tests/common/fault_proxy.rs`), the dedicated Redis Cluster of the outage check is
//! paused (SIGSTOP), and the stores that have no network to cut (memory, SQLite) fail through
//! `keycard::testing::FaultyStore`.
//!
//! Needs the features `test-suite`, `sqlite`, `postgres`, `mysql`, `redis` and `jwt`;
//! `cargo test --all-features` runs it.
#![cfg(all(
    feature = "test-suite",
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "jwt"
))]

use std::{sync::Arc, time::Duration};

use crate::common::{
    fault_proxy::{FaultProxy, through, upstream_of as upstream},
    mysql_url, pg_url, redis_support, redis_url,
};
use async_trait::async_trait;
use keycard::{
    Keycard,
    clock::ManualClock,
    jwt::{JwtConfig, JwtStrategy, KeyRing},
    store::{
        MemoryStore, RefreshStore, RevocationStore, SessionStore,
        redis::{RedisOptions, RedisStore},
        sql::{SqlOptions, SqlStore},
    },
    strategy::{ServerSessions, ServerSettings},
    testing::{
        FaultyStore,
        strategy::{Lifetimes, StrategyHarness},
    },
    transport::TransportSettings,
};
use redis_support::cluster::Cluster;

/// A store call slower than this fails the request with 503.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// How the harness makes its store fail and recover.
enum Switch {
    /// A store decorator's outage switch.
    Faulty(Box<dyn Fn(bool) + Send + Sync>),
    /// A TCP proxy in front of a real server: stalled, then cut (as a restart would) and resumed.
    Proxy(FaultProxy),
    /// A dedicated Redis Cluster whose every node is paused.
    Paused(Box<Cluster>),
    /// The Redis Cluster every check of this binary shares: never paused (the outage check
    /// pauses a dedicated one).
    Shared,
}

impl Switch {
    fn faulty<S: ?Sized + Send + Sync + 'static>(store: &FaultyStore<S>) -> Self {
        let store = store.clone();
        Self::Faulty(Box::new(move |fail| {
            if fail {
                store.fail();
            } else {
                store.recover();
            }
        }))
    }

    fn set(&self, fail: bool) {
        match self {
            Self::Faulty(switch) => switch(fail),
            Self::Proxy(proxy) if fail => proxy.stall(),
            Self::Proxy(proxy) => {
                proxy.cut();
                proxy.resume();
            }
            Self::Shared => panic!("the shared cluster is never paused; use a dedicated one"),
            Self::Paused(cluster) => {
                for port in &cluster.ports {
                    let signal = if fail { "-STOP" } else { "-CONT" };
                    redis_support::server::signal(cluster.pid(*port), signal);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Server sessions

/// Server sessions over one store (shared by the keycards it builds).
struct Server {
    store: Arc<dyn SessionStore>,
    switch: Switch,
}

fn server_settings() -> ServerSettings {
    ServerSettings {
        idle_timeout: Duration::from_secs(30 * 60),
        absolute_timeout: Duration::from_secs(12 * 3600),
        renewal_interval: Duration::from_secs(3 * 60),
        limit: None,
        store_timeout: STORE_TIMEOUT,
        anonymous: None,
    }
}

#[async_trait]
impl StrategyHarness for Server {
    async fn keycard(&self, clock: &ManualClock) -> Keycard {
        let strategy = ServerSessions::new(self.store.clone(), server_settings())
            .with_clock(Arc::new(clock.clone()));
        Keycard::builder()
            .strategy(strategy)
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("keycard")
    }

    fn lifetimes(&self) -> Lifetimes {
        let s = server_settings();
        Lifetimes::Session {
            idle: s.idle_timeout,
            absolute: s.absolute_timeout,
        }
    }

    fn high_risk(&self) -> bool {
        true
    }

    async fn fail_store(&self) {
        self.switch.set(true);
    }

    async fn recover_store(&self) {
        self.switch.set(false);
    }
}

impl Server {
    fn over_faulty(store: Arc<dyn SessionStore>) -> Self {
        let faulty = FaultyStore::new(store);
        Self {
            switch: Switch::faulty(&faulty),
            store: Arc::new(faulty),
        }
    }

    fn memory() -> Self {
        Self::over_faulty(Arc::new(MemoryStore::new()))
    }

    async fn sqlite() -> Self {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-suite");
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let id = crate::common::random_id().expect("random id");
        let url = format!("sqlite://{}/{id}.db", dir.display());
        Self::over_faulty(Arc::new(sql(&url).await))
    }

    /// A SQL database behind a stalling proxy.
    async fn sql_behind_proxy(url: &str) -> Self {
        let proxy = FaultProxy::start(upstream(url)).await;
        let store = sql(&through(url, proxy.addr)).await;
        Self {
            store: Arc::new(store),
            switch: Switch::Proxy(proxy),
        }
    }

    async fn redis_single() -> Self {
        let url = redis_url();
        let proxy = FaultProxy::start(upstream(&url)).await;
        let store = RedisStore::connect_with(&through(&url, proxy.addr), redis_options())
            .await
            .expect("redis");
        Self {
            store: Arc::new(store),
            switch: Switch::Proxy(proxy),
        }
    }

    /// The cluster shared by this binary's checks (but for the outage check).
    async fn redis_cluster() -> Self {
        Self {
            store: Arc::new(cluster_store(&Cluster::shared().urls()).await),
            switch: Switch::Shared,
        }
    }

    /// A dedicated cluster of its own, for the outage check, which pauses every node.
    async fn redis_cluster_to_pause() -> Self {
        let cluster = Cluster::start(15_000);
        let store = cluster_store(&cluster.urls()).await;
        Self {
            store: Arc::new(store),
            switch: Switch::Paused(Box::new(cluster)),
        }
    }
}

async fn sql(url: &str) -> SqlStore {
    let mut options = SqlOptions::default();
    options.max_connections = 4;
    SqlStore::connect(url, options).await.expect("SQL store")
}

fn redis_options() -> RedisOptions {
    let mut options = RedisOptions::default();
    options.key_prefix = redis_support::unique_prefix();
    options.timeout = STORE_TIMEOUT;
    options.connection_timeout = Duration::from_millis(300);
    options.response_timeout = STORE_TIMEOUT;
    options
}

async fn cluster_store(urls: &[String]) -> RedisStore {
    RedisStore::connect_cluster_with(urls, redis_options())
        .await
        .expect("redis cluster")
}

// ------------------------------------------------------------------------------------------------
// The JWT and hybrid strategies

/// The JWT strategy over one refresh and revocation store; `high_risk` marks the hybrid
/// strategy (the same strategy, behind `HighRisk` routes).
struct Jwt {
    refresh: Arc<dyn RefreshStore>,
    revocations: Arc<dyn RevocationStore>,
    switch: Switch,
    high_risk: bool,
    /// Whether the access token and the refresh token also travel in cookies.
    cookies: bool,
}

fn jwt_config() -> JwtConfig {
    JwtConfig::new("https://auth.suite.test", "https://api.suite.test")
}

impl Jwt {
    fn memory(high_risk: bool) -> Self {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        Self {
            refresh: Arc::new(store.clone()),
            revocations: Arc::new(store.clone()),
            switch: Switch::faulty(&store),
            high_risk,
            cookies: false,
        }
    }

    /// The access-token and refresh cookies on (`cookie.access_token_cookie`,
    /// `cookie.refresh_cookie`), next to Bearer.
    fn with_cookies(self) -> Self {
        Self {
            cookies: true,
            ..self
        }
    }

    async fn postgres(high_risk: bool) -> Self {
        let url = pg_url();
        let proxy = FaultProxy::start(upstream(&url)).await;
        let store = Arc::new(sql(&through(&url, proxy.addr)).await);
        Self {
            refresh: store.clone(),
            revocations: store,
            switch: Switch::Proxy(proxy),
            high_risk,
            cookies: false,
        }
    }
}

#[async_trait]
impl StrategyHarness for Jwt {
    async fn keycard(&self, clock: &ManualClock) -> Keycard {
        let strategy = JwtStrategy::builder(jwt_config())
            .key_ring(Arc::new(KeyRing::ephemeral().expect("key ring")))
            .refresh_store(self.refresh.clone())
            .revocation_store(self.revocations.clone())
            .clock(Arc::new(clock.clone()))
            .store_timeout(STORE_TIMEOUT)
            .build()
            .expect("JWT strategy");
        strategy.ready().await.expect("ready");
        let mut builder = Keycard::builder().jwt(strategy);
        if self.cookies {
            builder = builder.transport(TransportSettings {
                read_cookie: true,
                read_bearer: true,
                refresh_cookie_name: Some("__Secure-keycard-refresh".into()),
                ..TransportSettings::default()
            });
        }
        builder
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("keycard")
    }

    fn lifetimes(&self) -> Lifetimes {
        let config = jwt_config();
        Lifetimes::Tokens {
            access: config.access_ttl,
            leeway: config.leeway,
            refresh_idle: config.refresh.idle,
            refresh_absolute: config.refresh.absolute,
        }
    }

    fn high_risk(&self) -> bool {
        self.high_risk
    }

    async fn fail_store(&self) {
        self.switch.set(true);
    }

    async fn recover_store(&self) {
        self.switch.set(false);
    }
}

// ------------------------------------------------------------------------------------------------
// The suite, one test per check and harness

/// Expands to a module with one `#[tokio::test]` per check of the strategy suite, each on a
/// harness built by `$make` (an expression that may `.await`); the outage check uses
/// `$outage` when given. `high_risk` adds the high-risk check, for harnesses whose application
/// has `HighRisk` routes.
macro_rules! strategy_suite {
    (@module $module:ident, $make:expr, $outage:expr, [$($extra:ident)*]) => {
        mod $module {
            use super::*;
            use keycard::testing::strategy as suite;

            macro_rules! check {
                ($check:ident, $harness:expr) => {
                    #[tokio::test]
                    async fn $check() {
                        let harness = $harness;
                        suite::$check(&harness).await;
                    }
                };
            }

            check!(login_then_authenticate, $make);
            check!(missing_credential_is_401_and_anonymous, $make);
            check!(bad_credential_is_401_never_anonymous, $make);
            check!(require_role_guards_the_route, $make);
            check!(logout_refuses_the_credential, $make);
            check!(logout_all_ends_every_session_of_the_subject, $make);
            check!(logout_others_keeps_the_current_session, $make);
            check!(listing_marks_the_current_session, $make);
            check!(revoking_one_session, $make);
            check!(session_data_concurrent_writers_all_land, $make);
            check!(session_data_limits_are_enforced, $make);
            check!(rotation_after_privilege_change, $make);
            check!(step_up_renews_the_authentication_time, $make);
            check!(refresh_exchanges_tokens, $make);
            check!(idle_expiry, $make);
            check!(absolute_expiry, $make);
            check!(remember_me_holds_for_the_session, $make);
            check!(login_may_shorten_the_idle_timeout, $make);
            check!(login_may_shorten_the_absolute_timeout, $make);
            check!(store_down_is_503, $outage);
            $(check!($extra, $make);)*
        }
    };
    ($module:ident, $make:expr, outage: $outage:expr, high_risk) => {
        strategy_suite!(@module $module, $make, $outage, [high_risk_demands_a_recent_authentication]);
    };
    ($module:ident, $make:expr, high_risk) => {
        strategy_suite!(@module $module, $make, $make, [high_risk_demands_a_recent_authentication]);
    };
    ($module:ident, $make:expr) => {
        strategy_suite!(@module $module, $make, $make, []);
    };
}

strategy_suite!(server_memory, Server::memory(), high_risk);
strategy_suite!(server_sqlite, Server::sqlite().await, high_risk);
strategy_suite!(
    server_postgres,
    Server::sql_behind_proxy(&pg_url()).await,
    high_risk
);
strategy_suite!(
    server_mysql,
    Server::sql_behind_proxy(&mysql_url()).await,
    high_risk
);
strategy_suite!(server_redis, Server::redis_single().await, high_risk);
strategy_suite!(
    server_redis_cluster,
    Server::redis_cluster().await,
    outage: Server::redis_cluster_to_pause().await,
    high_risk
);
strategy_suite!(jwt_memory, Jwt::memory(false));
strategy_suite!(jwt_cookies, Jwt::memory(false).with_cookies());
strategy_suite!(jwt_postgres, Jwt::postgres(false).await);
strategy_suite!(hybrid_memory, Jwt::memory(true), high_risk);
strategy_suite!(opaque_tokens, opaque::Harness::new(), high_risk);

/// [`keycard::testing::strategy::run`], the whole suite in one call, as a strategy outside
/// keycard would run it.
#[tokio::test]
async fn the_whole_suite_in_one_run_for_a_strategy_outside_keycard() {
    keycard::testing::strategy::run(&opaque::Harness::new()).await;
}

// ------------------------------------------------------------------------------------------------
// A strategy written outside keycard

/// Opaque bearer tokens in a map: a small but complete [`SessionStrategy`] written against
/// keycard's public API only, with sliding idle and absolute timeouts, rotation, step-up,
/// listing and revocation, and a store that an outage switch makes fail.
mod opaque {
    use std::{
        collections::HashMap,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::{Duration, SystemTime},
    };

    use crate::common::truncate_millis;
    use async_trait::async_trait;
    use keycard::{
        Error, ErrorKind, Keycard, Login, Principal, PrincipalSpec, Result, SessionRef,
        SessionStrategy,
        clock::{Clock, ManualClock},
        store::{DataLimits, DataPatch},
        strategy::{
            AccessToken, AuthFuture, ClientMeta, Credential, CredentialSource, Issued, Reissue,
            SessionDataStore, SessionInfo,
        },
        testing::strategy::{Lifetimes, StrategyHarness},
        token::{OpaqueToken, TokenHash},
    };
    use parking_lot::Mutex;

    const IDLE: Duration = Duration::from_secs(20 * 60);
    const ABSOLUTE: Duration = Duration::from_secs(4 * 3600);

    /// One session, keyed by the SHA-256 of its token.
    #[derive(Debug, Clone)]
    struct Entry {
        spec: PrincipalSpec,
        created: SystemTime,
        last_seen: SystemTime,
        authenticated: SystemTime,
        meta: ClientMeta,
        /// Session data: a JSON object as text, merged by [`DataPatch::apply`].
        data: Option<String>,
        /// The timeouts chosen at login, within [`IDLE`] and [`ABSOLUTE`].
        idle: Duration,
        absolute: Duration,
    }

    impl Entry {
        fn expires(&self) -> SystemTime {
            (self.last_seen + self.idle).min(self.created + self.absolute)
        }
    }

    /// The strategy. Its "store" is a map; `down` fails every call that touches it.
    #[derive(Debug)]
    pub struct OpaqueTokens {
        sessions: Mutex<HashMap<TokenHash, Entry>>,
        down: Arc<AtomicBool>,
        clock: Arc<dyn Clock>,
    }

    impl OpaqueTokens {
        pub fn new(clock: Arc<dyn Clock>, down: Arc<AtomicBool>) -> Self {
            Self {
                sessions: Mutex::new(HashMap::new()),
                down,
                clock,
            }
        }

        fn store(&self) -> Result<parking_lot::MutexGuard<'_, HashMap<TokenHash, Entry>>> {
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::StoreUnavailable));
            }
            Ok(self.sessions.lock())
        }

        fn now(&self) -> SystemTime {
            truncate_millis(self.clock.now())
        }

        fn principal(id: &TokenHash, entry: &Entry) -> Principal {
            let session = SessionRef {
                id: id.handle(),
                jti: None,
                issued_at: entry.created,
                client_ip: entry.meta.ip,
            };
            Principal::new(
                entry.spec.clone(),
                session,
                entry.authenticated,
                entry.expires(),
            )
        }

        /// Stores `entry` under a fresh token and hands the token out.
        fn issue(&self, entry: Entry) -> Result<Issued> {
            let token = OpaqueToken::generate()?;
            let principal = Self::principal(&token.hash(), &entry);
            self.store()?.insert(token.hash(), entry);
            Ok(Issued {
                principal,
                session_token: None,
                session_max_age: None,
                access_token: Some(AccessToken {
                    token: token.expose_secret().to_owned(),
                    expires_in: IDLE,
                }),
                refresh_token: None,
                refresh_max_age: None,
            })
        }

        fn resolve(&self, id: TokenHash) -> Result<Principal> {
            let now = self.now();
            let mut sessions = self.store()?;
            let Some(entry) = sessions.get_mut(&id) else {
                return Err(Error::new(ErrorKind::InvalidCredential));
            };
            if entry.expires() <= now {
                sessions.remove(&id);
                return Err(Error::new(ErrorKind::Expired));
            }
            entry.last_seen = now;
            Ok(Self::principal(&id, entry))
        }

        /// The live session `current` stands for.
        fn current(&self, current: &Principal) -> Result<(TokenHash, Entry)> {
            let now = self.now();
            self.store()?
                .iter()
                .find(|(id, e)| id.handle() == current.session().id && e.expires() > now)
                .map(|(id, e)| (*id, e.clone()))
                .ok_or_else(|| Error::new(ErrorKind::Revoked))
        }
    }

    #[async_trait]
    impl SessionDataStore for OpaqueTokens {
        async fn load(&self, session: &Principal) -> Result<Option<String>> {
            Ok(self.current(session)?.1.data)
        }

        async fn save(
            &self,
            session: &Principal,
            patch: &DataPatch,
            limits: &DataLimits,
        ) -> Result<()> {
            let (id, _) = self.current(session)?;
            let mut sessions = self.store()?;
            let entry = sessions
                .get_mut(&id)
                .ok_or_else(|| Error::new(ErrorKind::Revoked))?;
            entry.data = patch.apply(entry.data.as_deref(), limits)?;
            Ok(())
        }
    }

    #[async_trait]
    impl SessionStrategy for OpaqueTokens {
        fn session_data(&self) -> Option<&dyn SessionDataStore> {
            Some(self)
        }

        fn credential_source(&self) -> CredentialSource {
            CredentialSource::Bearer
        }

        fn authenticate<'a>(&'a self, credential: Credential<'a>) -> AuthFuture<'a> {
            let outcome = match TokenHash::of_encoded(credential.value) {
                Some(id) if credential.source == CredentialSource::Bearer => self.resolve(id),
                _ => Err(Error::new(ErrorKind::InvalidCredential)),
            };
            AuthFuture::ready(outcome)
        }

        async fn login(
            &self,
            spec: PrincipalSpec,
            meta: &ClientMeta,
            options: Login,
        ) -> Result<Issued> {
            let now = self.now();
            self.issue(Entry {
                spec,
                created: now,
                last_seen: now,
                authenticated: now,
                meta: meta.clone(),
                data: None,
                idle: options.idle_within(IDLE)?.unwrap_or(IDLE),
                absolute: options.absolute_within(ABSOLUTE)?,
            })
        }

        async fn reissue(&self, current: &Principal, change: Reissue<'_>) -> Result<Issued> {
            let (old, mut entry) = self.current(current)?;
            let now = self.now();
            match change {
                Reissue::Rotate(Some(spec)) if spec.subject == current.subject() => {
                    entry.spec = spec;
                }
                Reissue::Rotate(None) => {}
                Reissue::StepUp(meta) => {
                    entry.authenticated = now;
                    entry.meta = meta.clone();
                }
                _ => {
                    return Err(Error::with_message(
                        ErrorKind::Internal,
                        "a rotation cannot change the subject",
                    ));
                }
            }
            entry.last_seen = now;
            self.store()?.remove(&old);
            self.issue(entry)
        }

        async fn logout(&self, current: &Principal) -> Result<()> {
            let (id, _) = self.current(current)?;
            self.store()?.remove(&id);
            Ok(())
        }

        async fn logout_all(&self, subject: &str) -> Result<u64> {
            let mut sessions = self.store()?;
            let before = sessions.len();
            sessions.retain(|_, e| e.spec.subject != subject);
            Ok((before - sessions.len()) as u64)
        }

        async fn list(&self, subject: &str) -> Result<Vec<SessionInfo>> {
            let now = self.now();
            let mut listed: Vec<SessionInfo> = self
                .store()?
                .iter()
                .filter(|(_, e)| e.spec.subject == subject && e.expires() > now)
                .map(|(id, e)| SessionInfo {
                    id: id.handle(),
                    created_at: e.created,
                    last_seen_at: e.last_seen,
                    user_agent: e.meta.user_agent.clone(),
                    ip: e.meta.ip.map(|ip| ip.to_string()),
                })
                .collect();
            listed.sort_by_key(|s| s.created_at);
            Ok(listed)
        }

        async fn revoke(&self, subject: &str, session_id: &str) -> Result<bool> {
            let Some(id) = TokenHash::from_handle(session_id) else {
                return Ok(false);
            };
            let mut sessions = self.store()?;
            if sessions.get(&id).is_some_and(|e| e.spec.subject == subject) {
                sessions.remove(&id);
                return Ok(true);
            }
            Ok(false)
        }

        async fn verify_live(&self, current: &Principal) -> Result<()> {
            self.current(current).map(|_| ())
        }
    }

    /// Runs the suite against [`OpaqueTokens`].
    pub struct Harness {
        down: Arc<AtomicBool>,
    }

    impl Harness {
        pub fn new() -> Self {
            Self {
                down: Arc::new(AtomicBool::new(false)),
            }
        }
    }

    #[async_trait]
    impl StrategyHarness for Harness {
        async fn keycard(&self, clock: &ManualClock) -> Keycard {
            let strategy = OpaqueTokens::new(Arc::new(clock.clone()), self.down.clone());
            Keycard::builder()
                .strategy(strategy)
                .clock(Arc::new(clock.clone()))
                .build()
                .expect("keycard")
        }

        fn lifetimes(&self) -> Lifetimes {
            Lifetimes::Session {
                idle: IDLE,
                absolute: ABSOLUTE,
            }
        }

        fn high_risk(&self) -> bool {
            true
        }

        async fn fail_store(&self) {
            self.down.store(true, Ordering::SeqCst);
        }

        async fn recover_store(&self) {
            self.down.store(false, Ordering::SeqCst);
        }
    }
}
