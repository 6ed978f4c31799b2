//! The server-session HTTP conformance suite on the in-memory store, plus fail-closed cases
//! with a store that is down or hung.

use crate::common::{
    http_client::{Resp, get_req, post_req, send},
    http_suite::{self, http_suite},
};

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
    async fn update_data(
        &self,
        _: &TokenHash,
        _: &keycard::store::DataPatch,
        _: &keycard::store::DataLimits,
        _: SystemTime,
    ) -> StoreResult<bool> {
        self.fail().await
    }
}

async fn fails_closed(store: Faulty) {
    let f = http_suite::fixture(Arc::new(store), http_suite::settings());
    let token = keycard::token::OpaqueToken::generate().unwrap();
    let cookie = format!("__Host-keycard={}", token.expose_secret());
    let started = std::time::Instant::now();
    for path in ["/me", "/maybe", "/admin", "/sessions"] {
        let resp = send(&f.app, get_req(path, Some(&cookie))).await;
        assert_eq!(resp.status, 503, "{path}");
    }
    let resp = send(
        &f.app,
        post_req("/login", None, serde_json::json!({"subject": "x"})),
    )
    .await;
    assert_eq!(resp.status, 503);
    // Public routes do not touch the store.
    let resp = send(&f.app, get_req("/public", Some(&cookie))).await;
    assert_eq!(resp.status, 200);
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
    use crate::common::test_app;
    use axum::{
        Router,
        body::Body,
        http::{Request, header},
    };
    use keycard::{
        Keycard,
        csrf::{CsrfConfig, Secret, SecretKeys},
        strategy::{ServerSessions, ServerSettings},
    };

    /// The test app with the double-submit token required.
    fn app() -> Router {
        with_keys(MemoryStore::new(), &["0123456789abcdef0123456789abcdef"])
    }

    /// The test app on `store` with the double-submit key list `keys` (the first signs).
    fn with_keys(store: MemoryStore, keys: &[&str]) -> Router {
        let keys = SecretKeys::new(keys.iter().map(|k| Secret((*k).to_owned())));
        let keycard = Keycard::builder()
            .strategy(ServerSessions::new(
                Arc::new(store),
                ServerSettings::default(),
            ))
            .csrf(CsrfConfig {
                double_submit_secret: Some(keys),
                ..CsrfConfig::default()
            })
            .build()
            .unwrap();
        test_app::router(&keycard)
    }

    /// Rotating the secret: a token signed with the old key keeps working while the old key is
    /// second in the list (no one is logged out or refused), and is refused once it is removed.
    #[tokio::test]
    async fn the_secret_rotates_without_refusing_issued_tokens() {
        const OLD: &str = "old-secret-0123456789abcdef012345";
        const NEW: &str = "new-secret-0123456789abcdef012345";
        let store = MemoryStore::new();
        let call = |app: &Router, req| {
            let app = app.clone();
            async move { outcome(send(&app, req).await) }
        };
        let before = with_keys(store.clone(), &[OLD]);
        let (_, cookie) = call(
            &before,
            Request::post("/login").body(Body::empty()).unwrap(),
        )
        .await;
        let (_, old_token) = call(&before, req("GET", "/token", &cookie, None)).await;

        let during = with_keys(store.clone(), &[NEW, OLD]);
        assert_eq!(
            call(&during, req("POST", "/act", &cookie, Some(&old_token)))
                .await
                .0,
            200,
            "the old key still verifies"
        );
        let (_, new_token) = call(&during, req("GET", "/token", &cookie, None)).await;
        assert_ne!(new_token, old_token, "the new key signs");
        assert_eq!(
            call(&during, req("POST", "/act", &cookie, Some(&new_token)))
                .await
                .0,
            200
        );

        let after = with_keys(store, &[NEW]);
        assert_eq!(
            call(&after, req("POST", "/act", &cookie, Some(&old_token)))
                .await
                .0,
            403,
            "the removed key no longer verifies"
        );
        assert_eq!(
            call(&after, req("POST", "/act", &cookie, Some(&new_token)))
                .await
                .0,
            200
        );
    }

    /// The status, and the cookie pair the response sets or else its body.
    fn outcome(r: Resp) -> (u16, String) {
        let text = || String::from_utf8_lossy(&r.body).into_owned();
        (r.status.as_u16(), r.cookie_pair().unwrap_or_else(text))
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
        let call = |req| {
            let app = app.clone();
            async move { outcome(send(&app, req).await) }
        };
        let login = Request::post("/login").body(Body::empty()).unwrap();
        let (status, cookie) = call(login).await;
        assert_eq!(status, 200);
        let (_, token) = call(req("GET", "/token", &cookie, None)).await;
        assert_eq!(token.len(), 43);
        assert_eq!(call(req("POST", "/act", &cookie, None)).await.0, 403);
        assert_eq!(
            call(req("POST", "/act", &cookie, Some("forged"))).await.0,
            403
        );
        assert_eq!(
            call(req("POST", "/act", &cookie, Some(&token))).await.0,
            200
        );
        // Another session's token does not fit this session.
        let (_, other) = call(Request::post("/login").body(Body::empty()).unwrap()).await;
        assert_eq!(call(req("POST", "/act", &other, Some(&token))).await.0, 403);
        // Safe methods need no token.
        assert_eq!(call(req("GET", "/token", &cookie, None)).await.0, 200);
    }
    #[test]
    fn short_secrets_are_refused_at_start() {
        let err = Keycard::builder()
            .strategy(ServerSessions::new(
                Arc::new(MemoryStore::new()),
                ServerSettings::default(),
            ))
            .csrf(CsrfConfig {
                double_submit_secret: Some(Secret("short".into()).into()),
                ..CsrfConfig::default()
            })
            .build()
            .unwrap_err();
        assert!(err.message().contains("csrf.double_submit_secret"));
        assert!(!format!("{:?}", Secret("hunter2".into())).contains("hunter2"));
    }
}
