//! No secret in logs: every `tracing` event and span (TRACE and up, every target) emitted while
//! the real router serves logins, authenticated requests, refreshes, rotations, revocations,
//! logouts and failures is captured, and no session token, access token or refresh token the
//! clients saw may appear in it. `Debug` of every secret-bearing type is checked too.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use keycard::{
    Keycard, KeycardConfig, Principal,
    clock::ManualClock,
    jwt::{Algorithm, JwtConfig, JwtKey, JwtStrategy, KeyConfig, KeyRing},
    store::{
        CreateOutcome, DataLimits, DataPatch, MemoryStore, RefreshRecord, RefreshStore, Revocation,
        RevocationFeed, RevocationStore, RotateOutcome, RotateRequest, SessionLimit, SessionRecord,
        SessionStore, StoreError, StoreResult,
    },
    strategy::{
        AccessToken, ClientMeta, Credential, CredentialSource, Issued, ServerSessions,
        ServerSettings,
    },
    token::{OpaqueToken, TokenHash},
    transport::TransportSettings,
};
use serde_json::{Value, json};

use crate::common::{http_client::send, log_capture::capture, test_app::router};

// ------------------------------------------------------------------ log capture
//
// `common::log_capture`: the binary's one global subscriber, capturing per thread. The capturing
// tests run on `current_thread` runtimes, so everything their flows log is on their thread.

/// A capture sees its own thread only: the other tests of this binary (on their own threads) do
/// not write into it, and another capture running at the same time is kept apart.
#[test]
fn log_capture_is_per_thread() {
    let (logs, _guard) = capture();
    tracing::info!(marker = "capture-mine", "on the capturing thread");
    std::thread::spawn(|| {
        tracing::info!(
            marker = "capture-theirs",
            "on a thread that does not capture"
        );
        let (other, _guard) = capture();
        tracing::info!(marker = "capture-other", "on another capturing thread");
        let text = other.text();
        assert!(text.contains("capture-other"), "{text}");
        assert!(!text.contains("capture-mine"), "{text}");
    })
    .join()
    .expect("the other thread");
    let text = logs.text();
    assert!(text.contains("capture-mine"), "{text}");
    assert!(!text.contains("capture-theirs"), "{text}");
    assert!(!text.contains("capture-other"), "{text}");
}

/// Secrets seen by clients, and the parts of them that must not leak either.
#[derive(Default)]
struct Secrets(BTreeSet<String>);

impl Secrets {
    fn add(&mut self, s: &str) {
        if !s.is_empty() {
            self.0.insert(s.to_owned());
        }
    }

    /// Collects every non-empty `Set-Cookie` value and every token in a JSON body.
    fn collect(&mut self, headers: &axum::http::HeaderMap, body: &Value) {
        for v in headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().expect("ASCII cookie");
            let pair = v.split(';').next().unwrap_or_default();
            if let Some((_, value)) = pair.split_once('=') {
                self.add(value);
            }
        }
        for field in ["access_token", "refresh_token"] {
            if let Some(t) = body[field].as_str() {
                self.add(t);
            }
        }
    }

    /// The substrings that must not appear: each whole secret; for opaque tokens every 16-byte
    /// window; for JWTs the signature segment and its 16-byte windows (header and claims are
    /// not secret on their own: `kid`, `sub` and `jti` may legitimately be logged).
    fn needles(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for s in &self.0 {
            out.insert(s.clone());
            let secret_part = s.rsplit('.').next().unwrap_or(s);
            for w in secret_part.as_bytes().windows(16) {
                out.insert(String::from_utf8(w.to_vec()).expect("ASCII"));
            }
        }
        out
    }

    #[track_caller]
    fn assert_absent_from(&self, logs: &str) {
        assert!(!self.0.is_empty(), "no secrets were collected");
        for needle in self.needles() {
            assert!(
                !logs.contains(&needle),
                "a secret (or a 16-byte piece of one) appears in the logs: {needle:?}\n--- logs ---\n{logs}"
            );
        }
    }
}

// ------------------------------------------------------------------ a store that can go down

/// A `MemoryStore` that fails every call with "unavailable" while `down` is set.
#[derive(Debug, Clone, Default)]
struct Switchable {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
}

impl Switchable {
    fn check(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("connection refused"))
        } else {
            Ok(())
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl SessionStore for Switchable {
    async fn create(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        self.check()?;
        SessionStore::create(&self.inner, record, limit).await
    }
    async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>> {
        self.check()?;
        SessionStore::load(&self.inner, id, now).await
    }
    async fn touch(&self, id: &TokenHash, seen: SystemTime, exp: SystemTime) -> StoreResult<bool> {
        self.check()?;
        SessionStore::touch(&self.inner, id, seen, exp).await
    }
    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        self.check()?;
        SessionStore::rotate(&self.inner, old, new).await
    }
    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
        self.check()?;
        SessionStore::delete(&self.inner, subject, id).await
    }
    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.check()?;
        SessionStore::delete_all(&self.inner, subject).await
    }
    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        self.check()?;
        SessionStore::list(&self.inner, subject, now).await
    }
    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.check()?;
        SessionStore::sweep(&self.inner, now).await
    }
    async fn update_data(
        &self,
        id: &TokenHash,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        self.check()?;
        SessionStore::update_data(&self.inner, id, patch, limits, now).await
    }
}

#[async_trait]
impl RefreshStore for Switchable {
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool> {
        self.check()?;
        RefreshStore::insert(&self.inner, record).await
    }
    async fn rotate(&self, request: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        self.check()?;
        RefreshStore::rotate(&self.inner, request).await
    }
    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        self.check()?;
        RefreshStore::family_live(&self.inner, family, now).await
    }
    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        self.check()?;
        RefreshStore::delete_family(&self.inner, subject, family).await
    }
    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.check()?;
        RefreshStore::delete_all(&self.inner, subject).await
    }
    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        self.check()?;
        RefreshStore::list(&self.inner, subject, now).await
    }
    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.check()?;
        RefreshStore::sweep(&self.inner, now).await
    }
    async fn family_data(&self, family: &str, now: SystemTime) -> StoreResult<Option<String>> {
        self.check()?;
        RefreshStore::family_data(&self.inner, family, now).await
    }
    async fn update_family_data(
        &self,
        family: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        self.check()?;
        RefreshStore::update_family_data(&self.inner, family, patch, limits, now).await
    }
}

#[async_trait]
impl RevocationStore for Switchable {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        self.check()?;
        RevocationStore::revoke(&self.inner, revocation).await
    }
    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        self.check()?;
        RevocationStore::load(&self.inner, now).await
    }
    async fn is_revoked(&self, jti: &str, subject: &str, at: SystemTime) -> StoreResult<bool> {
        self.check()?;
        RevocationStore::is_revoked(&self.inner, jti, subject, at).await
    }
    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        self.check()?;
        RevocationStore::subscribe(&self.inner).await
    }
    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.check()?;
        RevocationStore::sweep(&self.inner, now).await
    }
}

// ------------------------------------------------------------------ the app

// `common::test_app::router`: its `/login` takes the subject and roles from the JSON body, and
// every route that issues a credential answers with it (`keycard::testing::router`).

/// A client of the app that records every secret it is handed.
struct Client {
    app: Router,
    secrets: Secrets,
}

/// How a request carries its credential.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    Cookie(&'a str),
    Bearer(&'a str),
    Raw(&'a str, &'a str),
}

impl Client {
    /// Sends a request with `cred` and `body` (as JSON), records every secret in the response,
    /// and returns the status and the JSON body, with a `cookie` member holding the
    /// `name=value` pair of a cookie the server sets.
    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        cred: Cred<'_>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        match cred {
            Cred::None => {}
            Cred::Cookie(c) => b = b.header(header::COOKIE, c),
            Cred::Bearer(t) => b = b.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Cred::Raw(name, value) => b = b.header(name, value),
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .expect("request");
        let resp = send(&self.app, req).await;
        let body = resp.json_or_null();
        self.secrets.collect(&resp.headers, &body);
        // A cookie the server sets, as the `name=value` pair the client sends back.
        let cookie = resp
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .find(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()));
        let body = match (body, cookie) {
            (Value::Object(mut m), Some(c)) => {
                m.insert("cookie".into(), json!(c));
                Value::Object(m)
            }
            (Value::Null, Some(c)) => json!({ "cookie": c }),
            (b, _) => b,
        };
        (resp.status, body)
    }
}

/// Checks that the capture works: these words (event names, the store failure) were logged.
#[track_caller]
fn assert_logged(text: &str, words: &[&str]) {
    let lower = text.to_lowercase();
    for w in words {
        assert!(lower.contains(w), "`{w}` was not logged:\n{text}");
    }
}

/// The same credential with one character changed (staying in the base64url alphabet).
fn tamper(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).expect("ASCII")
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

// ------------------------------------------------------------------ server sessions

#[tokio::test(flavor = "current_thread")]
async fn server_sessions_never_log_a_session_token() {
    let (logs, _guard) = capture();
    let store = Switchable::default();
    let clock = ManualClock::new();
    let strategy = ServerSessions::new(
        Arc::new(store.clone()),
        ServerSettings {
            store_timeout: Duration::from_millis(500),
            ..ServerSettings::default()
        },
    )
    .with_clock(Arc::new(clock.clone()));
    let keycard = Keycard::builder()
        .strategy(strategy)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("keycard");
    let mut c = Client {
        app: router(&keycard),
        secrets: Secrets::default(),
    };
    let login = json!({"subject": "alice", "roles": ["user"]});

    // Two logins, authenticated requests, a rotation and a step-up.
    let (s, a) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    assert_eq!(s, StatusCode::OK);
    let a1 = str_of(&a, "cookie").to_owned();
    let (s, b) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    assert_eq!(s, StatusCode::OK);
    let b1 = str_of(&b, "cookie").to_owned();
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&a1), None).await.0,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(600)); // past the renewal interval: a store write
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&a1), None).await.0,
        StatusCode::OK
    );
    let (s, p) = c
        .exchange("POST", "/promote", Cred::Cookie(&a1), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let a2 = str_of(&p, "cookie").to_owned();
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&a1), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, u) = c
        .exchange("POST", "/step-up", Cred::Cookie(&a2), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let a3 = str_of(&u, "cookie").to_owned();

    // Failures: a tampered token, an unknown one, duplicates, oversized, too many cookies.
    let (name, value) = a3.split_once('=').expect("pair");
    let tampered = format!("{name}={}", tamper(value));
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&tampered), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let unknown = format!(
        "{name}={}",
        OpaqueToken::generate().unwrap().expose_secret()
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&unknown), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let twice = format!("{a3}; {b1}");
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&twice), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let huge = format!("{a3}{}", "A".repeat(5000));
    assert!(
        c.exchange("GET", "/me", Cred::Cookie(&huge), None)
            .await
            .0
            .is_client_error()
    );
    let many = (0..300)
        .map(|i| format!("c{i}=v"))
        .collect::<Vec<_>>()
        .join("; ")
        + "; "
        + &a3;
    assert!(
        c.exchange("GET", "/me", Cred::Cookie(&many), None)
            .await
            .0
            .is_client_error()
    );
    let bearer = format!("Bearer {value}");
    assert!(
        c.exchange("GET", "/me", Cred::Raw("authorization", &bearer), None)
            .await
            .0
            .is_client_error()
    );

    // List and revoke the other session; logout; logout everywhere.
    let (s, list) = c
        .exchange("GET", "/sessions", Cred::Cookie(&a3), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let other = str_of(&b, "session");
    assert!(
        list.as_array()
            .expect("sessions")
            .iter()
            .any(|s| s["id"] == other),
        "{list}"
    );
    let path = format!("/sessions/{other}");
    assert_eq!(
        c.exchange("DELETE", &path, Cred::Cookie(&a3), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&b1), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.exchange("POST", "/logout", Cred::Cookie(&a3), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&a3), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, x) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let (_, y) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let (x, y) = (
        str_of(&x, "cookie").to_owned(),
        str_of(&y, "cookie").to_owned(),
    );
    assert_eq!(
        c.exchange("POST", "/logout-all", Cred::Cookie(&x), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&y), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The store goes down: 503, logged as an error; then it comes back.
    let (_, z) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let z = str_of(&z, "cookie").to_owned();
    store.set_down(true);
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&z), None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        c.exchange("POST", "/login", Cred::None, Some(login.clone()))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        c.exchange("POST", "/logout", Cred::Cookie(&z), None)
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    store.set_down(false);
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&z), None).await.0,
        StatusCode::OK
    );

    c.secrets.add(&tamper(value));
    let text = logs.text();
    // The capture works: the security events and the 503 were logged.
    assert_logged(
        &text,
        &[
            "login",
            "session_rotated",
            "logout",
            "all_sessions_revoked",
            "unavailable",
        ],
    );
    c.secrets.assert_absent_from(&text);
}

// ------------------------------------------------------------------ JWT

async fn jwt_app(transport: Option<TransportSettings>) -> (Client, Switchable, ManualClock) {
    let store = Switchable::default();
    let clock = ManualClock::new();
    let ring = KeyRing::new(
        [JwtKey::generate("k1", Algorithm::EdDSA).unwrap()],
        Some("k1"),
    )
    .unwrap();
    // Every second use of a refresh token is reuse here (no grace window), so that the flows
    // below report it.
    let mut config = JwtConfig::new("https://auth.test", "https://api.test");
    config.refresh.grace = std::time::Duration::ZERO;
    let strategy = JwtStrategy::builder(config)
        .key_ring(Arc::new(ring))
        .refresh_store(Arc::new(store.clone()))
        .revocation_store(Arc::new(store.clone()))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("strategy");
    strategy.ready().await.expect("ready");
    let mut builder = Keycard::builder()
        .strategy(strategy)
        .clock(Arc::new(clock.clone()));
    if let Some(t) = transport {
        builder = builder.transport(t);
    }
    let keycard = builder.build().expect("keycard");
    let client = Client {
        app: router(&keycard),
        secrets: Secrets::default(),
    };
    (client, store, clock)
}

#[tokio::test(flavor = "current_thread")]
async fn jwt_never_logs_an_access_or_refresh_token() {
    let (logs, _guard) = capture();
    let (mut c, store, clock) = jwt_app(None).await;
    let login = json!({"subject": "bob", "roles": ["user"]});

    let (s, l) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (a1, r1) = (
        str_of(&l, "access_token").to_owned(),
        str_of(&l, "refresh_token").to_owned(),
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&a1), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&a1), None).await.0,
        StatusCode::OK
    ); // cached

    // Tampered tokens: signature, claims, header; alg none; a tampered refresh token.
    let tampered = tamper(&a1);
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&tampered), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let parts: Vec<&str> = a1.split('.').collect();
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&alg_none), None)
            .await
            .0
            .as_u16()
            / 100,
        4
    );
    let other_sig = format!("{}.{}.{}", parts[0], tamper(parts[1]), parts[2]);
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&other_sig), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let bad_refresh = json!({"refresh_token": tamper(&r1)});
    assert!(
        c.exchange("POST", "/refresh", Cred::None, Some(bad_refresh))
            .await
            .0
            .is_client_error()
    );
    let both = format!("Bearer {a1}, Bearer {a1}");
    assert!(
        c.exchange("GET", "/me", Cred::Raw("authorization", &both), None)
            .await
            .0
            .is_client_error()
    );

    // Refresh, then reuse of the spent token: the family is revoked.
    let (s, r) = c
        .exchange(
            "POST",
            "/refresh",
            Cred::None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (a2, r2) = (
        str_of(&r, "access_token").to_owned(),
        str_of(&r, "refresh_token").to_owned(),
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&a2), None).await.0,
        StatusCode::OK
    );
    let (s, _) = c
        .exchange(
            "POST",
            "/refresh",
            Cred::None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert!(s.is_client_error(), "reuse: {s}");
    assert!(
        c.exchange(
            "POST",
            "/refresh",
            Cred::None,
            Some(json!({"refresh_token": r2}))
        )
        .await
        .0
        .is_client_error()
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&a2), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Rotation, listing and revoking a family, logout, logout everywhere.
    let (_, l3) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let a3 = str_of(&l3, "access_token").to_owned();
    let (_, l4) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let a4 = str_of(&l4, "access_token").to_owned();
    let (s, p) = c
        .exchange("POST", "/promote", Cred::Bearer(&a3), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let a3 = str_of(&p, "access_token").to_owned();
    assert_eq!(
        c.exchange("GET", "/sessions", Cred::Bearer(&a3), None)
            .await
            .0,
        StatusCode::OK
    );
    let path = format!("/sessions/{}", str_of(&l4, "session"));
    assert_eq!(
        c.exchange("DELETE", &path, Cred::Bearer(&a3), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&a4), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.exchange("POST", "/logout", Cred::Bearer(&a3), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&a3), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, l5) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let (_, l6) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let a5 = str_of(&l5, "access_token").to_owned();
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        c.exchange("POST", "/logout-all", Cred::Bearer(&a5), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.exchange(
            "GET",
            "/me",
            Cred::Bearer(str_of(&l6, "access_token")),
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let r6 = json!({"refresh_token": str_of(&l6, "refresh_token")});
    assert!(
        c.exchange("POST", "/refresh", Cred::None, Some(r6))
            .await
            .0
            .is_client_error()
    );

    // Expiry.
    let (_, l7) = c
        .exchange("POST", "/login", Cred::None, Some(login.clone()))
        .await;
    let (a7, r7) = (
        str_of(&l7, "access_token").to_owned(),
        str_of(&l7, "refresh_token").to_owned(),
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        c.exchange("GET", "/me", Cred::Bearer(&a7), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The store goes down: login, refresh and logout answer 503.
    store.set_down(true);
    assert_eq!(
        c.exchange("POST", "/login", Cred::None, Some(login.clone()))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r7 = json!({"refresh_token": r7});
    assert_eq!(
        c.exchange("POST", "/refresh", Cred::None, Some(r7.clone()))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    store.set_down(false);
    let (s, r) = c.exchange("POST", "/refresh", Cred::None, Some(r7)).await;
    assert_eq!(s, StatusCode::OK, "recovers: {r}");
    let a8 = str_of(&r, "access_token").to_owned();
    store.set_down(true);
    assert_eq!(
        c.exchange("POST", "/logout", Cred::Bearer(&a8), None)
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    store.set_down(false);

    for t in [&tampered, &alg_none, &other_sig] {
        c.secrets.add(t);
    }
    let text = logs.text();
    assert_logged(
        &text,
        &[
            "login",
            "refresh_rotated",
            "refresh_reuse_detected",
            "logout",
            "unavailable",
        ],
    );
    c.secrets.assert_absent_from(&text);
}

#[tokio::test(flavor = "current_thread")]
async fn jwt_with_cookies_never_logs_a_token() {
    let (logs, _guard) = capture();
    let transport = TransportSettings {
        read_cookie: true,
        read_bearer: true,
        cookie_name: "__Host-keycard-at".into(),
        refresh_cookie_name: Some("__Secure-keycard-refresh".into()),
        ..TransportSettings::default()
    };
    let (mut c, _store, _clock) = jwt_app(Some(transport)).await;
    let (s, l) = c
        .exchange(
            "POST",
            "/login",
            Cred::None,
            Some(json!({"subject": "carol", "roles": ["user"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let access = format!("__Host-keycard-at={}", str_of(&l, "access_token"));
    let refresh = format!("__Secure-keycard-refresh={}", str_of(&l, "refresh_token"));
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&access), None)
            .await
            .0,
        StatusCode::OK
    );
    let (s, r) = c
        .exchange("POST", "/refresh", Cred::Cookie(&refresh), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, _) = c
        .exchange("POST", "/refresh", Cred::Cookie(&refresh), Some(json!({})))
        .await;
    assert!(s.is_client_error());
    let tampered = format!("__Host-keycard-at={}", tamper(str_of(&r, "access_token")));
    assert_eq!(
        c.exchange("GET", "/me", Cred::Cookie(&tampered), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // The reuse revoked the family: its newest access token is dead, by cookie or by header.
    let revoked = format!("__Host-keycard-at={}", str_of(&r, "access_token"));
    let bearer = format!("Bearer {}", str_of(&r, "access_token"));
    let by_header = c
        .exchange("GET", "/me", Cred::Raw("authorization", &bearer), None)
        .await
        .0;
    assert_eq!(by_header, StatusCode::UNAUTHORIZED);
    let by_cookie = c
        .exchange("POST", "/logout", Cred::Cookie(&revoked), None)
        .await
        .0;
    assert!(by_cookie.is_client_error(), "{by_cookie}");
    let text = logs.text();
    assert_logged(
        &text,
        &["login", "refresh_rotated", "refresh_reuse_detected"],
    );
    c.secrets.assert_absent_from(&text);
}

// ------------------------------------------------------------------ Debug is redacted

/// Renderings of `secret` that a careless `Debug` would print.
fn forms(secret: &[u8]) -> Vec<String> {
    let mut out = vec![
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        secret.iter().map(|b| format!("{b:02x}")).collect(),
        format!("{secret:?}")[..40].to_owned(),
    ];
    if let Ok(s) = std::str::from_utf8(secret) {
        out.push(s.to_owned());
    }
    out
}

#[track_caller]
fn assert_redacted(what: &str, debug: String, secrets: &[String]) {
    for s in secrets {
        for window in s.as_bytes().windows(16.min(s.len())) {
            let w = String::from_utf8_lossy(window);
            assert!(
                !debug.contains(&*w),
                "{what}: Debug shows {w:?} of a secret:\n{debug}"
            );
        }
    }
}

fn pem_body(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn debug_of_secret_bearing_types_is_redacted() {
    let session = OpaqueToken::generate().unwrap();
    let refresh = OpaqueToken::generate().unwrap();
    let token_secrets = vec![
        session.expose_secret().to_owned(),
        refresh.expose_secret().to_owned(),
    ];
    for t in [&session, &refresh] {
        assert_redacted("OpaqueToken", format!("{t:?}"), &token_secrets);
        assert_redacted("OpaqueToken", format!("{t:#?}"), &token_secrets);
    }

    // A real access token, from a strategy.
    let ring = KeyRing::new(
        [JwtKey::generate("k1", Algorithm::EdDSA).unwrap()],
        Some("k1"),
    )
    .unwrap();
    let strategy = JwtStrategy::builder(JwtConfig::new("https://auth.test", "api"))
        .key_ring(Arc::new(ring))
        .build()
        .unwrap();
    strategy.ready().await.unwrap();
    let issued = keycard::SessionStrategy::login(
        &strategy,
        Principal::builder("dave").role("user").build(),
        &ClientMeta::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let access = issued.access_token.clone().unwrap();
    let jwt_secrets = vec![
        access.token.clone(),
        access.token.rsplit('.').next().unwrap().to_owned(),
        issued
            .refresh_token
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_owned(),
    ];
    assert_redacted("AccessToken", format!("{access:?}"), &jwt_secrets);
    assert_redacted("Issued", format!("{issued:?}"), &jwt_secrets);
    assert_redacted("Issued", format!("{issued:#?}"), &jwt_secrets);
    let server_issued = Issued {
        principal: issued.principal.clone(),
        session_token: Some(session.clone()),
        session_max_age: Some(Duration::from_secs(60)),
        access_token: Some(AccessToken {
            token: access.token.clone(),
            expires_in: Duration::from_secs(60),
        }),
        refresh_token: Some(refresh.clone()),
        refresh_max_age: None,
    };
    let mut all = token_secrets.clone();
    all.extend(jwt_secrets.iter().cloned());
    assert_redacted("Issued", format!("{server_issued:#?}"), &all);
    for (value, source) in [
        (session.expose_secret(), CredentialSource::Cookie),
        (access.token.as_str(), CredentialSource::Bearer),
    ] {
        let c = Credential { value, source };
        assert_redacted("Credential", format!("{c:?}"), &all);
    }

    // Keys: HMAC secrets, private PEMs, private JWKs.
    let hs_secret = b"hs512-secret-for-the-debug-test-0123456789-abcdefghijklmnopqrstuv";
    let hs = JwtKey::hmac("hs", Algorithm::HS512, hs_secret).unwrap();
    let hs_forms = forms(hs_secret);
    assert_redacted("JwtKey (HMAC)", format!("{hs:?}"), &hs_forms);
    let pem = pkcs8_pem();
    let pem_lines = pem_body(&pem);
    let ed = JwtKey::from_pem("ed", Algorithm::EdDSA, &pem).unwrap();
    assert_redacted("JwtKey (PEM)", format!("{ed:#?}"), &pem_lines);
    let ring = KeyRing::new([hs.clone(), ed.clone()], Some("ed")).unwrap();
    let mut key_secrets = hs_forms.clone();
    key_secrets.extend(pem_lines.iter().cloned());
    assert_redacted("KeyRing", format!("{ring:#?}"), &key_secrets);
    let strategy = JwtStrategy::builder(JwtConfig::new("https://auth.test", "api"))
        .key_ring(Arc::new(ring))
        .build()
        .unwrap();
    assert_redacted("JwtStrategy", format!("{strategy:#?}"), &key_secrets);

    // Config: a [jwt] section with an inline HMAC secret, PEM and private JWK.
    let jwk_d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    let secret_b64 = STANDARD.encode(hs_secret);
    let toml_text = format!(
        r#"
strategy = "jwt"
[jwt]
issuer = "https://auth.test"
audience = "api"

[[jwt.keys]]
kid = "hs"
alg = "HS512"
secret = "{secret_b64}"

[[jwt.keys]]
kid = "ed"
alg = "EdDSA"
signing = true
pem = """
{pem}"""

[[jwt.keys]]
kid = "jwk"
alg = "EdDSA"
jwk = {{ kty = "OKP", crv = "Ed25519", d = "{jwk_d}", x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }}
"#
    );
    let config = KeycardConfig::from_toml(&toml_text).expect("config");
    let mut config_secrets = key_secrets.clone();
    config_secrets.push(secret_b64.clone());
    config_secrets.push(jwk_d.to_owned());
    assert_redacted("KeycardConfig", format!("{config:?}"), &config_secrets);
    assert_redacted("KeycardConfig", format!("{config:#?}"), &config_secrets);
    let jwt = config.jwt.clone().expect("jwt section");
    assert_redacted("JwtConfig", format!("{jwt:#?}"), &config_secrets);
    for k in &jwt.keys {
        assert_redacted("KeyConfig", format!("{k:#?}"), &config_secrets);
    }
    let hs_config = KeyConfig {
        kid: "hs".into(),
        alg: Algorithm::HS256,
        pem: None,
        pem_file: None,
        jwk: None,
        secret: Some(secret_b64.clone()),
        secret_file: None,
        signing: true,
    };
    let mut jwt_config = JwtConfig::new("https://auth.test", "api");
    jwt_config.keys.push(hs_config);
    assert_redacted("JwtConfig (HS)", format!("{jwt_config:?}"), &config_secrets);
    let builder = JwtStrategy::builder(jwt_config);
    assert_redacted(
        "JwtStrategyBuilder",
        format!("{builder:#?}"),
        &config_secrets,
    );
}

/// A PKCS#8 Ed25519 private key in PEM, generated for this test.
fn pkcs8_pem() -> String {
    use aws_lc_rs::{rand::SystemRandom, signature::Ed25519KeyPair};
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let b64 = STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

#[test]
fn debug_of_config_with_store_credentials_is_redacted() {
    let config = KeycardConfig::from_toml(
        r#"
strategy = "database"
[database]
url = "postgres://keycard:hunter2-db-password@db.internal/keycard"
[redis]
url = "redis://:hunter2-redis-password@cache.internal:6379"
"#,
    )
    .expect("config");
    let secrets = [
        "hunter2-db-password".to_owned(),
        "hunter2-redis-password".to_owned(),
    ];
    assert_redacted("KeycardConfig", format!("{config:?}"), &secrets);
    assert_redacted("DatabaseConfig", format!("{:?}", config.database), &secrets);
    assert_redacted("RedisConfig", format!("{:?}", config.redis), &secrets);
}
