//! Session data across instances with the read cache on: two keycard instances (two routers, each
//! built from its own `Keycard` with its own store connection and revocation feed) over one real
//! store. A data change made through one instance is seen by the other on its very next request,
//! while that instance serves the session from its warm cache; a logout through one is refused by
//! the other. On Redis and Redis Cluster (pub/sub), PostgreSQL (`LISTEN/NOTIFY`), MySQL and a
//! SQLite file (polled).
//!
//! The strategy-level revocation matrix (revoke, rotate, log out everywhere) is
//! `tests/stores/session_cache.rs`; here the logout is one step of the HTTP flow.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::Router;
use http::StatusCode;
use keycard::{
    Keycard, SessionStrategy,
    store::{RevocationStore, SessionStore},
    strategy::{CacheSettings, Credential, CredentialSource, ServerSessions, ServerSettings},
};
use serde_json::{Value, json};

use crate::common::{
    http_client::{COOKIE, get_req, post_req, put_req, request, send},
    test_app::router,
};

/// One instance: its router and (a clone sharing the cache of) its strategy.
struct Instance {
    name: &'static str,
    app: Router,
    sessions: ServerSessions,
}

/// An instance over `store`, with the read cache on and its revocations published through (and
/// mirrored from) `revocations`.
async fn instance(
    name: &'static str,
    store: Arc<dyn SessionStore>,
    revocations: Arc<dyn RevocationStore>,
) -> Instance {
    let settings = ServerSettings {
        store_timeout: Duration::from_secs(2),
        ..ServerSettings::default()
    };
    let cache = CacheSettings {
        // Only the SQLite store polls; keep its lag short.
        poll_interval: Duration::from_millis(50),
        ..CacheSettings::default()
    };
    let sessions = ServerSessions::new(store, settings).with_cache(cache, revocations);
    sessions.ready().await.expect("revocation mirror ready");
    let keycard = Keycard::builder()
        .strategy(sessions.clone())
        .build()
        .expect("keycard");
    Instance {
        name,
        app: router(&keycard),
        sessions,
    }
}

impl Instance {
    /// Asserts that this instance would serve `token` from its cache (no store round trip), so
    /// the next request's principal comes from the warm cache.
    fn assert_warm(&self, token: &str) {
        let lookup = self.sessions.authenticate(Credential {
            value: token,
            source: CredentialSource::Cookie,
        });
        assert!(
            lookup.is_ready(),
            "instance {} has the session in its cache",
            self.name
        );
    }

    async fn data(&self, cookie: &str) -> Value {
        let r = send(&self.app, get_req("/data", Some(cookie))).await;
        assert_eq!(r.status, StatusCode::OK, "GET /data on {}", self.name);
        r.json()
    }

    async fn put(&self, cookie: &str, key: &str, value: Value) -> Value {
        let r = send(
            &self.app,
            put_req(&format!("/data/{key}"), Some(cookie), value),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "PUT /data/{key} on {}", self.name);
        r.json()
    }

    async fn delete(&self, cookie: &str, key: &str) -> Value {
        let req = request(http::Method::DELETE, &format!("/data/{key}"))
            .header(http::header::COOKIE, cookie)
            .body(axum::body::Body::empty())
            .unwrap();
        let r = send(&self.app, req).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "DELETE /data/{key} on {}",
            self.name
        );
        r.json()
    }

    async fn me(&self, cookie: &str) -> StatusCode {
        send(&self.app, get_req("/me", Some(cookie))).await.status
    }
}

/// The flow on instances `a` and `b` of one store; a logout through `a` must be refused by `b`
/// within `revocation_limit`.
async fn data_crosses_instances(a: Instance, b: Instance, revocation_limit: Duration) {
    let subject = format!("cached-{}", crate::common::random_id().unwrap());
    let r = send(
        &a.app,
        post_req("/login", None, json!({"subject": subject})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = r.session_cookie().expect("login through A sets the cookie");
    let cookie = format!("{COOKIE}={token}");

    // Both instances serve the session once: from then on both have it cached.
    assert_eq!(a.data(&cookie).await, json!({}));
    assert_eq!(b.data(&cookie).await, json!({}));
    a.assert_warm(&token);
    b.assert_warm(&token);

    // Written through A, read through B right after (B's principal comes from its cache).
    assert_eq!(
        a.put(&cookie, "theme", json!("dark")).await,
        json!({"theme": "dark"})
    );
    b.assert_warm(&token);
    assert_eq!(
        b.data(&cookie).await,
        json!({"theme": "dark"}),
        "B sees A's write on its next request"
    );

    // Changed through B, read through A right after.
    assert_eq!(
        b.put(&cookie, "theme", json!({"mode": "light"})).await,
        json!({"theme": {"mode": "light"}})
    );
    a.assert_warm(&token);
    assert_eq!(
        a.data(&cookie).await,
        json!({"theme": {"mode": "light"}}),
        "A sees B's change on its next request"
    );

    // A second key through A, a removal through B; each seen by the other at once.
    a.put(&cookie, "lang", json!("fr")).await;
    b.assert_warm(&token);
    assert_eq!(b.data(&cookie).await["lang"], "fr");
    assert_eq!(b.delete(&cookie, "theme").await, json!({"lang": "fr"}));
    a.assert_warm(&token);
    assert_eq!(a.data(&cookie).await, json!({"lang": "fr"}));

    // A logout through A: B, which still has the session cached, refuses it.
    b.assert_warm(&token);
    let r = send(&a.app, post_req("/logout", Some(&cookie), json!({}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(a.me(&cookie).await, StatusCode::UNAUTHORIZED, "A at once");
    let started = Instant::now();
    loop {
        match b.me(&cookie).await {
            StatusCode::UNAUTHORIZED => break,
            StatusCode::OK => assert!(
                started.elapsed() < revocation_limit,
                "B still serves the session {revocation_limit:?} after the logout through A"
            ),
            other => panic!("B answered {other} for a logged-out session"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The data went with the session: a fresh login through B starts empty.
    let r = send(
        &b.app,
        post_req("/login", None, json!({"subject": subject})),
    )
    .await;
    let fresh = format!("{COOKIE}={}", r.session_cookie().expect("cookie"));
    assert_eq!(a.data(&fresh).await, json!({}));
}

/// A connection of its own to the SQL database at `url` (each instance has one, as two
/// processes would).
#[cfg(feature = "_sql")]
async fn sql_store(url: &str) -> Arc<keycard::store::sql::SqlStore> {
    use keycard::store::sql::{SqlOptions, SqlStore};
    Arc::new(
        SqlStore::connect(url, SqlOptions::default())
            .await
            .expect("sql store"),
    )
}

/// Instance A over `a` and instance B over `b` (two connections to one store, as two processes
/// would have), through the whole flow.
async fn over<S>(a: Arc<S>, b: Arc<S>, revocation_limit: Duration)
where
    S: SessionStore + RevocationStore + 'static,
{
    let a = instance("A", a.clone(), a).await;
    let b = instance("B", b.clone(), b).await;
    data_crosses_instances(a, b, revocation_limit).await;
}

/// Two Redis stores under one fresh key prefix: to the node at `url`, or to the cluster.
#[cfg(feature = "redis")]
async fn redis_pair(cluster: Option<Vec<String>>) -> [Arc<keycard::store::redis::RedisStore>; 2] {
    use keycard::store::redis::{RedisOptions, RedisStore};
    let prefix = crate::common::redis_support::unique_prefix();
    let connect = async || {
        let mut o = RedisOptions::default();
        o.key_prefix = prefix.clone();
        let store = match &cluster {
            Some(urls) => RedisStore::connect_cluster_with(urls, o).await,
            None => RedisStore::connect_with(&crate::common::redis_url(), o).await,
        };
        Arc::new(store.expect("redis"))
    };
    [connect().await, connect().await]
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis() {
    let [a, b] = redis_pair(None).await;
    over(a, b, Duration::from_millis(100)).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_cluster() {
    let urls = crate::common::redis_support::cluster::Cluster::shared().urls();
    let [a, b] = redis_pair(Some(urls)).await;
    over(a, b, Duration::from_millis(100)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres() {
    let url = crate::common::pg_url();
    over(
        sql_store(&url).await,
        sql_store(&url).await,
        Duration::from_millis(100),
    )
    .await;
}

/// MySQL has no push channel: revocations reach the other instance by polling.
#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql() {
    let url = crate::common::mysql_url();
    over(
        sql_store(&url).await,
        sql_store(&url).await,
        Duration::from_secs(1),
    )
    .await;
}

/// SQLite has no push channel: data is read from the file on every request that asks for it, and
/// revocations reach the other instance by polling (every 50 ms here).
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_file() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-http");
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!(
        "sqlite://{}/cached-{}.db",
        dir.display(),
        crate::common::random_id().unwrap()
    );
    over(
        sql_store(&url).await,
        sql_store(&url).await,
        Duration::from_secs(1),
    )
    .await;
}
