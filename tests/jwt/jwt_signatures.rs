//! Wycheproof-style invalid signatures for ECDSA P-256, Ed25519, RSA and HMAC: every one is
//! refused with `InvalidCredential`.
//!
//! High-S ECDSA signatures (`s' = n - s`) are *accepted*: both `(r, s)` and `(r, n - s)` are valid
//! ECDSA signatures and RFC 7518 does not require low-S. This is harmless here: the token's claims
//! are unchanged, the verified-token cache is keyed by the whole token and revocation is by `jti`.
#![cfg(feature = "jwt")]

use crate::common::jwt_support;

use jwt_support::*;
use keycard::{ErrorKind, jwt::Algorithm};

/// The P-256 group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The Ed25519 group order L, little-endian (as S is encoded).
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

fn be_sub(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        out[i] = d as u8;
    }
    out
}

fn le_add(a: &[u8], b: &[u8; 32]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    out
}

/// A valid token split into its signing input and raw signature.
fn parts(h: &Harness) -> (String, Vec<u8>) {
    let token = h.token(&h.claims());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    (input.to_owned(), sig)
}

async fn refused(h: &Harness, name: &str, input: &str, sig: &[u8]) {
    let token = format!("{input}.{}", b64(sig));
    match h.auth(&token).await {
        Ok(_) => panic!("{name}: accepted"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidCredential, "{name}: {e:?}"),
    }
}

/// Bit flips across the signature, and length changes.
async fn generic_mutations(h: &Harness, input: &str, sig: &[u8]) {
    for i in [0, 1, sig.len() / 2 - 1, sig.len() / 2, sig.len() - 1] {
        for bit in [0, 7] {
            let mut s = sig.to_vec();
            s[i] ^= 1 << bit;
            refused(h, &format!("bit {bit} of byte {i} flipped"), input, &s).await;
        }
    }
    refused(h, "truncated by one byte", input, &sig[..sig.len() - 1]).await;
    refused(h, "half length", input, &sig[..sig.len() / 2]).await;
    refused(h, "one byte appended", input, &[sig, &[0]].concat()).await;
    refused(h, "zero byte prepended", input, &[&[0], sig].concat()).await;
    refused(h, "doubled", input, &sig.repeat(2)).await;
    refused(h, "empty", input, &[]).await;
    refused(h, "all zeros", input, &vec![0u8; sig.len()]).await;
    refused(h, "all ones", input, &vec![0xffu8; sig.len()]).await;
    // Right signature, different message.
    let other = format!("{input}x");
    refused(h, "signature over another message", &other, sig).await;
}

#[tokio::test]
async fn ecdsa_p256_invalid_signatures() {
    let h = harness(Algorithm::ES256).await;
    let (input, sig) = parts(&h);
    h.auth(&format!("{input}.{}", b64(&sig))).await.unwrap();
    generic_mutations(&h, &input, &sig).await;
    let (r, s) = sig.split_at(32);
    let zero = [0u8; 32];
    let mut one = [0u8; 32];
    one[31] = 1;
    let n_minus_1 = be_sub(&P256_N, &one);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("r = 0", [&zero[..], s].concat()),
        ("s = 0", [r, &zero[..]].concat()),
        ("r = s = 0", [zero, zero].concat()),
        ("r = 1, s = 1", [one, one].concat()),
        ("r = n", [&P256_N[..], s].concat()),
        ("s = n", [r, &P256_N[..]].concat()),
        ("r = s = n", [P256_N, P256_N].concat()),
        ("r = n - 1, s = n - 1", [n_minus_1, n_minus_1].concat()),
        ("r = 0xff..", [&[0xff; 32][..], s].concat()),
        ("s = 0xff..", [r, &[0xff; 32][..]].concat()),
        ("r and s swapped", [s, r].concat()),
        ("r + n (out of range)", {
            // r + n overflows 256 bits for most r; use n + 1 as a representative r >= n.
            let mut big = P256_N;
            big[31] = big[31].wrapping_add(1);
            [&big[..], s].concat()
        }),
    ];
    for (name, bad) in cases {
        refused(&h, name, &input, &bad).await;
    }
    // DER (ASN.1) encoding instead of the fixed r||s encoding JWS requires.
    let der = {
        let int = |v: &[u8]| {
            let mut v = v.to_vec();
            while v.len() > 1 && v[0] == 0 && v[1] < 0x80 {
                v.remove(0);
            }
            if v[0] >= 0x80 {
                v.insert(0, 0);
            }
            [vec![0x02, v.len() as u8], v].concat()
        };
        let body = [int(r), int(s)].concat();
        [vec![0x30, body.len() as u8], body].concat()
    };
    refused(&h, "ASN.1 DER signature", &input, &der).await;
    // High S: documented as accepted (see the module docs).
    let high_s = [r, &be_sub(&P256_N, s)[..]].concat();
    h.auth(&format!("{input}.{}", b64(&high_s)))
        .await
        .expect("high-S is a valid ECDSA signature");
}

#[tokio::test]
async fn ed25519_invalid_signatures() {
    let h = harness(Algorithm::EdDSA).await;
    let (input, sig) = parts(&h);
    h.auth(&format!("{input}.{}", b64(&sig))).await.unwrap();
    generic_mutations(&h, &input, &sig).await;
    let (r, s) = sig.split_at(32);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "S + L (non-canonical S)",
            [r, &le_add(s, &ED25519_L)].concat(),
        ),
        ("S = L", [r, &ED25519_L[..]].concat()),
        ("S = 0", [r, &[0u8; 32][..]].concat()),
        ("R = 0", [&[0u8; 32][..], s].concat()),
        ("R = identity, S = 0", [identity, [0u8; 32]].concat()),
        ("R = identity, S = original", [&identity[..], s].concat()),
        ("S = 2^256 - 1", [r, &[0xff; 32][..]].concat()),
        ("R and S swapped", [s, r].concat()),
    ];
    for (name, bad) in cases {
        refused(&h, name, &input, &bad).await;
    }
}

#[tokio::test]
async fn rsa_invalid_signatures() {
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let h = harness(alg).await;
        let (input, sig) = parts(&h);
        h.auth(&format!("{input}.{}", b64(&sig))).await.unwrap();
        generic_mutations(&h, &input, &sig).await;
        // The modulus itself, and a value above it.
        let n = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            h.ring
                .signer()
                .unwrap()
                .public_jwk()
                .unwrap()
                .n
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        refused(&h, "s = n", &input, &n).await;
        refused(&h, "s = 1", &input, &[vec![0u8; 255], vec![1]].concat()).await;
    }
}

#[tokio::test]
async fn hmac_invalid_tags() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let h = harness(alg).await;
        let (input, sig) = parts(&h);
        h.auth(&format!("{input}.{}", b64(&sig))).await.unwrap();
        generic_mutations(&h, &input, &sig).await;
        refused(&h, "truncated to 16 bytes", &input, &sig[..16]).await;
    }
}
