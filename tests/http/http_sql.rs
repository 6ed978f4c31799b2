//! The server-session HTTP conformance suite on every SQL backend, and fail-closed behaviour
//! against a real PostgreSQL that is unreachable, hung or cut off.

#![cfg(feature = "_sql")]

use std::sync::Arc;

use keycard::store::{
    SessionStore,
    sql::{SqlOptions, SqlStore},
};

use crate::common::http_suite::http_suite;

#[cfg(feature = "mysql")]
use crate::common::mysql_url;
#[cfg(feature = "postgres")]
use crate::common::pg_url;

async fn connect(url: &str) -> Arc<dyn SessionStore> {
    Arc::new(
        SqlStore::connect(url, SqlOptions::default())
            .await
            .expect("store"),
    )
}

#[cfg(feature = "sqlite")]
fn sqlite_url() -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-http");
    std::fs::create_dir_all(&dir).unwrap();
    format!(
        "sqlite://{}/{}.db",
        dir.display(),
        crate::common::random_id().unwrap()
    )
}

#[cfg(feature = "sqlite")]
http_suite!(sqlite, connect(&sqlite_url()).await);
#[cfg(feature = "postgres")]
http_suite!(postgres, connect(&pg_url()).await);
#[cfg(feature = "mysql")]
http_suite!(mysql, connect(&mysql_url()).await);

#[cfg(feature = "postgres")]
mod faults {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::common::{
        fault_proxy::FaultProxy,
        http_client::{get_req, status},
        http_suite, test_app,
    };
    use keycard::{ErrorKind, Keycard, KeycardConfig, StrategyKind, config::DatabaseConfig};

    fn upstream() -> std::net::SocketAddr {
        let url = pg_url();
        let hostport = url
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("127.0.0.1:5432");
        std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .unwrap()
            .next()
            .unwrap()
    }

    fn proxied_url(proxy: &FaultProxy) -> String {
        let url = pg_url();
        let (head, rest) = url.split_once('@').unwrap();
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        format!("{head}@{}/{path}", proxy.addr)
    }

    #[tokio::test]
    async fn unreachable_at_start_is_a_clear_error() {
        let mut config = KeycardConfig::new(StrategyKind::Database);
        // A port nothing listens on.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        config.database = Some(DatabaseConfig {
            url: format!("postgres://postgres@{dead}/test"),
            max_connections: 2,
            migrate: true,
        });
        let started = Instant::now();
        let err = Keycard::from_config(&config).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StoreUnavailable, "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn exhausted_pool_is_503_within_the_timeout() {
        let proxy = FaultProxy::start(upstream()).await;
        let mut options = SqlOptions::default();
        options.max_connections = 1;
        let store: Arc<dyn SessionStore> = Arc::new(
            SqlStore::connect(&proxied_url(&proxy), options)
                .await
                .unwrap(),
        );
        let f = http_suite::fixture(store, http_suite::settings());
        let cookie = test_app::login(&f.app, &f.user, &[], None).await;
        // The one pooled connection hangs; every other request waits for the pool.
        proxy.stall();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let app = f.app.clone();
            let cookie = cookie.clone();
            tasks.push(tokio::spawn(async move {
                status(&app, get_req("/me", Some(&cookie))).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 503);
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "bounded by the store timeout, took {took:?}"
        );
        proxy.cut();
        proxy.resume();
        http_suite::recovers_without_restart(&f.app, &cookie).await;
    }

    #[tokio::test]
    async fn hung_then_recovered_database() {
        let proxy = FaultProxy::start(upstream()).await;
        let store = connect(&proxied_url(&proxy)).await;
        let f = http_suite::fixture(store, http_suite::settings());
        let cookie = test_app::login(&f.app, &f.user, &[], None).await;
        assert_eq!(status(&f.app, get_req("/me", Some(&cookie))).await, 200);

        proxy.stall();
        let started = Instant::now();
        assert_eq!(status(&f.app, get_req("/me", Some(&cookie))).await, 503);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "503 within the store timeout, took {took:?}"
        );

        // The stalled connections are cut (as a restarted server would); the pool reconnects.
        proxy.cut();
        proxy.resume();
        http_suite::recovers_without_restart(&f.app, &cookie).await;
    }
}

/// A refresh interrupted between consuming the old token and storing the new one (the database
/// stalls mid-rotation and the call times out) leaves either the old token valid or the family
/// dead — never both tokens valid.
#[cfg(all(feature = "postgres", feature = "jwt"))]
mod interrupted_refresh {
    use std::time::Duration;

    use super::*;
    use crate::common::fault_proxy::FaultProxy;
    use keycard::{
        ErrorKind, Principal, SessionStrategy,
        jwt::{JwtConfig, JwtStrategy},
        store::RefreshStore,
        strategy::{ClientMeta, RefreshTokens},
    };

    #[tokio::test]
    async fn old_token_valid_or_family_dead() {
        let url = pg_url();
        let hostport = url
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap();
        let upstream = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .unwrap()
            .next()
            .unwrap();
        let proxy = FaultProxy::start(upstream).await;
        let (head, rest) = url.split_once('@').unwrap();
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        let proxied = format!("{head}@{}/{path}", proxy.addr);
        let store = Arc::new(
            SqlStore::connect(&proxied, SqlOptions::default())
                .await
                .unwrap(),
        );
        let mut config = JwtConfig::new("https://issuer.test", "https://api.test");
        config.ephemeral_key = true;
        let strategy = JwtStrategy::builder(config)
            .refresh_store(store.clone())
            .revocation_store(store.clone())
            .store_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        strategy.ready().await.unwrap();
        let subject = format!("interrupted-{}", crate::common::random_id().unwrap());
        let issued = strategy
            .login(
                Principal::builder(&subject).build(),
                &ClientMeta::default(),
                Default::default(),
            )
            .await
            .unwrap();
        let old = issued.refresh_token.unwrap();

        proxy.stall();
        let err = strategy
            .refresh(old.expose_secret(), &ClientMeta::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StoreUnavailable);
        proxy.cut();
        proxy.resume();

        // Recovered: the old token still works, either because the rotation rolled back or
        // because it committed but its answer was lost and the retry is within the grace window
        // (default 30 s). With no window the second case would kill the family.
        let mut outcome = None;
        for _ in 0..50 {
            match strategy
                .refresh(old.expose_secret(), &ClientMeta::default())
                .await
            {
                Err(e) if e.kind() == ErrorKind::StoreUnavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => {
                    outcome = Some(other);
                    break;
                }
            }
        }
        let families = RefreshStore::list(&*store, &subject, std::time::SystemTime::now())
            .await
            .unwrap();
        match outcome.expect("the store came back") {
            Ok(_) => assert_eq!(families.len(), 1, "the old token was still the head"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidGrant);
                assert!(families.is_empty(), "both tokens dead");
            }
        }
    }
}

/// MySQL/MariaDB behind the stalling proxy: down at start, hung mid-run, back again.
#[cfg(feature = "mysql")]
mod mysql_faults {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::common::{
        fault_proxy::FaultProxy,
        http_client::{get_req, status},
        http_suite, test_app,
    };
    use keycard::{ErrorKind, Keycard, KeycardConfig, StrategyKind, config::DatabaseConfig};

    fn split(url: &str) -> (&str, &str, &str) {
        let (head, rest) = url.split_once('@').unwrap();
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        (head, hostport, path)
    }

    #[tokio::test]
    async fn unreachable_at_start_is_a_clear_error() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut config = KeycardConfig::new(StrategyKind::Database);
        config.database = Some(DatabaseConfig {
            url: format!("mysql://root@{dead}/test"),
            max_connections: 2,
            migrate: true,
        });
        let err = Keycard::from_config(&config).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StoreUnavailable, "{err:?}");
    }

    #[tokio::test]
    async fn hung_then_recovered_database() {
        let url = mysql_url();
        let (head, hostport, path) = split(&url);
        let upstream = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .unwrap()
            .next()
            .unwrap();
        let proxy = FaultProxy::start(upstream).await;
        let store = connect(&format!("{head}@{}/{path}", proxy.addr)).await;
        let f = http_suite::fixture(store, http_suite::settings());
        let cookie = test_app::login(&f.app, &f.user, &[], None).await;
        proxy.stall();
        let started = Instant::now();
        assert_eq!(status(&f.app, get_req("/me", Some(&cookie))).await, 503);
        assert!(started.elapsed() < Duration::from_secs(2));
        proxy.cut();
        proxy.resume();
        http_suite::recovers_without_restart(&f.app, &cookie).await;
    }
}

/// `Keycard::from_config` can run inside `tokio::spawn` (its future is `Send` for any borrow of
/// the config), for every strategy kind a config names: a server builds keycard in a task.
#[cfg(all(feature = "sqlite", feature = "redis"))]
#[tokio::test]
async fn from_config_builds_inside_a_spawned_task() {
    let redis = crate::common::redis_url();
    for text in [
        "strategy = \"database\"\n[database]\nurl = \"sqlite::memory:\"\n".to_owned(),
        format!(
            "strategy = \"redis\"\n[redis]\nurl = \"{redis}\"\n[session.cache]\ncapacity = 100\n"
        ),
    ] {
        let config = keycard::KeycardConfig::from_toml(&text).unwrap();
        let keycard = tokio::spawn(async move { keycard::Keycard::from_config(&config).await })
            .await
            .expect("the task ran")
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(keycard.transport().read_cookie, "{text}");
    }
}
