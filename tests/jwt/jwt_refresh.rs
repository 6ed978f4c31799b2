//! Refresh families through `SessionStrategy`: rotation, reuse detection, races, grace, idle and
//! absolute lifetimes, logout, logout-all, listing, revoking, rotation after a privilege change.
#![cfg(feature = "jwt")]

use crate::common::jwt_support;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use jwt_support::*;
use keycard::{
    ErrorKind, Principal, SessionStrategy,
    events::SecurityEvent,
    jwt::{Algorithm, JwtKey, KeyRing},
    strategy::{ClientMeta, RefreshTokens, Reissue},
};

fn meta() -> ClientMeta {
    ClientMeta {
        user_agent: Some("test-agent/1.0".into()),
        ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
    }
}

#[tokio::test]
async fn login_and_refresh_rotate_tokens() {
    let h = harness(Algorithm::EdDSA).await;
    let first = h
        .strategy
        .login(spec("alice"), &meta(), Default::default())
        .await
        .unwrap();
    assert!(first.session_token.is_none());
    assert_eq!(
        first.refresh_max_age,
        Some(Duration::from_secs(30 * 24 * 3600))
    );
    assert_eq!(
        first.access_token.as_ref().unwrap().expires_in,
        Duration::from_secs(600)
    );
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::Login { subject, .. } if subject == "alice"))
        .await;

    h.clock.advance(Duration::from_secs(60));
    let second = h
        .strategy
        .refresh(&refresh_token(&first), &meta())
        .await
        .unwrap();
    assert_ne!(refresh_token(&first), refresh_token(&second));
    assert_ne!(access(&first), access(&second));
    assert_eq!(
        second.principal.session().id,
        first.principal.session().id,
        "same family"
    );
    assert_eq!(
        second.principal.authenticated_at(),
        first.principal.authenticated_at()
    );
    let p = h.auth(&access(&second)).await.unwrap();
    assert_eq!(p.roles(), ["user"]);
    // The first access token stays valid until it expires.
    h.auth(&access(&first)).await.unwrap();
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::RefreshRotated { .. }))
        .await;
}

#[tokio::test]
async fn malformed_refresh_tokens_are_invalid_grants() {
    let h = harness(Algorithm::EdDSA).await;
    let good = refresh_token(&h.login("alice").await);
    for bad in [
        String::new(),
        "abc".into(),
        good[..42].to_owned(),
        format!("{good}A"),
        format!("{}=", &good[..42]),
        "A".repeat(10_000),
        access(&h.login("alice").await),
        keycard::token::OpaqueToken::generate()
            .unwrap()
            .expose_secret()
            .to_owned(),
    ] {
        assert_kind(
            h.strategy.refresh(&bad, &ClientMeta::default()).await,
            ErrorKind::InvalidGrant,
        );
    }
    h.strategy
        .refresh(&good, &ClientMeta::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn reuse_kills_the_family_and_its_access_tokens() {
    let h = harness(Algorithm::EdDSA).await;
    let first = h.login("alice").await;
    let other = h.login("alice").await;
    let t1 = refresh_token(&first);
    let second = h.strategy.refresh(&t1, &meta()).await.unwrap();
    // An attacker replays the spent token after the default 30 s grace window.
    h.clock.advance(Duration::from_secs(31));
    let reuse = h.strategy.refresh(&t1, &meta()).await;
    assert_kind(reuse, ErrorKind::InvalidGrant);
    let family = first.principal.session().id.clone();
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::RefreshReuseDetected { family: f, subject } if *f == family && subject == "alice"))
        .await;
    // The whole family is dead: the newest refresh token and every access token of it.
    assert_kind(
        h.strategy.refresh(&refresh_token(&second), &meta()).await,
        ErrorKind::InvalidGrant,
    );
    assert_kind(h.auth(&access(&second)).await, ErrorKind::Revoked);
    assert_kind(h.auth(&access(&first)).await, ErrorKind::Revoked);
    // Other families of the subject are untouched.
    h.auth(&access(&other)).await.unwrap();
    let listed = h.strategy.list("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, other.principal.session().id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_have_one_winner_without_grace() {
    let h = harness_with(Algorithm::EdDSA, |c| c.refresh.grace = Duration::ZERO).await;
    let token = refresh_token(&h.login("alice").await);
    let strategy = h.strategy.clone();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = strategy.clone();
            let t = token.clone();
            let b = barrier.clone();
            tokio::spawn(async move {
                b.wait().await;
                s.refresh(&t, &ClientMeta::default()).await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => winners += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidGrant, "{e:?}"),
        }
    }
    assert_eq!(winners, 1);
    // The losers presented a spent token: reuse was detected.
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::RefreshReuseDetected { .. }))
        .await;
}

/// Under the default grace window, fifty concurrent refreshes with one token are fifty retries:
/// each gets a new head replacing the previous one, so exactly one refresh token is live after
/// them, and no reuse is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_under_default_grace_leave_one_live_head() {
    let h = harness(Algorithm::EdDSA).await;
    let first = h.login("alice").await;
    let token = refresh_token(&first);
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (s, t, b) = (h.strategy.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                s.refresh(&t, &ClientMeta::default()).await
            })
        })
        .collect();
    let mut issued = Vec::new();
    for task in tasks {
        issued.push(refresh_token(&task.await.unwrap().unwrap()));
    }
    let mut live = 0;
    for t in &issued {
        match h.strategy.refresh(t, &meta()).await {
            Ok(_) => live += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidGrant, "{e:?}"),
        }
    }
    assert_eq!(live, 1, "exactly one live head");
    assert_eq!(h.strategy.list("alice").await.unwrap().len(), 1);
    h.auth(&access(&first)).await.unwrap();
    assert!(
        !h.log
            .snapshot()
            .iter()
            .any(|e| matches!(e, SecurityEvent::RefreshReuseDetected { .. }))
    );
}

/// The default window lets a client that lost the refresh response retry with its spent token;
/// the successor it never received is dead, the retry's head works, and a replay after the
/// window revokes the family.
#[tokio::test]
async fn default_grace_lets_a_lost_response_be_retried() {
    let h = harness(Algorithm::EdDSA).await;
    let t1 = refresh_token(&h.login("alice").await);
    let lost = h.strategy.refresh(&t1, &meta()).await.unwrap();
    h.clock.advance(Duration::from_secs(20));
    let retry = h.strategy.refresh(&t1, &meta()).await.unwrap();
    h.auth(&access(&retry)).await.unwrap();
    assert_kind(
        h.strategy.refresh(&refresh_token(&lost), &meta()).await,
        ErrorKind::InvalidGrant,
    );
    let next = h
        .strategy
        .refresh(&refresh_token(&retry), &meta())
        .await
        .unwrap();
    // t1 is past its window (and no longer the predecessor of the head): reuse kills the family.
    h.clock.advance(Duration::from_secs(11));
    assert_kind(
        h.strategy.refresh(&t1, &meta()).await,
        ErrorKind::InvalidGrant,
    );
    assert_kind(
        h.strategy.refresh(&refresh_token(&next), &meta()).await,
        ErrorKind::InvalidGrant,
    );
    assert!(h.strategy.list("alice").await.unwrap().is_empty());
}

#[tokio::test]
async fn grace_tolerates_only_the_immediate_predecessor() {
    let h = harness_with(Algorithm::EdDSA, |c| {
        c.refresh.grace = Duration::from_secs(10)
    })
    .await;
    let t1 = refresh_token(&h.login("alice").await);
    let r2 = h.strategy.refresh(&t1, &meta()).await.unwrap();
    let t2 = refresh_token(&r2);
    // The client lost the response and retries within the grace window: a new head replaces t2.
    h.clock.advance(Duration::from_secs(5));
    let r3 = h.strategy.refresh(&t1, &meta()).await.unwrap();
    let t3 = refresh_token(&r3);
    assert_ne!(t2, t3);
    assert_kind(
        h.strategy.refresh(&t2, &meta()).await,
        ErrorKind::InvalidGrant,
    );
    let r4 = h.strategy.refresh(&t3, &meta()).await.unwrap();
    // t1 is no longer the immediate predecessor: reuse.
    assert_kind(
        h.strategy.refresh(&t1, &meta()).await,
        ErrorKind::InvalidGrant,
    );
    assert_kind(
        h.strategy.refresh(&refresh_token(&r4), &meta()).await,
        ErrorKind::InvalidGrant,
    );
}

#[tokio::test]
async fn grace_window_ends() {
    let h = harness_with(Algorithm::EdDSA, |c| {
        c.refresh.grace = Duration::from_secs(10)
    })
    .await;
    let t1 = refresh_token(&h.login("alice").await);
    let r2 = h.strategy.refresh(&t1, &meta()).await.unwrap();
    h.clock.advance(Duration::from_secs(11));
    assert_kind(
        h.strategy.refresh(&t1, &meta()).await,
        ErrorKind::InvalidGrant,
    );
    assert_kind(
        h.strategy.refresh(&refresh_token(&r2), &meta()).await,
        ErrorKind::InvalidGrant,
    );
}

#[tokio::test]
async fn idle_and_absolute_lifetimes() {
    let h = harness(Algorithm::EdDSA).await;
    // Idle: unused for more than 7 days.
    let idle = refresh_token(&h.login("alice").await);
    // Absolute: used every 6 days, still ends after 30 days.
    let mut live = refresh_token(&h.login("alice").await);
    let day = Duration::from_secs(24 * 3600);
    for _ in 0..4 {
        h.clock.advance(day * 6);
        live = refresh_token(&h.strategy.refresh(&live, &meta()).await.unwrap());
    }
    assert_kind(
        h.strategy.refresh(&idle, &meta()).await,
        ErrorKind::InvalidGrant,
    );
    // Day 24: one more rotation is fine; its max-age is the remaining absolute lifetime.
    let last = h.strategy.refresh(&live, &meta()).await.unwrap();
    assert_eq!(last.refresh_max_age, Some(day * 6));
    h.clock.advance(day * 6 + Duration::from_secs(1));
    assert_kind(
        h.strategy.refresh(&refresh_token(&last), &meta()).await,
        ErrorKind::InvalidGrant,
    );
}

#[tokio::test]
async fn logout_revokes_the_family_and_its_access_tokens() {
    let h = harness(Algorithm::EdDSA).await;
    let first = h.login("alice").await;
    let second = h
        .strategy
        .refresh(&refresh_token(&first), &meta())
        .await
        .unwrap();
    let other = h.login("alice").await;
    let p = h.auth(&access(&second)).await.unwrap();
    h.strategy.logout(&p).await.unwrap();
    assert_kind(h.auth(&access(&second)).await, ErrorKind::Revoked);
    assert_kind(h.auth(&access(&first)).await, ErrorKind::Revoked);
    assert_kind(
        h.strategy.refresh(&refresh_token(&second), &meta()).await,
        ErrorKind::InvalidGrant,
    );
    h.auth(&access(&other)).await.unwrap();
    assert_eq!(h.strategy.list("alice").await.unwrap().len(), 1);
    assert_kind(h.strategy.verify_live(&p).await, ErrorKind::Revoked);
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::Logout { .. }))
        .await;
}

#[tokio::test]
async fn logout_all_voids_every_earlier_token_and_login_still_works() {
    let h = harness(Algorithm::EdDSA).await;
    let a = h.login("alice").await;
    let b = h.login("alice").await;
    let bob = h.login("bob").await;
    // Same millisecond as the logins: still void.
    assert_eq!(h.strategy.logout_all("alice").await.unwrap(), 2);
    for t in [&a, &b] {
        assert_kind(h.auth(&access(t)).await, ErrorKind::Revoked);
        assert_kind(
            h.strategy.refresh(&refresh_token(t), &meta()).await,
            ErrorKind::InvalidGrant,
        );
    }
    h.auth(&access(&bob)).await.unwrap();
    assert!(h.strategy.list("alice").await.unwrap().is_empty());
    // A login in the same millisecond as the logout-all works.
    let again = h.login("alice").await;
    h.auth(&access(&again)).await.unwrap();
    let refreshed = h
        .strategy
        .refresh(&refresh_token(&again), &meta())
        .await
        .unwrap();
    h.auth(&access(&refreshed)).await.unwrap();
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::AllSessionsRevoked { count: 2, .. }))
        .await;
}

#[tokio::test]
async fn list_shows_family_heads() {
    let h = harness(Algorithm::EdDSA).await;
    let t0 = h.now();
    let a = h
        .strategy
        .login(spec("alice"), &meta(), Default::default())
        .await
        .unwrap();
    h.clock.advance(Duration::from_secs(5));
    let _b = h
        .strategy
        .login(spec("alice"), &ClientMeta::default(), Default::default())
        .await
        .unwrap();
    h.clock.advance(Duration::from_secs(5));
    h.strategy
        .refresh(&refresh_token(&a), &meta())
        .await
        .unwrap();
    let listed = h.strategy.list("alice").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, a.principal.session().id);
    assert_eq!(listed[0].created_at, t0);
    assert_eq!(listed[0].last_seen_at, t0 + Duration::from_secs(10));
    assert_eq!(listed[0].user_agent.as_deref(), Some("test-agent/1.0"));
    assert_eq!(listed[0].ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(listed[1].user_agent, None);
    assert!(h.strategy.list("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn revoke_one_family_by_its_handle() {
    let h = harness(Algorithm::EdDSA).await;
    let a = h.login("alice").await;
    let b = h.login("alice").await;
    let bob = h.login("bob").await;
    let family_a = a.principal.session().id.clone();
    // Someone else's handle does nothing, not even to access tokens.
    assert!(!h.strategy.revoke("bob", &family_a).await.unwrap());
    h.auth(&access(&a)).await.unwrap();
    assert!(!h.strategy.revoke("alice", "no-such-family").await.unwrap());
    assert!(
        !h.strategy
            .revoke("alice", &bob.principal.session().id)
            .await
            .unwrap()
    );
    h.auth(&access(&bob)).await.unwrap();

    assert!(h.strategy.revoke("alice", &family_a).await.unwrap());
    assert_kind(h.auth(&access(&a)).await, ErrorKind::Revoked);
    assert_kind(
        h.strategy.refresh(&refresh_token(&a), &meta()).await,
        ErrorKind::InvalidGrant,
    );
    h.auth(&access(&b)).await.unwrap();
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::SessionRevoked { .. }))
        .await;
}

#[tokio::test]
async fn rotate_after_a_privilege_change() {
    let h = harness(Algorithm::EdDSA).await;
    let before = h
        .strategy
        .login(spec("alice"), &meta(), Default::default())
        .await
        .unwrap();
    let p = h.auth(&access(&before)).await.unwrap();
    h.clock.advance(Duration::from_secs(30));
    let after = h
        .strategy
        .reissue(
            &p,
            Reissue::Rotate(Some(
                Principal::builder("alice")
                    .role("user")
                    .role("admin")
                    .build(),
            )),
        )
        .await
        .unwrap();
    assert_ne!(after.principal.session().id, p.session().id);
    assert_eq!(after.principal.roles(), ["user", "admin"]);
    assert_eq!(after.principal.authenticated_at(), p.authenticated_at());
    let q = h.auth(&access(&after)).await.unwrap();
    assert!(q.has_role("admin"));
    assert_kind(h.auth(&access(&before)).await, ErrorKind::Revoked);
    assert_kind(
        h.strategy.refresh(&refresh_token(&before), &meta()).await,
        ErrorKind::InvalidGrant,
    );
    let refreshed = h
        .strategy
        .refresh(&refresh_token(&after), &meta())
        .await
        .unwrap();
    assert!(refreshed.principal.has_role("admin"));
    let listed = h.strategy.list("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user_agent.as_deref(), Some("test-agent/1.0"));
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::SessionRotated { .. }))
        .await;

    // Step-up: re-authenticated now.
    h.clock.advance(Duration::from_secs(30));
    let stepped = h
        .strategy
        .reissue(&q, Reissue::StepUp(&ClientMeta::default()))
        .await
        .unwrap();
    assert!(stepped.principal.authenticated_at() > q.authenticated_at());
    h.log
        .wait_for(|e| matches!(e, SecurityEvent::StepUp { .. }))
        .await;
    // The old family is gone: rotating it again is refused.
    assert_kind(
        h.strategy.reissue(&q, Reissue::Rotate(None)).await,
        ErrorKind::Revoked,
    );
    // The subject cannot change.
    assert_kind(
        h.strategy
            .reissue(
                &h.auth(&access(&stepped)).await.unwrap(),
                Reissue::Rotate(Some(spec("mallory"))),
            )
            .await,
        ErrorKind::Internal,
    );
}

#[tokio::test]
async fn verify_live_follows_the_family() {
    let h = harness(Algorithm::EdDSA).await;
    let issued = h.login("alice").await;
    let p = h.auth(&access(&issued)).await.unwrap();
    h.strategy.verify_live(&p).await.unwrap();
    let other = h.second_instance().await;
    other.revoke("alice", &p.session().id).await.unwrap();
    assert_kind(h.strategy.verify_live(&p).await, ErrorKind::Revoked);
}

#[tokio::test]
async fn a_verify_only_ring_cannot_issue_or_refresh() {
    let h = harness(Algorithm::EdDSA).await;
    let issued = h.login("alice").await;
    let public =
        JwtKey::from_pem("test-key", Algorithm::EdDSA, &public_pem(Algorithm::EdDSA)).unwrap();
    let ring = Arc::new(KeyRing::new([public], None).unwrap());
    let verifier = build(&h.config, &ring, &h.store, &h.clock, &h.log);
    verifier.ready().await.unwrap();
    auth(&verifier, &access(&issued)).await.unwrap();
    assert_kind(
        verifier
            .login(spec("alice"), &meta(), Default::default())
            .await,
        ErrorKind::Internal,
    );
    assert_kind(
        verifier.refresh(&refresh_token(&issued), &meta()).await,
        ErrorKind::InvalidGrant,
    );
    // The refresh token was not consumed by the failed attempt.
    h.strategy
        .refresh(&refresh_token(&issued), &meta())
        .await
        .unwrap();
}
