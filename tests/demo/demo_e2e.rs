//! End-to-end tests of the demo server (`examples/demo`): the real router, driven in process
//! with `tower::ServiceExt::oneshot`, against every strategy/store this build supports.
//!
//! Each backend gets one line in the suites at the bottom. Tests on a shared SQL server
//! (PostgreSQL, MySQL) are serialised and start from a clean slate for the seeded users; Redis
//! tests each use a key prefix of their own.
//! URLs: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`), `MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`), `REDIS_URL` (default `redis://127.0.0.1:6379`).

// Some helpers serve only the backends of other feature sets.
#![cfg_attr(
    not(all(feature = "jwt", feature = "sqlite")),
    allow(dead_code, unused_macros)
)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use argon2::Params;
use axum::body::Body;
use http::{Method, StatusCode, header};
use keycard::{
    Keycard, StrategyKind,
    clock::{Clock, ManualClock},
    store::MemoryStore,
    strategy::{ServerSessions, ServerSettings},
};
use serde_json::{Value, json};

use crate::common::{
    app,
    demo::{self, light_argon2},
    http_client::{COOKIE, Client, Cred, Resp, with_cred},
};

// ---------------------------------------------------------------------------------------------
// Harness

/// A keycard for one test, plus whatever must live as long as it (temp files, a lock on a
/// shared server).
struct Backend {
    keycard: Keycard,
    _guards: Vec<Box<dyn Send>>,
}

/// The demo router on one backend, driven by one client (`User-Agent: e2e-alice` etc.).
struct Harness {
    client: Client,
    kind: StrategyKind,
    _backend: Backend,
}

impl std::ops::Deref for Harness {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Harness {
    async fn start(backend: Backend, clock: ManualClock) -> Self {
        let kind = app::strategy_kind(&backend.keycard);
        Self {
            client: Client {
                router: demo::router(backend.keycard.clone()),
                clock,
                cookies: !kind.uses_tokens(),
                agent: Some("e2e"),
            },
            kind,
            _backend: backend,
        }
    }

    fn cookies(&self) -> bool {
        self.client.cookies
    }
}

fn assert_no_store(r: &Resp) {
    assert_eq!(
        r.header(header::CACHE_CONTROL),
        Some("no-store"),
        "{:?}",
        r.headers
    );
}

fn assert_invalid_credentials(r: &Resp) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json(), json!({"error": "invalid_credentials"}));
    assert!(r.set_cookies().is_empty());
    assert!(r.json().get("access_token").is_none());
}

// ---------------------------------------------------------------------------------------------
// Backends

async fn make_memory(clock: ManualClock) -> Backend {
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let settings = ServerSettings {
        anonymous: Some(Default::default()),
        ..ServerSettings::default()
    };
    let strategy =
        ServerSessions::new(Arc::new(MemoryStore::new()), settings).with_clock(clock.clone());
    Backend {
        keycard: Keycard::builder()
            .strategy(strategy)
            .clock(clock)
            .build()
            .expect("keycard"),
        _guards: Vec::new(),
    }
}

#[cfg(feature = "sqlite")]
async fn sqlite_backend(strategy: StrategyKind, clock: ManualClock) -> Backend {
    let db = demo::TempDb::new();
    let keycard = demo::keycard(&demo::database_config(strategy, &db.url()), &clock).await;
    Backend {
        keycard,
        _guards: vec![Box::new(db)],
    }
}

#[cfg(feature = "sqlite")]
async fn make_sqlite(clock: ManualClock) -> Backend {
    sqlite_backend(StrategyKind::Database, clock).await
}

#[cfg(all(
    feature = "jwt",
    any(feature = "sqlite", feature = "postgres", feature = "redis")
))]
fn ephemeral_jwt() -> keycard::jwt::JwtConfig {
    let mut jwt = keycard::jwt::JwtConfig::new("keycard-demo-e2e", "keycard-demo-e2e");
    jwt.ephemeral_key = true;
    jwt
}

/// `jwt` or `hybrid` with an ephemeral Ed25519 key and refresh families in a fresh SQLite file.
#[cfg(all(feature = "jwt", feature = "sqlite"))]
async fn token_backend(strategy: StrategyKind, clock: ManualClock) -> Backend {
    let db = demo::TempDb::new();
    let mut config = demo::database_config(strategy, &db.url());
    config.jwt = Some(ephemeral_jwt());
    let keycard = demo::keycard(&config, &clock).await;
    Backend {
        keycard,
        _guards: vec![Box::new(db)],
    }
}

#[cfg(all(feature = "jwt", feature = "sqlite"))]
async fn make_jwt(clock: ManualClock) -> Backend {
    token_backend(StrategyKind::Jwt, clock).await
}

#[cfg(all(feature = "jwt", feature = "sqlite"))]
async fn make_hybrid(clock: ManualClock) -> Backend {
    token_backend(StrategyKind::Hybrid, clock).await
}

/// Tests on one shared server run one at a time (they use the same seeded subjects).
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn shared_server(lock: &'static tokio::sync::Mutex<()>, keycard: Keycard) -> Backend {
    let guard = lock.lock().await;
    // Failed logins of earlier tests count in the shared store's throttle.
    for name in ["alice", "admin", "mallory", ""] {
        keycard
            .throttle()
            .reset(name)
            .await
            .unwrap_or_else(|e| panic!("reset the throttle of {name:?}: {e:?}"));
    }
    for subject in ["alice", "admin"] {
        keycard
            .strategy()
            .logout_all(subject)
            .await
            .unwrap_or_else(|e| panic!("clean up {subject}: {e:?}"));
    }
    Backend {
        keycard,
        _guards: vec![Box::new(guard)],
    }
}

#[cfg(feature = "postgres")]
static POSTGRES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(feature = "postgres")]
async fn make_postgres(clock: ManualClock) -> Backend {
    let config = demo::database_config(StrategyKind::Database, &crate::common::pg_url());
    shared_server(&POSTGRES, demo::keycard(&config, &clock).await).await
}

#[cfg(feature = "mysql")]
async fn make_mysql(clock: ManualClock) -> Backend {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let url = crate::common::mysql_url();
    let keycard = demo::keycard(&demo::database_config(StrategyKind::Database, &url), &clock).await;
    shared_server(&LOCK, keycard).await
}

/// A Redis-backed config under a key prefix of its own, so tests run in parallel, isolated.
#[cfg(feature = "redis")]
fn redis_config(strategy: StrategyKind) -> keycard::KeycardConfig {
    let mut config = keycard::KeycardConfig::new(strategy);
    config.redis = Some(keycard::config::RedisConfig {
        url: Some(crate::common::redis_url()),
        cluster_urls: Vec::new(),
        key_prefix: Some(format!(
            "keycard-demo-e2e-{}",
            crate::common::random_id().expect("random id")
        )),
    });
    config
}

#[cfg(feature = "redis")]
async fn make_redis(clock: ManualClock) -> Backend {
    Backend {
        keycard: demo::keycard(&redis_config(StrategyKind::Redis), &clock).await,
        _guards: Vec::new(),
    }
}

/// The demo on the shared Redis Cluster, under a key prefix of its own.
#[cfg(feature = "redis")]
async fn make_redis_cluster(clock: ManualClock) -> Backend {
    let mut config = redis_config(StrategyKind::Redis);
    if let Some(redis) = config.redis.as_mut() {
        redis.url = None;
        redis.cluster_urls = crate::common::redis_support::cluster::Cluster::shared().urls();
    }
    Backend {
        keycard: demo::keycard(&config, &clock).await,
        _guards: Vec::new(),
    }
}

#[cfg(all(feature = "jwt", feature = "redis"))]
async fn make_jwt_redis(clock: ManualClock) -> Backend {
    let mut config = redis_config(StrategyKind::Jwt);
    config.jwt = Some(ephemeral_jwt());
    Backend {
        keycard: demo::keycard(&config, &clock).await,
        _guards: Vec::new(),
    }
}

#[cfg(all(feature = "jwt", feature = "postgres"))]
async fn make_jwt_postgres(clock: ManualClock) -> Backend {
    let mut config = demo::database_config(StrategyKind::Jwt, &crate::common::pg_url());
    config.jwt = Some(ephemeral_jwt());
    shared_server(&POSTGRES, demo::keycard(&config, &clock).await).await
}

// ---------------------------------------------------------------------------------------------
// Tests for every strategy

async fn login_returns_subject_and_roles(h: &Harness) {
    let r = h.login_response_as("alice", "wonderland", "e2e").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_no_store(&r);
    let body = r.json();
    assert_eq!(body["subject"], "alice");
    assert_eq!(body["roles"], json!(["user"]));
    if h.cookies() {
        assert!(body.get("access_token").is_none());
        assert!(r.session_cookie().is_some());
    } else {
        assert_eq!(body["token_type"], "Bearer");
        assert!(
            body["access_token"]
                .as_str()
                .is_some_and(|t| t.split('.').count() == 3)
        );
        assert!(
            body["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0));
    }
    let admin = h
        .login_response_as("admin", "correct horse battery staple", "e2e")
        .await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.json()["roles"], json!(["user", "admin"]));
}

async fn login_refuses_bad_password_and_unknown_user(h: &Harness) {
    assert_invalid_credentials(&h.login_response_as("alice", "Wonderland", "e2e").await);
    assert_invalid_credentials(&h.login_response_as("alice", "", "e2e").await);
    assert_invalid_credentials(&h.login_response_as("mallory", "wonderland", "e2e").await);
    assert_invalid_credentials(&h.login_response_as("", "", "e2e").await);
}

async fn login_refuses_malformed_bodies_with_4xx(h: &Harness) {
    let send = |ct: &'static str, body: &'static str| {
        h.send(
            with_cred(Method::POST, "/login", None)
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(body))
                .unwrap(),
        )
    };
    for (ct, body) in [
        ("application/json", "{"),
        ("application/json", "{\"username\":\"alice\"}"),
        ("application/json", "[1,2]"),
        ("application/json", ""),
        ("application/x-www-form-urlencoded", "username=alice"),
    ] {
        let r = send(ct, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{ct} {body:?}: {}",
            r.text()
        );
        assert_eq!(r.json()["error"], "invalid_request");
    }
    let r = send("text/plain", "username=alice&password=wonderland").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

async fn me_reports_the_principal(h: &Harness) {
    let cred = h.alice().await;
    let r = h.call(Method::GET, "/me", Some(&cred)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body["subject"], "alice");
    assert_eq!(body["roles"], json!(["user"]));
    assert_eq!(body["strategy"], h.kind.as_str());
    let sid = body["session_id"].as_str().expect("session_id");
    assert!(!sid.is_empty());
    if let Cred::Cookie(secret) = &cred {
        assert_ne!(
            sid, secret,
            "the session id is a public handle, not the secret"
        );
    }
    let keys: BTreeSet<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["roles", "session_id", "strategy", "subject"]
            .map(String::from)
            .into()
    );
}

async fn me_without_credential_is_401_with_challenge(h: &Harness) {
    let r = h.call(Method::GET, "/me", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header(header::WWW_AUTHENTICATE).is_some());
    let forged = if h.cookies() {
        Cred::Cookie("not-a-session".into())
    } else {
        Cred::Bearer {
            access: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.".into(),
            refresh: None,
        }
    };
    let r = h.call(Method::GET, "/me", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header(header::WWW_AUTHENTICATE).is_some());
}

async fn admin_needs_the_admin_role(h: &Harness) {
    assert_eq!(
        h.call(Method::GET, "/admin", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let alice = h.alice().await;
    assert_eq!(
        h.call(Method::GET, "/admin", Some(&alice)).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = h.admin().await;
    let r = h.call(Method::GET, "/admin", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"ok": true}));
}

async fn logout_revokes_the_session(h: &Harness) {
    assert_eq!(
        h.call(Method::POST, "/logout", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let cred = h.alice().await;
    let other = h.alice().await;
    let r = h.call(Method::POST, "/logout", Some(&cred)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    if h.cookies() {
        assert!(r.clears_session_cookie(), "{:?}", r.set_cookies());
        assert_no_store(&r);
    }
    assert_eq!(
        h.me(&cred).await,
        StatusCode::UNAUTHORIZED,
        "replayed after logout"
    );
    assert_eq!(
        h.call(Method::POST, "/logout", Some(&cred)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.me(&other).await, StatusCode::OK, "other sessions survive");
    if let Cred::Bearer {
        refresh: Some(rt), ..
    } = &cred
    {
        let r = h
            .call_json(Method::POST, "/refresh", None, json!({"refresh_token": rt}))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "refresh family revoked");
        assert_eq!(r.json()["error"], "invalid_grant");
    }
}

async fn logout_all_revokes_every_session_of_the_subject(h: &Harness) {
    let a1 = h.alice().await;
    let a2 = h.alice().await;
    let admin = h.admin().await;
    let r = h.call(Method::POST, "/logout-all", Some(&a1)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.me(&a1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me(&a2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me(&admin).await, StatusCode::OK);
    assert_eq!(
        h.call(Method::POST, "/logout-all", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.call(Method::POST, "/logout-all", Some(&a2)).await.status,
        StatusCode::UNAUTHORIZED
    );
    if let Cred::Bearer {
        refresh: Some(rt), ..
    } = &a2
    {
        let r = h
            .call_json(Method::POST, "/refresh", None, json!({"refresh_token": rt}))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

async fn logout_others_keeps_only_the_callers_session(h: &Harness) {
    assert_eq!(
        h.call(Method::POST, "/logout-others", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let a1 = h.alice().await;
    let a2 = h.alice().await;
    let admin = h.admin().await;
    let r = h.call(Method::POST, "/logout-others", Some(&a1)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.me(&a1).await, StatusCode::OK, "the caller's session");
    assert_eq!(h.me(&a2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me(&admin).await, StatusCode::OK, "another subject");
    if let Cred::Bearer {
        refresh: Some(rt), ..
    } = &a2
    {
        let r = h
            .call_json(Method::POST, "/refresh", None, json!({"refresh_token": rt}))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = h.call(Method::GET, "/sessions", Some(&a1)).await;
    assert_eq!(r.json().as_array().expect("array").len(), 1);
}

async fn sessions_lists_the_callers_sessions(h: &Harness) {
    assert_eq!(
        h.call(Method::GET, "/sessions", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let _first = h.login_as("alice", "wonderland", Some("ua-one")).await;
    let second = h.login_as("alice", "wonderland", Some("ua-two")).await;
    let _admin = h.admin().await;
    let r = h.call(Method::GET, "/sessions", Some(&second)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_no_store(&r);
    let list = r.json().as_array().expect("array").clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let expected: BTreeSet<String> = [
        "id",
        "created_at",
        "last_seen_at",
        "user_agent",
        "ip",
        "current",
    ]
    .map(String::from)
    .into();
    for s in &list {
        let keys: BTreeSet<String> = s.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, expected);
        for t in ["created_at", "last_seen_at"] {
            let text = s[t].as_str().expect("timestamp string");
            humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{t} {text:?}: {e}"));
        }
        assert_eq!(s["ip"], "203.0.113.7");
        if let Cred::Cookie(secret) = &second {
            assert_ne!(s["id"].as_str(), Some(secret.as_str()));
        }
    }
    let current: Vec<_> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "ua-two");
    assert!(
        list.iter()
            .any(|s| s["user_agent"] == "ua-one" && s["current"] == false)
    );
}

async fn delete_session_revokes_own_and_404s_others(h: &Harness) {
    let a1 = h.alice().await;
    let a2 = h.alice().await;
    let admin = h.admin().await;
    let other_id = h
        .sessions_json(&a2)
        .await
        .into_iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str().map(str::to_owned))
        .expect("alice's other session");
    let admin_id = h.sessions_json(&admin).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let path = |id: &str| format!("/sessions/{id}");
    assert_eq!(
        h.call(Method::DELETE, &path(&other_id), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = h.call(Method::DELETE, &path(&admin_id), Some(&a2)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "someone else's session");
    assert_eq!(h.me(&admin).await, StatusCode::OK);
    let r = h
        .call(Method::DELETE, &path("no-such-session"), Some(&a2))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = h.call(Method::DELETE, &path(&other_id), Some(&a2)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.me(&a1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me(&a2).await, StatusCode::OK);
    let r = h.call(Method::DELETE, &path(&other_id), Some(&a2)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "already revoked");

    // Revoking the current session ends it and clears the cookie.
    let own_id = h.sessions_json(&a2).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h.call(Method::DELETE, &path(&own_id), Some(&a2)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    if h.cookies() {
        assert!(r.clears_session_cookie());
    }
    assert_eq!(h.me(&a2).await, StatusCode::UNAUTHORIZED);
}

async fn account_email_needs_a_recent_authentication(h: &Harness) {
    let email = json!({"email": "alice@example.com"});
    let r = h
        .call_json(Method::POST, "/account/email", None, email.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let cred = h.alice().await;
    let r = h
        .call_json(Method::POST, "/account/email", Some(&cred), email.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"ok": true}));
    let r = h
        .call_json(
            Method::POST,
            "/account/email",
            Some(&cred),
            json!({"email": "nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    h.clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(h.me(&cred).await, StatusCode::OK, "still signed in");
    let r = h
        .call_json(Method::POST, "/account/email", Some(&cred), email.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let www = r.header(header::WWW_AUTHENTICATE).expect("challenge");
    assert!(www.contains("insufficient_user_authentication"), "{www}");

    // Step-up (demo extension): the password again, then the high-risk route works.
    let r = h
        .call_json(
            Method::POST,
            "/step-up",
            Some(&cred),
            json!({"password": "nope"}),
        )
        .await;
    assert_invalid_credentials(&r);
    let r = h
        .call_json(
            Method::POST,
            "/step-up",
            None,
            json!({"password": "wonderland"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call_json(
            Method::POST,
            "/step-up",
            Some(&cred),
            json!({"password": "wonderland"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_no_store(&r);
    let cred = h.cred_from(&r);
    let r = h
        .call_json(Method::POST, "/account/email", Some(&cred), email)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

async fn refresh_answers_invalid_grant_for_bad_tokens(h: &Harness) {
    for body in [
        json!({"refresh_token": "unknown"}),
        json!({}),
        json!({"refresh_token": ""}),
    ] {
        let r = h.call_json(Method::POST, "/refresh", None, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    let r = h.call(Method::POST, "/refresh", None).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "no body, no refresh cookie"
    );
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = h
        .send(
            with_cred(Method::POST, "/refresh", None)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{nope"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn home_page_anonymous_shows_login_form(h: &Harness) {
    let r = h.call(Method::GET, "/", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header(header::CONTENT_TYPE)
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text();
    assert!(
        page.contains(r#"<form method="post" action="/login">"#),
        "{page}"
    );
    assert!(page.contains(r#"name="username""#) && page.contains(r#"type="password""#));
    assert!(!page.contains(r#"action="/logout""#));
    assert!(r.set_cookies().is_empty());
}

async fn home_page_signed_in_shows_subject_roles_sessions(h: &Harness) {
    let cred = h
        .login_as(
            "admin",
            "correct horse battery staple",
            Some("<script>x</script>"),
        )
        .await;
    let r = h.call(Method::GET, "/", Some(&cred)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_no_store(&r);
    let page = r.text();
    assert!(page.contains("<strong>admin</strong>"), "{page}");
    assert!(page.contains("user, admin"));
    assert!(page.contains("<table>") && page.contains("this session"));
    assert!(page.contains(r#"action="/logout""#));
    assert!(
        page.contains("&lt;script&gt;x&lt;/script&gt;"),
        "user agent escaped"
    );
    assert!(!page.contains("<script>"));
}

// ---------------------------------------------------------------------------------------------
// Tests for cookie (server-session) strategies

async fn jwks_is_absent_for_server_sessions(h: &Harness) {
    let r = h.call(Method::GET, "/.well-known/jwks.json", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn login_cookie_has_secure_attributes(h: &Harness) {
    let r = h.login_response_as("alice", "wonderland", "e2e").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_no_store(&r);
    let cookies = r.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = cookies[0];
    assert!(c.starts_with("__Host-keycard="), "{c}");
    let attrs: Vec<String> = c
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for want in ["httponly", "secure", "samesite=lax", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing in {c}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{c}");
    let value = r.session_cookie().unwrap();
    assert!(value.len() >= 43, "256-bit token: {value}");
}

async fn bad_cookies_are_refused(h: &Harness) {
    let cred = h.alice().await;
    let Cred::Cookie(value) = &cred else {
        unreachable!()
    };
    let me = |cookie: String| {
        h.send(
            with_cred(Method::GET, "/me", None)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
    };
    // Tampered: last character changed.
    let mut tampered = value.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        me(format!("{COOKIE}={tampered}")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Duplicated, even with the same valid value: ambiguous.
    assert_eq!(
        me(format!("{COOKIE}={value}; {COOKIE}={value}"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Oversized: refused before decoding.
    let r = me(format!("{COOKIE}={}", "a".repeat(5000))).await;
    assert!(
        r.status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            || r.status == StatusCode::UNAUTHORIZED,
        "{}",
        r.status
    );
    // Malformed values.
    for junk in ["", "not a token", "%00%ff", "\"quoted\"", "a=b=c"] {
        let r = me(format!("{COOKIE}={junk}")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{junk:?}");
    }
    // A similarly named cookie is not the session cookie.
    let r = me(format!("__host-keycard={value}")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The genuine one still works, next to unrelated cookies.
    assert_eq!(
        me(format!("theme=dark; {COOKIE}={value}; x=y"))
            .await
            .status,
        StatusCode::OK
    );
    // The home page treats a bad cookie as anonymous.
    let r = h
        .call(Method::GET, "/", Some(&Cred::Cookie(tampered)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains(r#"action="/login""#));
}

/// `POST /login` as alice from a client that presents `cred`.
async fn login_over(h: &Harness, cred: &Cred) -> Resp {
    h.send(
        with_cred(Method::POST, "/login", Some(cred))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"username": "alice", "password": "wonderland"}).to_string(),
            ))
            .unwrap(),
    )
    .await
}

async fn login_replaces_a_presented_session(h: &Harness) {
    let old = h.alice().await;
    let r = login_over(h, &old).await;
    let new = h.cred_from(&r);
    let (Cred::Cookie(a), Cred::Cookie(b)) = (&old, &new) else {
        unreachable!()
    };
    assert_ne!(a, b, "a login never reuses a presented session");
    assert_eq!(h.me(&old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me(&new).await, StatusCode::OK);
}

async fn form_login_and_logout_redirect(h: &Harness) {
    let r = h
        .call_form("/login", None, "username=alice&password=wonderland")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header(header::LOCATION), Some("/"));
    assert_no_store(&r);
    let cred = Cred::Cookie(r.session_cookie().expect("Set-Cookie"));
    let page = h.call(Method::GET, "/", Some(&cred)).await;
    assert!(page.text().contains("<strong>alice</strong>"));

    let r = h
        .call_form("/login", None, "username=alice&password=wrong+password")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text().contains("Wrong username or password"));
    assert!(r.set_cookies().is_empty());

    let r = h.call_form("/logout", Some(&cred), "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header(header::LOCATION), Some("/"));
    assert!(r.clears_session_cookie());
    assert_eq!(h.me(&cred).await, StatusCode::UNAUTHORIZED);
}

async fn cross_site_posts_are_refused(h: &Harness) {
    let r = h
        .send(
            with_cred(Method::POST, "/login", None)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .body(Body::from("username=alice&password=wonderland"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookies().is_empty());
    let cred = h.alice().await;
    let r = h
        .send(
            with_cred(Method::POST, "/logout", Some(&cred))
                .header(header::ORIGIN, "https://evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(h.me(&cred).await, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Tests for token strategies (jwt, hybrid)

async fn refresh_rotates_and_detects_reuse(h: &Harness) {
    let Cred::Bearer {
        refresh: Some(first),
        ..
    } = h.alice().await
    else {
        unreachable!()
    };
    let r = h
        .call_json(
            Method::POST,
            "/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_no_store(&r);
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0));
    let second = h.cred_from(&r);
    let Cred::Bearer {
        refresh: Some(second_rt),
        ..
    } = &second
    else {
        unreachable!()
    };
    assert_ne!(second_rt, &first, "refresh tokens rotate");
    assert_eq!(h.me(&second).await, StatusCode::OK);
    // The client uses its new token: the spent one is no longer the immediate predecessor of
    // the head, so even within the grace window (default 30 s) presenting it is reuse.
    let r = h
        .call_json(
            Method::POST,
            "/refresh",
            None,
            json!({"refresh_token": second_rt}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let third = h.cred_from(&r);
    let Cred::Bearer {
        refresh: Some(third_rt),
        ..
    } = &third
    else {
        unreachable!()
    };

    // Reusing the spent token is refused and revokes the family.
    let r = h
        .call_json(
            Method::POST,
            "/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = h
        .call_json(
            Method::POST,
            "/refresh",
            None,
            json!({"refresh_token": third_rt}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "family revoked after reuse"
    );
    refresh_answers_invalid_grant_for_bad_tokens(h).await;
}

async fn jwks_publishes_the_signing_key(h: &Harness) {
    use base64::Engine as _;
    let r = h.call(Method::GET, "/.well-known/jwks.json", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.header(header::CONTENT_TYPE)
            .unwrap()
            .starts_with("application/json")
    );
    let keys = r.json()["keys"].as_array().expect("keys").clone();
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(k["kid"].is_string() && k["kty"].is_string());
        assert!(k.get("d").is_none(), "no private material: {k}");
    }
    let Cred::Bearer { access, .. } = h.alice().await else {
        unreachable!()
    };
    let header_b64 = access.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .unwrap(),
    )
    .unwrap();
    assert!(
        keys.iter().any(|k| k["kid"] == header["kid"]),
        "the token's kid {} is published",
        header["kid"]
    );
}

async fn bearer_tokens_are_checked(h: &Harness) {
    let Cred::Bearer { access, .. } = h.alice().await else {
        unreachable!()
    };
    let me = |value: String| {
        h.send(
            with_cred(Method::GET, "/me", None)
                .header(header::AUTHORIZATION, value)
                .body(Body::empty())
                .unwrap(),
        )
    };
    assert_eq!(me(format!("Bearer {access}")).await.status, StatusCode::OK);
    let mut tampered = access.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = me(format!("Bearer {tampered}")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header(header::WWW_AUTHENTICATE)
            .unwrap()
            .starts_with("Bearer")
    );
    let r = me(format!("Bearer {}", "a".repeat(10_000))).await;
    assert!(
        r.status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            || r.status == StatusCode::UNAUTHORIZED,
        "{}",
        r.status
    );
    // The access token is not accepted from a cookie unless cookie transport is configured.
    let r = h
        .call(Method::GET, "/me", Some(&Cred::Cookie(access)))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// Suites: one line per backend

macro_rules! tests {
    ($make:ident => $($(#[$attr:meta])* $test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            $(#[$attr])*
            async fn $test() {
                let clock = ManualClock::new();
                let h = Harness::start(super::$make(clock.clone()).await, clock).await;
                super::$test(&h).await;
            }
        )*
    };
}

macro_rules! common_tests {
    ($make:ident) => {
        tests!($make =>
            login_returns_subject_and_roles,
            login_refuses_bad_password_and_unknown_user,
            login_refuses_malformed_bodies_with_4xx,
            me_reports_the_principal,
            me_without_credential_is_401_with_challenge,
            admin_needs_the_admin_role,
            logout_revokes_the_session,
            logout_all_revokes_every_session_of_the_subject,
            logout_others_keeps_only_the_callers_session,
            sessions_lists_the_callers_sessions,
            delete_session_revokes_own_and_404s_others,
            account_email_needs_a_recent_authentication,
            home_page_anonymous_shows_login_form,
            home_page_signed_in_shows_subject_roles_sessions,
            prefs_concurrent_puts_all_land,
            prefs_limits_are_400_and_413,
        );
    };
}

/// Every route, for a server-session (cookie) backend.
macro_rules! server_session_suite {
    ($name:ident, $make:ident) => {
        mod $name {
            use super::{Harness, ManualClock};
            common_tests!($make);
            tests!($make =>
                refresh_answers_invalid_grant_for_bad_tokens,
                login_cookie_has_secure_attributes,
                bad_cookies_are_refused,
                login_replaces_a_presented_session,
                form_login_and_logout_redirect,
                cross_site_posts_are_refused,
                jwks_is_absent_for_server_sessions,
                anonymous_prefs_survive_login_under_a_new_id,
                remember_chooses_the_cookie_lifetime,
            );
        }
    };
}

/// Every route, for a token (Bearer) backend.
macro_rules! token_suite {
    ($name:ident, $make:ident) => {
        mod $name {
            use super::{Harness, ManualClock};
            common_tests!($make);
            tests!($make =>
                refresh_rotates_and_detects_reuse,
                bearer_tokens_are_checked,
                jwks_publishes_the_signing_key,
                prefs_need_a_credential,
            );
        }
    };
}

server_session_suite!(memory, make_memory);
#[cfg(feature = "sqlite")]
server_session_suite!(sqlite, make_sqlite);
#[cfg(feature = "postgres")]
server_session_suite!(postgres, make_postgres);
#[cfg(feature = "mysql")]
server_session_suite!(mysql, make_mysql);
#[cfg(feature = "redis")]
server_session_suite!(redis, make_redis);
#[cfg(feature = "redis")]
server_session_suite!(redis_cluster, make_redis_cluster);
#[cfg(all(feature = "jwt", feature = "sqlite"))]
token_suite!(jwt, make_jwt);
#[cfg(all(feature = "jwt", feature = "sqlite"))]
token_suite!(hybrid, make_hybrid);
#[cfg(all(feature = "jwt", feature = "redis"))]
token_suite!(jwt_redis, make_jwt_redis);
#[cfg(all(feature = "jwt", feature = "postgres"))]
token_suite!(jwt_postgres, make_jwt_postgres);

// ---------------------------------------------------------------------------------------------
// Preferences (session data), remember-me

async fn put_pref(h: &Harness, cred: Option<&Cred>, name: &str, value: Value) -> Resp {
    h.call_json(
        Method::PUT,
        &format!("/prefs/{name}"),
        cred,
        json!({"value": value}),
    )
    .await
}

async fn prefs_concurrent_puts_all_land(h: &Harness) {
    let alice = h.alice().await;
    let puts = (0..20).map(|i| {
        let (h, alice) = (&h, &alice);
        async move { put_pref(h, Some(alice), &format!("p{i}"), json!(i)).await }
    });
    for r in futures_util::future::join_all(puts).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let prefs = h.call(Method::GET, "/prefs", Some(&alice)).await.json();
    for i in 0..20 {
        assert_eq!(
            prefs[format!("p{i}")],
            json!(i),
            "PUT {i} was lost: {prefs}"
        );
    }
    let r = h.call(Method::DELETE, "/prefs/p0", Some(&alice)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().get("p0").is_none());
}

async fn prefs_limits_are_400_and_413(h: &Harness) {
    let alice = h.alice().await;
    let r = put_pref(h, Some(&alice), &"n".repeat(65), json!(1)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = put_pref(h, Some(&alice), "big", json!("v".repeat(4 * 1024))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    for i in 0..5 {
        let r = put_pref(
            h,
            Some(&alice),
            &format!("c{i}"),
            json!("c".repeat(3 * 1024)),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = put_pref(h, Some(&alice), "c5", json!("c".repeat(3 * 1024))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    let prefs = h.call(Method::GET, "/prefs", Some(&alice)).await.json();
    assert!(
        prefs.get("c5").is_none() && prefs.get("big").is_none(),
        "{prefs}"
    );
}

async fn prefs_need_a_credential(h: &Harness) {
    assert_eq!(
        h.call(Method::GET, "/prefs", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        put_pref(h, None, "k", json!(1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn anonymous_prefs_survive_login_under_a_new_id(h: &Harness) {
    let r = h.call(Method::GET, "/prefs", None).await;
    assert_eq!(r.json(), json!({}));
    assert!(r.set_cookies().is_empty(), "a read starts no session");
    let r = put_pref(h, None, "theme", json!("dark")).await;
    assert_eq!(r.status, StatusCode::OK);
    let anonymous = Cred::Cookie(r.session_cookie().expect("an anonymous session cookie"));
    assert_eq!(h.me(&anonymous).await, StatusCode::UNAUTHORIZED);
    let r = login_over(h, &anonymous).await;
    let alice = h.cred_from(&r);
    assert_ne!(alice.access(), anonymous.access(), "a fresh ID at login");
    let prefs = h.call(Method::GET, "/prefs", Some(&alice)).await.json();
    assert_eq!(prefs, json!({"theme": "dark"}));
    let old = h.call(Method::GET, "/prefs", Some(&anonymous)).await;
    assert_eq!(
        old.status,
        StatusCode::UNAUTHORIZED,
        "the anonymous ID is refused"
    );
}

async fn remember_chooses_the_cookie_lifetime(h: &Harness) {
    let login = |remember: Option<bool>| {
        let mut body = json!({"username": "alice", "password": "wonderland"});
        if let Some(r) = remember {
            body["remember"] = json!(r);
        }
        h.call_json(Method::POST, "/login", None, body)
    };
    let cookie = |r: &Resp| {
        r.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(COOKIE))
            .expect("a session cookie")
            .to_owned()
    };
    let persistent = cookie(&login(Some(true)).await);
    assert!(persistent.contains("Max-Age="), "{persistent}");
    for remember in [None, Some(false)] {
        let session = cookie(&login(remember).await);
        assert!(
            !session.contains("Max-Age") && !session.contains("Expires"),
            "{session}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The user table

#[test]
fn passwords_are_argon2id_hashes_and_unknown_users_fail() {
    let users = app::Users::seeded_with(light_argon2()).unwrap();
    for (name, password, roles) in app::SEED {
        let hash = users.password_hash(name).unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains(password));
        let spec = users.verify(name, password).expect("valid password");
        assert_eq!(spec.subject, *name);
        assert_eq!(
            spec.roles,
            roles.iter().map(|r| r.to_string()).collect::<Vec<_>>()
        );
        assert!(users.verify(name, "wrong").is_none());
    }
    assert!(users.verify("nobody", "wonderland").is_none());
    assert!(users.verify("", "").is_none());
}

#[test]
fn unknown_users_cost_as_much_as_known_ones() {
    let users = app::Users::seeded_with(Params::new(2048, 1, 1, None).unwrap()).unwrap();
    let time = |name: &str| {
        let t = std::time::Instant::now();
        for _ in 0..5 {
            assert!(users.verify(name, "not the password").is_none());
        }
        t.elapsed()
    };
    let known = time("alice");
    let unknown = time("nobody");
    assert!(
        unknown * 4 > known,
        "unknown {unknown:?} vs known {known:?}"
    );
}

/// What makes hybrid hybrid: ordinary routes verify the JWT alone; the high-risk route also asks
/// the server-side session, so a revocation that never reached this instance's mirror (an
/// operator deleting the session row, a lost publish) still stops it. And every action reaches
/// the security-event hook.
#[cfg(all(feature = "jwt", feature = "sqlite"))]
mod hybrid_specific {
    use super::*;
    use keycard::{
        events::{EventHook, SecurityEvent},
        store::{
            RefreshStore,
            sql::{SqlOptions, SqlStore},
        },
    };
    use std::sync::Mutex;

    #[tokio::test]
    async fn high_risk_route_checks_the_server_session_and_events_arrive() {
        let clock = ManualClock::new();
        let db = demo::TempDb::new();
        let mut config = demo::database_config(StrategyKind::Hybrid, &db.url());
        config.jwt = Some(ephemeral_jwt());
        let seen: Arc<Mutex<Vec<SecurityEvent>>> = Arc::default();
        let sink = seen.clone();
        let runtime = keycard::config::Runtime {
            clock: Some(Arc::new(clock.clone())),
            hook: Some(EventHook::new(move |e| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(e) }
            })),
            ..keycard::config::Runtime::default()
        };
        let keycard = Keycard::from_config_with(&config, runtime).await.unwrap();
        let h = Harness::start(
            Backend {
                keycard,
                _guards: vec![],
            },
            clock,
        )
        .await;
        let email = json!({"email": "alice@example.com"});

        let cred = h.alice().await;
        let r = h.call(Method::GET, "/me", Some(&cred)).await;
        assert_eq!(r.json()["strategy"], "hybrid");
        let family = r.json()["session_id"].as_str().unwrap().to_owned();
        let r = h
            .call_json(Method::POST, "/account/email", Some(&cred), email.clone())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        // The session row disappears behind keycard's back (no revocation is published).
        let store = SqlStore::connect(&db.url(), SqlOptions::default())
            .await
            .unwrap();
        assert!(store.delete_family("alice", &family).await.unwrap());
        // Ordinary route: the JWT alone, still valid until it expires (documented trade-off).
        assert_eq!(h.me(&cred).await, StatusCode::OK);
        // High-risk route: the server-side check refuses at once.
        let r = h
            .call_json(Method::POST, "/account/email", Some(&cred), email.clone())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

        // Through keycard, logout is immediate on every route.
        let cred = h.alice().await;
        assert_eq!(
            h.call(Method::POST, "/logout", Some(&cred)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(h.me(&cred).await, StatusCode::UNAUTHORIZED);
        let r = h
            .call_json(Method::POST, "/account/email", Some(&cred), email.clone())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // Reuse of a refresh token, and log-out-everywhere.
        let cred = h.alice().await;
        let Cred::Bearer {
            refresh: Some(rt), ..
        } = &cred
        else {
            panic!("bearer")
        };
        let body = json!({"refresh_token": rt});
        let r = h
            .call_json(Method::POST, "/refresh", None, body.clone())
            .await;
        assert_eq!(r.status, StatusCode::OK);
        // Spend the successor too, so the replay below is reuse within the grace window.
        let next = json!({"refresh_token": r.json()["refresh_token"]});
        assert_eq!(
            h.call_json(Method::POST, "/refresh", None, next)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            h.call_json(Method::POST, "/refresh", None, body)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        let cred = h.alice().await;
        assert_eq!(
            h.call(Method::POST, "/logout-all", Some(&cred))
                .await
                .status,
            StatusCode::NO_CONTENT
        );

        // Events are delivered on spawned tasks: give them a moment.
        let names =
            || -> Vec<&'static str> { seen.lock().unwrap().iter().map(|e| e.name()).collect() };
        for _ in 0..100 {
            if names().contains(&"all_sessions_revoked") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let names = names();
        for expected in [
            "login",
            "logout",
            "refresh_rotated",
            "refresh_reuse_detected",
            "all_sessions_revoked",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        // No event carries a secret.
        let dump = format!("{:?}", seen.lock().unwrap());
        if let Cred::Bearer { access, refresh } = &cred {
            assert!(!dump.contains(access.as_str()));
            assert!(refresh.as_ref().is_none_or(|r| !dump.contains(r.as_str())));
        }
    }
}
