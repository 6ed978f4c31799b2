//! The ready-made `POST /refresh` handler.
#![cfg(feature = "jwt")]

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, header},
    routing::post,
};
use keycard::{
    Keycard, Principal, SessionStrategy,
    jwt::{JwtConfig, JwtStrategy},
    store::MemoryStore,
    strategy::ClientMeta,
};
use serde_json::{Value, json};

use crate::common::http_client::send;

/// `POST /refresh` with the JSON text `body`: the status, `Cache-Control` and the JSON body (or
/// `null`).
async fn send_refresh(app: &Router, body: &str) -> (u16, Option<String>, Value) {
    let req = Request::post("/refresh")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = send(app, req).await;
    let cache = resp.header(header::CACHE_CONTROL).map(str::to_owned);
    (resp.status.as_u16(), cache, resp.json_or_null())
}

#[tokio::test]
async fn rotates_and_refuses_reuse_and_garbage() {
    let mut config = JwtConfig::new("https://issuer.test", "https://api.test");
    config.ephemeral_key = true;
    let store = Arc::new(MemoryStore::new());
    let strategy = JwtStrategy::builder(config)
        .refresh_store(store.clone())
        .revocation_store(store)
        .build()
        .unwrap();
    strategy.ready().await.unwrap();
    let issued = strategy
        .login(Principal::builder("alice").build(), &ClientMeta::default())
        .await
        .unwrap();
    let keycard = Keycard::builder().jwt(strategy).build().unwrap();
    let app = Router::new()
        .route("/refresh", post(keycard::handlers::refresh))
        .layer(keycard.layer());
    let rt = issued.refresh_token.unwrap();
    let body = json!({"refresh_token": rt.expose_secret()}).to_string();

    let (status, cache, json) = send_refresh(&app, &body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["access_token"].as_str().unwrap().split('.').count() == 3);
    assert_ne!(json["refresh_token"].as_str().unwrap(), rt.expose_secret());
    assert!(json["expires_in"].as_u64().unwrap() > 0);

    // Reuse of the spent token: invalid_grant, and the family dies.
    let (status, _, json) = send_refresh(&app, &body).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("invalid_grant"))
    );

    for bad in ["", "{}", "not json", r#"{"refresh_token": 42}"#] {
        let (status, _, _) = send_refresh(&app, bad).await;
        assert!(status == 400 || status == 401, "{bad:?} → {status}");
    }
    let (status, _, json) = send_refresh(&app, r#"{"refresh_token": "garbage"}"#).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("invalid_grant"))
    );
}
