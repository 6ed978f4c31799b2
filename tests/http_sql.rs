//! The server-session HTTP conformance suite on every SQL backend, and fail-closed behaviour
//! against a real PostgreSQL that is unreachable, hung or cut off.

#![cfg(feature = "_sql")]

mod fault_proxy;
mod http_suite;

use std::sync::Arc;

use keycard::store::{
    SessionStore,
    sql::{SqlOptions, SqlStore},
};

fn pg_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

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
        keycard::token::random_id().unwrap()
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
    use crate::fault_proxy::FaultProxy;
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
    async fn hung_then_recovered_database() {
        let proxy = FaultProxy::start(upstream()).await;
        let store = connect(&proxied_url(&proxy)).await;
        let f = http_suite::fixture(store, http_suite::settings());
        let cookie = http_suite::login(&f.app, &f.user, &[], None).await;
        assert_eq!(
            http_suite::status(&f.app, http_suite::get_req("/me", Some(&cookie))).await,
            200
        );

        proxy.stall();
        let started = Instant::now();
        assert_eq!(
            http_suite::status(&f.app, http_suite::get_req("/me", Some(&cookie))).await,
            503
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "503 within the store timeout, took {took:?}"
        );

        // The stalled connections are cut (as a restarted server would); the pool reconnects.
        proxy.cut();
        proxy.resume();
        let mut ok = false;
        for _ in 0..50 {
            let s = http_suite::status(&f.app, http_suite::get_req("/me", Some(&cookie))).await;
            assert!(s == 200 || s == 503, "only 200 or 503, got {s}");
            if s == 200 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "recovers without a restart");
    }
}
