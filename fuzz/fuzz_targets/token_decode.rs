//! The token decode path: `JwtStrategy::authenticate` (size and shape checks, header parsing, key
//! lookup, signature, claims validation, revocation, the verified-token cache) with a real key
//! ring of four algorithms, and `OpaqueToken::parse`. Nothing may panic, and nothing forged may
//! be accepted. The first byte picks the mode:
//!
//! - 0: the rest, as UTF-8, is presented as a bearer token and parsed as an opaque token;
//! - 1: the rest is the claims JSON of a token with a valid header, validly signed (HS256), so
//!   the claims validator sees arbitrary input;
//! - 2: the rest is `header JSON \0 claims JSON`, validly signed with the HS256 key, so header
//!   parsing and algorithm pinning see arbitrary input;
//! - 3: the rest is a list of edits (3 bytes each) applied to a valid token: the result verifies
//!   only if the edits left it unchanged.
#![no_main]

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::hmac;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use keycard::{
    SessionStrategy,
    clock::Clock,
    jwt::{Algorithm, JwtConfig, JwtKey, JwtStrategy, KeyRing},
    store::MemoryStore,
    strategy::{Credential, CredentialSource},
    token::{OpaqueToken, TOKEN_LEN, TokenHash},
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// The fixed time of the harness (2030-03-17), so that seed tokens stay valid.
const NOW: u64 = 1_900_000_000;
const ISS: &str = "https://auth.fuzz.test";
const AUD: &str = "https://api.fuzz.test";
/// Fuzzing-only HMAC secret (32 bytes, HS256's minimum).
const HS_SECRET: &[u8; 32] = b"keycard-fuzz-hs256-secret-32byte";
const HEADER: &str = r#"{"alg":"HS256","typ":"at+jwt","kid":"hs"}"#;

#[derive(Debug)]
struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    strategy: JwtStrategy,
    hs: hmac::Key,
    baseline: String,
}

fn baseline_claims() -> Value {
    let now = NOW as i64;
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 300, "iat": now,
        "jti": "fuzz-jti-1", "sid": "fuzz-family", "roles": ["user"],
    })
}

impl Harness {
    fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let tag = hmac::sign(&self.hs, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        token
    }

    fn accepts(&self, token: &str) -> bool {
        let credential = Credential {
            value: token,
            source: CredentialSource::Bearer,
        };
        self.rt
            .block_on(self.strategy.authenticate(credential))
            .is_ok()
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let keys = [
            JwtKey::hmac("hs", Algorithm::HS256, HS_SECRET).expect("hs key"),
            JwtKey::from_pem("ed", Algorithm::EdDSA, include_str!("../keys/ed25519.pem"))
                .expect("ed key"),
            JwtKey::from_pem("es", Algorithm::ES256, include_str!("../keys/es256.pem"))
                .expect("es key"),
            JwtKey::from_pem("rs", Algorithm::RS256, include_str!("../keys/rsa2048.pem"))
                .expect("rs key"),
        ];
        let ring = Arc::new(KeyRing::new(keys, Some("ed")).expect("ring"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let strategy = rt.block_on(async {
            let store = Arc::new(MemoryStore::new());
            let strategy = JwtStrategy::builder(JwtConfig::new(ISS, AUD))
                .key_ring(ring)
                .refresh_store(store.clone())
                .revocation_store(store)
                .clock(Arc::new(Fixed))
                .build()
                .expect("strategy");
            strategy.ready().await.expect("ready");
            strategy
        });
        let mut h = Harness {
            rt,
            strategy,
            hs: hmac::Key::new(hmac::HMAC_SHA256, HS_SECRET),
            baseline: String::new(),
        };
        h.baseline = h.sign(HEADER.as_bytes(), baseline_claims().to_string().as_bytes());
        assert!(h.accepts(&h.baseline), "the baseline token must verify");
        h
    })
}

/// `aud` names our audience (a string, or an array containing it).
fn names_audience(aud: &Value) -> bool {
    match aud {
        Value::String(s) => s == AUD,
        Value::Array(a) => a.iter().any(|v| v == AUD),
        _ => false,
    }
}

fn opaque(s: &str) {
    let parsed = OpaqueToken::parse(s);
    assert_eq!(
        parsed.as_ref().map(OpaqueToken::hash),
        TokenHash::of_encoded(s)
    );
    if let Some(t) = parsed {
        assert_eq!(s.len(), TOKEN_LEN);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(t.expose_secret(), s);
        assert!(!format!("{t:?}").contains(s));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    match mode % 4 {
        0 => {
            let Ok(s) = std::str::from_utf8(rest) else {
                return;
            };
            opaque(s);
            if h.accepts(s) {
                // Only a token signed by one of the ring's keys can get here; the fuzzer cannot
                // sign, so it must be the baseline or a seed.
                assert_eq!(s.split('.').count(), 3, "accepted {s:?}");
            }
        }
        1 => {
            let token = h.sign(HEADER.as_bytes(), rest);
            if h.accepts(&token) {
                let claims: Value = serde_json::from_slice(rest).expect("accepted claims are JSON");
                assert_eq!(claims["iss"], ISS, "{claims}");
                assert!(names_audience(&claims["aud"]), "{claims}");
                let exp = claims["exp"].as_i64().expect("integer exp");
                assert!(exp + 60 > NOW as i64, "expired: {claims}");
                assert!(
                    claims["sub"].is_string() && claims["jti"].is_string(),
                    "{claims}"
                );
            }
        }
        2 => {
            let (header, claims) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
                None => (rest, baseline_claims().to_string().into_bytes()),
            };
            let token = h.sign(header, &claims);
            if h.accepts(&token) {
                let header: Value =
                    serde_json::from_slice(header).expect("accepted header is JSON");
                assert_eq!(header["alg"], "HS256", "{header}");
                assert_eq!(header["kid"], "hs", "{header}");
            }
        }
        _ => {
            let mut token = h.baseline.clone().into_bytes();
            for edit in rest.chunks_exact(3).take(16) {
                if token.is_empty() {
                    break;
                }
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % token.len();
                match edit[2] {
                    0x00..=0x7f => token[at] = edit[2],
                    0x80..=0xbf => {
                        token.remove(at);
                    }
                    b => token.insert(
                        at,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
                            [usize::from(b - 0xc0) % 65],
                    ),
                }
            }
            let Ok(s) = std::str::from_utf8(&token) else {
                return;
            };
            if h.accepts(s) {
                assert_eq!(s, h.baseline, "a modified token verified");
            }
        }
    }
});
