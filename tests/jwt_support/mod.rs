//! Helpers for the JWT tests: fixture keys, an independent signer for forging tokens, and a
//! harness around a `JwtStrategy` on a `MemoryStore` with a `ManualClock`.
#![allow(dead_code)]

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    hmac,
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use keycard::{
    Error, ErrorKind, Principal, PrincipalSpec, SessionStrategy,
    clock::{Clock, ManualClock},
    events::{EventHook, Events, SecurityEvent},
    jwt::{Algorithm, JwtConfig, JwtKey, JwtStrategy, KeyRing},
    store::MemoryStore,
    strategy::{ClientMeta, Credential, CredentialSource, Issued},
};
use parking_lot::Mutex;
use serde_json::{Value, json};

pub const ISSUER: &str = "https://auth.keycard.test";
pub const AUDIENCE: &str = "https://api.keycard.test";

/// A fixture file from `tests/jwt_support/keys`.
pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/jwt_support/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// DER of the key block of a PEM (skipping `EC PARAMETERS`).
pub fn pem_der(pem: &str) -> Vec<u8> {
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN") {
            inside = !line.contains("EC PARAMETERS");
            continue;
        }
        if line.starts_with("-----END") {
            if inside {
                break;
            }
            continue;
        }
        if inside {
            body.push_str(line.trim());
        }
    }
    STANDARD.decode(body).expect("fixture PEM")
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A 64-byte HMAC secret (enough for every HS algorithm).
pub const HMAC_SECRET: [u8; 64] = {
    let mut s = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        s[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    s
};

/// The fixture private key (PEM) for an asymmetric algorithm.
pub fn private_pem(alg: Algorithm) -> String {
    fixture(match alg {
        Algorithm::EdDSA => "ed25519.pem",
        Algorithm::ES256 => "es256.pem",
        Algorithm::ES384 => "es384.pem",
        Algorithm::RS256 | Algorithm::PS256 => "rsa2048.pem",
        other => panic!("{other} has no PEM"),
    })
}

/// The fixture public key (PEM, SPKI) for an asymmetric algorithm.
pub fn public_pem(alg: Algorithm) -> String {
    fixture(match alg {
        Algorithm::EdDSA => "ed25519.pub.pem",
        Algorithm::ES256 => "es256.pub.pem",
        Algorithm::ES384 => "es384.pub.pem",
        Algorithm::RS256 | Algorithm::PS256 => "rsa2048.pub.pem",
        other => panic!("{other} has no PEM"),
    })
}

enum Kind {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair, bool),
    Hmac(Box<hmac::Key>),
}

/// An independent signer (aws-lc-rs directly) holding the same private key as the strategy's
/// key, to mint arbitrary, validly signed tokens.
pub struct Signer {
    pub alg: Algorithm,
    pub kid: String,
    kind: Kind,
}

impl Signer {
    /// The fixture signer for `alg`, and the matching keycard key.
    pub fn for_alg(alg: Algorithm, kid: &str) -> (Self, JwtKey) {
        let kind = match alg {
            Algorithm::EdDSA => Kind::Ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(&private_pem(alg))).unwrap(),
            ),
            Algorithm::ES256 => Kind::Ec(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &pem_der(&private_pem(alg)),
                )
                .unwrap(),
            ),
            Algorithm::ES384 => Kind::Ec(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    &pem_der(&private_pem(alg)),
                )
                .unwrap(),
            ),
            Algorithm::RS256 | Algorithm::PS256 => Kind::Rsa(
                RsaKeyPair::from_pkcs8(&pem_der(&private_pem(alg))).unwrap(),
                alg == Algorithm::PS256,
            ),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let h = match alg {
                    Algorithm::HS256 => hmac::HMAC_SHA256,
                    Algorithm::HS384 => hmac::HMAC_SHA384,
                    _ => hmac::HMAC_SHA512,
                };
                Kind::Hmac(Box::new(hmac::Key::new(h, &secret_for(alg))))
            }
            other => panic!("unsupported {other}"),
        };
        let key = if alg.is_symmetric() {
            JwtKey::hmac(kid, alg, &secret_for(alg)).unwrap()
        } else {
            JwtKey::from_pem(kid, alg, &private_pem(alg)).unwrap()
        };
        (
            Self {
                alg,
                kid: kid.to_owned(),
                kind,
            },
            key,
        )
    }

    /// Signs `msg` with the algorithm's proper encoding.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.kind {
            Kind::Ed(k) => k.sign(msg).as_ref().to_vec(),
            Kind::Ec(k) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Kind::Rsa(k, pss) => {
                let enc: &'static dyn signature::RsaEncoding = if *pss {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(enc, &SystemRandom::new(), msg, &mut sig).unwrap();
                sig
            }
            Kind::Hmac(k) => hmac::sign(k, msg).as_ref().to_vec(),
        }
    }

    /// The standard header for this key.
    pub fn header(&self) -> Value {
        json!({ "alg": self.alg.as_str(), "typ": "at+jwt", "kid": self.kid })
    }
}

/// The HMAC secret used for `alg` (its minimum length).
pub fn secret_for(alg: Algorithm) -> Vec<u8> {
    HMAC_SECRET[..alg.min_secret_len().unwrap()].to_vec()
}

/// `header.claims.signature` from raw JSON texts, signed over the exact signing input.
pub fn forge_raw(header: &str, claims: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(sig))
}

/// A token with `header` and `claims` signed by `signer`.
pub fn forge(signer: &Signer, header: &Value, claims: &Value) -> String {
    forge_raw(&header.to_string(), &claims.to_string(), |m| signer.sign(m))
}

/// Unix seconds of a time.
pub fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Records security events delivered to the hook.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<SecurityEvent>>>);

impl EventLog {
    pub fn events(&self) -> Events {
        let log = self.0.clone();
        Events::new(Some(EventHook::new(move |e| {
            let log = log.clone();
            async move { log.lock().push(e) }
        })))
    }

    pub fn snapshot(&self) -> Vec<SecurityEvent> {
        self.0.lock().clone()
    }

    /// Waits (up to 2 s) for an event matching `pred`.
    pub async fn wait_for(&self, pred: impl Fn(&SecurityEvent) -> bool) -> SecurityEvent {
        for _ in 0..200 {
            if let Some(e) = self.0.lock().iter().find(|e| pred(e)) {
                return e.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("event not seen; got {:?}", self.snapshot());
    }
}

/// A strategy on a shared `MemoryStore`, a `ManualClock` and one fixture key.
pub struct Harness {
    pub strategy: JwtStrategy,
    pub store: MemoryStore,
    pub clock: ManualClock,
    pub ring: Arc<KeyRing>,
    pub signer: Signer,
    pub log: EventLog,
    pub config: JwtConfig,
}

pub fn config() -> JwtConfig {
    JwtConfig::new(ISSUER, AUDIENCE)
}

pub async fn harness(alg: Algorithm) -> Harness {
    harness_with(alg, |_| {}).await
}

pub async fn harness_with(alg: Algorithm, tweak: impl FnOnce(&mut JwtConfig)) -> Harness {
    let (signer, key) = Signer::for_alg(alg, "test-key");
    let ring = Arc::new(KeyRing::new([key], Some("test-key")).unwrap());
    let mut config = config();
    tweak(&mut config);
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let log = EventLog::default();
    let strategy = build(&config, &ring, &store, &clock, &log);
    strategy.ready().await.expect("ready");
    Harness {
        strategy,
        store,
        clock,
        ring,
        signer,
        log,
        config,
    }
}

pub fn build(
    config: &JwtConfig,
    ring: &Arc<KeyRing>,
    store: &MemoryStore,
    clock: &ManualClock,
    log: &EventLog,
) -> JwtStrategy {
    JwtStrategy::builder(config.clone())
        .key_ring(ring.clone())
        .refresh_store(Arc::new(store.clone()))
        .revocation_store(Arc::new(store.clone()))
        .clock(Arc::new(clock.clone()))
        .events(log.events())
        .build()
        .expect("build")
}

impl Harness {
    /// Another instance sharing the store, keys and clock (a second app server).
    pub async fn second_instance(&self) -> JwtStrategy {
        let other = build(
            &self.config,
            &self.ring,
            &self.store,
            &self.clock,
            &self.log,
        );
        other.ready().await.expect("ready");
        other
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Claims that pass every check, issued now.
    pub fn claims(&self) -> Value {
        let now = secs(self.now());
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
            "exp": now + 300, "iat": now, "jti": "jti-forged-1", "sid": "family-x",
            "roles": ["user"],
        })
    }

    /// A validly signed token with these claims.
    pub fn token(&self, claims: &Value) -> String {
        forge(&self.signer, &self.signer.header(), claims)
    }

    pub async fn login(&self, subject: &str) -> Issued {
        self.strategy
            .login(
                Principal::builder(subject).role("user").build(),
                &ClientMeta::default(),
                Default::default(),
            )
            .await
            .expect("login")
    }

    pub async fn auth(&self, token: &str) -> keycard::Result<Principal> {
        auth(&self.strategy, token).await
    }
}

pub fn bearer(token: &str) -> Credential<'_> {
    Credential {
        value: token,
        source: CredentialSource::Bearer,
    }
}

pub async fn auth(strategy: &JwtStrategy, token: &str) -> keycard::Result<Principal> {
    strategy.authenticate(bearer(token)).await
}

pub fn access(issued: &Issued) -> String {
    issued
        .access_token
        .as_ref()
        .expect("access token")
        .token
        .clone()
}

pub fn refresh_token(issued: &Issued) -> String {
    issued
        .refresh_token
        .as_ref()
        .expect("refresh token")
        .expose_secret()
        .to_owned()
}

pub fn spec(subject: &str) -> PrincipalSpec {
    Principal::builder(subject).role("user").build()
}

/// Asserts the kind of an error result.
#[track_caller]
pub fn assert_kind<T: std::fmt::Debug>(r: Result<T, Error>, kind: ErrorKind) {
    match r {
        Ok(v) => panic!("expected {kind:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind(), kind, "{e:?}"),
    }
}
