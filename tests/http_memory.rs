//! The server-session HTTP conformance suite on the in-memory store, plus fail-closed cases
//! with a store that is down or hung.

mod http_suite;

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
