//! Verifier-only mode against a local JWKS server on 127.0.0.1: fetch, refetch on unknown `kid`
//! with a cool-down, unusable keys skipped, max-stale then fail closed, and the JWKS handler
//! served over real HTTP.
#![cfg(feature = "remote-jwks")]

use crate::common::jwt_support;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use jwt_support::*;
use keycard::{
    ErrorKind, SessionStrategy,
    jwt::{Algorithm, JwtKey, JwtStrategy, KeyRing, RemoteJwksConfig},
};
use parking_lot::Mutex;
use serde_json::json;

#[derive(Default)]
struct ServerState {
    /// A fixed body; `None` serves the live key ring.
    body: Mutex<Option<String>>,
    ring: Mutex<Option<Arc<KeyRing>>>,
    status: AtomicU16,
    hits: AtomicUsize,
    evil_hits: AtomicUsize,
}

struct Server {
    addr: SocketAddr,
    state: Arc<ServerState>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    fn set_body(&self, body: impl Into<String>) {
        *self.state.body.lock() = Some(body.into());
    }
    fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }
}

async fn jwks(State(state): State<Arc<ServerState>>) -> (StatusCode, String) {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let status =
        StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    let body = match &*state.body.lock() {
        Some(b) => b.clone(),
        None => state
            .ring
            .lock()
            .as_ref()
            .map(|r| r.jwks_json().to_string())
            .unwrap_or_default(),
    };
    (status, body)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

async fn server(ring: Option<Arc<KeyRing>>) -> Server {
    let state = Arc::new(ServerState {
        status: AtomicU16::new(200),
        ring: Mutex::new(ring),
        ..Default::default()
    });
    let evil = state.clone();
    let router = Router::new()
        .route("/jwks.json", get(jwks))
        .route(
            "/evil.json",
            get(move || {
                evil.evil_hits.fetch_add(1, Ordering::SeqCst);
                async { "{}" }
            }),
        )
        .with_state(state.clone());
    Server {
        addr: serve(router).await,
        state,
    }
}

fn remote(url: String) -> RemoteJwksConfig {
    let mut r = RemoteJwksConfig::new(url);
    r.refresh_interval = Duration::from_secs(600);
    r.refetch_cooldown = Duration::from_secs(10);
    r.max_stale = Duration::from_secs(900);
    r.timeout = Duration::from_secs(2);
    r
}

/// A verifier-only strategy on the issuer's store and clock.
fn verifier(h: &Harness, remote: RemoteJwksConfig) -> JwtStrategy {
    let mut config = h.config.clone();
    config.jwks = Some(remote);
    JwtStrategy::builder(config)
        .refresh_store(Arc::new(h.store.clone()))
        .revocation_store(Arc::new(h.store.clone()))
        .clock(Arc::new(h.clock.clone()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn verifies_with_remote_keys_and_refetches_for_a_new_kid() {
    let h = harness(Algorithm::EdDSA).await;
    let srv = server(Some(h.ring.clone())).await;
    let v = verifier(&h, remote(srv.url()));
    v.ready().await.unwrap();
    assert_eq!(srv.hits(), 1);
    assert!(v.key_ring().is_none());
    assert!(v.jwks().find("test-key").is_some());

    let issued = h.login("alice").await;
    let p = auth(&v, &access(&issued)).await.unwrap();
    assert_eq!(p.subject(), "alice");
    // Verifier-only: no issuing.
    assert_kind(
        v.login(spec("bob"), &Default::default(), Default::default())
            .await,
        ErrorKind::Internal,
    );

    // The issuer rotates to a new key; the verifier learns it on first sight of its kid.
    h.ring
        .add(JwtKey::generate("next", Algorithm::ES256).unwrap())
        .unwrap();
    h.ring.set_signer("next").unwrap();
    let rotated = h.login("alice").await;
    auth(&v, &access(&rotated)).await.unwrap();
    assert_eq!(srv.hits(), 2);
    auth(&v, &access(&rotated)).await.unwrap();
    assert_eq!(srv.hits(), 2);

    // Revocations made by the issuer reach the verifier through the shared store.
    h.strategy
        .logout(&h.auth(&access(&rotated)).await.unwrap())
        .await
        .unwrap();
    assert_kind(auth(&v, &access(&rotated)).await, ErrorKind::Revoked);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_cooldown() {
    let h = harness(Algorithm::EdDSA).await;
    let srv = server(Some(h.ring.clone())).await;
    let v = verifier(&h, remote(srv.url()));
    v.ready().await.unwrap();
    let forged = |kid: String| {
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        forge(&h.signer, &header, &h.claims())
    };
    let tokens: Vec<String> = (0..20).map(|i| forged(format!("made-up-{i}"))).collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| auth(&v, t))).await;
    for r in results {
        assert_kind(r, ErrorKind::InvalidCredential);
    }
    assert_eq!(srv.hits(), 2, "one refetch for the whole flood");
    for t in &tokens {
        assert_kind(auth(&v, t).await, ErrorKind::InvalidCredential);
    }
    assert_eq!(srv.hits(), 2);
    h.clock.advance(Duration::from_secs(10));
    assert_kind(
        auth(&v, &forged("made-up-x".into())).await,
        ErrorKind::InvalidCredential,
    );
    assert_eq!(srv.hits(), 3, "after the cool-down, one more refetch");
}

#[tokio::test]
async fn unusable_keys_are_skipped_and_the_rest_kept() {
    let h = harness(Algorithm::EdDSA).await;
    let good = h.ring.signer().unwrap().public_jwk().unwrap().clone();
    let rsa1024 = JwtKey::from_pem("weak", Algorithm::RS256, &fixture("rsa1024.pub.pem"));
    assert!(rsa1024.is_err());
    let rsa_small_n = b64(pem_der(&fixture("rsa1024.pub.pem")));
    let body = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": b64(HMAC_SECRET), "alg": "HS256"},
        {"kty": "RSA", "kid": "weak", "n": rsa_small_n, "e": "AQAB", "alg": "RS256"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AAAA", "y": "AAAA"},
        {"kty": "OKP", "kid": "bad-x", "crv": "Ed25519", "x": "!!"},
        {"kty": "OKP", "crv": "Ed25519", "x": good.x},
        {"kty": "OKP", "kid": "enc", "crv": "Ed25519", "x": good.x, "use": "enc"},
        {"kty": "OKP", "kid": "private", "crv": "Ed25519", "x": good.x, "d": b64([1u8; 32])},
        {"kty": "OKP", "kid": "none-alg", "crv": "Ed25519", "x": good.x, "alg": "none"},
        {"kty": "XYZ", "kid": "strange"},
        "not an object",
        good,
        {"kty": "OKP", "kid": "test-key", "crv": "Ed25519", "x": b64([7u8; 32])},
    ]});
    let srv = server(None).await;
    srv.set_body(body.to_string());
    let v = verifier(&h, remote(srv.url()));
    v.ready().await.unwrap();
    let kids: Vec<_> = v.jwks().keys.into_iter().filter_map(|k| k.kid).collect();
    assert_eq!(
        kids,
        ["test-key"],
        "only the usable key, first of a duplicated kid"
    );
    auth(&v, &access(&h.login("alice").await)).await.unwrap();
    // A token naming a skipped HMAC key, signed with its secret, is refused.
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "hmac"});
    let token = forge_raw(&header.to_string(), &h.claims().to_string(), |m| {
        aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &HMAC_SECRET),
            m,
        )
        .as_ref()
        .to_vec()
    });
    assert_kind(auth(&v, &token).await, ErrorKind::InvalidCredential);
}

#[tokio::test]
async fn failed_refetches_keep_the_previous_keys_until_max_stale_then_fail_closed() {
    let h = harness(Algorithm::EdDSA).await;
    let srv = server(Some(h.ring.clone())).await;
    let v = verifier(&h, remote(srv.url()));
    v.ready().await.unwrap();
    let token = access(&h.login("alice").await);
    auth(&v, &token).await.unwrap();

    // The key server breaks in several ways; each refetch fails and the known key keeps working.
    let unknown = forge(
        &h.signer,
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "new"}),
        &h.claims(),
    );
    for broken in [
        Some((500, "{}".to_owned())),
        Some((200, "not json".to_owned())),
        Some((200, json!({"keys": []}).to_string())),
        Some((
            200,
            json!({"keys": [{"kty": "oct", "kid": "x", "k": "AAAA"}]}).to_string(),
        )),
        Some((
            200,
            format!("{{\"keys\":[\"{}\"]}}", "x".repeat(300 * 1024)),
        )),
        Some((302, String::new())),
    ] {
        let (status, body) = broken.unwrap();
        srv.set_status(status);
        srv.set_body(body);
        let before = srv.hits();
        h.clock.advance(Duration::from_secs(10));
        assert_kind(auth(&v, &unknown).await, ErrorKind::InvalidCredential);
        assert_eq!(srv.hits(), before + 1);
        auth(&v, &token).await.unwrap();
    }
    // 60 s have passed; at 15 min since the last good fetch the keys are too stale to use.
    h.clock.advance(Duration::from_secs(900 - 60 - 1));
    let cached = access(&h.login("bob").await);
    auth(&v, &cached).await.unwrap();
    h.clock.advance(Duration::from_secs(2));
    // Cached verifications are not served past the bound either.
    assert_kind(auth(&v, &cached).await, ErrorKind::StoreUnavailable);
    let fresh = access(&h.login("carol").await);
    assert_kind(auth(&v, &fresh).await, ErrorKind::StoreUnavailable);
}

#[tokio::test]
async fn an_unreachable_jwks_at_start_fails_ready_and_requests() {
    let h = harness(Algorithm::EdDSA).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let v = verifier(&h, remote(format!("http://{closed}/jwks.json")));
    assert_kind(v.ready().await, ErrorKind::StoreUnavailable);
    let token = access(&h.login("alice").await);
    assert_kind(auth(&v, &token).await, ErrorKind::StoreUnavailable);
    // A key server answering 404 is no better.
    let srv = server(None).await;
    srv.set_status(404);
    srv.set_body("missing");
    let v = verifier(&h, remote(srv.url()));
    assert_kind(v.ready().await, ErrorKind::StoreUnavailable);
}

#[tokio::test]
async fn token_headers_never_choose_where_keys_come_from() {
    let h = harness(Algorithm::EdDSA).await;
    let srv = server(Some(h.ring.clone())).await;
    let v = verifier(&h, remote(srv.url()));
    v.ready().await.unwrap();
    let evil = format!("http://{}/evil.json", srv.addr);
    for header in [
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","jku": evil}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"other","jku": evil}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","x5u": evil}),
    ] {
        assert_kind(
            auth(&v, &forge(&h.signer, &header, &h.claims())).await,
            ErrorKind::InvalidCredential,
        );
    }
    assert_eq!(srv.state.evil_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_jwks_handler_serves_a_verifier_over_http() {
    let h = harness(Algorithm::ES256).await;
    h.ring
        .add(JwtKey::generate("hmac", Algorithm::HS512).unwrap())
        .unwrap();
    let addr = serve(h.strategy.jwks_router()).await;
    let url = format!("http://{addr}/.well-known/jwks.json");
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(body["keys"][0]["kid"], "test-key");
    assert_eq!(body["keys"][0]["alg"], "ES256");
    assert_eq!(body["keys"][0]["use"], "sig");
    assert!(body["keys"][0].get("d").is_none());

    let v = verifier(&h, remote(url));
    v.ready().await.unwrap();
    auth(&v, &access(&h.login("alice").await)).await.unwrap();
    // Tokens signed with the HMAC key cannot be verified by the remote verifier.
    h.ring.set_signer("hmac").unwrap();
    let hs = access(&h.login("alice").await);
    h.auth(&hs).await.unwrap();
    assert_kind(auth(&v, &hs).await, ErrorKind::InvalidCredential);
}
