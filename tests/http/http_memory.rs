//! The server-session HTTP conformance suite on the in-memory store, plus fail-closed cases
//! with a store that is down or hung.

use crate::common::http_suite::{self, http_suite};

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use keycard::{
    store::{
        CreateOutcome, MemoryStore, SessionLimit, SessionRecord, SessionStore, StoreError,
        StoreResult,
    },
    token::TokenHash,
};

http_suite!(
    memory,
    Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>
);

#[tokio::test]
async fn missing_layer() {
    http_suite::missing_layer_is_500_naming_it().await;
}

/// A store whose backend is gone (`Down`) or never answers (`Hung`): the real failure modes of
/// a network store, reproduced in-process for the layer's fail-closed behaviour. Real servers
/// that are down or stalled are exercised in the SQL and Redis fault tests.
#[derive(Debug)]
enum Faulty {
    Down,
    Hung,
}

impl Faulty {
    async fn fail<T>(&self) -> StoreResult<T> {
        match self {
            Faulty::Down => Err(StoreError::unavailable("connection refused")),
            Faulty::Hung => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        }
    }
}

#[async_trait]
impl SessionStore for Faulty {
    async fn create(
        &self,
        _: &SessionRecord,
        _: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        self.fail().await
    }
    async fn load(&self, _: &TokenHash, _: SystemTime) -> StoreResult<Option<SessionRecord>> {
        self.fail().await
    }
    async fn touch(&self, _: &TokenHash, _: SystemTime, _: SystemTime) -> StoreResult<bool> {
        self.fail().await
    }
    async fn rotate(&self, _: &TokenHash, _: &SessionRecord) -> StoreResult<bool> {
        self.fail().await
    }
    async fn delete(&self, _: &str, _: &TokenHash) -> StoreResult<bool> {
        self.fail().await
    }
    async fn delete_all(&self, _: &str) -> StoreResult<u64> {
        self.fail().await
    }
    async fn list(&self, _: &str, _: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        self.fail().await
    }
    async fn sweep(&self, _: SystemTime) -> StoreResult<u64> {
        self.fail().await
    }
}

async fn fails_closed(store: Faulty) {
    let f = http_suite::fixture(Arc::new(store), http_suite::settings());
    let token = keycard::token::OpaqueToken::generate().unwrap();
    let cookie = format!("__Host-keycard={}", token.expose_secret());
    let started = std::time::Instant::now();
    for path in ["/me", "/maybe", "/admin", "/sessions"] {
        let resp = http_suite::send(&f.app, http_suite::get_req(path, Some(&cookie))).await;
        assert_eq!(resp.status(), 503, "{path}");
    }
    let resp = http_suite::send(
        &f.app,
        http_suite::post_req("/login", None, serde_json::json!({"subject": "x"})),
    )
    .await;
    assert_eq!(resp.status(), 503);
    // Public routes do not touch the store.
    let resp = http_suite::send(&f.app, http_suite::get_req("/public", Some(&cookie))).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the store timeout"
    );
}

#[tokio::test]
async fn store_down_is_503() {
    fails_closed(Faulty::Down).await;
}

#[tokio::test]
async fn store_hung_is_503_within_timeout() {
    fails_closed(Faulty::Hung).await;
}

/// The optional signed double-submit token: unsafe cookie-authenticated requests need the
/// session-bound token in `X-CSRF-Token`.
mod double_submit {
    use super::*;
    use axum::{
        Router,
        body::Body,
        http::{Request, header},
        routing::{get, post},
    };
    use keycard::{
        Auth, Keycard, Principal,
        csrf::{CsrfConfig, Secret},
        strategy::{ServerSessions, server::ServerSettings},
    };
    use tower::ServiceExt;

    fn app() -> Router {
        let keycard = Keycard::builder()
            .strategy(ServerSessions::new(
                Arc::new(MemoryStore::new()),
                ServerSettings::default(),
            ))
            .csrf(CsrfConfig {
                double_submit_secret: Some(Secret("0123456789abcdef0123456789abcdef".into())),
                ..CsrfConfig::default()
            })
            .build()
            .unwrap();
        Router::new()
            .route(
                "/login",
                post(|auth: Auth| async move {
                    auth.login(Principal::builder("alice")).await.map(|_| ())
                }),
            )
            .route(
                "/token",
                get(|auth: Auth| async move { auth.csrf_token().unwrap_or_default() }),
            )
            .route("/act", post(|_: Principal| async { "done" }))
            .layer(keycard.layer())
    }

    async fn send(app: &Router, req: Request<Body>) -> (u16, String) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            cookie.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
        )
    }

    fn req(method: &str, path: &str, cookie: &str, token: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookie);
        if let Some(t) = token {
            b = b.header("x-csrf-token", t);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn token_is_required_and_bound_to_the_session() {
        let app = app();
        let login = Request::post("/login").body(Body::empty()).unwrap();
        let (status, cookie) = send(&app, login).await;
        assert_eq!(status, 200);
        let (_, token) = send(&app, req("GET", "/token", &cookie, None)).await;
        assert_eq!(token.len(), 43);
        assert_eq!(send(&app, req("POST", "/act", &cookie, None)).await.0, 403);
        assert_eq!(
            send(&app, req("POST", "/act", &cookie, Some("forged")))
                .await
                .0,
            403
        );
        assert_eq!(
            send(&app, req("POST", "/act", &cookie, Some(&token)))
                .await
                .0,
            200
        );
        // Another session's token does not fit this session.
        let (_, other) = send(&app, Request::post("/login").body(Body::empty()).unwrap()).await;
        assert_eq!(
            send(&app, req("POST", "/act", &other, Some(&token)))
                .await
                .0,
            403
        );
        // Safe methods need no token.
        assert_eq!(send(&app, req("GET", "/token", &cookie, None)).await.0, 200);
    }

    #[test]
    fn short_secrets_are_refused_at_start() {
        let err = Keycard::builder()
            .strategy(ServerSessions::new(
                Arc::new(MemoryStore::new()),
                ServerSettings::default(),
            ))
            .csrf(CsrfConfig {
                double_submit_secret: Some(Secret("short".into())),
                ..CsrfConfig::default()
            })
            .build()
            .unwrap_err();
        assert!(err.message().contains("csrf.double_submit_secret"));
        assert!(!format!("{:?}", Secret("hunter2".into())).contains("hunter2"));
    }
}
