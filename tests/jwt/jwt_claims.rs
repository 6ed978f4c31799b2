//! Claim validation: expiry and leeway on a `ManualClock`, `nbf`, `iat`, lifetime bounds, the
//! principal's fields and attributes.
#![cfg(feature = "jwt")]

use crate::common::jwt_support;

use std::time::{Duration, UNIX_EPOCH};

use jwt_support::*;
use keycard::{
    ErrorKind, Principal, SessionStrategy,
    jwt::Algorithm,
    strategy::{ClientMeta, RefreshTokens},
};
use serde_json::json;

#[tokio::test]
async fn expiry_honours_leeway_cached_or_not() {
    let h = harness(Algorithm::EdDSA).await;
    let token = access(&h.login("alice").await);
    let cold = token.clone();
    h.auth(&token).await.unwrap(); // now cached
    h.clock.advance(Duration::from_secs(600 + 59));
    h.auth(&token).await.unwrap();
    h.clock.advance(Duration::from_secs(2));
    assert_kind(h.auth(&token).await, ErrorKind::Expired);
    h.strategy.clear_cache();
    assert_kind(h.auth(&cold).await, ErrorKind::Expired);
}

#[tokio::test]
async fn zero_leeway_expires_exactly_at_exp() {
    let h = harness_with(Algorithm::ES256, |c| c.leeway = Duration::ZERO).await;
    let issued = h.login("alice").await;
    let token = access(&issued);
    let exp = issued.principal.expires_at();
    let until_exp = exp.duration_since(h.now()).unwrap();
    h.clock.advance(until_exp);
    h.auth(&token).await.unwrap();
    h.clock.advance(Duration::from_millis(1));
    assert_kind(h.auth(&token).await, ErrorKind::Expired);
}

#[tokio::test]
async fn nbf_and_iat_in_the_future() {
    let h = harness(Algorithm::EdDSA).await;
    let now = secs(h.now());
    let mut c = h.claims();
    c["nbf"] = json!(now + 30);
    h.auth(&h.token(&c)).await.unwrap();
    c["nbf"] = json!(now + 61);
    c["jti"] = json!("nbf-2");
    assert_kind(h.auth(&h.token(&c)).await, ErrorKind::InvalidCredential);

    let mut c = h.claims();
    c["iat"] = json!(now + 30);
    c["exp"] = json!(now + 330);
    h.auth(&h.token(&c)).await.unwrap();
    c["iat"] = json!(now + 120);
    c["exp"] = json!(now + 400);
    assert_kind(h.auth(&h.token(&c)).await, ErrorKind::InvalidCredential);
    // Once time catches up, the nbf token becomes valid.
    let mut c = h.claims();
    c["nbf"] = json!(now + 120);
    c["jti"] = json!("nbf-3");
    let later = h.token(&c);
    assert_kind(h.auth(&later).await, ErrorKind::InvalidCredential);
    h.clock.advance(Duration::from_secs(61));
    h.auth(&later).await.unwrap();
}

#[tokio::test]
async fn lifetime_is_bounded() {
    let h = harness(Algorithm::EdDSA).await;
    let now = secs(h.now());
    let mut c = h.claims();
    c["exp"] = json!(now + 600);
    h.auth(&h.token(&c)).await.unwrap();
    c["exp"] = json!(now + 601);
    assert_kind(h.auth(&h.token(&c)).await, ErrorKind::InvalidCredential);
    c["exp"] = json!(now - 1);
    c["iat"] = json!(now);
    assert_kind(h.auth(&h.token(&c)).await, ErrorKind::InvalidCredential);

    let wide = harness_with(Algorithm::EdDSA, |c| {
        c.max_token_lifetime = Some(Duration::from_secs(3600))
    })
    .await;
    let now = secs(wide.now());
    let mut c = wide.claims();
    c["exp"] = json!(now + 3600);
    wide.auth(&wide.token(&c)).await.unwrap();
    c["exp"] = json!(now + 3601);
    assert_kind(
        wide.auth(&wide.token(&c)).await,
        ErrorKind::InvalidCredential,
    );
}

#[tokio::test]
async fn ms_issued_at_must_agree_with_iat() {
    let h = harness(Algorithm::EdDSA).await;
    let now = secs(h.now());
    let mut c = h.claims();
    c["iat_ms"] = json!(now * 1000 + 999);
    h.auth(&h.token(&c)).await.unwrap();
    c["iat_ms"] = json!(now * 1000 + 1000);
    assert_kind(h.auth(&h.token(&c)).await, ErrorKind::InvalidCredential);
    c["iat_ms"] = json!(now * 1000 - 1);
    assert_kind(h.auth(&h.token(&c)).await, ErrorKind::InvalidCredential);
    let mut c = h.claims();
    c["auth_time"] = json!(now + 3600);
    assert_kind(h.auth(&h.token(&c)).await, ErrorKind::InvalidCredential);
}

#[tokio::test]
async fn principal_fields_come_from_the_claims() {
    let h = harness(Algorithm::EdDSA).await;
    let now = secs(h.now());
    let mut c = h.claims();
    c["auth_time"] = json!(now - 100);
    c["tenant"] = json!({"id": 7});
    c["scope"] = json!("read write");
    let p = h.auth(&h.token(&c)).await.unwrap();
    assert_eq!(p.subject(), "alice");
    assert_eq!(p.roles(), ["user"]);
    assert_eq!(p.session().id, "family-x");
    assert_eq!(p.session().jti.as_deref(), Some("jti-forged-1"));
    assert_eq!(
        p.session().issued_at,
        UNIX_EPOCH + Duration::from_secs(now as u64)
    );
    assert_eq!(
        p.authenticated_at(),
        UNIX_EPOCH + Duration::from_secs(now as u64 - 100)
    );
    assert_eq!(
        p.expires_at(),
        UNIX_EPOCH + Duration::from_secs(now as u64 + 300)
    );
    assert_eq!(p.attributes()["tenant"]["id"], 7);
    assert_eq!(p.attributes()["scope"], "read write");
    assert!(p.attributes().get("exp").is_none());
    // Without sid, the session is named by the jti; without roles, there are none.
    let mut c = h.claims();
    c.as_object_mut().unwrap().remove("sid");
    c.as_object_mut().unwrap().remove("roles");
    let p = h.auth(&h.token(&c)).await.unwrap();
    assert_eq!(p.session().id, "jti-forged-1");
    assert!(p.roles().is_empty());
}

#[tokio::test]
async fn attributes_travel_and_reserved_names_are_refused() {
    let h = harness(Algorithm::EdDSA).await;
    let issued = h
        .strategy
        .login(
            Principal::builder("alice")
                .attribute("email", "alice@example.com")
                .attribute("tenant", json!({"id": 7}))
                .build(),
            &ClientMeta::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let p = h.auth(&access(&issued)).await.unwrap();
    assert_eq!(p.attributes()["email"], "alice@example.com");
    assert_eq!(p.attributes()["tenant"]["id"], 7);
    // They survive a refresh.
    let refreshed = h
        .strategy
        .refresh(&refresh_token(&issued), &ClientMeta::default())
        .await
        .unwrap();
    let p = h.auth(&access(&refreshed)).await.unwrap();
    assert_eq!(p.attributes()["email"], "alice@example.com");

    for reserved in ["exp", "sub", "iss", "aud", "roles", "sid", "jti", "iat_ms"] {
        let r = h
            .strategy
            .login(
                Principal::builder("alice").attribute(reserved, 1).build(),
                &ClientMeta::default(),
                Default::default(),
            )
            .await;
        assert_kind(r, ErrorKind::Internal);
    }
    // A token too large to issue is an error, not a truncated token.
    let r = h
        .strategy
        .login(
            Principal::builder("alice")
                .attribute("blob", "x".repeat(9000))
                .build(),
            &ClientMeta::default(),
            Default::default(),
        )
        .await;
    assert_kind(r, ErrorKind::Internal);
}
