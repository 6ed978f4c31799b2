//! The hostile-input suite: every case goes through the REAL demo router (`examples/demo/app.rs`,
//! built in process on a real store and driven with `oneshot`) and asserts the exact status, and
//! that a refusal never hands out a credential (no session cookie, no token in the body).
//!
//! One `#[tokio::test]` per case, organised by category (sources: RFC 8725, RFC 6750, RFC 9700,
//! the OWASP session-management, JWT and CSRF cheat sheets, ASVS 5, the PortSwigger JWT labs,
//! jwt_tool's attack modes and Wycheproof's invalid-signature classes):
//!
//! - `forgery`: token forgery and algorithm confusion;
//! - `claims`: claims validation;
//! - `encoding`: encoding and parsing of tokens and of the `Authorization` header;
//! - `keys`: keys and the JWKS;
//! - `cookies_csrf`: cookies and CSRF;
//! - `session_store`: fixation, replay, revocation;
//! - `refresh`: refresh-token rotation;
//! - `limits`: size and nesting limits;
//! - `faults` (feature `postgres`): a hung or dead store answers 503, never 2xx/401/5xx-other.
//!
//! Token cases run against the `jwt` demo with fixture keys the test also holds, and each first
//! checks that a token forged with the baseline header and claims IS accepted, so every refusal
//! is due to the one thing the case changes. The races are in `hostile_races.rs`.

#![cfg(all(feature = "jwt", feature = "sqlite"))]

use crate::common::{hostile_support::*, http_client::*};

use axum::body::Body;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

/// `name: STATUS, |h| token;` — one test per row: GET `/me` and `/admin` with
/// `Authorization: Bearer <token>` on the jwt demo must answer exactly `STATUS`.
macro_rules! bearer_cases {
    ($($(#[$m:meta])* $name:ident: $status:ident, |$h:ident| $token:expr;)*) => {
        $(
            $(#[$m])*
            #[tokio::test]
            async fn $name() {
                let $h = jwt_demo().await;
                $h.assert_control_accepted().await;
                let token: String = { $token };
                $h.assert_bearer_refused(&token, StatusCode::$status, stringify!($name)).await;
            }
        )*
    };
}

/// A header JSON with `alg`, `typ: at+jwt` and `kid`.
fn hdr(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
}

/// `header.claims.` + an arbitrary signature, all base64url.
fn with_sig(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string()),
        b64(claims.to_string()),
        b64(sig)
    )
}

/// A token signed with HMAC-SHA256 under `secret`, with `header` and the baseline claims.
fn hmac_forged(h: &Harness, header: &Value, secret: &[u8]) -> String {
    forge_raw(&header.to_string(), &h.f().claims().to_string(), |m| {
        hs256(secret, m)
    })
}

/// A fresh attacker Ed25519 key pair.
fn attacker() -> aws_lc_rs::signature::Ed25519KeyPair {
    aws_lc_rs::signature::Ed25519KeyPair::generate().expect("attacker key")
}

fn attacker_signed(header: &Value, claims: &Value) -> String {
    let key = attacker();
    forge_raw(&header.to_string(), &claims.to_string(), |m| {
        key.sign(m).as_ref().to_vec()
    })
}

fn attacker_jwk() -> Value {
    use aws_lc_rs::signature::KeyPair as _;
    let key = attacker();
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())})
}

/// The published JWK of `kid`, as JSON text.
fn published_jwk(h: &Harness, kid: &str) -> String {
    let key = h.ring().get(kid).expect("key");
    serde_json::to_string(key.public_jwk().expect("public jwk")).unwrap()
}

/// The three segments of a genuine token.
fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    let (a, b, c) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    (a.to_owned(), b.to_owned(), c.to_owned())
}

// =============================================================================================
// Token forgery and algorithm confusion

mod forgery {
    use super::*;
    use crate::common::jwt_support::{pem_der, public_pem};
    use keycard::jwt::Algorithm;

    bearer_cases! {
        // --- alg "none" (RFC 8725 §2.1, §3.1)
        alg_none_unsigned: UNAUTHORIZED, |h| {
            let header = hdr("none", ED_KID).to_string();
            format!("{}.{}.", b64(&header), b64(h.f().claims().to_string()))
        };
        alg_none_capitalised_with_junk_signature: UNAUTHORIZED, |h| {
            with_sig(&hdr("None", ED_KID), &h.f().claims(), b"junk")
        };
        alg_none_uppercase_signed_by_the_real_key: UNAUTHORIZED, |h| {
            h.f().token_with_header(&hdr("NONE", ED_KID))
        };
        alg_none_mixed_case_without_kid: UNAUTHORIZED, |h| {
            let header = json!({"alg": "nOnE", "typ": "at+jwt"}).to_string();
            format!("{}.{}.", b64(&header), b64(h.f().claims().to_string()))
        };
        alg_empty_string: UNAUTHORIZED, |h| h.f().token_with_header(&hdr("", ED_KID));
        alg_missing: UNAUTHORIZED, |h| {
            h.f().token_with_header(&json!({"typ": "at+jwt", "kid": ED_KID}))
        };
        alg_null: UNAUTHORIZED, |h| {
            h.f().token_with_header(&json!({"alg": null, "typ": "at+jwt", "kid": ED_KID}))
        };
        alg_lowercase_eddsa: UNAUTHORIZED, |h| h.f().token_with_header(&hdr("eddsa", ED_KID));
        alg_duplicated_with_none: UNAUTHORIZED, |h| {
            let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{ED_KID}","alg":"none"}}"#);
            h.f().raw(&header, &h.f().claims().to_string())
        };

        // --- Algorithm confusion: HMAC keyed with public material (RFC 8725 §2.1)
        hs256_keyed_with_the_ed25519_public_key_bytes: UNAUTHORIZED, |h| {
            let der = pem_der(&public_pem(Algorithm::EdDSA));
            hmac_forged(&h, &hdr("HS256", ED_KID), &der[der.len() - 32..])
        };
        hs256_keyed_with_the_ed25519_public_pem: UNAUTHORIZED, |h| {
            hmac_forged(&h, &hdr("HS256", ED_KID), public_pem(Algorithm::EdDSA).as_bytes())
        };
        hs256_keyed_with_the_rsa_public_pem: UNAUTHORIZED, |h| {
            hmac_forged(&h, &hdr("HS256", RS_KID), public_pem(Algorithm::RS256).as_bytes())
        };
        hs256_keyed_with_the_rsa_spki_der: UNAUTHORIZED, |h| {
            hmac_forged(&h, &hdr("HS256", RS_KID), &pem_der(&public_pem(Algorithm::RS256)))
        };
        hs256_keyed_with_the_published_jwk: UNAUTHORIZED, |h| {
            let jwk = published_jwk(&h, RS_KID);
            hmac_forged(&h, &hdr("HS256", RS_KID), jwk.as_bytes())
        };
        hs256_on_the_hmac_kid_keyed_with_a_public_key: UNAUTHORIZED, |h| {
            hmac_forged(&h, &hdr("HS256", HS_KID), public_pem(Algorithm::EdDSA).as_bytes())
        };
        hs256_on_the_hmac_kid_with_an_empty_secret: UNAUTHORIZED, |h| {
            hmac_forged(&h, &hdr("HS256", HS_KID), b"")
        };

        // --- Another algorithm for a pinned key
        ps256_signature_on_the_rs256_key: UNAUTHORIZED, |h| {
            let (pss, _) = Signer::for_alg(Algorithm::PS256, RS_KID);
            forge(&pss, &hdr("PS256", RS_KID), &h.f().claims())
        };
        rs256_header_and_signature_on_the_eddsa_kid: UNAUTHORIZED, |h| {
            forge(&h.f().rs, &hdr("RS256", ED_KID), &h.f().claims())
        };
        eddsa_signature_on_the_hmac_kid: UNAUTHORIZED, |h| {
            h.f().token_with_header(&hdr("EdDSA", HS_KID))
        };

        // --- The token chooses its own key (RFC 7515 §4.1.2-4.1.6; PortSwigger jwk/jku labs)
        embedded_jwk_with_the_attacker_key: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["jwk"] = attacker_jwk();
            attacker_signed(&header, &h.f().claims())
        };
        embedded_jwk_without_kid: UNAUTHORIZED, |h| {
            let header = json!({"alg": "EdDSA", "typ": "at+jwt", "jwk": attacker_jwk()});
            attacker_signed(&header, &h.f().claims())
        };
        embedded_jwk_even_signed_by_the_real_key: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["jwk"] = attacker_jwk();
            h.f().token_with_header(&header)
        };
        jku_header: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["jku"] = json!("https://evil.example/jwks.json");
            h.f().token_with_header(&header)
        };
        x5u_header: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["x5u"] = json!("https://evil.example/cert.pem");
            h.f().token_with_header(&header)
        };
        x5c_header: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["x5c"] = json!(["MIIBszCCAVmgAwIBAgIU"]);
            h.f().token_with_header(&header)
        };
        x5t_header: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["x5t#S256"] = json!("abc");
            h.f().token_with_header(&header)
        };

        // --- kid injection (jwt_tool -I, PortSwigger kid traversal lab)
        kid_path_traversal_to_dev_null_with_empty_key: UNAUTHORIZED, |h| {
            hmac_forged(&h, &hdr("HS256", "../../../../../../dev/null"), b"")
        };
        kid_sql_injection: UNAUTHORIZED, |h| {
            h.f().token_with_header(&hdr("EdDSA", "x' UNION SELECT 'ed-1' -- "))
        };
        kid_command_injection: UNAUTHORIZED, |h| {
            h.f().token_with_header(&hdr("EdDSA", "ed-1|$(touch /tmp/pwned)"))
        };
        kid_unknown: UNAUTHORIZED, |h| h.f().token_with_header(&hdr("EdDSA", "rotated-away"));
        kid_with_nul_byte: UNAUTHORIZED, |h| h.f().token_with_header(&hdr("EdDSA", "ed-1\u{0}"));
        kid_case_variant: UNAUTHORIZED, |h| h.f().token_with_header(&hdr("EdDSA", "ED-1"));
        kid_with_trailing_space: UNAUTHORIZED, |h| h.f().token_with_header(&hdr("EdDSA", "ed-1 "));
        kid_of_the_wrong_type: UNAUTHORIZED, |h| {
            h.f().token_with_header(&json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ["ed-1"]}))
        };
        kid_missing: UNAUTHORIZED, |h| {
            h.f().token_with_header(&json!({"alg": "EdDSA", "typ": "at+jwt"}))
        };
        kid_oversized: UNAUTHORIZED, |h| h.f().token_with_header(&hdr("EdDSA", &"k".repeat(300)));

        // --- Header parameters we do not understand (RFC 7515 §4.1.11, RFC 7797, RFC 8725 §3.11)
        crit_header: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["crit"] = json!(["exp"]);
            h.f().token_with_header(&header)
        };
        b64_false_with_unencoded_payload: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["b64"] = json!(false);
            header["crit"] = json!(["b64"]);
            let header = b64(header.to_string());
            // RFC 7797: the signing input carries the payload unencoded; base64url it in the
            // token so it still travels as a b64token.
            let claims = h.f().claims().to_string();
            let sig = h.f().ed.sign(format!("{header}.{claims}").as_bytes());
            format!("{header}.{}.{}", b64(&claims), b64(sig))
        };
        b64_false_alone: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["b64"] = json!(false);
            h.f().token_with_header(&header)
        };
        typ_jwt_instead_of_at_jwt: UNAUTHORIZED, |h| {
            h.f().token_with_header(&json!({"alg": "EdDSA", "typ": "JWT", "kid": ED_KID}))
        };
        typ_missing: UNAUTHORIZED, |h| {
            h.f().token_with_header(&json!({"alg": "EdDSA", "kid": ED_KID}))
        };
        typ_of_another_token_type: UNAUTHORIZED, |h| {
            h.f().token_with_header(&json!({"alg": "EdDSA", "typ": "dpop+jwt", "kid": ED_KID}))
        };
        cty_nested_jwt: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["cty"] = json!("JWT");
            h.f().token_with_header(&header)
        };
        zip_compressed_payload: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["zip"] = json!("DEF");
            h.f().token_with_header(&header)
        };

        // --- Signatures (Wycheproof classes)
        tampered_payload_keeps_the_old_signature: UNAUTHORIZED, |h| {
            let (header, _, sig) = parts(&h.f().token(&h.f().claims()));
            let mut admin = h.f().claims();
            admin["sub"] = json!("admin");
            admin["roles"] = json!(["user", "admin"]);
            format!("{header}.{}.{sig}", b64(admin.to_string()))
        };
        signature_of_another_token: UNAUTHORIZED, |h| {
            let (header, payload, _) = parts(&h.f().token(&h.f().claims()));
            let (_, _, other) = parts(&h.f().token(&h.f().claims_with("sub", json!("admin"))));
            format!("{header}.{payload}.{other}")
        };
        signed_by_an_attacker_key_under_our_kid: UNAUTHORIZED, |h| {
            attacker_signed(&hdr("EdDSA", ED_KID), &h.f().claims_with("roles", json!(["user", "admin"])))
        };
        hmac_kid_with_a_guessed_secret: UNAUTHORIZED, |h| {
            hmac_forged(&h, &hdr("HS256", HS_KID), b"secret")
        };
        all_zero_signature: UNAUTHORIZED, |h| with_sig(&hdr("EdDSA", ED_KID), &h.f().claims(), &[0u8; 64]);
        truncated_signature: UNAUTHORIZED, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            format!("{a}.{b}.{}", &c[..c.len() - 4])
        };
        extended_signature: UNAUTHORIZED, |h| format!("{}AAAA", h.f().token(&h.f().claims()));
        non_canonical_signature_encoding: UNAUTHORIZED, |h| {
            // Same signature bytes, different (non-zero) trailing bits in the last character.
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let idx = alphabet.find(c.chars().last().unwrap()).unwrap();
            let twin = alphabet.as_bytes()[idx ^ 1] as char;
            format!("{a}.{b}.{}{twin}", &c[..c.len() - 1])
        };
    }

    /// Privilege escalation through a forged `roles` claim with an attacker key: 401 on
    /// `/admin`, not 403 (the token is not even authenticated) and never 200.
    #[tokio::test]
    async fn forged_admin_role_is_unauthenticated_not_forbidden() {
        let h = jwt_demo().await;
        h.assert_control_accepted().await;
        let token = attacker_signed(
            &hdr("EdDSA", ED_KID),
            &h.f().claims_with("roles", json!(["user", "admin"])),
        );
        let r = h
            .send(
                request(Method::GET, "/admin")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::UNAUTHORIZED, "forged admin token on /admin");
    }
}

// =============================================================================================
// Claims validation

mod claims {
    use super::*;

    /// `name: |f, now| claims;` — a token signed by the real key with these claims: 401.
    macro_rules! claims_cases {
        ($($name:ident: |$f:ident, $now:ident| $claims:expr;)*) => {
            bearer_cases! {
                $(
                    $name: UNAUTHORIZED, |h| {
                        let $f = h.f();
                        let $now = $f.now();
                        let claims: Value = { $claims };
                        $f.token(&claims)
                    };
                )*
            }
        };
    }

    /// `name: |f| raw_claims_text;` — raw claims JSON, signed by the real key: 401.
    macro_rules! raw_claims_cases {
        ($($name:ident: |$f:ident| $text:expr;)*) => {
            bearer_cases! {
                $(
                    $name: UNAUTHORIZED, |h| {
                        let $f = h.f();
                        let text: String = { $text };
                        $f.raw(&$f.header_text(), &text)
                    };
                )*
            }
        };
    }

    claims_cases! {
        // --- Time (RFC 7519 §4.1.4-4.1.6, RFC 9068 §4)
        expired_an_hour_ago: |f, now| {
            let mut c = f.claims_with("exp", json!(now - 3600));
            c["iat"] = json!(now - 3900);
            c
        };
        expired_just_beyond_the_leeway: |f, now| {
            let mut c = f.claims_with("exp", json!(now - 62));
            c["iat"] = json!(now - 362);
            c
        };
        not_before_in_the_future: |f, now| f.claims_with("nbf", json!(now + 3600));
        issued_in_the_future: |f, now| {
            let mut c = f.claims_with("iat", json!(now + 3600));
            c["exp"] = json!(now + 3900);
            c
        };
        auth_time_after_issue: |f, now| f.claims_with("auth_time", json!(now + 3600));
        lifetime_longer_than_accepted: |f, now| f.claims_with("exp", json!(now + 24 * 3600));
        expires_before_it_was_issued: |f, now| f.claims_with("exp", json!(now - 1));
        huge_exp: |f, _now| f.claims_with("exp", json!(99_999_999_999_999i64));
        exp_u64_max: |f, _now| f.claims_with("exp", json!(u64::MAX));
        exp_beyond_f64_integers: |f, _now| f.claims_with("exp", json!(1e30));
        negative_exp: |f, _now| f.claims_with("exp", json!(-1));
        negative_iat: |f, now| {
            let mut c = f.claims_with("iat", json!(-1));
            c["exp"] = json!(now + 300);
            c
        };
        iat_ms_contradicts_iat: |f, now| f.claims_with("iat_ms", json!((now - 7200) * 1000));

        // --- Issuer and audience (RFC 8725 §3.8, §3.9)
        missing_iss: |f, _now| f.claims_without("iss");
        wrong_iss: |f, _now| f.claims_with("iss", json!("https://evil.example"));
        iss_with_trailing_slash: |f, _now| f.claims_with("iss", json!(format!("{ISSUER}/")));
        iss_case_variant: |f, _now| f.claims_with("iss", json!(ISSUER.to_uppercase()));
        missing_aud: |f, _now| f.claims_without("aud");
        wrong_aud: |f, _now| f.claims_with("aud", json!("https://other.api"));
        aud_array_without_ours: |f, _now| {
            f.claims_with("aud", json!(["https://other.api", "https://third.api"]))
        };
        aud_empty_array: |f, _now| f.claims_with("aud", json!([]));
        aud_with_trailing_space: |f, _now| f.claims_with("aud", json!(format!("{AUDIENCE} ")));

        // --- Required claims
        missing_sub: |f, _now| f.claims_without("sub");
        empty_sub: |f, _now| f.claims_with("sub", json!(""));
        missing_exp: |f, _now| f.claims_without("exp");
        missing_iat: |f, _now| f.claims_without("iat");
        missing_jti: |f, _now| f.claims_without("jti");
        oversized_jti: |f, _now| f.claims_with("jti", json!("j".repeat(300)));

        // --- Wrong JSON types
        exp_as_string: |f, now| f.claims_with("exp", json!(format!("{}", now + 300)));
        exp_as_float: |f, now| f.claims_with("exp", json!((now + 300) as f64 + 0.5));
        exp_as_bool: |f, _now| f.claims_with("exp", json!(true));
        nbf_as_string: |f, _now| f.claims_with("nbf", json!("0"));
        aud_as_number: |f, _now| f.claims_with("aud", json!(5));
        aud_array_of_numbers: |f, _now| f.claims_with("aud", json!([5]));
        sub_as_number: |f, _now| f.claims_with("sub", json!(42));
        sub_as_array: |f, _now| f.claims_with("sub", json!(["alice", "admin"]));
        roles_as_string: |f, _now| f.claims_with("roles", json!("admin"));
        roles_as_object: |f, _now| f.claims_with("roles", json!({"admin": true}));
        iss_as_array: |f, _now| f.claims_with("iss", json!([ISSUER]));
    }

    raw_claims_cases! {
        // --- Duplicate members (RFC 7519 §4: reject, never last-wins)
        duplicate_sub: |f| f.claims_text_with(r#","sub":"admin""#);
        duplicate_exp: |f| f.claims_text_with(&format!(r#","exp":{}"#, f.now() + 100_000));
        duplicate_roles: |f| f.claims_text_with(r#","roles":["admin"]"#);
        duplicate_sub_through_an_escape: |f| f.claims_text_with(r#","\u0073ub":"admin""#);
        duplicate_attribute: |f| f.claims_text_with(r#","tenant":"a","tenant":"b""#);
        // --- Not a claims object
        claims_are_an_array: |_f| "[]".to_owned();
        claims_are_null: |_f| "null".to_owned();
        trailing_data_after_the_claims: |f| format!("{} x", f.claims());
    }
}

// =============================================================================================
// Encoding and parsing: the token and the Authorization header (RFC 6750 §2.1, RFC 7515 §7.1)

mod encoding {
    use super::*;

    bearer_cases! {
        plus_outside_the_base64url_alphabet: UNAUTHORIZED, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            format!("{a}.{b}.+{}", &c[1..])
        };
        slash_outside_the_base64url_alphabet: UNAUTHORIZED, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            format!("{a}./{}.{c}", &b[1..])
        };
        character_outside_b64token: BAD_REQUEST, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            format!("{a}.{b}.@{}", &c[1..])
        };
        padded_signature: UNAUTHORIZED, |h| format!("{}==", h.f().token(&h.f().claims()));
        padding_inside_the_token: BAD_REQUEST, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            format!("{a}.{b}=.{c}")
        };
        whitespace_inside_the_token: BAD_REQUEST, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            format!("{a}. {b}.{c}")
        };
        trailing_space: BAD_REQUEST, |h| format!("{} ", h.f().token(&h.f().claims()));
        doubled_scheme: BAD_REQUEST, |h| format!("Bearer {}", h.f().token(&h.f().claims()));
        extra_fourth_segment: UNAUTHORIZED, |h| format!("{}.AAAA", h.f().token(&h.f().claims()));
        jwe_five_segments: UNAUTHORIZED, |_h| {
            let header = b64(json!({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": RS_KID}).to_string());
            format!("{header}.AAAA.AAAA.AAAA.AAAA")
        };
        jwe_shaped_valid_jws: UNAUTHORIZED, |h| format!("{}.AAAA.AAAA", h.f().token(&h.f().claims()));
        two_segments: UNAUTHORIZED, |h| {
            let (a, b, _) = parts(&h.f().token(&h.f().claims()));
            format!("{a}.{b}")
        };
        single_segment: UNAUTHORIZED, |h| parts(&h.f().token(&h.f().claims())).1;
        empty_signature_segment: UNAUTHORIZED, |h| {
            let (a, b, _) = parts(&h.f().token(&h.f().claims()));
            format!("{a}.{b}.")
        };
        only_dots: UNAUTHORIZED, |_h| "..".to_owned();
        jws_json_serialization: BAD_REQUEST, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            json!({"payload": b, "protected": a, "signature": c}).to_string()
        };
        jws_json_serialization_base64url: UNAUTHORIZED, |h| {
            let (a, b, c) = parts(&h.f().token(&h.f().claims()));
            b64(json!({"payload": b, "signatures": [{"protected": a, "signature": c}]}).to_string())
        };
        header_not_utf8: UNAUTHORIZED, |h| {
            let (_, b, c) = parts(&h.f().token(&h.f().claims()));
            format!("{}.{b}.{c}", b64([0xff, 0xfe, b'{']))
        };
        claims_not_utf8_but_validly_signed: UNAUTHORIZED, |h| {
            let header = b64(h.f().header_text());
            let claims = b64([b'{', 0xff, 0xfe, b'}']);
            let sig = h.f().ed.sign(format!("{header}.{claims}").as_bytes());
            format!("{header}.{claims}.{}", b64(sig))
        };
        header_with_a_byte_order_mark: UNAUTHORIZED, |h| {
            h.f().raw(&format!("\u{feff}{}", h.f().header_text()), &h.f().claims().to_string())
        };
        header_is_an_array: UNAUTHORIZED, |h| h.f().raw("[]", &h.f().claims().to_string());
        fullwidth_unicode_token: BAD_REQUEST, |_h| "ＡＡ.ＢＢ.ＣＣ".to_owned();
        session_cookie_shaped_value: UNAUTHORIZED, |_h| {
            keycard::token::OpaqueToken::generate().unwrap().expose_secret().to_owned()
        };
    }

    /// `name: raw Authorization bytes => STATUS` on `/me` (the baseline token substituted for
    /// `{t}`).
    macro_rules! authorization_cases {
        ($($name:ident: $value:expr => $status:ident;)*) => {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = jwt_demo().await;
                    h.assert_control_accepted().await;
                    let t = h.f().token(&h.f().claims());
                    let value: Vec<u8> = $value.replace("{t}", &t).into_bytes();
                    let r = h.me_with_authorization(&value).await;
                    expect(&r, StatusCode::$status, stringify!($name));
                    if r.status == StatusCode::UNAUTHORIZED {
                        assert!(r.header(header::WWW_AUTHENTICATE).is_some(), "401 challenge");
                    }
                }
            )*
        };
    }

    authorization_cases! {
        // A look-alike scheme is not Bearer: no credential at all (401, never the token's user).
        cyrillic_homoglyph_scheme: "Веаrer {t}" => UNAUTHORIZED;
        fullwidth_scheme: "Ｂearer {t}" => UNAUTHORIZED;
        scheme_prefix_lookalike: "Bearerx {t}" => UNAUTHORIZED;
        basic_scheme_carrying_a_token: "Basic {t}" => UNAUTHORIZED;
        token_without_scheme: "{t}" => UNAUTHORIZED;
        empty_authorization: "" => UNAUTHORIZED;
        scheme_without_token: "Bearer" => BAD_REQUEST;
        scheme_with_only_spaces: "Bearer   " => BAD_REQUEST;
        tab_after_scheme: "Bearer\t{t}" => BAD_REQUEST;
        comma_joined_credentials: "Bearer {t}, Bearer {t}" => BAD_REQUEST;
    }

    /// RFC 7235 §2.1: the scheme is case-insensitive, so `bearer`/`BEARER` are Bearer: a genuine
    /// token is accepted and a forged one is refused exactly as under `Bearer`.
    #[tokio::test]
    async fn lowercase_and_uppercase_scheme_are_checked_like_bearer() {
        let h = jwt_demo().await;
        let good = h.f().token(&h.f().claims());
        let forged = attacker_signed(&hdr("EdDSA", ED_KID), &h.f().claims());
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let r = h
                .me_with_authorization(format!("{scheme} {good}").as_bytes())
                .await;
            expect(&r, StatusCode::OK, &format!("{scheme} genuine"));
            let r = h
                .me_with_authorization(format!("{scheme} {forged}").as_bytes())
                .await;
            expect(&r, StatusCode::UNAUTHORIZED, &format!("{scheme} forged"));
        }
    }

    #[tokio::test]
    async fn non_utf8_authorization_bytes() {
        let h = jwt_demo().await;
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&[0xc3, 0x28, 0xff, 0xfe]);
        let r = h.me_with_authorization(&value).await;
        expect(&r, StatusCode::BAD_REQUEST, "non-UTF-8 Authorization");
    }

    #[tokio::test]
    async fn two_authorization_headers_even_identical() {
        let h = jwt_demo().await;
        let t = h.f().token(&h.f().claims());
        let r = h
            .send(
                request(Method::GET, "/me")
                    .header(header::AUTHORIZATION, format!("Bearer {t}"))
                    .header(header::AUTHORIZATION, format!("Bearer {t}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::BAD_REQUEST, "two Authorization headers");
    }

    #[tokio::test]
    async fn genuine_and_forged_authorization_headers_together() {
        let h = jwt_demo().await;
        let t = h.f().token(&h.f().claims());
        let forged = attacker_signed(&hdr("EdDSA", ED_KID), &h.f().claims());
        for (first, second) in [(&t, &forged), (&forged, &t)] {
            let r = h
                .send(
                    request(Method::GET, "/me")
                        .header(header::AUTHORIZATION, format!("Bearer {first}"))
                        .header(header::AUTHORIZATION, format!("Bearer {second}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            expect(
                &r,
                StatusCode::BAD_REQUEST,
                "genuine + forged Authorization",
            );
        }
    }

    /// RFC 6750 §2.3 is not supported on purpose (RFC 9700 §4.3.2 / OWASP): a token in the
    /// query string is ignored, so the request is anonymous.
    #[tokio::test]
    async fn token_in_the_query_string_is_ignored() {
        let h = jwt_demo().await;
        h.assert_control_accepted().await;
        let t = h.f().token(&h.f().claims());
        let r = h
            .call(Method::GET, &format!("/me?access_token={t}"), None)
            .await;
        expect(&r, StatusCode::UNAUTHORIZED, "access_token in the query");
        assert_eq!(r.error_code().as_deref(), Some("unauthenticated"));
    }

    /// RFC 6750 §2.2 form-encoded body parameter: ignored too.
    #[tokio::test]
    async fn token_in_a_form_body_is_ignored() {
        let h = jwt_demo().await;
        let t = h.f().token(&h.f().claims());
        let r = h
            .send(
                request(Method::POST, "/account/email")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(format!(
                        "email=a%40example.com&access_token={t}"
                    )))
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::UNAUTHORIZED, "access_token in a form body");
    }

    /// Without `cookie.access_token_cookie`, an access token in the cookie is not a credential.
    #[tokio::test]
    async fn token_in_a_cookie_without_cookie_transport_is_ignored() {
        let h = jwt_demo().await;
        let t = h.f().token(&h.f().claims());
        let r = h.me_with_cookie(&format!("{COOKIE}={t}")).await;
        expect(&r, StatusCode::UNAUTHORIZED, "access token in a cookie");
    }
}

// =============================================================================================
// Keys and the JWKS

mod keys {
    use super::*;

    const PUBLIC_MEMBERS: [&str; 9] = ["kty", "use", "kid", "alg", "crv", "x", "y", "n", "e"];

    #[tokio::test]
    async fn jwks_never_exposes_private_members_or_hmac_keys() {
        let h = jwt_demo().await;
        let r = h.call(Method::GET, "/.well-known/jwks.json", None).await;
        expect(&r, StatusCode::OK, "JWKS");
        let doc = r.json();
        let keys = doc["keys"].as_array().expect("keys");
        let kids: Vec<&str> = keys.iter().filter_map(|k| k["kid"].as_str()).collect();
        assert_eq!(kids, [ED_KID, RS_KID], "only the asymmetric keys: {doc}");
        for k in keys {
            for (member, _) in k.as_object().expect("object") {
                assert!(
                    PUBLIC_MEMBERS.contains(&member.as_str()),
                    "JWKS member `{member}` is not a public member: {k}"
                );
            }
            assert_ne!(k["kty"], "oct", "no symmetric key: {k}");
        }
        let text = r.text();
        for secret_member in [
            "\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\"", "\"k\"",
        ] {
            assert!(!text.contains(secret_member), "{secret_member} in {text}");
        }
        let hmac_secret = b64(secret_for(keycard::jwt::Algorithm::HS256));
        assert!(!text.contains(&hmac_secret), "the HMAC secret is published");
    }

    #[tokio::test]
    async fn retired_keys_tokens_are_refused_even_when_cached() {
        let h = jwt_demo().await;
        let f = h.f();
        let token = forge(&f.rs, &f.rs.header(), &f.claims());
        expect(
            &h.me_bearer(&token).await,
            StatusCode::OK,
            "rs-1 token before retirement",
        );
        assert!(h.ring().retire(RS_KID).expect("retire"));
        expect(
            &h.me_bearer(&token).await,
            StatusCode::UNAUTHORIZED,
            "the same (cached) rs-1 token after retirement",
        );
        let fresh = forge(&f.rs, &f.rs.header(), &f.claims());
        expect(
            &h.me_bearer(&fresh).await,
            StatusCode::UNAUTHORIZED,
            "a fresh rs-1 token after retirement",
        );
        let r = h.call(Method::GET, "/.well-known/jwks.json", None).await;
        assert!(
            !r.text().contains(RS_KID),
            "retired key still published: {}",
            r.text()
        );
        h.assert_control_accepted().await;
    }

    /// Tokens minted by a login are refused once their signing key is replaced and retired.
    #[tokio::test]
    async fn tokens_of_a_rotated_out_signer_are_refused() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        assert_eq!(h.me(&cred).await, StatusCode::OK);
        h.ring().set_signer(RS_KID).expect("switch signer");
        assert_eq!(
            h.me(&cred).await,
            StatusCode::OK,
            "still verifies before retirement"
        );
        assert!(h.ring().retire(ED_KID).expect("retire"));
        assert_eq!(h.me(&cred).await, StatusCode::UNAUTHORIZED);
        let fresh = h.alice().await;
        assert_eq!(h.me(&fresh).await, StatusCode::OK, "the new signer works");
    }

    /// HMAC tokens under the symmetric kid verify (control), but the same secret never leaks into
    /// the JWKS, and the HMAC kid cannot be paired with a public key's algorithm.
    #[tokio::test]
    async fn hmac_kid_accepts_only_its_own_secret_and_algorithm() {
        let h = jwt_demo().await;
        let f = h.f();
        let genuine = forge(&f.hs, &f.hs.header(), &f.claims());
        expect(
            &h.me_bearer(&genuine).await,
            StatusCode::OK,
            "genuine HS256 token",
        );
        let hs384 = json!({"alg": "HS384", "typ": "at+jwt", "kid": HS_KID});
        let wrong_alg = forge_raw(&hs384.to_string(), &f.claims().to_string(), |m| {
            use aws_lc_rs::hmac;
            hmac::sign(
                &hmac::Key::new(
                    hmac::HMAC_SHA384,
                    &secret_for(keycard::jwt::Algorithm::HS256),
                ),
                m,
            )
            .as_ref()
            .to_vec()
        });
        expect(
            &h.me_bearer(&wrong_alg).await,
            StatusCode::UNAUTHORIZED,
            "HS384 on an HS256 key",
        );
    }

    #[tokio::test]
    async fn jwks_is_absent_for_server_sessions() {
        let h = database_demo().await;
        let r = h.call(Method::GET, "/.well-known/jwks.json", None).await;
        expect(&r, StatusCode::NOT_FOUND, "JWKS of a server-session demo");
    }
}

// =============================================================================================
// Cookies and CSRF (server sessions unless noted)

mod cookies_csrf {
    use super::*;

    async fn alice_cookie(h: &Harness) -> String {
        match h.alice().await {
            Cred::Cookie(v) => v,
            other => panic!("{other:?}"),
        }
    }

    /// `name: |v| cookie_header => STATUS` on `/me`, where `v` is a live session cookie value.
    macro_rules! cookie_cases {
        ($($name:ident: |$v:ident| $cookie:expr => $status:ident;)*) => {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = database_demo().await;
                    let $v = alice_cookie(&h).await;
                    let header: String = { $cookie };
                    let r = h.me_with_cookie(&header).await;
                    expect(&r, StatusCode::$status, stringify!($name));
                    // The genuine cookie still works: the refusal was about the shape.
                    expect(
                        &h.me_with_cookie(&format!("{COOKIE}={}", $v)).await,
                        StatusCode::OK,
                        "control: the genuine cookie",
                    );
                }
            )*
        };
    }

    cookie_cases! {
        tampered_cookie: |v| {
            let mut t = v.clone();
            let last = t.pop().unwrap();
            t.push(if last == 'A' { 'B' } else { 'A' });
            format!("{COOKIE}={t}")
        } => UNAUTHORIZED;
        duplicated_cookie_same_value: |v| format!("{COOKIE}={v}; {COOKIE}={v}") => UNAUTHORIZED;
        duplicated_cookie_genuine_then_forged: |v| {
            format!("{COOKIE}={v}; {COOKIE}={}", keycard::token::OpaqueToken::generate().unwrap().expose_secret())
        } => UNAUTHORIZED;
        quoted_cookie_value: |v| format!("{COOKIE}=\"{v}\"") => UNAUTHORIZED;
        percent_encoded_cookie_name: |v| format!("__Host%2Dkeycard={v}") => UNAUTHORIZED;
        percent_encoded_cookie_value: |v| {
            format!("{COOKIE}=%{:02X}{}", v.as_bytes()[0], &v[1..])
        } => UNAUTHORIZED;
        lowercase_cookie_name: |v| format!("__host-keycard={v}") => UNAUTHORIZED;
        uppercase_cookie_name: |v| format!("__HOST-KEYCARD={v}") => UNAUTHORIZED;
        cookie_name_without_prefix: |v| format!("keycard={v}") => UNAUTHORIZED;
        space_before_equals: |v| format!("{COOKIE} ={v}") => UNAUTHORIZED;
        non_canonical_base64_cookie: |v| {
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let idx = alphabet.find(v.chars().last().unwrap()).unwrap();
            let twin = alphabet.as_bytes()[idx ^ 1] as char;
            format!("{COOKIE}={}{twin}", &v[..v.len() - 1])
        } => UNAUTHORIZED;
        cookie_value_with_appended_attribute: |v| format!("{COOKIE}={v}=") => UNAUTHORIZED;
        empty_cookie_value: |_v| format!("{COOKIE}=") => UNAUTHORIZED;
    }

    #[tokio::test]
    async fn duplicated_cookie_across_two_cookie_headers() {
        let h = database_demo().await;
        let v = alice_cookie(&h).await;
        let r = h
            .send(
                request(Method::GET, "/me")
                    .header(header::COOKIE, format!("{COOKIE}={v}"))
                    .header(header::COOKIE, format!("{COOKIE}={v}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(
            &r,
            StatusCode::UNAUTHORIZED,
            "the session cookie in two Cookie headers",
        );
    }

    /// The public session handle (shown in `/sessions`) is not the secret.
    #[tokio::test]
    async fn session_handle_is_not_a_credential() {
        let h = database_demo().await;
        let cred = h.alice().await;
        let handle = h.current_session_id(&cred).await;
        let r = h.me_with_cookie(&format!("{COOKIE}={handle}")).await;
        expect(
            &r,
            StatusCode::UNAUTHORIZED,
            "the session handle as a cookie",
        );
    }

    /// For a strategy that reads both transports, a cookie next to a Bearer header is ambiguous.
    #[tokio::test]
    async fn cookie_and_bearer_together_are_ambiguous() {
        let h = jwt(|c| c.cookie.access_token_cookie = true).await;
        let t = h.f().token(&h.f().claims());
        let r = h.me_with_cookie(&format!("{COOKIE}={t}")).await;
        expect(
            &r,
            StatusCode::OK,
            "control: the access token in the cookie",
        );
        let r = h
            .send(
                request(Method::GET, "/me")
                    .header(header::COOKIE, format!("{COOKIE}={t}"))
                    .header(header::AUTHORIZATION, format!("Bearer {t}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::BAD_REQUEST, "cookie + Bearer");
    }

    /// An unsafe request with `cred` and the given CSRF-relevant headers.
    async fn unsafe_request(
        h: &Harness,
        method: Method,
        path: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = with_cred(method, path, Some(cred));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        h.send(b.body(Body::empty()).unwrap()).await
    }

    /// `name: [headers] => STATUS` for `POST /logout` with a live session cookie; a refused
    /// logout leaves the session alive.
    macro_rules! logout_csrf_cases {
        ($($name:ident: [$(($k:expr, $v:expr)),*] => $status:ident;)*) => {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = database_demo().await;
                    let cred = h.alice().await;
                    let r = unsafe_request(&h, Method::POST, "/logout", &cred, &[$(($k, $v)),*]).await;
                    expect(&r, StatusCode::$status, stringify!($name));
                    assert!(r.set_cookies().is_empty(), "a refused logout clears nothing");
                    assert_eq!(h.me(&cred).await, StatusCode::OK, "the session survives");
                }
            )*
        };
    }

    logout_csrf_cases! {
        cross_site_logout: [("sec-fetch-site", "cross-site")] => FORBIDDEN;
        same_site_logout_without_a_trusted_origin: [("sec-fetch-site", "same-site"), ("origin", "https://sub.localhost")] => FORBIDDEN;
        unknown_fetch_site_value: [("sec-fetch-site", "cross-origin")] => FORBIDDEN;
        foreign_origin_logout: [("origin", "https://evil.example")] => FORBIDDEN;
        origin_null_logout: [("origin", "null")] => FORBIDDEN;
        origin_same_host_other_port: [("origin", "http://localhost:8443")] => FORBIDDEN;
        origin_suffix_lookalike: [("origin", "http://localhost.evil.example")] => FORBIDDEN;
        origin_with_credentials_lookalike: [("origin", "http://localhost@evil.example")] => FORBIDDEN;
        cross_site_with_a_same_host_origin: [("sec-fetch-site", "cross-site"), ("origin", "http://localhost")] => FORBIDDEN;
    }

    #[tokio::test]
    async fn cross_site_logout_all_is_refused() {
        let h = database_demo().await;
        let a = h.alice().await;
        let b = h.alice().await;
        let r = unsafe_request(
            &h,
            Method::POST,
            "/logout-all",
            &a,
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
        expect(&r, StatusCode::FORBIDDEN, "cross-site logout-all");
        assert_eq!(h.me(&a).await, StatusCode::OK);
        assert_eq!(h.me(&b).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn cross_site_session_revocation_is_refused() {
        let h = database_demo().await;
        let a = h.alice().await;
        let b = h.alice().await;
        let victim = h.current_session_id(&b).await;
        let r = unsafe_request(
            &h,
            Method::DELETE,
            &format!("/sessions/{victim}"),
            &a,
            &[("origin", "https://evil.example")],
        )
        .await;
        expect(
            &r,
            StatusCode::FORBIDDEN,
            "cross-site DELETE /sessions/{id}",
        );
        assert_eq!(h.me(&b).await, StatusCode::OK);
    }

    /// Login CSRF (OWASP): a cross-site form must not log the victim into the attacker's account.
    #[tokio::test]
    async fn login_csrf_cross_site_form_is_refused() {
        let h = database_demo().await;
        let r = h
            .send(
                request(Method::POST, "/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header("sec-fetch-site", "cross-site")
                    .header(header::ORIGIN, "https://evil.example")
                    .body(Body::from("username=alice&password=wonderland"))
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::FORBIDDEN, "cross-site login form");
        assert!(r.set_cookies().is_empty());
    }

    #[tokio::test]
    async fn login_csrf_foreign_origin_json_is_refused() {
        let h = database_demo().await;
        let r = h
            .send(
                request(Method::POST, "/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::ORIGIN, "https://evil.example")
                    .body(Body::from(
                        json!({"username": "alice", "password": "wonderland"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::FORBIDDEN, "foreign-origin JSON login");
    }

    /// Bearer requests are exempt from the CSRF check (browsers never attach Authorization).
    #[tokio::test]
    async fn bearer_requests_are_exempt_from_csrf() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        let r = unsafe_request(
            &h,
            Method::POST,
            "/logout",
            &cred,
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
        )
        .await;
        expect(
            &r,
            StatusCode::NO_CONTENT,
            "cross-site logout with a Bearer token",
        );
        assert_eq!(h.me(&cred).await, StatusCode::UNAUTHORIZED);
    }

    /// A malformed Authorization header is not a Bearer credential: no exemption.
    #[tokio::test]
    async fn malformed_bearer_does_not_exempt_from_csrf() {
        let h = jwt(|c| c.cookie.access_token_cookie = true).await;
        let t = h.f().token(&h.f().claims());
        let r = h
            .send(
                request(Method::POST, "/logout")
                    .header(header::COOKIE, format!("{COOKIE}={t}"))
                    .header(header::AUTHORIZATION, "Bearer @@@")
                    .header("sec-fetch-site", "cross-site")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(
            &r,
            StatusCode::FORBIDDEN,
            "cross-site with a malformed Bearer",
        );
    }

    /// An access token carried in a cookie is exposed to CSRF like a session cookie.
    #[tokio::test]
    async fn cookie_borne_access_token_is_not_exempt() {
        let h = jwt(|c| c.cookie.access_token_cookie = true).await;
        let t = h.f().token(&h.f().claims());
        let r = h
            .send(
                request(Method::POST, "/logout")
                    .header(header::COOKIE, format!("{COOKIE}={t}"))
                    .header("sec-fetch-site", "cross-site")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(
            &r,
            StatusCode::FORBIDDEN,
            "cross-site logout with the access cookie",
        );
        expect(
            &h.me_with_cookie(&format!("{COOKIE}={t}")).await,
            StatusCode::OK,
            "still live",
        );
    }

    /// A refresh token in a cookie cannot be spent by a cross-site POST.
    #[tokio::test]
    async fn cross_site_refresh_with_the_refresh_cookie_is_refused() {
        let h = jwt(|c| c.cookie.refresh_cookie = true).await;
        let cred = h.alice().await;
        let rt = cred.refresh().to_owned();
        let r = h
            .send(
                request(Method::POST, "/refresh")
                    .header(header::COOKIE, format!("__Secure-keycard-refresh={rt}"))
                    .header("sec-fetch-site", "cross-site")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::FORBIDDEN, "cross-site refresh");
        let r = h.refresh(&rt).await;
        expect(&r, StatusCode::OK, "the refresh token was not spent");
    }
}

// =============================================================================================
// The session store: fixation, replay, revocation

mod session_store {
    use super::*;

    /// OWASP session fixation: an attacker-chosen ID presented at login is never adopted.
    #[tokio::test]
    async fn attacker_chosen_session_id_is_never_adopted() {
        let h = database_demo().await;
        let planted = keycard::token::OpaqueToken::generate()
            .unwrap()
            .expose_secret()
            .to_owned();
        let r = h
            .send(
                with_cred(Method::POST, "/login", Some(&Cred::Cookie(planted.clone())))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"username": "alice", "password": "wonderland"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::OK, "login with a planted cookie");
        let issued = r.session_cookie().expect("a fresh cookie");
        assert_ne!(issued, planted);
        expect(
            &h.me_with_cookie(&format!("{COOKIE}={planted}")).await,
            StatusCode::UNAUTHORIZED,
            "the planted ID",
        );
    }

    /// A planted *valid* session (the attacker's own) is revoked by the victim's login.
    #[tokio::test]
    async fn planted_valid_session_is_replaced_at_login() {
        let h = database_demo().await;
        let attackers = h.admin().await;
        let r = h
            .send(
                with_cred(Method::POST, "/login", Some(&attackers))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"username": "alice", "password": "wonderland"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        expect(&r, StatusCode::OK, "victim login over a planted session");
        let victim = h.cred_from(&r);
        assert_ne!(victim.access(), attackers.access());
        assert_eq!(h.me(&attackers).await, StatusCode::UNAUTHORIZED);
        assert_eq!(h.me(&victim).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn cookie_replayed_after_logout() {
        let h = database_demo().await;
        let cred = h.alice().await;
        expect(
            &h.call(Method::POST, "/logout", Some(&cred)).await,
            StatusCode::NO_CONTENT,
            "logout",
        );
        expect(
            &h.call(Method::GET, "/me", Some(&cred)).await,
            StatusCode::UNAUTHORIZED,
            "replay",
        );
        expect(
            &h.call(Method::POST, "/logout", Some(&cred)).await,
            StatusCode::UNAUTHORIZED,
            "second logout",
        );
        expect(
            &h.call(Method::GET, "/sessions", Some(&cred)).await,
            StatusCode::UNAUTHORIZED,
            "sessions",
        );
    }

    #[tokio::test]
    async fn access_token_replayed_after_logout() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        expect(
            &h.call(Method::POST, "/logout", Some(&cred)).await,
            StatusCode::NO_CONTENT,
            "logout",
        );
        expect(
            &h.call(Method::GET, "/me", Some(&cred)).await,
            StatusCode::UNAUTHORIZED,
            "replay",
        );
        expect(
            &h.call(Method::GET, "/admin", Some(&cred)).await,
            StatusCode::UNAUTHORIZED,
            "replay /admin",
        );
    }

    #[tokio::test]
    async fn revoked_session_is_refused() {
        let h = database_demo().await;
        let a = h.alice().await;
        let b = h.alice().await;
        let id = h.current_session_id(&b).await;
        expect(
            &h.call(Method::DELETE, &format!("/sessions/{id}"), Some(&a))
                .await,
            StatusCode::NO_CONTENT,
            "revoke",
        );
        expect(
            &h.call(Method::GET, "/me", Some(&b)).await,
            StatusCode::UNAUTHORIZED,
            "revoked",
        );
        expect(
            &h.call(Method::GET, "/me", Some(&a)).await,
            StatusCode::OK,
            "the revoker",
        );
    }

    #[tokio::test]
    async fn logout_all_revokes_every_session_of_the_subject() {
        let h = database_demo().await;
        let a = h.alice().await;
        let b = h.alice().await;
        let admin = h.admin().await;
        expect(
            &h.call(Method::POST, "/logout-all", Some(&a)).await,
            StatusCode::NO_CONTENT,
            "logout-all",
        );
        assert_eq!(h.me(&a).await, StatusCode::UNAUTHORIZED);
        assert_eq!(h.me(&b).await, StatusCode::UNAUTHORIZED);
        assert_eq!(h.me(&admin).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn logout_all_revokes_every_access_token_of_the_subject() {
        let h = jwt_demo().await;
        let a = h.alice().await;
        let b = h.alice().await;
        expect(
            &h.call(Method::POST, "/logout-all", Some(&a)).await,
            StatusCode::NO_CONTENT,
            "logout-all",
        );
        assert_eq!(h.me(&a).await, StatusCode::UNAUTHORIZED);
        assert_eq!(h.me(&b).await, StatusCode::UNAUTHORIZED);
        expect(
            &h.refresh(b.refresh()).await,
            StatusCode::UNAUTHORIZED,
            "refresh after logout-all",
        );
    }

    /// IDOR: another user's session ID answers 404 (indistinguishable from a missing one) and
    /// leaves that session alone.
    #[tokio::test]
    async fn another_users_session_id_is_not_found() {
        let h = database_demo().await;
        let alice = h.alice().await;
        let admin = h.admin().await;
        let id = h.current_session_id(&admin).await;
        let r = h
            .call(Method::DELETE, &format!("/sessions/{id}"), Some(&alice))
            .await;
        expect(&r, StatusCode::NOT_FOUND, "someone else's session");
        assert_eq!(h.me(&admin).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn another_users_refresh_family_is_not_found() {
        let h = jwt_demo().await;
        let alice = h.alice().await;
        let admin = h.admin().await;
        let id = h.current_session_id(&admin).await;
        let r = h
            .call(Method::DELETE, &format!("/sessions/{id}"), Some(&alice))
            .await;
        expect(&r, StatusCode::NOT_FOUND, "someone else's family");
        assert_eq!(h.me(&admin).await, StatusCode::OK);
        expect(
            &h.refresh(admin.refresh()).await,
            StatusCode::OK,
            "their refresh still works",
        );
    }

    /// The secret (cookie value) in place of the public handle is not a session ID either.
    #[tokio::test]
    async fn session_secret_in_place_of_its_handle_is_not_found() {
        let h = database_demo().await;
        let alice = h.alice().await;
        let other = h.alice().await;
        let r = h
            .call(
                Method::DELETE,
                &format!("/sessions/{}", other.access()),
                Some(&alice),
            )
            .await;
        expect(&r, StatusCode::NOT_FOUND, "the secret as an ID");
        assert_eq!(h.me(&other).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn traversal_and_wildcard_session_ids_are_not_found() {
        let h = database_demo().await;
        let alice = h.alice().await;
        let other = h.alice().await;
        let ids = [
            "..%2F..%2Fsessions".to_owned(),
            "%2A".to_owned(),
            "%25".to_owned(),
            "%27%20OR%20%271%27%3D%271".to_owned(),
            "f".repeat(64),
            "0".repeat(10_000),
        ];
        for id in &ids {
            let r = h
                .call(Method::DELETE, &format!("/sessions/{id}"), Some(&alice))
                .await;
            expect(&r, StatusCode::NOT_FOUND, id);
        }
        assert_eq!(h.me(&other).await, StatusCode::OK);
        assert_eq!(h.me(&alice).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn idle_session_expires() {
        let h = database_demo().await;
        let cred = h.alice().await;
        h.clock.advance(std::time::Duration::from_secs(31 * 60));
        expect(
            &h.call(Method::GET, "/me", Some(&cred)).await,
            StatusCode::UNAUTHORIZED,
            "idle",
        );
    }

    #[tokio::test]
    async fn access_token_expires() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        h.clock.advance(std::time::Duration::from_secs(12 * 60));
        expect(
            &h.call(Method::GET, "/me", Some(&cred)).await,
            StatusCode::UNAUTHORIZED,
            "expired",
        );
    }
}

// =============================================================================================
// Refresh-token rotation (RFC 9700 §4.14)

mod refresh {
    use super::*;

    /// Reuse of a spent refresh token kills the family: 401 invalid_grant, and the token it was
    /// rotated into (and that token's access token) die too.
    #[tokio::test]
    async fn reuse_kills_the_family() {
        let h = jwt_demo().await;
        let first = h.alice().await;
        let r = h.refresh(first.refresh()).await;
        expect(&r, StatusCode::OK, "first rotation");
        let second = h.cred_from(&r);
        assert_eq!(h.me(&second).await, StatusCode::OK);

        // After the default 30 s grace window.
        h.clock.advance(std::time::Duration::from_secs(31));
        let r = h.refresh(first.refresh()).await;
        expect(&r, StatusCode::UNAUTHORIZED, "reuse of the spent token");
        assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));

        let r = h.refresh(second.refresh()).await;
        expect(
            &r,
            StatusCode::UNAUTHORIZED,
            "the rotated token after reuse",
        );
        assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));
        assert_eq!(
            h.me(&second).await,
            StatusCode::UNAUTHORIZED,
            "its access token"
        );
        assert_eq!(
            h.me(&first).await,
            StatusCode::UNAUTHORIZED,
            "the first access token"
        );
    }

    /// `name: body => STATUS (error)` for `POST /refresh` on the jwt demo.
    macro_rules! refresh_body_cases {
        ($($name:ident: $body:expr => $status:ident, $code:expr;)*) => {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = jwt_demo().await;
                    let body: String = { $body };
                    let r = h
                        .send(
                            request(Method::POST, "/refresh")
                                .header(header::CONTENT_TYPE, "application/json")
                                .body(Body::from(body))
                                .unwrap(),
                        )
                        .await;
                    expect(&r, StatusCode::$status, stringify!($name));
                    assert_eq!(r.error_code().as_deref(), Some($code), "{}", r.text());
                }
            )*
        };
    }

    refresh_body_cases! {
        unknown_well_formed_refresh_token: json!({"refresh_token": keycard::token::OpaqueToken::generate().unwrap().expose_secret()}).to_string()
            => UNAUTHORIZED, "invalid_grant";
        oversized_refresh_token: json!({"refresh_token": "A".repeat(100_000)}).to_string() => UNAUTHORIZED, "invalid_grant";
        unicode_refresh_token: json!({"refresh_token": "ＡＡＡＡ\u{0}\u{202e}"}).to_string() => UNAUTHORIZED, "invalid_grant";
        null_refresh_token: r#"{"refresh_token":null}"#.to_owned() => UNAUTHORIZED, "invalid_grant";
        refresh_token_of_the_wrong_type: r#"{"refresh_token":12345}"#.to_owned() => BAD_REQUEST, "invalid_request";
        refresh_token_as_an_array: r#"{"refresh_token":["a","b"]}"#.to_owned() => BAD_REQUEST, "invalid_request";
        duplicated_refresh_token_member: r#"{"refresh_token":"a","refresh_token":"b"}"#.to_owned() => BAD_REQUEST, "invalid_request";
    }

    #[tokio::test]
    async fn refresh_token_used_as_an_access_token() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        let r = h.me_bearer(cred.refresh()).await;
        expect(&r, StatusCode::UNAUTHORIZED, "refresh token as Bearer");
    }

    #[tokio::test]
    async fn access_token_used_as_a_refresh_token() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        let r = h.refresh(cred.access()).await;
        expect(
            &r,
            StatusCode::UNAUTHORIZED,
            "access token as refresh token",
        );
        assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));
        expect(
            &h.refresh(cred.refresh()).await,
            StatusCode::OK,
            "the genuine refresh token",
        );
    }

    #[tokio::test]
    async fn refresh_token_as_bearer_header_on_refresh() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        let r = h
            .send(
                request(Method::POST, "/refresh")
                    .header(header::AUTHORIZATION, format!("Bearer {}", cred.refresh()))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        expect(
            &r,
            StatusCode::UNAUTHORIZED,
            "refresh token in Authorization",
        );
        assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));
    }

    #[tokio::test]
    async fn refresh_token_in_the_query_string_is_ignored() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        let r = h
            .call(
                Method::POST,
                &format!("/refresh?refresh_token={}", cred.refresh()),
                None,
            )
            .await;
        expect(&r, StatusCode::UNAUTHORIZED, "refresh token in the query");
        assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));
    }

    #[tokio::test]
    async fn refresh_after_logout() {
        let h = jwt_demo().await;
        let cred = h.alice().await;
        expect(
            &h.call(Method::POST, "/logout", Some(&cred)).await,
            StatusCode::NO_CONTENT,
            "logout",
        );
        let r = h.refresh(cred.refresh()).await;
        expect(&r, StatusCode::UNAUTHORIZED, "refresh after logout");
        assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));
    }

    #[tokio::test]
    async fn refresh_after_session_revocation() {
        let h = jwt_demo().await;
        let a = h.alice().await;
        let b = h.alice().await;
        let id = h.current_session_id(&b).await;
        expect(
            &h.call(Method::DELETE, &format!("/sessions/{id}"), Some(&a))
                .await,
            StatusCode::NO_CONTENT,
            "revoke",
        );
        expect(
            &h.refresh(b.refresh()).await,
            StatusCode::UNAUTHORIZED,
            "refresh of a revoked family",
        );
        assert_eq!(h.me(&b).await, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn refresh_on_server_sessions_is_invalid_grant() {
        let h = database_demo().await;
        let r = h
            .refresh(
                keycard::token::OpaqueToken::generate()
                    .unwrap()
                    .expose_secret(),
            )
            .await;
        expect(
            &r,
            StatusCode::UNAUTHORIZED,
            "refresh on the database strategy",
        );
        assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));
    }
}

// =============================================================================================
// Size and nesting limits: refused before any decoding, in bounded time and memory

mod limits {
    use std::time::{Duration, Instant};

    use super::*;

    const QUICK: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn authorization_over_8_kib() {
        let h = jwt_demo().await;
        let started = Instant::now();
        let r = h
            .me_with_authorization(format!("Bearer {}", "a".repeat(9000)).as_bytes())
            .await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "9000-byte Bearer",
        );
        assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn one_mib_authorization_with_a_valid_token_prefix() {
        let h = jwt_demo().await;
        let t = h.f().token(&h.f().claims());
        let started = Instant::now();
        let r = h
            .me_with_authorization(format!("Bearer {t}{}", "A".repeat(1 << 20)).as_bytes())
            .await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "1 MiB Authorization",
        );
        assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn authorization_of_another_scheme_over_8_kib() {
        let h = jwt_demo().await;
        let r = h
            .me_with_authorization(format!("Basic {}", "a".repeat(9000)).as_bytes())
            .await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "9000-byte Basic",
        );
    }

    /// At exactly the limit the header is read (and the junk token refused as a token: 401).
    #[tokio::test]
    async fn authorization_at_exactly_8_kib_is_read() {
        let h = jwt_demo().await;
        let value = format!("Bearer {}", "a".repeat(8192 - 7));
        assert_eq!(value.len(), 8192);
        let r = h.me_with_authorization(value.as_bytes()).await;
        expect(&r, StatusCode::UNAUTHORIZED, "8192-byte Bearer");
    }

    #[tokio::test]
    async fn session_cookie_over_4_kib() {
        let h = database_demo().await;
        let started = Instant::now();
        let r = h
            .me_with_cookie(&format!("{COOKIE}={}", "a".repeat(5000)))
            .await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "5000-byte session cookie",
        );
        assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn session_cookie_at_exactly_4_kib_is_read() {
        let h = database_demo().await;
        let r = h
            .me_with_cookie(&format!("{COOKIE}={}", "a".repeat(4096)))
            .await;
        expect(&r, StatusCode::UNAUTHORIZED, "4096-byte session cookie");
    }

    #[tokio::test]
    async fn access_token_cookie_over_4_kib() {
        let h = jwt(|c| c.cookie.access_token_cookie = true).await;
        let r = h
            .me_with_cookie(&format!("{COOKIE}={}", "a".repeat(5000)))
            .await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "5000-byte access cookie",
        );
    }

    fn many_cookies(n: usize) -> String {
        (0..n)
            .map(|i| format!("c{i}=v"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[tokio::test]
    async fn cookie_header_with_300_cookies() {
        let h = database_demo().await;
        let r = h.me_with_cookie(&many_cookies(300)).await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "300 cookies",
        );
    }

    /// The limit holds even when the genuine session cookie comes first.
    #[tokio::test]
    async fn valid_session_followed_by_300_cookies() {
        let h = database_demo().await;
        let cred = h.alice().await;
        let r = h
            .me_with_cookie(&format!(
                "{COOKIE}={}; {}",
                cred.access(),
                many_cookies(300)
            ))
            .await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "session + 300 cookies",
        );
    }

    #[tokio::test]
    async fn three_hundred_cookie_headers() {
        let h = database_demo().await;
        let mut b = request(Method::GET, "/me");
        for i in 0..300 {
            b = b.header(header::COOKIE, format!("c{i}=v"));
        }
        let r = h.send(b.body(Body::empty()).unwrap()).await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "300 Cookie headers",
        );
    }

    #[tokio::test]
    async fn hundred_thousand_empty_cookie_pairs_are_refused_quickly() {
        let h = database_demo().await;
        let started = Instant::now();
        let r = h.me_with_cookie(&";".repeat(100_000)).await;
        expect(
            &r,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "100k cookie separators",
        );
        assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    }

    bearer_cases! {
        deeply_nested_array_in_a_signed_claim: UNAUTHORIZED, |h| {
            let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
            h.f().raw(&h.f().header_text(), &h.f().claims_text_with(&format!(r#","deep":{deep}"#)))
        };
        deeply_nested_object_in_a_signed_claim: UNAUTHORIZED, |h| {
            // 500 levels: far past serde_json's recursion limit (128), and the token stays under
            // 8 KiB so it is the nesting that is refused, not the size.
            let deep = format!("{}1{}", r#"{"a":"#.repeat(500), "}".repeat(500));
            h.f().raw(&h.f().header_text(), &h.f().claims_text_with(&format!(r#","deep":{deep}"#)))
        };
        deeply_nested_header_parameter: UNAUTHORIZED, |h| {
            let header = format!(
                r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{ED_KID}","x":{}{}}}"#,
                "[".repeat(300),
                "]".repeat(300)
            );
            h.f().raw(&header, &h.f().claims().to_string())
        };
        forty_header_parameters: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            for i in 0..40 {
                header[format!("p{i}")] = json!(i);
            }
            h.f().token_with_header(&header)
        };
        oversized_header_segment: UNAUTHORIZED, |h| {
            let mut header = hdr("EdDSA", ED_KID);
            header["pad"] = json!("y".repeat(3000));
            h.f().token_with_header(&header)
        };
    }

    async fn post_json(h: &Harness, path: &str, body: String) -> Resp {
        h.send(
            request(Method::POST, path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    #[tokio::test]
    async fn deeply_nested_json_login_body() {
        let h = database_demo().await;
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let r = post_json(&h, "/login", body).await;
        expect(&r, StatusCode::BAD_REQUEST, "deeply nested login body");
    }

    #[tokio::test]
    async fn deeply_nested_json_in_a_login_field() {
        let h = database_demo().await;
        let body = format!(
            r#"{{"username":{}"alice"{},"password":"wonderland"}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let r = post_json(&h, "/login", body).await;
        expect(&r, StatusCode::BAD_REQUEST, "deeply nested username");
    }

    /// An unknown member is skipped (serde_json skips ignored values iteratively, so depth is
    /// bounded only by the 2 MB body limit): it neither crashes nor changes the outcome.
    #[tokio::test]
    async fn deeply_nested_unknown_login_member_changes_nothing() {
        let h = database_demo().await;
        let started = std::time::Instant::now();
        let body = format!(
            r#"{{"username":"alice","password":"not-the-password","x":{}{}}}"#,
            "[".repeat(500_000),
            "]".repeat(500_000)
        );
        let r = post_json(&h, "/login", body).await;
        expect(
            &r,
            StatusCode::UNAUTHORIZED,
            "deeply nested unknown member, wrong password",
        );
        assert_eq!(r.error_code().as_deref(), Some("invalid_credentials"));
        assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn deeply_nested_json_refresh_body() {
        let h = jwt_demo().await;
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let r = post_json(&h, "/refresh", body).await;
        expect(&r, StatusCode::BAD_REQUEST, "deeply nested refresh body");
    }

    #[tokio::test]
    async fn oversized_login_body() {
        let h = database_demo().await;
        let body = format!(
            r#"{{"username":"alice","password":"{}"}}"#,
            "x".repeat(3 << 20)
        );
        let r = post_json(&h, "/login", body).await;
        expect(&r, StatusCode::BAD_REQUEST, "3 MiB login body");
    }

    #[tokio::test]
    async fn one_mib_password_is_just_a_wrong_password() {
        let h = database_demo().await;
        let body = json!({"username": "alice", "password": "x".repeat(1 << 20)}).to_string();
        let r = post_json(&h, "/login", body).await;
        expect(&r, StatusCode::UNAUTHORIZED, "1 MiB password");
        assert_eq!(r.error_code().as_deref(), Some("invalid_credentials"));
    }
}

// =============================================================================================
// Fault handling: the database strategy on PostgreSQL behind a stalling proxy (SQLite cannot be
// "down"). A hung store answers 503 within the store timeout (500 ms here), never 2xx, never a
// 401/403 "anonymous" fall-through, never another 5xx; the app recovers without a restart.

#[cfg(feature = "postgres")]
mod faults {
    use std::time::{Duration, Instant};

    use keycard::StrategyKind;

    use super::*;

    /// Within the 500 ms store timeout, plus scheduling slack.
    const BOUND: Duration = Duration::from_secs(2);

    async fn hung(strategy: StrategyKind) -> (pg::Faulty, Cred) {
        let f = pg::behind_proxy(strategy, |_| {}).await;
        let cred = f.h.alice().await;
        assert_eq!(
            f.h.me(&cred).await,
            StatusCode::OK,
            "healthy before the fault"
        );
        f.proxy.as_ref().unwrap().stall();
        (f, cred)
    }

    /// Sends and asserts 503 within [`BOUND`].
    async fn unavailable(h: &Harness, req: http::Request<Body>, what: &str) -> Resp {
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(15), h.send(req))
            .await
            .unwrap_or_else(|_| panic!("{what}: still hanging after 15 s (expected 503)"));
        expect(&r, StatusCode::SERVICE_UNAVAILABLE, what);
        assert!(
            started.elapsed() < BOUND,
            "{what}: took {:?}",
            started.elapsed()
        );
        r
    }

    #[tokio::test]
    async fn hung_store_me_is_503() {
        let (f, cred) = hung(StrategyKind::Database).await;
        let req = with_cred(Method::GET, "/me", Some(&cred))
            .body(Body::empty())
            .unwrap();
        unavailable(&f.h, req, "GET /me").await;
    }

    #[tokio::test]
    async fn hung_store_admin_is_503_not_403() {
        let (f, cred) = hung(StrategyKind::Database).await;
        let req = with_cred(Method::GET, "/admin", Some(&cred))
            .body(Body::empty())
            .unwrap();
        unavailable(&f.h, req, "GET /admin").await;
    }

    /// The home page takes an optional principal: a store failure must not render it anonymous.
    #[tokio::test]
    async fn hung_store_home_page_is_503_not_anonymous() {
        let (f, cred) = hung(StrategyKind::Database).await;
        let req = with_cred(Method::GET, "/", Some(&cred))
            .body(Body::empty())
            .unwrap();
        unavailable(&f.h, req, "GET /").await;
    }

    #[tokio::test]
    async fn hung_store_login_is_503() {
        let (f, _) = hung(StrategyKind::Database).await;
        let req = request(Method::POST, "/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"username": "alice", "password": "wonderland"}).to_string(),
            ))
            .unwrap();
        unavailable(&f.h, req, "POST /login").await;
    }

    /// A logout that could not reach the store says so (503) and does not clear the cookie as if
    /// it had worked.
    #[tokio::test]
    async fn hung_store_logout_is_503_and_clears_nothing() {
        let (f, cred) = hung(StrategyKind::Database).await;
        let req = with_cred(Method::POST, "/logout", Some(&cred))
            .body(Body::empty())
            .unwrap();
        let r = unavailable(&f.h, req, "POST /logout").await;
        assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    }

    #[tokio::test]
    async fn hung_store_session_list_is_503() {
        let (f, cred) = hung(StrategyKind::Database).await;
        let req = with_cred(Method::GET, "/sessions", Some(&cred))
            .body(Body::empty())
            .unwrap();
        unavailable(&f.h, req, "GET /sessions").await;
    }

    /// The store dies: every connection is cut and its port refuses new ones.
    #[tokio::test]
    async fn dead_store_is_503() {
        let mut f = pg::behind_proxy(StrategyKind::Database, |_| {}).await;
        let cred = f.h.alice().await;
        drop(f.proxy.take());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let req = with_cred(Method::GET, "/me", Some(&cred))
            .body(Body::empty())
            .unwrap();
        unavailable(&f.h, req, "GET /me on a dead store").await;
        let req = request(Method::POST, "/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"username": "alice", "password": "wonderland"}).to_string(),
            ))
            .unwrap();
        unavailable(&f.h, req, "POST /login on a dead store").await;
    }

    #[tokio::test]
    async fn store_recovers_without_restart() {
        let (f, cred) = hung(StrategyKind::Database).await;
        let req = with_cred(Method::GET, "/me", Some(&cred))
            .body(Body::empty())
            .unwrap();
        unavailable(&f.h, req, "GET /me while hung").await;
        let proxy = f.proxy.as_ref().unwrap();
        proxy.cut();
        proxy.resume();
        let mut recovered = false;
        for _ in 0..50 {
            let r = f.h.call(Method::GET, "/me", Some(&cred)).await;
            assert!(
                r.status == StatusCode::OK || r.status == StatusCode::SERVICE_UNAVAILABLE,
                "only 200 or 503 while recovering, got {} ({})",
                r.status,
                r.text()
            );
            if r.status == StatusCode::OK {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "the app recovers without a restart");
    }

    /// The jwt strategy's refresh families live in the store too: a hung store makes a refresh
    /// 503 within a bound, not a request that hangs.
    #[tokio::test]
    async fn jwt_hung_store_refresh_is_503() {
        let (f, cred) = hung(StrategyKind::Jwt).await;
        let req = request(Method::POST, "/refresh")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"refresh_token": cred.refresh()}).to_string(),
            ))
            .unwrap();
        unavailable(&f.h, req, "POST /refresh (jwt) on a hung store").await;
    }

    #[tokio::test]
    async fn jwt_hung_store_login_is_503() {
        let (f, _) = hung(StrategyKind::Jwt).await;
        let req = request(Method::POST, "/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"username": "alice", "password": "wonderland"}).to_string(),
            ))
            .unwrap();
        unavailable(&f.h, req, "POST /login (jwt) on a hung store").await;
    }
}
