//! Helpers for the hostile-input suite (`tests/hostile/hostile.rs` and `hostile_races.rs`): the
//! REAL demo router ([`super::demo`]) built in process on a real store and driven through
//! [`super::http_client::Client`], plus token forging (reusing [`super::jwt_support`]) and a
//! request body that can be held open to keep a request in flight.
//!
//! Backends:
//! - [`database`]: the `database` strategy on a fresh SQLite file (cookie sessions);
//! - [`jwt`]: the `jwt` strategy on a fresh SQLite file, with fixture keys the tests also hold
//!   (`ed-1` EdDSA signs; `rs-1` RS256 and `hs-1` HS256 verify), so validly signed tokens can be
//!   forged and every refusal is attributable to the one thing a case changes;
//! - with the `postgres` feature, both strategies on a database of their own
//!   ([`super::pg::TempPg`]), optionally through a [`super::fault_proxy::FaultProxy`].

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::body::{Body, Bytes};
use base64::Engine as _;
use http::{HeaderValue, Method, StatusCode, header};
use keycard::{
    Keycard, KeycardConfig, StrategyKind,
    clock::{Clock, ManualClock},
    jwt::{Algorithm, JwtConfig, KeyConfig, KeyRing},
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{
    demo::{self, TempDb, database_config},
    fault_proxy,
    http_client::{Client, Resp, expect, request},
    jwt_support,
};

pub use jwt_support::{AUDIENCE, ISSUER, Signer, b64, forge, forge_raw, secret_for, secs};

/// The kids of the jwt backend's key ring.
pub const ED_KID: &str = "ed-1";
pub const RS_KID: &str = "rs-1";
pub const HS_KID: &str = "hs-1";

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

impl Harness {
    fn new(keycard: Keycard, clock: ManualClock, guards: Vec<Box<dyn Send + Sync>>) -> Self {
        let kind = super::app::strategy_kind(&keycard);
        let forge = (kind.uses_tokens()
            && keycard
                .jwt()
                .and_then(|j| j.key_ring())
                .is_some_and(|r| r.get(ED_KID).is_some()))
        .then(|| Forge::new(clock.clone()));
        Self {
            client: Client {
                router: demo::router(keycard.clone()),
                clock,
                cookies: !keycard.transport().read_bearer,
                agent: None,
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
    let keycard = demo::keycard(&config, &clock).await;
    Harness::new(keycard, clock, vec![Box::new(db)])
}

/// The demo with the `jwt` strategy (fixture keys) and refresh families on a fresh SQLite file.
pub async fn jwt(tweak: impl FnOnce(&mut KeycardConfig)) -> Harness {
    let db = TempDb::new();
    let clock = ManualClock::new();
    let mut config = database_config(StrategyKind::Jwt, &db.url());
    config.jwt = Some(fixture_jwt());
    tweak(&mut config);
    let keycard = demo::keycard(&config, &clock).await;
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
    use crate::common::pg::{TempPg, upstream};
    use fault_proxy::FaultProxy;

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
        let db = TempPg::create("hostile").await;
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
        let keycard = demo::keycard(&config, &clock).await;
        Faulty {
            h: Harness::new(keycard, clock, vec![Box::new(db)]),
            proxy: Some(proxy),
        }
    }

    /// The demo with `strategy` on a fresh PostgreSQL database, directly.
    pub async fn direct(strategy: StrategyKind, tweak: impl FnOnce(&mut KeycardConfig)) -> Harness {
        let db = TempPg::create("hostile").await;
        let clock = ManualClock::new();
        let mut config = database_config(strategy, &db.url());
        config.database.as_mut().unwrap().max_connections = 8;
        if strategy.uses_tokens() {
            config.jwt = Some(fixture_jwt());
        }
        tweak(&mut config);
        let keycard = demo::keycard(&config, &clock).await;
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
            "jti": crate::common::random_id().expect("random id"),
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
