//! Server sessions for native and API clients: the opaque session token in
//! `Authorization: Bearer` (`transport = "bearer"` or `"both"`), through the real layer and
//! keycard's test application on the in-memory store. The SQL and Redis stores are driven through
//! the demo (`tests/demo/demo_bearer.rs`).

use std::sync::Arc;

use axum::{Router, body::Body};
use http::{Request, StatusCode, header};
use keycard::{
    Keycard,
    csrf::{CsrfConfig, Secret},
    store::MemoryStore,
    strategy::{ServerSessions, ServerSettings},
    transport::TransportSettings,
};
use serde_json::json;

use crate::common::http_client::{Resp, post_req, send};

/// The test application on a fresh memory store, reading the cookie and/or Bearer, with the
/// double-submit CSRF token required for cookie requests.
fn app(read_cookie: bool, read_bearer: bool) -> Router {
    let keycard = Keycard::builder()
        .strategy(ServerSessions::new(
            Arc::new(MemoryStore::new()),
            ServerSettings::default(),
        ))
        .transport(TransportSettings {
            read_cookie,
            read_bearer,
            ..TransportSettings::default()
        })
        .csrf(CsrfConfig {
            double_submit_secret: Some(Secret("0123456789abcdef0123456789abcdef".into()).into()),
            ..CsrfConfig::default()
        })
        .build()
        .unwrap();
    keycard::testing::router(&keycard)
}

/// `method path` with `Authorization: Bearer token` and, when `cross_site`, the headers of a
/// cross-site browser request.
fn bearer(method: &str, path: &str, token: &str, cross_site: bool) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if cross_site {
        b = b
            .header("sec-fetch-site", "cross-site")
            .header(header::ORIGIN, "https://evil.example");
    }
    b.body(Body::empty()).unwrap()
}

async fn login(app: &Router) -> (Resp, String) {
    let r = send(app, post_req("/login", None, json!({"subject": "alice"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let token = r.json()["session_token"]
        .as_str()
        .expect("the login answer carries the session token")
        .to_owned();
    (r, token)
}

#[tokio::test]
async fn bearer_transport_sets_no_cookie_and_authenticates_the_header() {
    let app = app(false, true);
    let (r, token) = login(&app).await;
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_eq!(r.header(header::CACHE_CONTROL), Some("no-store"));

    let me = send(&app, bearer("GET", "/me", &token, false)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["subject"], "alice");
    // A 401 names the Bearer scheme.
    let anonymous = send(&app, Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        anonymous
            .header(header::WWW_AUTHENTICATE)
            .is_some_and(|c| c.starts_with("Bearer")),
        "{:?}",
        anonymous.header(header::WWW_AUTHENTICATE)
    );
    // The cookie is not read under Bearer transport.
    let cookie = Request::get("/me")
        .header(header::COOKIE, format!("__Host-keycard={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, cookie).await.status, StatusCode::UNAUTHORIZED);

    // No CSRF check on Bearer requests: a cross-site-looking POST without a double-submit token
    // passes.
    let act = send(&app, bearer("POST", "/act", &token, true)).await;
    assert_eq!(act.status, StatusCode::OK, "{}", act.text());

    // Logout revokes the session and sets no cookie either.
    let out = send(&app, bearer("POST", "/logout", &token, false)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.set_cookies().is_empty());
    let after = send(&app, bearer("GET", "/me", &token, false)).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn both_transports_take_either_but_never_both_at_once() {
    let app = app(true, true);
    let (r, token) = login(&app).await;
    let cookie = r.cookie_pair().expect("login sets the cookie under `both`");
    assert_eq!(cookie, format!("__Host-keycard={token}"));

    assert_eq!(
        send(&app, bearer("GET", "/me", &token, false)).await.status,
        StatusCode::OK
    );
    let by_cookie = Request::get("/me")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, by_cookie).await.status, StatusCode::OK);

    // The cookie and a Bearer credential in one request: ambiguous, refused.
    let mut both = bearer("GET", "/me", &token, false);
    both.headers_mut()
        .insert(header::COOKIE, cookie.parse().unwrap());
    assert_eq!(send(&app, both).await.status, StatusCode::BAD_REQUEST);

    // A rotation asked with Bearer answers with the new token and sets no cookie; asked with
    // the cookie, it sets the new cookie.
    let r = send(&app, bearer("POST", "/promote", &token, false)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    let rotated = r.json()["session_token"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&app, bearer("GET", "/me", &rotated, false))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, bearer("GET", "/me", &token, false)).await.status,
        StatusCode::UNAUTHORIZED,
        "the rotated-out token"
    );
    let (r, _) = login(&app).await;
    let cookie = r.cookie_pair().unwrap();
    let csrf = Request::get("/token")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let csrf = send(&app, csrf).await.text().to_owned();
    let by_cookie = Request::post("/promote")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", csrf)
        .body(Body::empty())
        .unwrap();
    let r = send(&app, by_cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.cookie_pair().is_some_and(|c| c != cookie),
        "a new cookie: {:?}",
        r.set_cookies()
    );
    let token = rotated;

    // CSRF applies to the cookie, not to Bearer.
    let (r, _) = login(&app).await;
    let cookie = r.cookie_pair().unwrap();
    let cookie_post = Request::post("/act")
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, cookie_post).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&app, bearer("POST", "/act", &token, true))
            .await
            .status,
        StatusCode::OK
    );
}
