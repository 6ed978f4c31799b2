//! Forged and malformed tokens: every one is refused with `InvalidCredential`, never a panic,
//! whether or not a valid token was verified (and cached) before.
#![cfg(feature = "jwt")]

use crate::common::jwt_support;

use aws_lc_rs::{
    hmac,
    signature::{Ed25519KeyPair, KeyPair},
};
use jwt_support::*;
use keycard::{ErrorKind, jwt::Algorithm};
use serde_json::{Value, json};

/// Runs `token` through the strategy (twice, to cover the cache) and expects `InvalidCredential`.
async fn refused(h: &Harness, name: &str, token: &str) {
    for _ in 0..2 {
        match h.auth(token).await {
            Ok(p) => panic!("{name}: accepted as {}", p.subject()),
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidCredential, "{name}: {e:?}"),
        }
    }
}

fn hs256(secret: &[u8], input: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input)
        .as_ref()
        .to_vec()
}

fn hs(alg: &str, secret: &[u8], input: &[u8]) -> Vec<u8> {
    let a = match alg {
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    hmac::sign(&hmac::Key::new(a, secret), input)
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn sanity_the_baseline_token_is_accepted() {
    let h = harness(Algorithm::EdDSA).await;
    h.auth(&h.token(&h.claims())).await.unwrap();
}

#[tokio::test]
async fn alg_none_in_every_spelling() {
    let h = harness(Algorithm::EdDSA).await;
    let claims = h.claims().to_string();
    for alg in [
        "none", "None", "NONE", "nOnE", "noNe", "none ", " none", "", "null",
    ] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "test-key"}).to_string();
        let unsigned = format!("{}.{}.", b64(&header), b64(&claims));
        refused(&h, &format!("alg {alg:?} empty sig"), &unsigned).await;
        let with_sig = forge_raw(&header, &claims, |m| h.signer.sign(m));
        refused(&h, &format!("alg {alg:?} real sig"), &with_sig).await;
        let junk = format!("{}.{}.AAAA", b64(&header), b64(&claims));
        refused(&h, &format!("alg {alg:?} junk sig"), &junk).await;
    }
    // No alg at all, alg null, alg of the wrong type.
    for header in [
        json!({"typ": "at+jwt", "kid": "test-key"}),
        json!({"alg": null, "typ": "at+jwt", "kid": "test-key"}),
        json!({"alg": ["EdDSA"], "typ": "at+jwt", "kid": "test-key"}),
        json!({"alg": 1, "typ": "at+jwt", "kid": "test-key"}),
    ] {
        refused(
            &h,
            &format!("{header}"),
            &forge(&h.signer, &header, &h.claims()),
        )
        .await;
    }
}

/// HMAC-signs a token with `secret` under every HS algorithm, with the given kid.
async fn hmac_confusion(h: &Harness, what: &str, secret: &[u8]) {
    for alg in ["HS256", "HS384", "HS512"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "test-key"}).to_string();
        let token = forge_raw(&header, &h.claims().to_string(), |m| hs(alg, secret, m));
        refused(h, &format!("{alg} with {what}"), &token).await;
    }
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_in_every_encoding() {
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let h = harness(alg).await;
        let pem = public_pem(alg);
        let der = pem_der(&pem);
        let key = h.ring.signer().unwrap();
        let jwk = key.public_jwk().unwrap().clone();
        let jwk_json = serde_json::to_string(&jwk).unwrap();
        let mut secrets: Vec<(String, Vec<u8>)> = vec![
            ("PEM".into(), pem.clone().into_bytes()),
            (
                "PEM without newline".into(),
                pem.trim_end().as_bytes().to_vec(),
            ),
            (
                "PEM with CRLF".into(),
                pem.replace('\n', "\r\n").into_bytes(),
            ),
            ("SPKI DER".into(), der.clone()),
            ("SPKI DER base64".into(), b64(&der).into_bytes()),
            ("JWK JSON".into(), jwk_json.into_bytes()),
            (
                "JWK JSON pretty".into(),
                serde_json::to_string_pretty(&jwk).unwrap().into_bytes(),
            ),
        ];
        for (name, member) in [("n", &jwk.n), ("e", &jwk.e), ("x", &jwk.x), ("y", &jwk.y)] {
            if let Some(v) = member {
                secrets.push((format!("JWK member {name} (text)"), v.clone().into_bytes()));
                let raw =
                    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v)
                        .unwrap();
                secrets.push((format!("JWK member {name} (bytes)"), raw));
            }
        }
        if alg == Algorithm::RS256 {
            secrets.push((
                "PKCS#1 PEM".into(),
                fixture("rsa2048.pkcs1.pub.pem").into_bytes(),
            ));
            secrets.push((
                "PKCS#1 DER".into(),
                pem_der(&fixture("rsa2048.pkcs1.pub.pem")),
            ));
        }
        if matches!(alg, Algorithm::ES256 | Algorithm::EdDSA) {
            // Raw point / raw key bytes: the BIT STRING of the SPKI.
            let raw_len = if alg == Algorithm::EdDSA { 32 } else { 65 };
            secrets.push(("raw public key".into(), der[der.len() - raw_len..].to_vec()));
        }
        secrets.push(("empty".into(), Vec::new()));
        for (name, secret) in &secrets {
            hmac_confusion(&h, &format!("{alg} key as {name}"), secret).await;
        }
    }
}

#[tokio::test]
async fn another_asymmetric_algorithm_for_the_same_key_is_refused() {
    // RS256 key, PS256 signature (and the reverse); P-256 key claimed as ES384.
    let rs = harness(Algorithm::RS256).await;
    let (pss, _) = Signer::for_alg(Algorithm::PS256, "test-key");
    let header = json!({"alg": "PS256", "typ": "at+jwt", "kid": "test-key"});
    refused(
        &rs,
        "PS256 on an RS256 key",
        &forge(&pss, &header, &rs.claims()),
    )
    .await;
    let ps = harness(Algorithm::PS256).await;
    let (pkcs1, _) = Signer::for_alg(Algorithm::RS256, "test-key");
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": "test-key"});
    refused(
        &ps,
        "RS256 on a PS256 key",
        &forge(&pkcs1, &header, &ps.claims()),
    )
    .await;
    let es = harness(Algorithm::ES256).await;
    let header = json!({"alg": "ES384", "typ": "at+jwt", "kid": "test-key"});
    refused(
        &es,
        "ES384 header on ES256 key",
        &forge(&es.signer, &header, &es.claims()),
    )
    .await;
    let header = json!({"alg": "es256", "typ": "at+jwt", "kid": "test-key"});
    refused(
        &es,
        "lower-case alg",
        &forge(&es.signer, &header, &es.claims()),
    )
    .await;
}

#[tokio::test]
async fn key_location_headers_are_refused() {
    let h = harness(Algorithm::EdDSA).await;
    let attacker = Ed25519KeyPair::generate().unwrap();
    let attacker_jwk =
        json!({"kty":"OKP","crv":"Ed25519","x": b64(attacker.public_key().as_ref())});
    let sign_attacker = |header: &Value| {
        forge_raw(&header.to_string(), &h.claims().to_string(), |m| {
            attacker.sign(m).as_ref().to_vec()
        })
    };
    let cases = [
        (
            "embedded jwk, real kid",
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","jwk": attacker_jwk}),
        ),
        (
            "embedded jwk, no kid",
            json!({"alg":"EdDSA","typ":"at+jwt","jwk": attacker_jwk}),
        ),
        (
            "jku",
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","jku":"https://evil.example/jwks.json"}),
        ),
        (
            "x5u",
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","x5u":"https://evil.example/cert.pem"}),
        ),
        (
            "x5c",
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","x5c":["MIIB"]}),
        ),
        (
            "x5t",
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","x5t":"abc"}),
        ),
    ];
    for (name, header) in &cases {
        refused(
            &h,
            &format!("{name} (attacker key)"),
            &sign_attacker(header),
        )
        .await;
        // Even signed by the real key, a token carrying these headers is refused.
        refused(
            &h,
            &format!("{name} (real key)"),
            &forge(&h.signer, header, &h.claims()),
        )
        .await;
    }
}

#[tokio::test]
async fn kid_traversal_injection_and_unknown_kids() {
    let h = harness(Algorithm::HS256).await;
    let kids: Vec<Value> = vec![
        json!("../../../../../../dev/null"),
        json!("/dev/null"),
        json!("..\\..\\windows\\win.ini"),
        json!("file:///etc/passwd"),
        json!("x' UNION SELECT 'secret' -- "),
        json!("test-key' OR '1'='1"),
        json!("test-key\u{0}"),
        json!("test-key "),
        json!("TEST-KEY"),
        json!("$(touch /tmp/pwned)"),
        json!("| ls"),
        json!(""),
        json!("k".repeat(300)),
        json!("unknown"),
        json!(1),
        json!(null),
        json!(["test-key"]),
        json!({"kid": "test-key"}),
    ];
    for kid in kids {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        // Signed with the real secret, an empty secret, and the contents of /dev/null (empty).
        let real = forge(&h.signer, &header, &h.claims());
        refused(&h, &format!("kid {kid} real secret"), &real).await;
        let empty = forge_raw(&header.to_string(), &h.claims().to_string(), |m| {
            hs256(b"", m)
        });
        refused(&h, &format!("kid {kid} empty secret"), &empty).await;
        let zero = forge_raw(&header.to_string(), &h.claims().to_string(), |m| {
            hs256(&[0], m)
        });
        refused(&h, &format!("kid {kid} zero secret"), &zero).await;
    }
    let no_kid = json!({"alg": "HS256", "typ": "at+jwt"});
    refused(&h, "no kid", &forge(&h.signer, &no_kid, &h.claims())).await;
}

#[tokio::test]
async fn tampering_is_detected() {
    let h = harness(Algorithm::ES256).await;
    let good = h.token(&h.claims());
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut admin = h.claims();
    admin["sub"] = json!("admin");
    admin["roles"] = json!(["admin"]);
    let tampered_payload = format!("{header}.{}.{sig}", b64(admin.to_string()));
    refused(&h, "tampered payload", &tampered_payload).await;
    let other_header =
        b64(json!({"alg":"ES256","typ":"at+jwt","kid":"test-key","x":1}).to_string());
    refused(
        &h,
        "tampered header",
        &format!("{other_header}.{payload}.{sig}"),
    )
    .await;
    let other = h.token(&json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "exp": secs(h.now()) + 60, "iat": secs(h.now()), "jti": "x"}));
    let other_sig = other.rsplit('.').next().unwrap();
    refused(
        &h,
        "signature of another token",
        &format!("{header}.{payload}.{other_sig}"),
    )
    .await;
    refused(
        &h,
        "truncated signature",
        &format!("{header}.{payload}.{}", &sig[..sig.len() - 2]),
    )
    .await;
    refused(
        &h,
        "extended signature",
        &format!("{header}.{payload}.{sig}AA"),
    )
    .await;
    refused(
        &h,
        "padded signature",
        &format!("{header}.{payload}.{sig}="),
    )
    .await;
    refused(&h, "padded payload", &format!("{header}.{payload}=.{sig}")).await;
    let standard = good.replace('-', "+").replace('_', "/");
    if standard != good {
        refused(&h, "standard alphabet", &standard).await;
    }
    // A '+' or '/' anywhere is outside the base64url alphabet.
    refused(
        &h,
        "plus in signature",
        &format!("{header}.{payload}.+{}", &sig[1..]),
    )
    .await;
    refused(
        &h,
        "slash in payload",
        &format!("{header}./{}.{sig}", &payload[1..]),
    )
    .await;
    refused(&h, "whitespace", &format!("{header}. {payload}.{sig}")).await;
    refused(&h, "trailing newline", &format!("{good}\n")).await;
    refused(&h, "leading space", &format!(" {good}")).await;
    refused(&h, "trailing dot", &format!("{good}.")).await;
    refused(&h, "empty signature", &format!("{header}.{payload}.")).await;
    refused(&h, "empty payload", &format!("{header}..{sig}")).await;
    refused(&h, "empty header", &format!(".{payload}.{sig}")).await;
    // Non-canonical base64: same bytes, different trailing bits in the last character.
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let twin = alphabet.as_bytes()[(idx & !0b11) | ((idx + 1) & 0b11)] as char;
    let non_canonical = format!("{header}.{payload}.{}{twin}", &sig[..sig.len() - 1]);
    refused(&h, "non-canonical base64", &non_canonical).await;
    // The original still works.
    h.auth(&good).await.unwrap();
}

#[tokio::test]
async fn duplicate_members_are_refused() {
    let h = harness(Algorithm::EdDSA).await;
    let now = secs(h.now());
    let base = format!(
        r#""iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"iat":{now},"jti":"j1""#,
        now + 300
    );
    let header = r#"{"alg":"EdDSA","typ":"at+jwt","kid":"test-key"}"#;
    for (name, claims) in [
        (
            "sub twice",
            format!(r#"{{{base},"sub":"alice","sub":"admin"}}"#),
        ),
        (
            "exp twice",
            format!(r#"{{{base},"sub":"alice","exp":{}}}"#, now + 100_000),
        ),
        (
            "roles twice",
            format!(r#"{{{base},"sub":"alice","roles":["user"],"roles":["admin"]}}"#),
        ),
        (
            "attribute twice",
            format!(r#"{{{base},"sub":"alice","tenant":"a","tenant":"b"}}"#),
        ),
        (
            "escaped duplicate",
            format!(r#"{{{base},"sub":"alice","\u0073ub":"admin"}}"#),
        ),
    ] {
        refused(&h, name, &forge_raw(header, &claims, |m| h.signer.sign(m))).await;
    }
    let claims = h.claims().to_string();
    for (name, header) in [
        (
            "alg twice",
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"test-key","alg":"none"}"#,
        ),
        (
            "kid twice",
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"test-key","kid":"other"}"#,
        ),
        (
            "typ twice",
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"test-key","typ":"JWT"}"#,
        ),
        (
            "unknown twice",
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"test-key","x":1,"x":2}"#,
        ),
    ] {
        refused(&h, name, &forge_raw(header, &claims, |m| h.signer.sign(m))).await;
    }
}

#[tokio::test]
async fn wrong_claim_types_are_refused() {
    let h = harness(Algorithm::EdDSA).await;
    let now = secs(h.now());
    let cases: Vec<(&str, Value)> = vec![
        ("exp", json!(format!("{}", now + 300))),
        ("exp", json!((now + 300) as f64 + 0.5)),
        ("exp", json!(1.8e9)),
        ("exp", json!(-1)),
        ("exp", json!(99_999_999_999_999i64)),
        ("exp", json!(u64::MAX)),
        ("exp", json!(null)),
        ("exp", json!(true)),
        ("exp", json!([now + 300])),
        ("iat", json!(format!("{now}"))),
        ("iat", json!(null)),
        ("nbf", json!(false)),
        ("nbf", json!("0")),
        ("aud", json!(5)),
        ("aud", json!([5])),
        ("aud", json!({"aud": AUDIENCE})),
        ("aud", json!(null)),
        ("iss", json!([ISSUER])),
        ("iss", json!(null)),
        ("sub", json!(42)),
        ("sub", json!(["alice"])),
        ("sub", json!("")),
        ("jti", json!(7)),
        ("jti", json!("")),
        ("sid", json!(7)),
        ("roles", json!("admin")),
        ("roles", json!([1, 2])),
        ("roles", json!({"admin": true})),
        ("roles", json!(null)),
        ("auth_time", json!("yesterday")),
        ("iat_ms", json!("1")),
    ];
    for (claim, value) in cases {
        let mut claims = h.claims();
        claims[claim] = value.clone();
        refused(&h, &format!("{claim} = {value}"), &h.token(&claims)).await;
    }
    for missing in ["exp", "iat", "iss", "aud", "sub", "jti"] {
        let mut claims = h.claims();
        claims.as_object_mut().unwrap().remove(missing);
        refused(&h, &format!("missing {missing}"), &h.token(&claims)).await;
    }
    // Claims that are not an object at all.
    for body in [
        r#"[]"#,
        r#""claims""#,
        "42",
        "null",
        "",
        "{",
        r#"{"sub":"a"} x"#,
    ] {
        let header = h.signer.header().to_string();
        refused(
            &h,
            &format!("claims {body:?}"),
            &forge_raw(&header, body, |m| h.signer.sign(m)),
        )
        .await;
    }
}

#[tokio::test]
async fn crit_b64_and_typ_rules() {
    let h = harness(Algorithm::EdDSA).await;
    let claims = h.claims();
    for header in [
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","crit":["exp"]}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","crit":[]}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","crit":["b64"],"b64":false}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","b64":false}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","b64":true}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","zip":"DEF"}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","cty":"JWT"}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","enc":"A256GCM"}),
        json!({"alg":"EdDSA","kid":"test-key"}),
        json!({"alg":"EdDSA","typ":"JWT","kid":"test-key"}),
        json!({"alg":"EdDSA","typ":"jwt","kid":"test-key"}),
        json!({"alg":"EdDSA","typ":"at+jwt ","kid":"test-key"}),
        json!({"alg":"EdDSA","typ":"at-jwt","kid":"test-key"}),
        json!({"alg":"EdDSA","typ":"application/jwt","kid":"test-key"}),
        json!({"alg":"EdDSA","typ":null,"kid":"test-key"}),
        json!({"alg":"EdDSA","typ":["at+jwt"],"kid":"test-key"}),
    ] {
        refused(
            &h,
            &format!("{header}"),
            &forge(&h.signer, &header, &claims),
        )
        .await;
    }
    // b64:false with an unencoded payload (RFC 7797).
    let header = json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","b64":false,"crit":["b64"]})
        .to_string();
    let input = format!("{}.{}", b64(&header), claims);
    let sig = h.signer.sign(input.as_bytes());
    refused(&h, "unencoded payload", &format!("{input}.{}", b64(sig))).await;
    // Accepted spellings of typ (RFC 9068 §2.1 and RFC 7515 §4.1.9).
    for typ in [
        "at+jwt",
        "AT+JWT",
        "At+Jwt",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let header = json!({"alg":"EdDSA","typ": typ,"kid":"test-key"});
        let mut c = h.claims();
        c["jti"] = json!(format!("typ-{typ}"));
        h.auth(&forge(&h.signer, &header, &c))
            .await
            .unwrap_or_else(|e| panic!("{typ}: {e:?}"));
    }
}

#[tokio::test]
async fn other_serializations_and_shapes_are_refused() {
    let h = harness(Algorithm::EdDSA).await;
    let good = h.token(&h.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let json_general = json!({
        "payload": parts[1],
        "signatures": [{"protected": parts[0], "signature": parts[2]}],
    })
    .to_string();
    let json_flat =
        json!({"payload": parts[1], "protected": parts[0], "signature": parts[2]}).to_string();
    let jwe_header = b64(json!({"alg":"RSA-OAEP","enc":"A256GCM","kid":"test-key"}).to_string());
    let cases = [
        ("JWS JSON general", json_general),
        ("JWS JSON flattened", json_flat),
        (
            "JWE five segments",
            format!("{jwe_header}.AAAA.AAAA.AAAA.AAAA"),
        ),
        ("JWE-shaped valid JWS", format!("{good}.AAAA.AAAA")),
        ("four segments", format!("{good}.AAAA")),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("one segment", parts[1].to_owned()),
        ("empty", String::new()),
        ("dots", "..".into()),
        ("many dots", ".".repeat(100)),
        ("not base64", "@@@.###.$$$".into()),
        ("unicode", "ＡＡ.ＢＢ.ＣＣ".into()),
        (
            "header is an array",
            format!("{}.{}.{}", b64("[]"), parts[1], parts[2]),
        ),
        (
            "header is a string",
            format!("{}.{}.{}", b64("\"EdDSA\""), parts[1], parts[2]),
        ),
        (
            "header not utf-8",
            format!("{}.{}.{}", b64([0xff, 0xfe, 0x7b]), parts[1], parts[2]),
        ),
        (
            "header with BOM",
            format!(
                "{}.{}.{}",
                b64(format!("\u{feff}{}", h.signer.header())),
                parts[1],
                parts[2]
            ),
        ),
        ("Bearer prefix", format!("Bearer {good}")),
    ];
    for (name, token) in &cases {
        refused(&h, name, token).await;
    }
}

#[tokio::test]
async fn oversized_and_deeply_nested_input_is_refused() {
    let h = harness(Algorithm::EdDSA).await;
    // A validly signed token just over 8 KiB.
    let mut claims = h.claims();
    claims["pad"] = json!("x".repeat(6200));
    let big = h.token(&claims);
    assert!(big.len() > 8192, "{}", big.len());
    refused(&h, "signed token over 8 KiB", &big).await;
    // Just under is fine.
    claims["pad"] = json!("x".repeat(5800));
    let ok = h.token(&claims);
    assert!(ok.len() <= 8192);
    h.auth(&ok).await.unwrap();
    // Huge garbage, refused before decoding.
    let huge = "A".repeat(4 * 1024 * 1024);
    let t = std::time::Instant::now();
    refused(&h, "4 MiB", &format!("{huge}.{huge}.{huge}")).await;
    assert!(
        t.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // An oversized header segment within the 8 KiB token.
    let fat_header = json!({"alg":"EdDSA","typ":"at+jwt","kid":"test-key","pad":"y".repeat(3000)});
    refused(
        &h,
        "fat header",
        &forge(&h.signer, &fat_header, &h.claims()),
    )
    .await;
    // Deep nesting in a claim (signed) and in the header.
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    let base = h.claims().to_string();
    let nested = format!("{},\"deep\":{deep}}}", &base[..base.len() - 1]);
    let header = h.signer.header().to_string();
    refused(
        &h,
        "deeply nested claim",
        &forge_raw(&header, &nested, |m| h.signer.sign(m)),
    )
    .await;
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(1500), "}".repeat(1500));
    let nested = format!("{},\"deep\":{deep_obj}}}", &base[..base.len() - 1]);
    refused(
        &h,
        "deeply nested object",
        &forge_raw(&header, &nested, |m| h.signer.sign(m)),
    )
    .await;
    let deep_header = format!(
        r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"test-key","x":{}{}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    refused(
        &h,
        "deeply nested header",
        &forge_raw(&deep_header, &base, |m| h.signer.sign(m)),
    )
    .await;
    // Many header parameters.
    let mut wide = h.signer.header();
    for i in 0..40 {
        wide[format!("p{i}")] = json!(i);
    }
    refused(
        &h,
        "40 header parameters",
        &forge(&h.signer, &wide, &h.claims()),
    )
    .await;
}

#[tokio::test]
async fn wrong_issuer_audience_and_unknown_kid() {
    let h = harness(Algorithm::ES384).await;
    for (claim, value) in [
        ("iss", json!("https://evil.example")),
        ("iss", json!(format!("{ISSUER}/"))),
        ("iss", json!(ISSUER.to_uppercase())),
        ("aud", json!("https://other.api")),
        ("aud", json!([])),
        ("aud", json!(["https://other.api"])),
        ("aud", json!(format!("{AUDIENCE} "))),
    ] {
        let mut claims = h.claims();
        claims[claim] = value.clone();
        refused(&h, &format!("{claim} = {value}"), &h.token(&claims)).await;
    }
    let mut claims = h.claims();
    claims["aud"] = json!(["https://other.api", AUDIENCE]);
    h.auth(&h.token(&claims)).await.unwrap();
    let header = json!({"alg":"ES384","typ":"at+jwt","kid":"rotated-away"});
    refused(&h, "unknown kid", &forge(&h.signer, &header, &h.claims())).await;
}

#[tokio::test]
async fn random_mutations_are_refused_without_panicking() {
    let h = harness(Algorithm::EdDSA).await;
    let good = h.token(&h.claims());
    h.auth(&good).await.unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff";
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let mut bytes = good.clone().into_bytes();
        for _ in 0..=(next() % 3) {
            let i = (next() as usize) % bytes.len();
            match next() % 4 {
                0 => bytes[i] = alphabet[(next() as usize) % alphabet.len()],
                1 => bytes.truncate(i.max(1)),
                2 => bytes.insert(i, alphabet[(next() as usize) % alphabet.len()]),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        let Ok(token) = String::from_utf8(bytes) else {
            continue;
        };
        if token == good {
            continue;
        }
        match h.auth(&token).await {
            Ok(_) => panic!("mutated token accepted: {token}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidCredential, "{token}: {e:?}"),
        }
    }
}
