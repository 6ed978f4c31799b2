//! Project Wycheproof vectors through keycard's JWS signature check.
//!
//! The vectors are read, unmodified, from `../shared/testdata/wycheproof/` (beside the crate; see
//! the README and LICENSE there). A missing or unexpected file fails the test; nothing is skipped.
//!
//! Every vector goes through the code a token takes:
//! - the key is loaded as an entry of `jwt.keys` is: a [`KeyConfig`] deserialized from the
//!   group's public key (both its `pem` and, when the group has one, its `jwk`) or, for HMAC,
//!   from the vector's key (both as a base64 `secret` and as an `oct` JWK), then loaded by the
//!   loader the strategy uses (`__fuzz::load_key`);
//! - the signature is checked by the key's verifier, the step `jws::verify` runs on a token's
//!   signing input and decoded signature (`__fuzz::verify_signature`). Wycheproof messages are
//!   arbitrary bytes, not `header.payload`, hence the direct call.
//!
//! Every key form of a vector must give the same outcome. Each vector is then counted as
//! verified, refused by the signature check, or refused at key load (a key keycard does not
//! accept), and the counts per file are printed and asserted exactly.
#![cfg(feature = "jwt")]

use std::path::PathBuf;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use keycard::{
    __fuzz::{load_key, verify_signature},
    jwt::{Algorithm, KeyConfig},
};
use serde_json::{Value, json};

/// What keycard is expected to do with one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The signature verifies.
    Verify,
    /// The key loads, and the signature check refuses the vector (the reason is for the reader).
    Refuse(&'static str),
    /// Every form of the key is refused when it is loaded; the load error contains this text.
    KeyRefused(&'static str),
}

/// What keycard did with one vector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Verified,
    Refused,
    KeyRefused(String),
}

/// Per-file counts, asserted exactly.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    total: usize,
    valid_verified: usize,
    /// `valid` in Wycheproof, refused by the signature check because the vector is not this JWS
    /// algorithm (truncated HMAC tags).
    valid_refused_not_jws: usize,
    /// `valid` in Wycheproof, whose key keycard refuses to load (too short an HMAC secret).
    valid_refused_key: usize,
    invalid_refused: usize,
    acceptable_verified: usize,
    acceptable_refused: usize,
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/wycheproof/"
    ))
}

/// Reads a vector file; a missing or unreadable file is a failure, never a skip.
fn read_vectors(file: &str) -> Value {
    let path = vectors_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the Wycheproof vectors `{}`: {e}. They are not copied into the project; \
             they must be at ../shared/testdata/wycheproof/ beside the crate (see its README)",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`{}` is not valid JSON: {e}", path.display()))
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex `{s}`");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex `{s}`")))
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("expected a string `{key}` in {v}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("expected an integer `{key}` in {v}"))
}

/// A `jwt.keys` entry, deserialized as keycard's config is.
fn key_config(entry: Value) -> KeyConfig {
    serde_json::from_value(entry.clone())
        .unwrap_or_else(|e| panic!("not a valid jwt.keys entry: {e}: {entry}"))
}

/// The key of an asymmetric group, as keycard's config can hold it: the group's public key PEM
/// (always present) and its public JWK (`publicKeyJwk`, or `keyJwk` in the RSA PKCS#1 file) when
/// the group has one. The configured `kid` is the JWK's own (`"none"` in these files), since
/// keycard refuses a JWK whose `kid` differs from the configured one.
fn public_key_configs(alg: Algorithm, group: &Value) -> Vec<KeyConfig> {
    let mut configs = vec![key_config(json!({
        "kid": "wycheproof",
        "alg": alg.as_str(),
        "pem": str_of(group, "publicKeyPem"),
    }))];
    if let Some(jwk) = group.get("publicKeyJwk").or_else(|| group.get("keyJwk")) {
        let kid = jwk
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or("wycheproof");
        configs.push(key_config(
            json!({ "kid": kid, "alg": alg.as_str(), "jwk": jwk }),
        ));
    }
    configs
}

/// The key of an HMAC vector, as keycard's config can hold it: a base64 `secret` and an `oct`
/// JWK.
fn hmac_key_configs(alg: Algorithm, test: &Value) -> Vec<KeyConfig> {
    let key = hex(str_of(test, "key"));
    vec![
        key_config(
            json!({ "kid": "wycheproof", "alg": alg.as_str(), "secret": STANDARD.encode(&key) }),
        ),
        key_config(json!({
            "kid": "wycheproof",
            "alg": alg.as_str(),
            "jwk": { "kty": "oct", "k": URL_SAFE_NO_PAD.encode(&key) },
        })),
    ]
}

/// Runs every vector of `file`.
///
/// - `algorithm`, `schema`, `group_type`, `total`: what the file must declare (a different file
///   is a failure, not a silent mismatch);
/// - `check_group`: asserts the group's parameters are those of the JWS algorithm;
/// - `keys`: the key configs of a vector;
/// - `sig_field`: `sig`, or `tag` for MACs;
/// - `expect`: what keycard must do with a vector (`invalid` ones must be refused whatever it
///   says).
#[allow(clippy::too_many_arguments)]
fn run(
    file: &str,
    algorithm: &str,
    schema: &str,
    group_type: &str,
    total: usize,
    check_group: impl Fn(&Value),
    keys: impl Fn(&Value, &Value) -> Vec<KeyConfig>,
    sig_field: &str,
    expect: impl Fn(&Value, &Value) -> Expect,
) -> Counts {
    let doc = read_vectors(file);
    assert_eq!(str_of(&doc, "algorithm"), algorithm, "{file}: algorithm");
    assert_eq!(str_of(&doc, "schema"), schema, "{file}: schema");
    assert_eq!(
        u64_of(&doc, "numberOfTests") as usize,
        total,
        "{file}: numberOfTests"
    );
    let groups = doc["testGroups"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no testGroups"));
    let mut counts = Counts::default();
    for group in groups {
        assert_eq!(str_of(group, "type"), group_type, "{file}: group type");
        check_group(group);
        let tests = group["tests"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: a group without tests"));
        for test in tests {
            counts.total += 1;
            let id = u64_of(test, "tcId");
            let result = str_of(test, "result");
            let msg = hex(str_of(test, "msg"));
            let sig = hex(str_of(test, sig_field));
            let expected = expect(group, test);

            let configs = keys(group, test);
            assert!(!configs.is_empty(), "{file} tcId {id}: no key form");
            let outcomes: Vec<Outcome> = configs
                .iter()
                .map(|config| match load_key(config) {
                    Ok(key) => {
                        if verify_signature(&key, &msg, &sig) {
                            Outcome::Verified
                        } else {
                            Outcome::Refused
                        }
                    }
                    Err(e) => Outcome::KeyRefused(e.message().to_owned()),
                })
                .collect();
            let outcome = &outcomes[0];
            match (expected, outcome) {
                (Expect::Verify, Outcome::Verified) => {
                    assert!(
                        outcomes.iter().all(|o| o == outcome),
                        "{file} tcId {id}: the key forms disagree: {outcomes:?}"
                    );
                }
                (Expect::Refuse(why), Outcome::Refused) => {
                    assert!(
                        outcomes.iter().all(|o| o == outcome),
                        "{file} tcId {id}: expected refused ({why}); the key forms disagree: \
                         {outcomes:?}"
                    );
                }
                (Expect::KeyRefused(why), Outcome::KeyRefused(_)) => {
                    for o in &outcomes {
                        assert!(
                            matches!(o, Outcome::KeyRefused(m) if m.contains(why)),
                            "{file} tcId {id}: expected every key form refused at load \
                             ({why}), got {outcomes:?}"
                        );
                    }
                }
                _ => panic!(
                    "{file} tcId {id} ({result}, {:?}): expected {expected:?}, keycard did \
                     {outcomes:?}",
                    test["comment"]
                ),
            }

            match (result, outcome) {
                ("valid", Outcome::Verified) => counts.valid_verified += 1,
                ("valid", Outcome::Refused) => counts.valid_refused_not_jws += 1,
                ("valid", Outcome::KeyRefused(_)) => counts.valid_refused_key += 1,
                ("invalid", Outcome::Refused | Outcome::KeyRefused(_)) => {
                    counts.invalid_refused += 1;
                }
                ("invalid", Outcome::Verified) => {
                    panic!("{file} tcId {id}: an invalid vector verified")
                }
                ("acceptable", Outcome::Verified) => counts.acceptable_verified += 1,
                ("acceptable", Outcome::Refused | Outcome::KeyRefused(_)) => {
                    counts.acceptable_refused += 1;
                }
                (other, _) => panic!("{file} tcId {id}: unknown result `{other}`"),
            }
        }
    }
    assert_eq!(counts.total, total, "{file}: vectors run");
    eprintln!(
        "{file}: total {}, valid verified {}, valid refused (not this JWS algorithm) {}, valid \
         refused at key load {}, invalid refused {}, acceptable verified {}, acceptable refused {}",
        counts.total,
        counts.valid_verified,
        counts.valid_refused_not_jws,
        counts.valid_refused_key,
        counts.invalid_refused,
        counts.acceptable_verified,
        counts.acceptable_refused,
    );
    counts
}

/// Wycheproof's own verdict for a vector with no `acceptable` result: `valid` verifies, `invalid`
/// is refused.
fn by_result(test: &Value) -> Expect {
    match str_of(test, "result") {
        "valid" => Expect::Verify,
        "invalid" => Expect::Refuse("invalid"),
        other => panic!(
            "tcId {}: `{other}` needs an explicit decision",
            test["tcId"]
        ),
    }
}

#[test]
fn ed25519_eddsa() {
    let counts = run(
        "ed25519_test.json",
        "EDDSA",
        "eddsa_verify_schema_v1.json",
        "EddsaVerify",
        151,
        |g| assert_eq!(str_of(&g["publicKey"], "curve"), "edwards25519"),
        |g, _| public_key_configs(Algorithm::EdDSA, g),
        "sig",
        // No acceptable vectors. aws-lc-rs refuses S >= L (malleability) and non-canonical
        // encodings, as Wycheproof requires.
        |_, t| by_result(t),
    );
    assert_eq!(
        counts,
        Counts {
            total: 151,
            valid_verified: 88,
            invalid_refused: 63,
            ..Counts::default()
        }
    );
}

fn ecdsa_group(curve: &'static str, sha: &'static str) -> impl Fn(&Value) {
    move |g| {
        assert_eq!(str_of(&g["publicKey"], "curve"), curve);
        assert_eq!(str_of(g, "sha"), sha);
    }
}

#[test]
fn ecdsa_p256_es256() {
    let counts = run(
        "ecdsa_secp256r1_sha256_p1363_test.json",
        "ECDSA",
        "ecdsa_p1363_verify_schema_v1.json",
        "EcdsaP1363Verify",
        262,
        ecdsa_group("secp256r1", "SHA-256"),
        |g, _| public_key_configs(Algorithm::ES256, g),
        "sig",
        // No acceptable vectors. High-S signatures are `valid` in Wycheproof and keycard accepts
        // them too (see `keycard::jwt`, Security). The 9 groups without a JWK load from PEM only.
        |_, t| by_result(t),
    );
    assert_eq!(
        counts,
        Counts {
            total: 262,
            valid_verified: 173,
            invalid_refused: 89,
            ..Counts::default()
        }
    );
}

#[test]
fn ecdsa_p384_es384() {
    let counts = run(
        "ecdsa_secp384r1_sha384_p1363_test.json",
        "ECDSA",
        "ecdsa_p1363_verify_schema_v1.json",
        "EcdsaP1363Verify",
        280,
        ecdsa_group("secp384r1", "SHA-384"),
        |g, _| public_key_configs(Algorithm::ES384, g),
        "sig",
        // No acceptable vectors (as for P-256).
        |_, t| by_result(t),
    );
    assert_eq!(
        counts,
        Counts {
            total: 280,
            valid_verified: 193,
            invalid_refused: 87,
            ..Counts::default()
        }
    );
}

#[test]
fn rsa_pkcs1_2048_sha256_rs256() {
    let counts = run(
        "rsa_signature_2048_sha256_test.json",
        "RSASSA-PKCS1-v1_5",
        "rsassa_pkcs1_verify_schema_v1.json",
        "RsassaPkcs1Verify",
        259,
        |g| {
            assert_eq!(u64_of(g, "keySize"), 2048);
            assert_eq!(str_of(g, "sha"), "SHA-256");
        },
        // Two groups (tcId 258 and 259, one valid vector each) have the public exponent 3
        // (`SmallPublicKey`, WEAK_PARAMS: "libraries may reject"). keycard checks only the
        // modulus size (2048 to 4096 bits) and aws-lc-rs sets no minimum exponent, so these keys
        // load and their valid signatures verify.
        |g, _| public_key_configs(Algorithm::RS256, g),
        "sig",
        |_, t| match str_of(t, "result") {
            // tcId 8, "Missing NULL in the ASN encoding": a DigestInfo whose AlgorithmIdentifier
            // omits the NULL parameters. Wycheproof flags it `MissingNull` (LEGACY: invalid, but
            // some libraries accept it for compatibility). aws-lc-rs (AWS-LC's RSA_verify)
            // rebuilds the one DER DigestInfo, with the NULL, and compares it byte for byte, so
            // keycard refuses it; RS256 signers always include the NULL.
            "acceptable" => Expect::Refuse("DigestInfo without NULL parameters"),
            _ => by_result(t),
        },
    );
    assert_eq!(
        counts,
        Counts {
            total: 259,
            valid_verified: 9,
            invalid_refused: 249,
            acceptable_refused: 1,
            ..Counts::default()
        }
    );
}

#[test]
fn rsa_pss_2048_sha256_mgf1_32_ps256() {
    let counts = run(
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        "RSASSA-PSS",
        "rsassa_pss_verify_schema_v1.json",
        "RsassaPssVerify",
        108,
        |g| {
            // PS256 is SHA-256, MGF1 with SHA-256 and (as keycard signs) a 32-byte salt.
            assert_eq!(u64_of(g, "keySize"), 2048);
            assert_eq!(str_of(g, "sha"), "SHA-256");
            assert_eq!(str_of(g, "mgf"), "MGF1");
            assert_eq!(str_of(g, "mgfSha"), "SHA-256");
            assert_eq!(u64_of(g, "sLen"), 32);
        },
        |g, _| public_key_configs(Algorithm::PS256, g),
        "sig",
        // No acceptable vectors.
        |_, t| by_result(t),
    );
    assert_eq!(
        counts,
        Counts {
            total: 108,
            valid_verified: 63,
            invalid_refused: 45,
            ..Counts::default()
        }
    );
}

/// HMAC: a JWS `HSxxx` tag is the full hash output, and keycard refuses secrets shorter than it.
/// So a vector whose group has a shorter key is refused at key load (whatever its result), and
/// one with a truncated tag (`tagSize` below the hash size: HMAC-SHA256/128 and the like, not a
/// JWS algorithm) is refused by the signature check, which requires the exact tag length.
fn hmac(file: &str, alg: Algorithm, bits: u64) -> Counts {
    run(
        file,
        &format!("HMACSHA{bits}"),
        "mac_test_schema_v1.json",
        "MacTest",
        174,
        |_| {},
        |_, t| hmac_key_configs(alg, t),
        "tag",
        move |g, t| {
            let key_bits = u64_of(g, "keySize");
            let tag_bits = u64_of(g, "tagSize");
            assert_eq!(hex(str_of(t, "key")).len() as u64 * 8, key_bits);
            assert_eq!(hex(str_of(t, "tag")).len() as u64 * 8, tag_bits);
            if key_bits < bits {
                Expect::KeyRefused("needs a secret of at least")
            } else if tag_bits < bits {
                Expect::Refuse("truncated tag: not a JWS HMAC tag")
            } else {
                by_result(t)
            }
        },
    )
}

// Each HMAC file has six groups: (key bits, tag bits) = (H, H) 81 vectors, 27 valid; (H, H/2) 81,
// 27 valid; (H/2, H), (H/2, H/2), (520, H), (520, H/2) 3 valid each. keycard verifies the 27 + 3
// full-tag vectors with a long enough key, refuses the 27 + 3 valid truncated-tag vectors at the
// signature check and the 3 + 3 valid short-key vectors at key load, and refuses all 108 invalid
// ones (54 with a full tag, 54 with a truncated one).
fn hmac_counts() -> Counts {
    Counts {
        total: 174,
        valid_verified: 30,
        valid_refused_not_jws: 30,
        valid_refused_key: 6,
        invalid_refused: 108,
        ..Counts::default()
    }
}

#[test]
fn hmac_sha256_hs256() {
    assert_eq!(
        hmac("hmac_sha256_test.json", Algorithm::HS256, 256),
        hmac_counts()
    );
}

#[test]
fn hmac_sha384_hs384() {
    assert_eq!(
        hmac("hmac_sha384_test.json", Algorithm::HS384, 384),
        hmac_counts()
    );
}

#[test]
fn hmac_sha512_hs512() {
    assert_eq!(
        hmac("hmac_sha512_test.json", Algorithm::HS512, 512),
        hmac_counts()
    );
}
