//! `KEYCARD_TRANSPORT=bearer` (config `transport = "bearer"`) on the demo's real router, on the
//! SQL (SQLite) and Redis stores: `POST /login` answers with `session_token` and
//! `"token_type":"Bearer"` and sets no cookie; the token authenticates as
//! `Authorization: Bearer`; Bearer requests need no CSRF check; with `both`, a request carrying
//! the cookie and a Bearer credential is refused (400).

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
