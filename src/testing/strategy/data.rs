//! Session data ([`SessionData`](crate::SessionData)) through the layer.

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    StrategyHarness,
    client::{App, subject},
};

/// Twenty concurrent requests of one session, each writing a different key, all take effect (no
/// lost update); the data reads back in the next request, survives a rotation, and goes with a
/// logout (a new login starts with none).
pub async fn session_data_concurrent_writers_all_land(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let cred = app.login(&user, &[]).await;
    assert_eq!(app.get("/data", Some(&cred)).await.json(), json!({}));

    let writers = (0..20).map(|i| {
        let (app, cred) = (&app, &cred);
        async move {
            app.put(&format!("/data/key-{i}"), Some(cred), json!(i))
                .await
        }
    });
    for reply in futures_util::future::join_all(writers).await {
        assert_eq!(reply.status, StatusCode::OK, "a data write");
    }
    let data = app.get("/data", Some(&cred)).await.json();
    for i in 0..20 {
        assert_eq!(
            data[format!("key-{i}")],
            json!(i),
            "writer {i}'s key was lost"
        );
    }

    let removed = app.delete("/data/key-0", Some(&cred)).await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(removed.json()["key-0"], Value::Null);
    let reply = app.post("/promote", Some(&cred), json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "rotation");
    let rotated = app
        .credentials(&reply)
        .expect("rotation issues a credential");
    let data = app.get("/data", Some(&rotated)).await.json();
    assert_eq!(data["key-19"], json!(19), "data survives a rotation");
    assert_eq!(data.get("key-0"), None, "the removal was saved");

    let reply = app.post("/logout", Some(&rotated), json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let fresh = app.login(&user, &[]).await;
    assert_eq!(
        app.get("/data", Some(&fresh)).await.json(),
        json!({}),
        "a new session starts without data"
    );
}

/// A key over the limit is 400; a value or a session's data over the limit is 413 and nothing of
/// the request is saved; an invalid credential is 401.
pub async fn session_data_limits_are_enforced(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let cred = app.login(&subject(), &[]).await;
    let long_key = format!("/data/{}", "k".repeat(65));
    assert_eq!(
        app.put(&long_key, Some(&cred), json!(1)).await.status,
        StatusCode::BAD_REQUEST
    );
    let big = json!("v".repeat(4 * 1024));
    assert_eq!(
        app.put("/data/big", Some(&cred), big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // 3 KiB values: five fit in 16 KiB, the sixth does not.
    let chunk = json!("c".repeat(3 * 1024));
    for i in 0..5 {
        let reply = app
            .put(&format!("/data/c{i}"), Some(&cred), chunk.clone())
            .await;
        assert_eq!(reply.status, StatusCode::OK, "chunk {i}");
    }
    let over = app.put("/data/c5", Some(&cred), chunk).await;
    assert_eq!(
        over.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the session total"
    );
    assert_eq!(over.json()["error"], "payload_too_large");
    let data = app.get("/data", Some(&cred)).await.json();
    assert_eq!(
        data.as_object().map(|m| m.len()),
        Some(5),
        "nothing of the refused write"
    );

    let forged = super::client::Cred {
        value: format!("{}x", cred.value),
        ..cred.clone()
    };
    assert_eq!(
        app.put("/data/k", Some(&forged), json!(1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}
