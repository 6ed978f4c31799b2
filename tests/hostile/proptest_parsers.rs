//! Property tests of the hostile-input parsers, run in the normal test suite (the fuzz targets in
//! `fuzz/` explore the same parsers for longer): the `Authorization` header, the Cookie header,
//! opaque tokens, the TOML config, and JWT verification of mutated tokens.

use std::sync::{Arc, OnceLock};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, header};
use keycard::{
    __fuzz::parse_bearer,
    __fuzz::read_credentials,
    ErrorKind, KeycardConfig, Principal, SessionStrategy,
    clock::ManualClock,
    jwt::{Algorithm, JwtConfig, JwtKey, JwtStrategy, KeyRing},
    store::MemoryStore,
    strategy::{ClientMeta, Credential, CredentialSource},
    token::{OpaqueToken, TOKEN_LEN, TokenHash},
    transport::TransportSettings,
};
use proptest::prelude::*;

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// ------------------------------------------------------------------ Authorization: Bearer

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(t: &[u8]) -> bool {
    let body = t
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        .count();
    body > 0 && t[body..].iter().all(|&b| b == b'=')
}

/// RFC 6750 §2.1, independently: `bearer` (any case), one or more spaces, a b64token.
fn expected_bearer(v: &[u8]) -> Option<&[u8]> {
    let rest = v
        .get(..6)?
        .eq_ignore_ascii_case(b"bearer")
        .then(|| &v[6..])?;
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    let token = &rest[spaces..];
    (spaces > 0 && is_b64token(token)).then_some(token)
}

/// Checks `parse_bearer` against the grammar on one value.
fn check_bearer(value: &[u8]) -> Result<(), TestCaseError> {
    let parsed = parse_bearer(value);
    match (parsed, expected_bearer(value)) {
        (Some(Ok(range)), Some(token)) => prop_assert_eq!(&value[range], token),
        (Some(Ok(range)), None) => prop_assert!(false, "accepted {value:?} as {range:?}"),
        (other, Some(_)) => prop_assert!(false, "refused {value:?}: {other:?}"),
        (Some(Err(kind)), None) => prop_assert_eq!(kind, ErrorKind::MalformedRequest),
        (None, None) => {}
    }
    Ok(())
}

fn bearer_scheme() -> impl Strategy<Value = String> {
    "[bB][eE][aA][rR][eE][rR]"
}

fn well_formed_bearer() -> impl Strategy<Value = String> {
    (bearer_scheme(), " {1,4}", "[A-Za-z0-9._~+/-]{1,80}={0,3}")
        .prop_map(|(s, sp, tok)| format!("{s}{sp}{tok}"))
}

/// Well-formed values with one byte replaced, inserted or removed.
fn near_miss_bearer() -> impl Strategy<Value = Vec<u8>> {
    (
        well_formed_bearer(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..3u8,
    )
        .prop_map(|(v, at, byte, op)| {
            let mut v = v.into_bytes();
            let i = at.index(v.len());
            match op {
                0 => v[i] = byte,
                1 => v.insert(i, byte),
                _ => {
                    v.remove(i);
                }
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn bearer_never_panics_and_follows_the_grammar(value in prop::collection::vec(any::<u8>(), 0..200)) {
        check_bearer(&value)?;
    }

    #[test]
    fn bearer_accepts_every_well_formed_value(value in well_formed_bearer()) {
        let range = parse_bearer(value.as_bytes()).expect("bearer scheme").expect("well formed");
        prop_assert_eq!(&value[range], value[6..].trim_start_matches(' '));
    }

    #[test]
    fn bearer_near_misses_follow_the_grammar(value in near_miss_bearer()) {
        check_bearer(&value)?;
    }

    #[test]
    fn bearer_with_other_schemes_is_not_bearer(
        scheme in "[A-Za-z][A-Za-z0-9-]{0,10}",
        rest in "[ -~]{0,40}",
    ) {
        prop_assume!(!scheme.to_ascii_lowercase().starts_with("bearer"));
        let value = format!("{scheme} {rest}");
        prop_assert_eq!(parse_bearer(value.as_bytes()), None);
    }
}

// ------------------------------------------------------------------ opaque tokens

/// Whether `s` is the one canonical unpadded base64url spelling of 32 bytes.
fn canonical_token(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && URL_SAFE_NO_PAD
            .decode(s)
            .is_ok_and(|raw| raw.len() == 32 && URL_SAFE_NO_PAD.encode(&raw) == s)
}

fn b64url_string(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(B64URL.to_vec()), len)
        .prop_map(|v| String::from_utf8(v).expect("ASCII"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn encoded_random_bytes_round_trip(raw in any::<[u8; 32]>()) {
        let encoded = URL_SAFE_NO_PAD.encode(raw);
        let token = OpaqueToken::parse(&encoded).expect("a canonical token parses");
        prop_assert_eq!(token.expose_secret(), encoded.as_str());
        prop_assert_eq!(Some(token.hash()), TokenHash::of_encoded(&encoded));
        prop_assert_eq!(TokenHash::from_handle(&token.hash().handle()), Some(token.hash()));
        let debug = format!("{token:?}");
        prop_assert!(!debug.contains(&encoded));
    }

    #[test]
    fn any_string_parses_only_if_canonical(s in any::<String>()) {
        prop_assert_eq!(OpaqueToken::parse(&s).is_some(), canonical_token(&s));
        prop_assert_eq!(TokenHash::of_encoded(&s).is_some(), canonical_token(&s));
    }

    #[test]
    fn alphabet_strings_parse_only_if_canonical(s in b64url_string(38..48)) {
        let parsed = OpaqueToken::parse(&s);
        prop_assert_eq!(parsed.is_some(), canonical_token(&s));
        if s.len() != TOKEN_LEN {
            prop_assert!(parsed.is_none());
        }
    }

    #[test]
    fn near_tokens_are_refused(raw in any::<[u8; 32]>(), at in any::<prop::sample::Index>(), c in any::<char>()) {
        let good = URL_SAFE_NO_PAD.encode(raw);
        let i = at.index(good.len());
        let mut changed = good.clone();
        changed.replace_range(i..=i, &c.to_string());
        prop_assert_eq!(OpaqueToken::parse(&changed).is_some(), canonical_token(&changed));
        // Padding, truncation and extension are never a token.
        let padded = format!("{good}=");
        prop_assert!(OpaqueToken::parse(&padded).is_none());
        prop_assert!(OpaqueToken::parse(&good[..i]).is_none());
        let extended = format!("{good}{c}");
        prop_assert!(OpaqueToken::parse(&extended).is_none());
    }
}

#[test]
fn generated_tokens_round_trip() {
    for _ in 0..256 {
        let t = OpaqueToken::generate().unwrap();
        assert!(canonical_token(t.expose_secret()));
        let parsed = OpaqueToken::parse(t.expose_secret()).unwrap();
        assert_eq!(parsed.hash(), t.hash());
        assert_eq!(parsed, t);
    }
}

// ------------------------------------------------------------------ Cookie header

const SESSION: &str = "__Host-keycard";
const REFRESH: &str = "__Secure-keycard-refresh";

/// Names that are, or look like, the session and refresh cookie names.
fn cookie_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(SESSION.to_owned()),
        1 => Just(REFRESH.to_owned()),
        1 => Just("__host-keycard".to_owned()),
        1 => Just("__Host-keycard2".to_owned()),
        1 => Just("__Host-Keycard".to_owned()),
        1 => Just("%5F_Host-keycard".to_owned()),
        1 => Just("__Host-keycard%20".to_owned()),
        1 => Just("__Host-keycar".to_owned()),
        2 => "[A-Za-z0-9_-]{1,12}",
    ]
}

/// A cookie-octet value, with `=` allowed (everything after the first `=` is the value).
fn cookie_value() -> impl Strategy<Value = String> {
    "[!#-+./-:<-\\[\\]-~=-]{0,50}"
}

fn separator() -> impl Strategy<Value = String> {
    ";[ \t]{0,2}"
}

#[derive(Debug, Clone)]
struct CookieCase {
    /// `(name, value)` pairs in order.
    pairs: Vec<(String, String)>,
    /// One `Cookie` header per inner vector of pair texts.
    headers: Vec<String>,
}

fn cookie_case() -> impl Strategy<Value = CookieCase> {
    prop::collection::vec(
        (cookie_name(), cookie_value(), separator(), "[ \t]{0,2}"),
        0..12,
    )
    .prop_flat_map(|pairs| {
        let n = pairs.len();
        (Just(pairs), prop::collection::vec(any::<bool>(), n))
    })
    .prop_map(|(pairs, breaks)| {
        let mut headers = vec![String::new()];
        for ((name, value, sep, lead), brk) in pairs.iter().zip(breaks) {
            let current = headers.last_mut().expect("one header");
            if !current.is_empty() {
                if brk {
                    headers.push(String::new());
                } else {
                    current.push_str(sep);
                }
            }
            let current = headers.last_mut().expect("one header");
            current.push_str(lead);
            current.push_str(name);
            current.push('=');
            current.push_str(value);
        }
        CookieCase {
            pairs: pairs.into_iter().map(|(n, v, ..)| (n, v)).collect(),
            headers,
        }
    })
}

fn header_map(values: &[String]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            header::COOKIE,
            HeaderValue::from_str(v).expect("visible ASCII"),
        );
    }
    h
}

fn refresh_settings() -> TransportSettings {
    TransportSettings {
        refresh_cookie_name: Some(REFRESH.into()),
        ..TransportSettings::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn cookie_reading_finds_exactly_one_exact_name(case in cookie_case()) {
        let read = read_credentials(&refresh_settings(), &header_map(&case.headers))
            .expect("within limits");
        let values = |name: &str| -> Vec<&str> {
            case.pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
        };
        let sessions = values(SESSION);
        let expected = match sessions.as_slice() {
            [] => None,
            [one] => Some(Ok((*one).to_owned())),
            _ => Some(Err(ErrorKind::InvalidCredential)),
        };
        prop_assert_eq!(read.credential, expected, "{:?}", case.headers);
        let refreshes = values(REFRESH);
        let expected = match refreshes.as_slice() {
            [one] => Some((*one).to_owned()),
            _ => None,
        };
        prop_assert_eq!(read.refresh, expected, "{:?}", case.headers);
    }

    #[test]
    fn cookie_reading_never_panics(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..4),
        refresh in any::<bool>(),
        bearer in any::<bool>(),
    ) {
        let settings = TransportSettings {
            read_bearer: bearer,
            refresh_cookie_name: refresh.then(|| REFRESH.into()),
            ..TransportSettings::default()
        };
        let mut h = HeaderMap::new();
        for c in &chunks {
            if let Ok(v) = HeaderValue::from_bytes(c) {
                h.append(header::COOKIE, v.clone());
                h.append(header::AUTHORIZATION, v);
            }
        }
        if let Ok(read) = read_credentials(&settings, &h)
            && let Some(Ok(value)) = read.credential
        {
            // What was found is a slice of one of the headers.
            prop_assert!(h.iter().any(|(_, v)| v.to_str().is_ok_and(|s| s.contains(&value))));
        }
    }

    #[test]
    fn cookie_limits_are_refused(extra in 1..50usize, big in 1..100usize) {
        let s = TransportSettings::default();
        let many = (0..s.max_cookies + extra).map(|i| format!("c{i}=v")).collect::<Vec<_>>().join("; ");
        prop_assert_eq!(read_credentials(&s, &header_map(&[many])), Err(ErrorKind::TooLarge));
        let large = format!("{SESSION}={}", "a".repeat(s.max_cookie_bytes + big));
        prop_assert_eq!(read_credentials(&s, &header_map(&[large])), Err(ErrorKind::TooLarge));
    }
}

// ------------------------------------------------------------------ config

/// TOML fragments built from real section and field names with arbitrary values.
fn config_text() -> impl Strategy<Value = String> {
    let section = prop::sample::select(vec![
        "",
        "[session]",
        "[cookie]",
        "[limits]",
        "[csrf]",
        "[database]",
        "[redis]",
        "[jwt]",
        "[jwt.refresh]",
        "[[jwt.keys]]",
        "[jwt.jwks]",
    ]);
    let key = prop::sample::select(vec![
        "strategy",
        "idle_timeout",
        "absolute_timeout",
        "renewal_fraction",
        "max_sessions",
        "on_limit",
        "store_timeout",
        "sweep_interval",
        "name",
        "secure",
        "url",
        "issuer",
        "audience",
        "access_ttl",
        "leeway",
        "kid",
        "alg",
        "pem",
        "secret",
        "jwk",
        "signing",
        "max_cookies",
        "cluster_urls",
        "cache_size",
        "ephemeral_key",
        "idle",
        "absolute",
    ]);
    let value = prop_oneof![
        Just("\"jwt\"".to_owned()),
        Just("\"database\"".to_owned()),
        Just("\"30m\"".to_owned()),
        Just("\"EdDSA\"".to_owned()),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "\"[ -~]{0,20}\"",
        "[ -~]{0,20}",
    ];
    prop::collection::vec((section, prop::collection::vec((key, value), 0..4)), 0..6).prop_map(
        |sections| {
            let mut text = String::new();
            for (section, fields) in sections {
                text.push_str(section);
                text.push('\n');
                for (k, v) in fields {
                    text.push_str(&format!("{k} = {v}\n"));
                }
            }
            text
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn config_parsing_never_panics(text in any::<String>()) {
        let _ = KeycardConfig::from_toml(&text);
    }

    #[test]
    fn structured_config_parsing_never_panics(text in config_text()) {
        if let Ok(config) = KeycardConfig::from_toml(&text) {
            let _ = config.session.settings();
        }
    }
}

// ------------------------------------------------------------------ JWT verification

struct Jwt {
    rt: tokio::runtime::Runtime,
    strategies: Vec<(JwtStrategy, String)>,
}

impl Jwt {
    fn accepts(&self, strategy: &JwtStrategy, token: &str) -> bool {
        let credential = Credential {
            value: token,
            source: CredentialSource::Bearer,
        };
        self.rt.block_on(strategy.authenticate(credential)).is_ok()
    }
}

/// One strategy per algorithm family (on a `MemoryStore`, with a `ManualClock`), each with a
/// freshly issued access token.
fn jwt() -> &'static Jwt {
    static JWT: OnceLock<Jwt> = OnceLock::new();
    JWT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let strategies = rt.block_on(async {
            let mut out = Vec::new();
            for alg in [
                Algorithm::EdDSA,
                Algorithm::ES256,
                Algorithm::HS256,
                Algorithm::RS256,
            ] {
                let ring =
                    KeyRing::new([JwtKey::generate("k1", alg).unwrap()], Some("k1")).unwrap();
                let store = Arc::new(MemoryStore::new());
                let strategy = JwtStrategy::builder(JwtConfig::new("https://iss.test", "api"))
                    .key_ring(Arc::new(ring))
                    .refresh_store(store.clone())
                    .revocation_store(store)
                    .clock(Arc::new(ManualClock::new()))
                    .build()
                    .unwrap();
                strategy.ready().await.unwrap();
                let issued = strategy
                    .login(
                        Principal::builder("alice").role("user").build(),
                        &ClientMeta::default(),
                        Default::default(),
                    )
                    .await
                    .unwrap();
                out.push((strategy, issued.access_token.unwrap().token));
            }
            out
        });
        let jwt = Jwt { rt, strategies };
        for (s, token) in &jwt.strategies {
            assert!(jwt.accepts(s, token), "the issued token verifies");
        }
        jwt
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    /// Swaps two of the three segments.
    SwapSegments(usize, usize),
    Truncate(prop::sample::Index),
}

fn token_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => prop::sample::select(B64URL.to_vec()),
        1 => Just(b'.'),
        1 => Just(b'='),
        1 => 0x20u8..0x7f,
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<prop::sample::Index>(), token_byte()).prop_map(|(i, b)| Edit::Replace(i, b)),
        2 => (any::<prop::sample::Index>(), token_byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => any::<prop::sample::Index>().prop_map(Edit::Remove),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Edit::SwapSegments(a, b)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut t = token.as_bytes().to_vec();
    for e in edits {
        if t.is_empty() {
            break;
        }
        match e {
            Edit::Replace(i, b) => {
                let i = i.index(t.len());
                t[i] = *b;
            }
            Edit::Insert(i, b) => t.insert(i.index(t.len() + 1), *b),
            Edit::Remove(i) => {
                t.remove(i.index(t.len()));
            }
            Edit::SwapSegments(a, b) => {
                let text = String::from_utf8(t.clone()).expect("ASCII");
                let mut parts: Vec<&str> = text.split('.').collect();
                if *a < parts.len() && *b < parts.len() {
                    parts.swap(*a, *b);
                }
                t = parts.join(".").into_bytes();
            }
            Edit::Truncate(i) => t.truncate(i.index(t.len())),
        }
    }
    String::from_utf8(t).expect("ASCII")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_tokens_never_verify(which in 0..4usize, edits in prop::collection::vec(edit(), 1..4)) {
        let jwt = jwt();
        let (strategy, token) = &jwt.strategies[which];
        let mutated = apply(token, &edits);
        // Twice: the second answer may come from the verified-token cache.
        for _ in 0..2 {
            prop_assert_eq!(jwt.accepts(strategy, &mutated), mutated == *token, "{:?}", edits);
        }
    }

    #[test]
    fn arbitrary_strings_never_verify(s in any::<String>()) {
        let jwt = jwt();
        for (strategy, _) in &jwt.strategies {
            prop_assert!(!jwt.accepts(strategy, &s));
        }
    }
}
