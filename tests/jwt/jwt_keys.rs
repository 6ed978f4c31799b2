//! Keys: round trips for every algorithm, PEM and JWK loading, refusals, rotation, JWKS, interop
//! with jsonwebtoken, and redacted `Debug`.
#![cfg(feature = "jwt")]

use crate::common::{
    http_client::{get_req, send},
    jwt_support,
};

use std::sync::Arc;

use aws_lc_rs::{
    encoding::AsBigEndian,
    signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use jwt_support::*;
use keycard::{
    ErrorKind, SessionStrategy,
    jwt::{Algorithm, JwtKey, JwtStrategy, KeyRing},
    strategy::ClientMeta,
};
use serde_json::{Value, json};

fn decode_segment(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, seg).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn round_trip_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let h = harness(alg).await;
        let issued = h
            .strategy
            .login(
                keycard::Principal::builder("alice")
                    .role("user")
                    .role("admin")
                    .attribute("email", "alice@example.com")
                    .build(),
                &ClientMeta::default(),
                Default::default(),
            )
            .await
            .unwrap();
        let token = access(&issued);
        let header = decode_segment(&token, 0);
        assert_eq!(header["alg"], alg.as_str(), "{alg}");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], "test-key");
        let claims = decode_segment(&token, 1);
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["aud"], AUDIENCE);
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            600
        );
        assert_eq!(claims["sid"], issued.principal.session().id.as_str());

        let p = h
            .auth(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(p.subject(), "alice");
        assert_eq!(p.roles(), ["user", "admin"]);
        assert_eq!(p.attributes()["email"], "alice@example.com");
        assert_eq!(p.session(), issued.principal.session());
        assert_eq!(p.expires_at(), issued.principal.expires_at());
        assert_eq!(p.authenticated_at(), issued.principal.authenticated_at());
        // The independent signer produces tokens keycard accepts too.
        let forged_ok = h.token(&h.claims());
        h.auth(&forged_ok)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
    }
}

#[tokio::test]
async fn local_verification_is_a_ready_future() {
    let h = harness(Algorithm::EdDSA).await;
    let token = access(&h.login("alice").await);
    let fut = h.strategy.authenticate(bearer(&token));
    assert!(fut.is_ready(), "the hot path must not box");
    fut.await.unwrap();
    let cached = h.strategy.authenticate(bearer(&token));
    assert!(cached.is_ready());
    cached.await.unwrap();
    assert_eq!(h.strategy.cached_tokens(), 1);
}

#[tokio::test]
async fn generated_keys_sign_and_verify_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let key = JwtKey::generate(format!("gen-{alg}"), alg).unwrap();
        assert!(key.can_sign());
        assert_eq!(key.algorithm(), alg);
        assert_eq!(key.public_jwk().is_some(), !alg.is_symmetric());
    }
    let ring = KeyRing::ephemeral().unwrap();
    assert_eq!(ring.signer().unwrap().algorithm(), Algorithm::EdDSA);
}

#[test]
fn pem_formats_load() {
    // SEC1 with an EC PARAMETERS block, as `openssl ecparam -genkey` writes it.
    let sec1 = JwtKey::from_pem("a", Algorithm::ES256, &fixture("es256.sec1.pem")).unwrap();
    assert!(sec1.can_sign());
    // PKCS#1 RSA private and public keys.
    let pkcs1 = JwtKey::from_pem("b", Algorithm::RS256, &fixture("rsa2048.pkcs1.pem")).unwrap();
    assert!(pkcs1.can_sign());
    let pkcs1_pub =
        JwtKey::from_pem("c", Algorithm::PS256, &fixture("rsa2048.pkcs1.pub.pem")).unwrap();
    assert!(!pkcs1_pub.can_sign());
    assert_eq!(
        pkcs1.public_jwk().unwrap().n,
        pkcs1_pub.public_jwk().unwrap().n
    );
    let big = JwtKey::from_pem("d", Algorithm::RS256, &fixture("rsa4096.pem")).unwrap();
    assert!(big.can_sign());
    // SPKI public keys for every asymmetric algorithm, matching the private key's JWK.
    for alg in [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
    ] {
        let private = JwtKey::from_pem("k", alg, &private_pem(alg)).unwrap();
        let public = JwtKey::from_pem("k", alg, &public_pem(alg)).unwrap();
        assert!(!public.can_sign());
        assert_eq!(private.public_jwk(), public.public_jwk(), "{alg}");
    }
    // From a file.
    let path = format!(
        "{}/tests/jwt_support/keys/ed25519.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(
        JwtKey::from_pem_file("f", Algorithm::EdDSA, path)
            .unwrap()
            .can_sign()
    );
}

#[tokio::test]
async fn public_pem_ring_verifies_tokens_of_the_private_key() {
    for alg in [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS256,
    ] {
        let h = harness(alg).await;
        let public = JwtKey::from_pem("test-key", alg, &public_pem(alg)).unwrap();
        let ring = Arc::new(KeyRing::new([public], None).unwrap());
        let verifier = build(&h.config, &ring, &h.store, &h.clock, &h.log);
        verifier.ready().await.unwrap();
        let token = access(&h.login("alice").await);
        auth(&verifier, &token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        // A verify-only ring cannot log in.
        assert_kind(
            verifier
                .login(spec("bob"), &ClientMeta::default(), Default::default())
                .await,
            ErrorKind::Internal,
        );
    }
}

#[test]
fn unacceptable_keys_are_refused_at_load() {
    let cases: Vec<(&str, Algorithm, String)> = vec![
        ("rsa 1024 private", Algorithm::RS256, fixture("rsa1024.pem")),
        (
            "rsa 1024 public",
            Algorithm::RS256,
            fixture("rsa1024.pub.pem"),
        ),
        ("rsa 4352 private", Algorithm::PS256, fixture("rsa4352.pem")),
        (
            "rsa 4352 public",
            Algorithm::RS256,
            fixture("rsa4352.pub.pem"),
        ),
        ("p-521 as ES256", Algorithm::ES256, fixture("p521.pem")),
        ("p-521 as ES384", Algorithm::ES384, fixture("p521.pem")),
        ("p-384 as ES256", Algorithm::ES256, fixture("es384.pem")),
        ("p-256 as ES384", Algorithm::ES384, fixture("es256.pub.pem")),
        ("ed25519 as ES256", Algorithm::ES256, fixture("ed25519.pem")),
        (
            "ed25519 pub as RS256",
            Algorithm::RS256,
            fixture("ed25519.pub.pem"),
        ),
        ("ec as EdDSA", Algorithm::EdDSA, fixture("es256.pem")),
        ("rsa as EdDSA", Algorithm::EdDSA, fixture("rsa2048.pem")),
        ("ec as RS256", Algorithm::RS256, fixture("es256.pem")),
        (
            "rsa as ES256",
            Algorithm::ES256,
            fixture("rsa2048.pkcs1.pem"),
        ),
        (
            "encrypted",
            Algorithm::EdDSA,
            fixture("ed25519.encrypted.pem"),
        ),
        ("PEM for HS256", Algorithm::HS256, fixture("ed25519.pem")),
        ("garbage", Algorithm::EdDSA, "not a pem".into()),
        (
            "bad base64",
            Algorithm::EdDSA,
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n".into(),
        ),
        (
            "truncated",
            Algorithm::EdDSA,
            fixture("ed25519.pem").replace("-----END PRIVATE KEY-----", ""),
        ),
        (
            "two keys",
            Algorithm::EdDSA,
            format!("{}{}", fixture("ed25519.pem"), fixture("ed25519.pem")),
        ),
        (
            "certificate",
            Algorithm::EdDSA,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        ),
    ];
    for (name, alg, pem) in cases {
        let err = JwtKey::from_pem("k", alg, &pem).expect_err(name);
        assert_eq!(err.kind(), ErrorKind::Config, "{name}");
        // Never echo key material.
        let body_line = pem.lines().nth(1).unwrap_or("").to_owned();
        if body_line.len() > 16 {
            assert!(!err.message().contains(&body_line[..16]), "{name}: {err}");
        }
    }
}

#[test]
fn hmac_keys_need_long_random_secrets() {
    for (alg, min) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        assert_kind(
            JwtKey::hmac("h", alg, &HMAC_SECRET[..min - 1]),
            ErrorKind::Config,
        );
        JwtKey::hmac("h", alg, &HMAC_SECRET[..min]).unwrap();
        assert_kind(JwtKey::hmac("h", alg, &[7u8; 64]), ErrorKind::Config);
    }
    assert_kind(
        JwtKey::hmac("h", Algorithm::EdDSA, &HMAC_SECRET),
        ErrorKind::Config,
    );
    assert!(
        JwtKey::hmac("h", Algorithm::HS256, &HMAC_SECRET[..32])
            .unwrap()
            .public_jwk()
            .is_none()
    );
}

#[test]
fn kids_are_checked() {
    assert_kind(JwtKey::generate("", Algorithm::EdDSA), ErrorKind::Config);
    assert_kind(
        JwtKey::generate("a".repeat(257), Algorithm::EdDSA),
        ErrorKind::Config,
    );
    assert_kind(
        JwtKey::generate("a\nb", Algorithm::EdDSA),
        ErrorKind::Config,
    );
    JwtKey::generate("a".repeat(256), Algorithm::EdDSA).unwrap();
}

#[test]
fn jwk_keys_load_and_mismatches_are_refused() {
    // Public JWKs as keycard publishes them.
    for alg in [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS256,
    ] {
        let private = JwtKey::from_pem("k", alg, &private_pem(alg)).unwrap();
        let jwk = serde_json::to_value(private.public_jwk().unwrap()).unwrap();
        let public = JwtKey::from_jwk("k", alg, &jwk).unwrap();
        assert!(!public.can_sign());
        // As a JSON string too.
        JwtKey::from_jwk("k", alg, &Value::String(jwk.to_string())).unwrap();
        // kid and alg members must agree with the config.
        assert_kind(JwtKey::from_jwk("other", alg, &jwk), ErrorKind::Config);
        let other_alg = if alg == Algorithm::EdDSA {
            Algorithm::ES256
        } else {
            Algorithm::EdDSA
        };
        assert_kind(JwtKey::from_jwk("k", other_alg, &jwk), ErrorKind::Config);
        let mut enc = jwk.clone();
        enc["use"] = json!("enc");
        assert_kind(JwtKey::from_jwk("k", alg, &enc), ErrorKind::Config);
    }
    // Private Ed25519 and EC JWKs sign.
    let ed = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(&private_pem(Algorithm::EdDSA)))
        .unwrap();
    let seed = ed.seed().unwrap();
    let seed = AsBigEndian::as_be_bytes(&seed).unwrap();
    let ed_jwk = json!({"kty":"OKP","crv":"Ed25519","x": b64(ed.public_key().as_ref()),"d": b64(seed.as_ref())});
    assert!(
        JwtKey::from_jwk("ed", Algorithm::EdDSA, &ed_jwk)
            .unwrap()
            .can_sign()
    );
    let mut wrong_x = ed_jwk.clone();
    wrong_x["x"] = json!(b64([9u8; 32]));
    assert_kind(
        JwtKey::from_jwk("ed", Algorithm::EdDSA, &wrong_x),
        ErrorKind::Config,
    );

    let ec = EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pem_der(&private_pem(Algorithm::ES256)),
    )
    .unwrap();
    let d = AsBigEndian::as_be_bytes(&ec.private_key()).unwrap();
    let point = ec.public_key().as_ref();
    let ec_jwk = json!({"kty":"EC","crv":"P-256","x": b64(&point[1..33]),"y": b64(&point[33..]),"d": b64(d.as_ref())});
    assert!(
        JwtKey::from_jwk("ec", Algorithm::ES256, &ec_jwk)
            .unwrap()
            .can_sign()
    );
    let mut p384 = ec_jwk.clone();
    p384["crv"] = json!("P-384");
    assert_kind(
        JwtKey::from_jwk("ec", Algorithm::ES256, &p384),
        ErrorKind::Config,
    );
    let mut short = ec_jwk.clone();
    short["x"] = json!(b64(&point[1..32]));
    assert_kind(
        JwtKey::from_jwk("ec", Algorithm::ES256, &short),
        ErrorKind::Config,
    );

    // oct JWKs for HMAC; too short is refused.
    let oct = json!({"kty":"oct","k": b64(&HMAC_SECRET[..32])});
    assert!(
        JwtKey::from_jwk("h", Algorithm::HS256, &oct)
            .unwrap()
            .can_sign()
    );
    assert_kind(
        JwtKey::from_jwk("h", Algorithm::HS384, &oct),
        ErrorKind::Config,
    );
    // Malformed.
    for bad in [
        json!([]),
        json!({"kty":"OKP"}),
        json!({"kty":"OKP","crv":"Ed25519","x":"!!"}),
        json!({"kty":"OKP","crv":"Ed25519","x":5}),
        json!({"kty":"RSA","n":"AQAB","e":"AQAB"}),
        json!("{not json"),
    ] {
        assert_kind(
            JwtKey::from_jwk("x", Algorithm::EdDSA, &bad),
            ErrorKind::Config,
        );
    }
}

#[tokio::test]
async fn rotation_add_switch_retire() {
    let h = harness(Algorithm::EdDSA).await;
    let old_token = access(&h.login("alice").await);
    h.auth(&old_token).await.unwrap();

    let next = JwtKey::generate("next", Algorithm::ES256).unwrap();
    h.ring.add(next).unwrap();
    assert_kind(
        h.ring
            .add(JwtKey::generate("next", Algorithm::EdDSA).unwrap()),
        ErrorKind::Config,
    );
    let kids: Vec<_> = h
        .strategy
        .jwks()
        .keys
        .into_iter()
        .filter_map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["test-key", "next"]);

    h.ring.set_signer("next").unwrap();
    let new_token = access(&h.login("alice").await);
    assert_eq!(decode_segment(&new_token, 0)["kid"], "next");
    h.auth(&new_token).await.unwrap();
    // Old tokens still verify until the old key is retired...
    h.auth(&old_token).await.unwrap();
    assert_kind(h.ring.retire("next"), ErrorKind::Config);
    assert!(h.ring.retire("test-key").unwrap());
    assert!(!h.ring.retire("test-key").unwrap());
    // ...then they fail at once, cached or not.
    assert_kind(h.auth(&old_token).await, ErrorKind::InvalidCredential);
    h.auth(&new_token).await.unwrap();
    assert_eq!(h.ring.kids(), ["next"]);
    assert_kind(h.ring.set_signer("missing"), ErrorKind::Config);
    // A verify-only key cannot become the signer.
    h.ring
        .add(JwtKey::from_pem("pub", Algorithm::EdDSA, &public_pem(Algorithm::EdDSA)).unwrap())
        .unwrap();
    assert_kind(h.ring.set_signer("pub"), ErrorKind::Config);
}

#[tokio::test]
async fn jwks_publishes_public_keys_only() {
    let (_, ed) = Signer::for_alg(Algorithm::EdDSA, "ed");
    let (_, rsa) = Signer::for_alg(Algorithm::RS256, "rsa");
    let (_, es) = Signer::for_alg(Algorithm::ES256, "es");
    let (_, hs) = Signer::for_alg(Algorithm::HS256, "hs");
    let ring = Arc::new(KeyRing::new([ed, rsa, es, hs], Some("ed")).unwrap());
    let strategy = JwtStrategy::builder(config())
        .key_ring(ring)
        .build()
        .unwrap();
    strategy.ready().await.unwrap();

    let response = send(
        &strategy.jwks_router(),
        get_req("/.well-known/jwks.json", None),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/json");
    assert!(
        response.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = serde_json::from_slice(&response.body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "HS keys are never published: {jwks}");
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(k["kid"].is_string() && k["alg"].is_string() && k["kty"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "{k}");
        }
    }
    let by_kid = |kid: &str| keys.iter().find(|k| k["kid"] == kid).unwrap().clone();
    assert_eq!(by_kid("ed")["crv"], "Ed25519");
    assert_eq!(by_kid("es")["crv"], "P-256");
    assert_eq!(by_kid("rsa")["e"], "AQAB");
    assert_eq!(by_kid("rsa")["alg"], "RS256");
}

#[tokio::test]
async fn interop_with_jsonwebtoken() {
    use jsonwebtoken::{Algorithm as J, DecodingKey, EncodingKey, Header, Validation};
    for (alg, jalg) in [
        (Algorithm::EdDSA, J::EdDSA),
        (Algorithm::ES256, J::ES256),
        (Algorithm::ES384, J::ES384),
        (Algorithm::RS256, J::RS256),
        (Algorithm::PS256, J::PS256),
        (Algorithm::HS256, J::HS256),
    ] {
        let h = harness(alg).await;
        let token = access(&h.login("alice").await);
        let (decoding, encoding) = if alg.is_symmetric() {
            (
                DecodingKey::from_secret(&secret_for(alg)),
                EncodingKey::from_secret(&secret_for(alg)),
            )
        } else {
            let public = public_pem(alg);
            let private = private_pem(alg);
            match alg {
                Algorithm::EdDSA => (
                    DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
                    EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
                ),
                Algorithm::ES256 | Algorithm::ES384 => (
                    DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
                    EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
                ),
                _ => (
                    DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
                    EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
                ),
            }
        };
        let mut v = Validation::new(jalg);
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &v)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(data.claims["sub"], "alice");

        let mut header = Header::new(jalg);
        header.typ = Some("at+jwt".into());
        header.kid = Some("test-key".into());
        let theirs = jsonwebtoken::encode(&header, &h.claims(), &encoding).unwrap();
        let p = h
            .auth(&theirs)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(p.subject(), "alice");
    }
}

#[tokio::test]
async fn debug_output_is_redacted() {
    let h = harness(Algorithm::HS256).await;
    let issued = h.login("alice").await;
    let secret_b64 = b64(secret_for(Algorithm::HS256));
    for text in [
        format!("{:?}", h.ring),
        format!("{:?}", h.ring.signer().unwrap()),
        format!("{:?}", h.strategy),
        format!("{issued:?}"),
    ] {
        assert!(!text.contains(&secret_b64), "{text}");
        assert!(!text.contains(&access(&issued)), "{text}");
        assert!(!text.contains(&refresh_token(&issued)), "{text}");
    }
    assert!(format!("{:?}", h.ring.signer().unwrap()).contains("[redacted]"));
    let ed = JwtKey::from_pem("k", Algorithm::EdDSA, &private_pem(Algorithm::EdDSA)).unwrap();
    let body = private_pem(Algorithm::EdDSA)
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(!format!("{ed:?}").contains(&body[..20]));
}
