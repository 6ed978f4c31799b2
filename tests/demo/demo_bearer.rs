//! `KEYCARD_TRANSPORT=bearer` (config `transport = "bearer"`) on the demo's real router, on the
//! SQL (SQLite) and Redis stores: `POST /login` answers with `session_token` and
//! `"token_type":"Bearer"` and sets no cookie; the token authenticates as
//! `Authorization: Bearer`; Bearer requests need no CSRF check; with `both`, a request carrying
//! the cookie and a Bearer credential is refused (400). The same contract against the real
//! demo binary as a process, as a native client speaks to it ([`process`]).

use axum::{Router, body::Body};
use http::{Request, StatusCode, header};
use keycard::{KeycardConfig, StrategyKind, clock::ManualClock, config::SessionTransport};
use serde_json::json;

use crate::common::{
    demo::{self, TempDb, database_config},
    http_client::{post_req, send},
};

fn login_req() -> Request<Body> {
    post_req(
        "/login",
        None,
        json!({"username": "alice", "password": "wonderland"}),
    )
}

fn with_bearer(method: &str, path: &str, token: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        // What a cross-site browser request would carry: refused for a cookie, not for Bearer.
        .header("sec-fetch-site", "cross-site")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap()
}

async fn app(mut config: KeycardConfig, transport: SessionTransport) -> Router {
    config.transport = Some(transport);
    demo::router(demo::keycard(&config, &ManualClock::new()).await)
}

/// The DEMO.md contract of `KEYCARD_TRANSPORT=bearer`.
async fn bearer_contract(config: KeycardConfig) {
    let app = app(config, SessionTransport::Bearer).await;
    let r = send(&app, login_req()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["subject"], "alice");
    let token = body["session_token"].as_str().expect("session_token");

    let me = send(&app, with_bearer("GET", "/me", token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["subject"], "alice");
    // A second session, then `POST /logout-others` from the first with Bearer (no CSRF check).
    let other = send(&app, login_req()).await.json()["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send(&app, with_bearer("POST", "/logout-others", token)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(
        send(&app, with_bearer("GET", "/me", &other)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = send(&app, with_bearer("POST", "/logout", token)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.set_cookies().is_empty());
    assert_eq!(
        send(&app, with_bearer("GET", "/me", token)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// `both`: login sets the cookie (and the demo's JSON carries the token); either credential
/// works alone, both at once are a 400.
async fn both_refuses_cookie_and_bearer_together(config: KeycardConfig) {
    let app = app(config, SessionTransport::Both).await;
    let r = send(&app, login_req()).await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.cookie_pair().expect("a session cookie");
    let token = r.json()["session_token"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&app, with_bearer("GET", "/me", &token)).await.status,
        StatusCode::OK
    );
    let mut both = with_bearer("GET", "/me", &token);
    both.headers_mut()
        .insert(header::COOKIE, cookie.parse().unwrap());
    assert_eq!(send(&app, both).await.status, StatusCode::BAD_REQUEST);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn bearer_sessions_sqlite() {
    let db = TempDb::new();
    bearer_contract(database_config(StrategyKind::Database, &db.url())).await;
    both_refuses_cookie_and_bearer_together(database_config(StrategyKind::Database, &db.url()))
        .await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn bearer_sessions_redis() {
    let mut config = KeycardConfig::new(StrategyKind::Redis);
    config.redis = Some(keycard::config::RedisConfig {
        url: Some(crate::common::redis_url()),
        key_prefix: Some(format!("kc-bearer-{}", crate::common::random_id().unwrap())),
        ..keycard::config::RedisConfig::default()
    });
    bearer_contract(config.clone()).await;
    both_refuses_cookie_and_bearer_together(config).await;
}

#[test]
fn transport_parses_and_is_refused_for_token_strategies() {
    let config = KeycardConfig::from_toml("strategy = \"redis\"\ntransport = \"bearer\"").unwrap();
    assert_eq!(config.transport, Some(SessionTransport::Bearer));
    assert!(KeycardConfig::from_toml("strategy = \"redis\"\ntransport = \"carrier\"").is_err());
}

#[cfg(all(feature = "jwt", feature = "sqlite"))]
#[tokio::test]
async fn transport_is_refused_for_jwt() {
    let db = TempDb::new();
    let mut config = database_config(StrategyKind::Jwt, &db.url());
    let mut jwt = keycard::jwt::JwtConfig::new("https://issuer.test", "https://api.test");
    jwt.ephemeral_key = true;
    config.jwt = Some(jwt);
    config.transport = Some(SessionTransport::Bearer);
    let err = demo::from_config(&config, &ManualClock::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), keycard::ErrorKind::Config);
    assert!(err.message().contains("`transport`"), "{}", err.message());
}

/// The real demo binary (`target/<profile>/examples/demo`) started with `KEYCARD_TRANSPORT=bearer`,
/// spoken to over TCP as a native client would: the token comes from the login JSON, never a
/// cookie. `cargo test` builds the example first; with `cargo test --test demo` alone, build it
/// with `cargo build --example demo --all-features`. A missing binary fails the test.
#[cfg(all(unix, feature = "sqlite"))]
mod process {
    use std::{path::PathBuf, time::Duration};

    use crate::common::demo_bin::{self, RawResp};

    const ALICE: &str = r#"{"username":"alice","password":"wonderland"}"#;

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "keycard-demo-bearer-{}-{tag}-{}",
            std::process::id(),
            crate::common::random_id().unwrap()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// One exchange as a native client: a JSON body if given, and with a `token`, the
    /// `Authorization: Bearer` header plus the headers of a cross-site browser request (refused
    /// for a cookie, not for Bearer), so that a CSRF check applied to Bearer would show. (Login
    /// carries no credential: like any unsafe request without Bearer it is checked, and a
    /// native client sends no `Origin`.)
    async fn call(
        addr: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> RawResp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
            headers.push(("Sec-Fetch-Site", "cross-site"));
            headers.push(("Origin", "https://evil.example"));
        }
        demo_bin::exchange(addr, method, path, &headers, body, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn sets_cookie(r: &RawResp) -> bool {
        r.head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
    }

    /// The DEMO.md contract of `KEYCARD_TRANSPORT=bearer` against the running demo at `addr`.
    async fn native_client(addr: &str) {
        let login = call(addr, "POST", "/login", None, ALICE).await;
        assert_eq!(login.status, 200, "{}\n{}", login.head, login.body);
        assert!(!sets_cookie(&login), "no cookie for bearer: {}", login.head);
        let body = login.json();
        assert_eq!(body["token_type"], "Bearer", "{body}");
        assert_eq!(body["subject"], "alice");
        let token = body["session_token"]
            .as_str()
            .expect("session_token in the login JSON")
            .to_owned();

        let me = call(addr, "GET", "/me", Some(&token), "").await;
        assert_eq!(me.status, 200, "{}", me.body);
        assert_eq!(me.json()["subject"], "alice");
        assert_eq!(call(addr, "GET", "/me", None, "").await.status, 401);

        // Preferences over Bearer, with no CSRF token and cross-site headers.
        let put = call(
            addr,
            "PUT",
            "/prefs/theme",
            Some(&token),
            r#"{"value":"dark"}"#,
        )
        .await;
        assert_eq!(put.status, 200, "{}\n{}", put.head, put.body);
        assert!(!sets_cookie(&put), "{}", put.head);
        assert_eq!(put.json(), serde_json::json!({"theme": "dark"}));
        let prefs = call(addr, "GET", "/prefs", Some(&token), "").await;
        assert_eq!(prefs.status, 200);
        assert_eq!(prefs.json(), serde_json::json!({"theme": "dark"}));

        let logout = call(addr, "POST", "/logout", Some(&token), "").await;
        assert_eq!(logout.status, 204, "{}\n{}", logout.head, logout.body);
        assert_eq!(call(addr, "GET", "/me", Some(&token), "").await.status, 401);
    }

    #[tokio::test]
    async fn native_client_on_sqlite() {
        let dir = scratch_dir("sqlite");
        let mut cmd = demo_bin::command(&dir);
        cmd.env("KEYCARD_TRANSPORT", "bearer");
        let run = demo_bin::launch(cmd, &dir.join("stderr.log"), |_| {});
        assert!(run.line.contains("strategy: database"), "{}", run.line);
        native_client(&run.addr).await;
        drop(run);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn native_client_on_redis() {
        let dir = scratch_dir("redis");
        // A key prefix of this test's own on the shared Redis.
        let config = dir.join("keycard.toml");
        std::fs::write(
            &config,
            format!(
                "strategy = \"redis\"\n[redis]\nkey_prefix = \"kc-demo-bearer-{}\"\n",
                crate::common::random_id().unwrap()
            ),
        )
        .unwrap();
        let mut cmd = demo_bin::command(&dir);
        cmd.env("KEYCARD_CONFIG", &config)
            .env("REDIS_URL", crate::common::redis_url())
            .env("KEYCARD_TRANSPORT", "bearer");
        let run = demo_bin::launch(cmd, &dir.join("stderr.log"), |_| {});
        assert!(run.line.contains("strategy: redis"), "{}", run.line);
        native_client(&run.addr).await;
        drop(run);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
