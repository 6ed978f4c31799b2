//! Helpers for the hostile-input suite (`tests/hostile.rs`, `tests/hostile_races.rs`): the REAL
//! demo router (`examples/demo/app.rs`) built in process on a real store, driven with
//! `tower::ServiceExt::oneshot`, plus token forging (reusing `tests/jwt_support`) and a request
//! body that can be held open to keep a request in flight.
//!
//! Backends:
//! - [`database`]: the `database` strategy on a fresh SQLite file (cookie sessions);
//! - [`jwt`]: the `jwt` strategy on a fresh SQLite file, with fixture keys the tests also hold
//!   (`ed-1` EdDSA signs; `rs-1` RS256 and `hs-1` HS256 verify), so validly signed tokens can be
//!   forged and every refusal is attributable to the one thing a case changes;
//! - with the `postgres` feature, both strategies on a database of their own (created for the
//!   test, dropped after), optionally through a [`fault_proxy::FaultProxy`].

#![allow(dead_code, unused_imports, unused_macros)]

pub use super::{app, fault_proxy, jwt_support};

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use argon2::Params;
use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use keycard::{
    Keycard, KeycardConfig, StrategyKind,
    clock::{Clock, ManualClock},
    config::DatabaseConfig,
    jwt::{Algorithm, JwtConfig, KeyConfig, KeyRing},
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

pub use jwt_support::{AUDIENCE, ISSUER, Signer, b64, forge, forge_raw, secret_for, secs};

/// The session (or access-token) cookie name of the demo.
pub const COOKIE: &str = "__Host-keycard";
/// The client address every request comes from.
pub const PEER: ([u8; 4], u16) = ([203, 0, 113, 7], 51000);
/// The kids of the jwt backend's key ring.
pub const ED_KID: &str = "ed-1";
pub const RS_KID: &str = "rs-1";
pub const HS_KID: &str = "hs-1";

// ---------------------------------------------------------------------------------------------
// Responses and credentials

/// A collected response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The session cookie set by this response, if any (and not a removal).
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies().into_iter().find_map(|c| {
            let value = c.strip_prefix(COOKIE)?.strip_prefix('=')?;
            let value = value.split(';').next()?;
            (!value.is_empty()).then(|| value.to_owned())
        })
    }

    /// Whether the response hands out a credential: a session/access cookie with a value, or
    /// an access or refresh token in the body.
    pub fn issues_credential(&self) -> bool {
        if self.session_cookie().is_some() {
            return true;
        }
        if self.set_cookies().iter().any(|c| {
            c.starts_with("__Secure-keycard-refresh=")
                && !c.starts_with("__Secure-keycard-refresh=;")
        }) {
            return true;
        }
        serde_json::from_slice::<Value>(&self.body)
            .is_ok_and(|b| b.get("access_token").is_some() || b.get("refresh_token").is_some())
    }

    /// The `error` member of a JSON body.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|b| b.get("error").and_then(Value::as_str).map(str::to_owned))
    }
}

/// Asserts the exact status, with context, and that a refusal never hands out a credential.
#[track_caller]
pub fn expect(r: &Resp, status: StatusCode, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: expected {status}, got {} ({})",
        r.status,
        r.text()
    );
    if !status.is_success() && !status.is_redirection() {
        assert!(
            !r.issues_credential(),
            "{what}: a {status} refusal handed out a credential: {:?} {}",
            r.set_cookies(),
            r.text()
        );
    }
}

/// A credential held by a test client.
#[derive(Clone, Debug)]
pub enum Cred {
    Cookie(String),
    Bearer {
        access: String,
        refresh: Option<String>,
    },
}

impl Cred {
    pub fn access(&self) -> &str {
        match self {
            Cred::Cookie(v) => v,
            Cred::Bearer { access, .. } => access,
        }
    }

    pub fn refresh(&self) -> &str {
        match self {
            Cred::Bearer {
                refresh: Some(r), ..
            } => r,
            other => panic!("no refresh token in {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client: cheap to clone, Send + Sync, usable from spawned tasks

/// Sends requests to the demo router, advancing the manual clock between requests.
#[derive(Clone)]
pub struct Client {
    pub router: Router,
    pub clock: ManualClock,
    pub cookies: bool,
}

/// A request builder with `Host: localhost`.
pub fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
}

/// A request builder carrying `cred` in its proper transport.
pub fn with_cred(method: Method, path: &str, cred: Option<&Cred>) -> http::request::Builder {
    let b = request(method, path);
    match cred {
        None => b,
        Some(Cred::Cookie(v)) => b.header(header::COOKIE, format!("{COOKIE}={v}")),
        Some(Cred::Bearer { access, .. }) => {
            b.header(header::AUTHORIZATION, format!("Bearer {access}"))
        }
    }
}

impl Client {
    pub async fn send(&self, mut req: Request<Body>) -> Resp {
        // No two requests share an instant, as for real clients.
        self.clock.advance(Duration::from_millis(10));
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(PEER)));
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: Method, path: &str, cred: Option<&Cred>) -> Resp {
        self.send(with_cred(method, path, cred).body(Body::empty()).unwrap())
            .await
    }

    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        cred: Option<&Cred>,
        body: Value,
    ) -> Resp {
        self.send(
            with_cred(method, path, cred)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub async fn login_response(&self, user: &str, password: &str) -> Resp {
        self.call_json(
            Method::POST,
            "/login",
            None,
            json!({"username": user, "password": password}),
        )
        .await
    }

    /// The credential carried by a successful login/refresh/step-up response.
    pub fn cred_from(&self, r: &Resp) -> Cred {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        if self.cookies {
            Cred::Cookie(r.session_cookie().expect("a session cookie"))
        } else {
            let body = r.json();
            Cred::Bearer {
                access: body["access_token"]
                    .as_str()
                    .expect("access_token")
                    .to_owned(),
                refresh: body["refresh_token"].as_str().map(str::to_owned),
            }
        }
    }

    pub async fn alice(&self) -> Cred {
        let r = self.login_response("alice", "wonderland").await;
        self.cred_from(&r)
    }

    pub async fn admin(&self) -> Cred {
        let r = self
            .login_response("admin", "correct horse battery staple")
            .await;
        self.cred_from(&r)
    }

    pub async fn me(&self, cred: &Cred) -> StatusCode {
        self.call(Method::GET, "/me", Some(cred)).await.status
    }

    /// `GET /me` with a raw `Authorization` value (any bytes a header may hold).
    pub async fn me_with_authorization(&self, value: &[u8]) -> Resp {
        self.send(
            request(Method::GET, "/me")
                .header(
                    header::AUTHORIZATION,
                    HeaderValue::from_bytes(value).expect("a header value"),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `GET /me` with a raw `Cookie` value.
    pub async fn me_with_cookie(&self, value: &str) -> Resp {
        self.send(
            request(Method::GET, "/me")
                .header(header::COOKIE, value)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `POST /refresh` with `{"refresh_token": token}`.
    pub async fn refresh(&self, token: &str) -> Resp {
        self.call_json(
            Method::POST,
            "/refresh",
            None,
            json!({ "refresh_token": token }),
        )
        .await
    }

    /// The public handles of the caller's sessions, with whether each is the current one.
    pub async fn sessions(&self, cred: &Cred) -> Vec<(String, bool)> {
        let r = self.call(Method::GET, "/sessions", Some(cred)).await;
        expect(&r, StatusCode::OK, "GET /sessions");
        r.json()
            .as_array()
            .expect("array")
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().expect("id").to_owned(),
                    s["current"] == true,
                )
            })
            .collect()
    }

    pub async fn current_session_id(&self, cred: &Cred) -> String {
        self.sessions(cred)
            .await
            .into_iter()
            .find_map(|(id, current)| current.then_some(id))
            .expect("the current session is listed")
    }
}

// ---------------------------------------------------------------------------------------------
// The harness

/// The demo app on one backend, and whatever must live as long as it.
pub struct Harness {
    pub client: Client,
    pub keycard: Keycard,
    pub kind: StrategyKind,
    /// Forging material (jwt backends only).
    pub forge: Option<Forge>,
    _guards: Vec<Box<dyn Send + Sync>>,
}

impl std::ops::Deref for Harness {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

pub fn light_argon2() -> Params {
    Params::new(256, 1, 1, None).expect("valid argon2 params")
}

impl Harness {
    fn new(keycard: Keycard, clock: ManualClock, guards: Vec<Box<dyn Send + Sync>>) -> Self {
        let kind = keycard.strategy().kind();
        let users = app::Users::seeded_with(light_argon2()).expect("hash demo users");
        let forge = (kind.uses_tokens()
            && keycard
                .jwt()
                .and_then(|j| j.key_ring())
                .is_some_and(|r| r.get(ED_KID).is_some()))
        .then(|| Forge::new(clock.clone()));
        Self {
            client: Client {
                router: app::app(keycard.clone(), users),
                clock,
                cookies: !keycard.transport().read_bearer,
            },
            keycard,
            kind,
            forge,
            _guards: guards,
        }
    }

    /// The forging kit of a jwt backend.
    pub fn f(&self) -> &Forge {
        self.forge
            .as_ref()
            .expect("a jwt backend with fixture keys")
    }

    /// The key ring of a jwt backend.
    pub fn ring(&self) -> &Arc<KeyRing> {
        self.keycard
            .jwt()
            .and_then(|j| j.key_ring())
            .expect("a local key ring")
    }

    /// `GET /me` with `Authorization: Bearer <token>`.
    pub async fn me_bearer(&self, token: &str) -> Resp {
        self.me_with_authorization(format!("Bearer {token}").as_bytes())
            .await
    }

    /// Sanity check for a forging case: a token forged with the baseline header and claims is
    /// accepted right now, so a refusal of the case's token is due to what the case changed.
    pub async fn assert_control_accepted(&self) {
        let f = self.f();
        let token = f.token(&f.claims());
        let r = self.me_bearer(&token).await;
        expect(&r, StatusCode::OK, "control: the baseline forged token");
        assert_eq!(r.json()["subject"], "alice");
    }

    /// Asserts that `token` as a Bearer credential gets exactly `status` on `/me` and on
    /// `/admin`, and that the home page stays anonymous (never 2xx as a user, never 5xx).
    pub async fn assert_bearer_refused(&self, token: &str, status: StatusCode, what: &str) {
        let r = self.me_bearer(token).await;
        expect(&r, status, &format!("{what} on /me"));
        if status == StatusCode::UNAUTHORIZED {
            assert!(
                r.header(header::WWW_AUTHENTICATE)
                    .is_some_and(|w| w.starts_with("Bearer")),
                "{what}: a 401 carries a Bearer challenge: {:?}",
                r.headers
            );
        }
        let r = self
            .send(
                request(Method::GET, "/admin")
                    .header(
                        header::AUTHORIZATION,
                        HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()).unwrap(),
                    )
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(&r, status, &format!("{what} on /admin"));
    }
}

/// A keycard from config on the manual clock.
pub async fn from_config(config: &KeycardConfig, clock: &ManualClock) -> keycard::Result<Keycard> {
    let runtime = keycard::config::Runtime {
        clock: Some(Arc::new(clock.clone())),
        ..keycard::config::Runtime::default()
    };
    Keycard::from_config_with(config, runtime).await
}

/// A fresh SQLite file, removed (with its journal files) when dropped.
pub struct TempDb(std::path::PathBuf);

impl TempDb {
    pub fn new() -> Self {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-hostile");
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir.join(format!(
            "{}.db",
            keycard::token::random_id().expect("random id")
        )))
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn database_config(strategy: StrategyKind, url: &str) -> KeycardConfig {
    let mut config = KeycardConfig::new(strategy);
    config.database = Some(DatabaseConfig {
        url: url.to_owned(),
        max_connections: 4,
        migrate: true,
    });
    config
}

/// The jwt section: fixture keys (`ed-1` signs; `rs-1`, `hs-1` verify).
pub fn fixture_jwt() -> JwtConfig {
    let mut jwt = JwtConfig::new(ISSUER, AUDIENCE);
    let key = |kid: &str, alg: Algorithm, signing: bool| KeyConfig {
        kid: kid.to_owned(),
        alg,
        pem: (!alg.is_symmetric()).then(|| jwt_support::private_pem(alg)),
        pem_file: None,
        jwk: None,
        secret: alg
            .is_symmetric()
            .then(|| base64::engine::general_purpose::STANDARD.encode(secret_for(alg))),
        secret_file: None,
        signing,
    };
    jwt.keys = vec![
        key(ED_KID, Algorithm::EdDSA, true),
        key(RS_KID, Algorithm::RS256, false),
        key(HS_KID, Algorithm::HS256, false),
    ];
    jwt
}

/// The demo with the `database` strategy on a fresh SQLite file.
pub async fn database(tweak: impl FnOnce(&mut KeycardConfig)) -> Harness {
    let db = TempDb::new();
    let clock = ManualClock::new();
    let mut config = database_config(StrategyKind::Database, &db.url());
    tweak(&mut config);
    let keycard = from_config(&config, &clock)
        .await
        .unwrap_or_else(|e| panic!("keycard from config: {e} ({e:?})"));
    Harness::new(keycard, clock, vec![Box::new(db)])
}

/// The demo with the `jwt` strategy (fixture keys) and refresh families on a fresh SQLite file.
pub async fn jwt(tweak: impl FnOnce(&mut KeycardConfig)) -> Harness {
    let db = TempDb::new();
    let clock = ManualClock::new();
    let mut config = database_config(StrategyKind::Jwt, &db.url());
    config.jwt = Some(fixture_jwt());
    tweak(&mut config);
    let keycard = from_config(&config, &clock)
        .await
        .unwrap_or_else(|e| panic!("keycard from config: {e} ({e:?})"));
    Harness::new(keycard, clock, vec![Box::new(db)])
}

pub async fn database_demo() -> Harness {
    database(|_| {}).await
}

pub async fn jwt_demo() -> Harness {
    jwt(|_| {}).await
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a database of the test's own, optionally behind a fault proxy

#[cfg(feature = "postgres")]
pub mod pg {
    use super::*;
    use fault_proxy::FaultProxy;

    pub fn admin_url() -> String {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// `scheme://user@host:port` and the query string of a URL.
    fn split(url: &str) -> (String, String, String) {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b.to_owned(), format!("?{q}")),
            None => (url.to_owned(), String::new()),
        };
        let (head, hostport) = match base.rsplit_once('@') {
            Some((h, rest)) => (
                format!("{h}@"),
                rest.split('/')
                    .next()
                    .unwrap_or("127.0.0.1:5432")
                    .to_owned(),
            ),
            None => {
                let rest = base
                    .trim_start_matches("postgres://")
                    .trim_start_matches("postgresql://");
                (
                    "postgres://".to_owned(),
                    rest.split('/')
                        .next()
                        .unwrap_or("127.0.0.1:5432")
                        .to_owned(),
                )
            }
        };
        (head, hostport, query)
    }

    /// The PostgreSQL server's address.
    pub fn upstream() -> SocketAddr {
        let (_, hostport, _) = split(&admin_url());
        std::net::ToSocketAddrs::to_socket_addrs(&hostport)
            .expect("resolve the PostgreSQL host")
            .next()
            .expect("an address")
    }

    /// A database created for one test, dropped (with `psql`) when this is dropped.
    pub struct TempPg {
        pub name: String,
    }

    impl TempPg {
        pub async fn create() -> Self {
            use sqlx::Connection;
            // One CREATE DATABASE at a time (they copy the same template).
            static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
            let _one = CREATING.lock().await;
            let name = format!(
                "keycard_hostile_{}",
                keycard::token::random_id()
                    .expect("random id")
                    .to_ascii_lowercase()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(16)
                    .collect::<String>()
            );
            let mut conn = tokio::time::timeout(
                Duration::from_secs(10),
                sqlx::PgConnection::connect(&admin_url()),
            )
            .await
            .expect("PostgreSQL connect in time")
            .unwrap_or_else(|e| panic!("PostgreSQL at DATABASE_URL: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
            let _ = conn.close().await;
            Self { name }
        }

        /// The URL of this database, at `addr` (the server itself, or a proxy in front of it).
        pub fn url_via(&self, addr: SocketAddr) -> String {
            let (head, _, query) = split(&admin_url());
            format!("{head}{addr}/{}{query}", self.name)
        }

        pub fn url(&self) -> String {
            self.url_via(upstream())
        }
    }

    impl Drop for TempPg {
        fn drop(&mut self) {
            let _ = std::process::Command::new("psql")
                .arg(admin_url())
                .args(["-q", "-c"])
                .arg(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// The demo on a PostgreSQL database of its own, reached through a fault proxy.
    pub struct Faulty {
        pub h: Harness,
        pub proxy: Option<FaultProxy>,
    }

    /// The demo with `strategy` on a fresh PostgreSQL database (migrated directly), reached
    /// through a [`FaultProxy`]; `tweak` adjusts the config.
    pub async fn behind_proxy(
        strategy: StrategyKind,
        tweak: impl FnOnce(&mut KeycardConfig),
    ) -> Faulty {
        let db = TempPg::create().await;
        // Migrate directly, so the proxied pool only ever serves requests.
        let direct = keycard::store::sql::SqlStore::connect(
            &db.url(),
            keycard::store::sql::SqlOptions::default(),
        )
        .await
        .expect("migrate the test database");
        drop(direct);
        let proxy = FaultProxy::start(upstream()).await;
        let clock = ManualClock::new();
        let mut config = database_config(strategy, &db.url_via(proxy.addr));
        if strategy.uses_tokens() {
            config.jwt = Some(fixture_jwt());
        }
        config.session.store_timeout = Duration::from_millis(500);
        tweak(&mut config);
        let keycard = from_config(&config, &clock)
            .await
            .unwrap_or_else(|e| panic!("keycard from config: {e} ({e:?})"));
        Faulty {
            h: Harness::new(keycard, clock, vec![Box::new(db)]),
            proxy: Some(proxy),
        }
    }

    /// The demo with `strategy` on a fresh PostgreSQL database, directly.
    pub async fn direct(strategy: StrategyKind, tweak: impl FnOnce(&mut KeycardConfig)) -> Harness {
        let db = TempPg::create().await;
        let clock = ManualClock::new();
        let mut config = database_config(strategy, &db.url());
        config.database.as_mut().unwrap().max_connections = 8;
        if strategy.uses_tokens() {
            config.jwt = Some(fixture_jwt());
        }
        tweak(&mut config);
        let keycard = from_config(&config, &clock)
            .await
            .unwrap_or_else(|e| panic!("keycard from config: {e} ({e:?})"));
        Harness::new(keycard, clock, vec![Box::new(db)])
    }
}

// ---------------------------------------------------------------------------------------------
// Forging

/// Fixture signers holding the same private keys as the jwt backend's ring.
pub struct Forge {
    pub ed: Signer,
    pub rs: Signer,
    pub hs: Signer,
    clock: ManualClock,
}

impl Forge {
    fn new(clock: ManualClock) -> Self {
        Self {
            ed: Signer::for_alg(Algorithm::EdDSA, ED_KID).0,
            rs: Signer::for_alg(Algorithm::RS256, RS_KID).0,
            hs: Signer::for_alg(Algorithm::HS256, HS_KID).0,
            clock,
        }
    }

    /// Unix seconds now, on the app's clock.
    pub fn now(&self) -> i64 {
        secs(self.clock.now())
    }

    /// Claims that pass every check, issued now (a fresh `jti` each time).
    pub fn claims(&self) -> Value {
        let now = self.now();
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
            "exp": now + 300, "iat": now,
            "jti": keycard::token::random_id().expect("random id"),
            "sid": "forged-family", "roles": ["user"],
        })
    }

    /// The baseline claims with `claim` replaced by `value`.
    pub fn claims_with(&self, claim: &str, value: Value) -> Value {
        let mut c = self.claims();
        c[claim] = value;
        c
    }

    /// The baseline claims without `claim`.
    pub fn claims_without(&self, claim: &str) -> Value {
        let mut c = self.claims();
        c.as_object_mut().expect("object").remove(claim);
        c
    }

    /// The baseline claims as JSON text with `extra` (`,"k":v...`) spliced in before the `}`.
    pub fn claims_text_with(&self, extra: &str) -> String {
        let base = self.claims().to_string();
        format!("{}{extra}}}", &base[..base.len() - 1])
    }

    /// A token with the standard `ed-1` header and `claims`, signed by `ed-1`.
    pub fn token(&self, claims: &Value) -> String {
        forge(&self.ed, &self.ed.header(), claims)
    }

    /// A token with `header` and the baseline claims, signed by `ed-1`.
    pub fn token_with_header(&self, header: &Value) -> String {
        forge(&self.ed, header, &self.claims())
    }

    /// A token from raw header and claims texts, signed by `ed-1`.
    pub fn raw(&self, header: &str, claims: &str) -> String {
        forge_raw(header, claims, |m| self.ed.sign(m))
    }

    /// The standard `ed-1` header as text.
    pub fn header_text(&self) -> String {
        self.ed.header().to_string()
    }
}

/// HMAC-SHA256 of `msg` under `secret` (any length, even empty).
pub fn hs256(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), msg)
        .as_ref()
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// A request body held open: the request is in flight until the test releases it

/// A body that reports when the handler first reads it, then yields `release`d bytes.
pub struct GatedBody {
    started: Option<oneshot::Sender<()>>,
    release: oneshot::Receiver<Bytes>,
    done: bool,
}

/// The handles of a [`GatedBody`]: `started` fires when the handler begins reading the body
/// (every extractor before the body has run by then); send the body bytes on `release`.
pub struct Gate {
    pub started: oneshot::Receiver<()>,
    pub release: oneshot::Sender<Bytes>,
}

pub fn gated_body() -> (Body, Gate) {
    let (started_tx, started_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel();
    let body = GatedBody {
        started: Some(started_tx),
        release: release_rx,
        done: false,
    };
    (
        Body::from_stream(body),
        Gate {
            started: started_rx,
            release: release_tx,
        },
    )
}

impl futures_util::stream::Stream for GatedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(tx) = self.started.take() {
            let _ = tx.send(());
        }
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.release).poll(cx) {
            Poll::Ready(Ok(bytes)) => {
                self.done = true;
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
