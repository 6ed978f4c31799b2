//! Compact JWS: signing access tokens, and the verification pipeline.
//!
//! Verification, in order, stopping at the first failure:
//! 1. size: more than [`MAX_TOKEN_LEN`] bytes is refused before anything is decoded;
//! 2. shape: exactly three non-empty base64url segments (so JWS JSON serialization, JWE's five
//!    segments and unsecured `header.payload.` tokens never get further);
//! 3. header: strict JSON (no duplicate members), `typ` of `at+jwt`, a `kid`, no `crit`, `jku`,
//!    `jwk`, `x5u`, `x5c`, `b64`, ...;
//! 4. key: found by `kid` only; the header's `alg` must equal the key's pinned algorithm exactly;
//! 5. signature: over the original signing input, with the key parsed at load time;
//! 6. claims, only once the signature holds (see [`claims`](super::claims)).
//!
//! Decoding uses stack buffers: a verification allocates only for the principal it returns.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{
    claims::{Header, IssueClaims, Validation, Verified, invalid, validate},
    keys::{JwtKey, KeySet},
};
use crate::{
    error::{Error, ErrorKind, Result},
    token::b64url_decode_into,
};

/// Largest accepted access token, in bytes (8 KiB). Larger tokens are refused before decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
const MAX_HEADER_LEN: usize = 1024;
const MAX_SIG_LEN: usize = 512;

/// What a key is looked up by.
#[derive(Clone, Copy)]
pub(crate) enum KeyQuery<'a> {
    /// The token's protected header segment, as sent (base64url). A key matches only when it is
    /// byte-for-byte the header that key signs with (`{"alg","kid","typ":"at+jwt"}`), so parsing
    /// it would give exactly that key's `alg` and `kid` and nothing else: the header checks are
    /// already known to pass. Anything else (`Unknown`) goes through the full header parse.
    Header(&'a str),
    /// The `kid` of a parsed header.
    Kid(&'a str),
}

impl KeyQuery<'_> {
    /// The key of `keys` this query names.
    #[inline]
    pub(crate) fn find<'k>(&self, keys: &'k KeySet) -> Option<&'k JwtKey> {
        match *self {
            Self::Header(header) => keys.find_by_header(header),
            Self::Kid(kid) => keys.find(kid),
        }
    }
}

/// How a key lookup went.
pub(crate) enum Lookup {
    /// The key to verify with.
    Found(JwtKey),
    /// No key has this `kid`.
    Unknown,
    /// The key set cannot be trusted right now (remote JWKS past its max-stale bound).
    #[cfg(feature = "remote-jwks")]
    Unavailable(Error),
}

/// Why a verification did not produce a token.
pub(crate) enum Failure {
    /// The `kid` is unknown (a remote JWKS may refetch and retry).
    UnknownKid,
    /// Refused (or the key set is unavailable).
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

fn decode_into<'b>(segment: &str, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let n = b64url_decode_into(segment.as_bytes(), buf)?;
    buf.get(..n)
}

/// Claims up to this size decode into a stack buffer; larger ones (up to the token limit) into
/// one exact-size allocation.
const STACK_CLAIMS: usize = 1024;

/// Splits a compact JWS into its three segments.
#[inline]
fn split(token: &str) -> Option<(&str, &str, &str)> {
    let bytes = token.as_bytes();
    let mut dots = memchr::memchr_iter(b'.', bytes);
    let (first, second) = (dots.next()?, dots.next()?);
    if dots.next().is_some() {
        return None;
    }
    // `.` is ASCII, so these are character boundaries.
    let (header, claims, sig) = (
        token.get(..first)?,
        token.get(first + 1..second)?,
        token.get(second + 1..)?,
    );
    if header.is_empty() || claims.is_empty() || sig.is_empty() {
        return None;
    }
    Some((header, claims, sig))
}

/// Verifies `token` fully (signature and claims; not revocation) at `now_ms`, finding the key with
/// `lookup`.
pub(crate) fn verify(
    token: &str,
    validation: &Validation,
    now_ms: i64,
    mut lookup: impl FnMut(KeyQuery<'_>) -> Lookup,
) -> std::result::Result<Verified, Failure> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid("the token is larger than 8 KiB").into());
    }
    let (header_b64, claims_b64, sig_b64) =
        split(token).ok_or_else(|| invalid("the token is not a compact JWS"))?;

    if header_b64.len() > MAX_HEADER_LEN / 3 * 4 {
        return Err(invalid("the token header is larger than 1 KiB").into());
    }
    // The tokens keycard issues carry exactly the header their key signs with: recognise it
    // without decoding or parsing it (see `KeyQuery::Header`).
    let key = match lookup(KeyQuery::Header(header_b64)) {
        Lookup::Found(key) => key,
        #[cfg(feature = "remote-jwks")]
        Lookup::Unavailable(e) => return Err(e.into()),
        Lookup::Unknown => key_from_header(header_b64, lookup)?,
    };

    let mut sig_buf = [0u8; MAX_SIG_LEN];
    let sig = decode_into(sig_b64, &mut sig_buf)
        .ok_or_else(|| invalid("the token signature is not valid base64url"))?;
    let signing_input = token
        .as_bytes()
        .get(..header_b64.len() + 1 + claims_b64.len())
        .ok_or_else(|| invalid("the token is not a compact JWS"))?;
    if !key.verify(signing_input, sig) {
        return Err(invalid("the token signature is invalid").into());
    }

    let mut stack = [0u8; STACK_CLAIMS];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if claims_b64.len() / 4 * 3 + 2 <= STACK_CLAIMS {
        &mut stack
    } else {
        heap.resize(claims_b64.len() / 4 * 3 + 2, 0);
        &mut heap
    };
    let claims = decode_into(claims_b64, buf)
        .ok_or_else(|| invalid("the token claims are not valid base64url"))?;
    let claims =
        std::str::from_utf8(claims).map_err(|_| invalid("the token claims are not UTF-8"))?;
    Ok(validate(claims, validation, now_ms)?)
}

/// Decodes and checks a header that is not one of the ring's own, and finds its key by `kid`.
#[inline(never)]
fn key_from_header(
    header_b64: &str,
    lookup: impl FnOnce(KeyQuery<'_>) -> Lookup,
) -> std::result::Result<JwtKey, Failure> {
    let mut header_buf = [0u8; MAX_HEADER_LEN];
    let header_bytes = decode_into(header_b64, &mut header_buf)
        .ok_or_else(|| invalid("the token header is not valid base64url"))?;
    let header_text =
        std::str::from_utf8(header_bytes).map_err(|_| invalid("the token header is not UTF-8"))?;
    let header: Header<'_> = serde_json::from_str(header_text)
        .map_err(|_| invalid("the token header is malformed or not acceptable"))?;

    let key = match lookup(KeyQuery::Kid(&header.kid)) {
        Lookup::Found(key) => key,
        Lookup::Unknown => return Err(Failure::UnknownKid),
        #[cfg(feature = "remote-jwks")]
        Lookup::Unavailable(e) => return Err(e.into()),
    };
    if *header.alg != *key.algorithm().as_str() {
        return Err(invalid("the token's algorithm does not match its key").into());
    }
    Ok(key)
}

/// Signs `claims` with `key` into a compact JWS with header `{"alg","typ":"at+jwt","kid"}`.
pub(crate) fn sign(key: &JwtKey, claims: &IssueClaims<'_>) -> Result<String> {
    let json =
        serde_json::to_vec(claims).map_err(|e| Error::new(ErrorKind::Internal).with_source(e))?;
    let header = key.header_b64();
    let mut token = String::with_capacity(
        header.len() + 2 + json.len() * 4 / 3 + 4 + key.signature_len() * 4 / 3 + 4,
    );
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&json, &mut token);
    let sig = key.sign_raw(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&sig, &mut token);
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::with_message(
            ErrorKind::Internal,
            "the access token would exceed 8 KiB; carry fewer roles or attributes",
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::jwt::{Algorithm, keys::KeyRing};

    const NOW_MS: i64 = 1_800_000_000_000;

    fn validation() -> Validation {
        Validation {
            issuer: "iss".into(),
            audience: "aud".into(),
            leeway_ms: 0,
            max_ttl_secs: 600,
        }
    }

    fn sign_with(key: &JwtKey) -> String {
        sign(
            key,
            &IssueClaims {
                iss: "iss",
                sub: "alice",
                aud: "aud",
                exp: NOW_MS / 1000 + 300,
                iat: NOW_MS / 1000,
                iat_ms: NOW_MS,
                auth_time: NOW_MS / 1000,
                jti: "j1",
                sid: "s1",
                roles: &[],
                attributes: &Map::new(),
            },
        )
        .unwrap()
    }

    /// `token` with its header replaced by `header` (JSON) and re-signed by `key`.
    fn reheader(token: &str, key: &JwtKey, header: &str) -> String {
        let claims = token.split('.').nth(1).unwrap();
        let input = format!("{}.{claims}", URL_SAFE_NO_PAD.encode(header));
        let sig = key.sign_raw(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn check(ring: &KeyRing, token: &str) -> std::result::Result<Verified, Failure> {
        let keys = ring.snapshot();
        verify(token, &validation(), NOW_MS, |q| match q.find(&keys) {
            Some(k) => Lookup::Found(k.clone()),
            None => Lookup::Unknown,
        })
    }

    #[test]
    fn own_header_fast_path_agrees_with_the_full_parse() {
        let secret = |seed: u8| {
            (0..32u8)
                .map(|i| i.wrapping_mul(37) ^ seed)
                .collect::<Vec<_>>()
        };
        let a = JwtKey::hmac("a", Algorithm::HS256, &secret(1)).unwrap();
        let b = JwtKey::hmac("b", Algorithm::HS256, &secret(2)).unwrap();
        let ring = KeyRing::new([a.clone(), b.clone()], Some("a")).unwrap();
        let token = sign_with(&a);
        // keycard's own header: recognised without parsing.
        assert!(token.starts_with(a.header_b64()));
        assert_eq!(
            check(&ring, &token).ok().unwrap().principal.subject(),
            "alice"
        );
        // The same header spelt differently goes through the parser and is accepted too.
        let other = reheader(&token, &a, r#"{"typ":"at+jwt","kid":"a","alg":"HS256"}"#);
        assert!(check(&ring, &other).is_ok());
        // Key b's own header over a signature by a: refused (the header picks b).
        let forged = reheader(
            &token,
            &a,
            &String::from_utf8(b64url_dec(b.header_b64())).unwrap(),
        );
        assert!(matches!(check(&ring, &forged), Err(Failure::Error(_))));
        // A parsed header is still held to every rule.
        for bad in [
            r#"{"typ":"at+jwt","kid":"a","alg":"HS384"}"#,
            r#"{"typ":"JWT","kid":"a","alg":"HS256"}"#,
            r#"{"typ":"at+jwt","kid":"a","alg":"HS256","crit":["x"]}"#,
        ] {
            assert!(check(&ring, &reheader(&token, &a, bad)).is_err(), "{bad}");
        }
        // An unknown kid is reported as such (a remote JWKS refetches on it).
        let unknown = reheader(&token, &a, r#"{"typ":"at+jwt","kid":"c","alg":"HS256"}"#);
        assert!(matches!(check(&ring, &unknown), Err(Failure::UnknownKid)));
        // A retired key's own header no longer matches anything.
        ring.set_signer("b").unwrap();
        assert!(ring.retire("a").unwrap());
        assert!(check(&ring, &token).is_err());
    }

    fn b64url_dec(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }
}
