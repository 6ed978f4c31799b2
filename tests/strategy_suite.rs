//! The public strategy suite (`keycard::testing::strategy`) against every strategy and backend:
//! server sessions on the in-memory store, SQLite, PostgreSQL, MySQL, Redis (one node) and Redis
//! Cluster; the JWT strategy (a token API) and the hybrid strategy (the JWT strategy behind
//! `HighRisk` routes).
//!
//! Outages: PostgreSQL, MySQL and Redis are stalled behind a TCP proxy (`tests/fault_proxy`),
//! the dedicated Redis Cluster of the outage check is paused (SIGSTOP), and the stores that have
//! no network to cut (memory, SQLite) fail through `keycard::testing::FaultyStore`; the JWT strategy also runs on PostgreSQL.
//!
//! Needs the features `test-suite`, `sqlite`, `postgres`, `mysql`, `redis` and `jwt` (see
//! `Cargo.toml`); `cargo test --all-features` runs it.

mod fault_proxy;
#[allow(unused_imports)]
mod redis_support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use fault_proxy::FaultProxy;
use keycard::{
    Keycard,
    clock::ManualClock,
    jwt::{JwtConfig, JwtStrategy, KeyRing},
    store::{
        MemoryStore, RefreshStore, RevocationStore, SessionStore,
        redis::{RedisOptions, RedisStore},
        sql::{SqlOptions, SqlStore},
    },
    strategy::{ServerSessions, server::ServerSettings},
    testing::{
        FaultyStore,
        strategy::{Lifetimes, StrategyHarness},
    },
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
        let id = keycard::token::random_id().expect("random id");
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

fn pg_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
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

/// The `host:port` part of a URL (after any `user@`).
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

fn upstream(url: &str) -> SocketAddr {
    std::net::ToSocketAddrs::to_socket_addrs(authority(url))
        .expect("a resolvable server address")
        .next()
        .expect("an address")
}

/// `url` with its server replaced by `addr` (the proxy).
fn through(url: &str, addr: SocketAddr) -> String {
    url.replacen(authority(url), &addr.to_string(), 1)
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
        Keycard::builder()
            .jwt(strategy)
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
            check!(listing_marks_the_current_session, $make);
            check!(revoking_one_session, $make);
            check!(rotation_after_privilege_change, $make);
            check!(step_up_renews_the_authentication_time, $make);
            check!(refresh_exchanges_tokens, $make);
            check!(idle_expiry, $make);
            check!(absolute_expiry, $make);
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
strategy_suite!(jwt_postgres, Jwt::postgres(false).await);
strategy_suite!(hybrid_memory, Jwt::memory(true), high_risk);
