//! The ready-made `POST /refresh` handler.
#![cfg(feature = "jwt")]

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, header},
    routing::{get, post},
};
use keycard::{
    Keycard, Principal, SessionStrategy,
    clock::ManualClock,
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

/// `GET /me` with the access token of a refresh response: the status.
async fn me_with(app: &Router, refreshed: &Value) -> u16 {
    let token = refreshed["access_token"].as_str().unwrap();
    let req = Request::get("/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    send(app, req).await.status.as_u16()
}

#[tokio::test]
async fn rotates_and_refuses_reuse_and_garbage() {
    let mut config = JwtConfig::new("https://issuer.test", "https://api.test");
    config.ephemeral_key = true;
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new();
    let strategy = JwtStrategy::builder(config)
        .refresh_store(store.clone())
        .revocation_store(store)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    strategy.ready().await.unwrap();
    let issued = strategy
        .login(
            Principal::builder("alice").build(),
            &ClientMeta::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let keycard = Keycard::builder().jwt(strategy).build().unwrap();
    let app = Router::new()
        .route("/refresh", post(keycard::handlers::refresh))
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
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

    let lost = json;

    // The response was lost: a retry with the spent token within the default 30 s grace window
    // gets a working new head, and the successor the client never received is dead.
    clock.advance(Duration::from_secs(20));
    let (status, _, retry) = send_refresh(&app, &body).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(me_with(&app, &retry).await, 200);
    let lost_body = json!({"refresh_token": lost["refresh_token"]}).to_string();
    let (status, _, json) = send_refresh(&app, &lost_body).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("invalid_grant"))
    );

    // Reuse of the spent token after the window: invalid_grant, and the family dies (the
    // retry's refresh and access tokens included).
    clock.advance(Duration::from_secs(11));
    let (status, _, json) = send_refresh(&app, &body).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("invalid_grant"))
    );
    let retry_body = json!({"refresh_token": retry["refresh_token"]}).to_string();
    assert_eq!(send_refresh(&app, &retry_body).await.0, 401);
    assert_eq!(me_with(&app, &retry).await, 401);

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
