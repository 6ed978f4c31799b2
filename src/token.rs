//! Opaque tokens: 256-bit CSPRNG values for session IDs and refresh tokens, and their SHA-256.
//!
//! The client holds an [`OpaqueToken`] (43 characters of unpadded base64url); the store holds only
//! its [`TokenHash`]. A leaked table therefore yields no usable credential. Parsing is strict:
//! exactly 43 canonical base64url characters, so a tampered or oversized value is rejected before
//! any hashing or store access, without allocating.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, ErrorKind};

/// Length in bytes of the random part of a token.
pub const TOKEN_BYTES: usize = 32;
/// Length in characters of an encoded token.
pub const TOKEN_LEN: usize = 43;

/// A secret opaque token (session ID or refresh token) as the client holds it.
///
/// `Debug` and `Display` print `[redacted]`; use [`OpaqueToken::expose_secret`] to get the value
/// that goes into a cookie or a response body.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken {
    encoded: String,
    hash: TokenHash,
}

impl OpaqueToken {
    /// Generates a fresh token from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`] when the OS random source fails (it does not on supported systems).
    pub fn generate() -> Result<Self, Error> {
        let mut raw = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut raw).map_err(|e| {
            Error::with_message(ErrorKind::Internal, "the OS random source failed")
                .with_source(e.to_string())
        })?;
        Ok(Self {
            encoded: URL_SAFE_NO_PAD.encode(raw),
            hash: TokenHash::of_raw(&raw),
        })
    }

    /// Parses a token presented by a client.
    ///
    /// Returns `None` unless `s` is exactly [`TOKEN_LEN`] canonical base64url characters.
    pub fn parse(s: &str) -> Option<Self> {
        let hash = TokenHash::of_encoded(s)?;
        Some(Self {
            encoded: s.to_owned(),
            hash,
        })
    }

    /// The encoded token, to be sent to the client. Handle with care.
    pub fn expose_secret(&self) -> &str {
        &self.encoded
    }

    /// The SHA-256 under which the store keeps this token.
    pub fn hash(&self) -> TokenHash {
        self.hash
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken([redacted])")
    }
}

/// The SHA-256 of a token's 32 random bytes: the key under which stores keep it.
///
/// Not a secret: it cannot be turned back into a usable token. Its lowercase hex form is also the
/// public handle of a session (see [`TokenHash::handle`]).
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes an encoded token without allocating. `None` when it is not a well-formed token.
    pub fn of_encoded(s: &str) -> Option<Self> {
        if s.len() != TOKEN_LEN {
            return None;
        }
        let mut raw = [0u8; TOKEN_BYTES];
        // The decoder refuses set trailing bits, so one token has exactly one spelling.
        if b64url_decode_into(s.as_bytes(), &mut raw)? != TOKEN_BYTES {
            return None;
        }
        Some(Self::of_raw(&raw))
    }

    fn of_raw(raw: &[u8; TOKEN_BYTES]) -> Self {
        Self(Sha256::digest(raw).into())
    }

    /// Wraps 32 bytes read back from a store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex (64 characters): the public handle of a session, and the text form stores use.
    pub fn handle(&self) -> String {
        self.with_handle(str::to_owned)
    }

    /// Calls `f` with the handle, formatted on the stack (stores build keys from it without a
    /// second allocation).
    pub(crate) fn with_handle<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let hex = self.hex();
        // Only ASCII hex digits, so the UTF-8 check cannot fail.
        f(std::str::from_utf8(&hex).unwrap_or_default())
    }

    /// The lowercase hex form as bytes, without allocating (what [`TokenHash::handle`] returns).
    pub fn hex(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        out
    }

    /// Parses a handle produced by [`TokenHash::handle`] (64 lowercase hex characters).
    pub fn from_handle(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (unhex(pair[0])? << 4) | unhex(pair[1])?;
        }
        Some(Self(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", &self.handle()[..12])
    }
}

/// A random public identifier (128 bits, base64url): refresh-token families, JWT `jti`.
#[cfg(any(feature = "jwt", feature = "test-suite"))]
pub(crate) fn random_id() -> Result<String, Error> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| {
        Error::with_message(ErrorKind::Internal, "the OS random source failed")
            .with_source(e.to_string())
    })?;
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

/// Decodes strict unpadded base64url into `out`, returning the decoded length; `None` when the
/// input has a character outside the alphabet, padding, an impossible length, non-zero trailing
/// bits (so every byte string has exactly one accepted spelling), or `out` is too small.
///
/// The request path's decoder, for session cookies and JWT segments: no allocation, and SIMD
/// (`base64-simd`, chosen at run time for the CPU) rather than a table lookup per character,
/// which made decoding a token's claims the largest cost of a cold HS256 verification after the
/// HMAC itself, and cost a session cookie about 500 instructions. Tests hold it to the `base64`
/// crate's strict decoder (`jwt::encoding`, `tests/proptest_parsers.rs`).
#[inline]
pub(crate) fn b64url_decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let out_len = input.len() / 4 * 3
        + match input.len() % 4 {
            0 => 0,
            2 => 1,
            3 => 2,
            _ => return None,
        };
    let out = out.get_mut(..out_len)?;
    let decoded = base64_simd::URL_SAFE_NO_PAD
        .decode(input, base64_simd::Out::from_slice(out))
        .ok()?;
    Some(decoded.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_round_trip_and_differ() {
        let a = OpaqueToken::generate().unwrap();
        let b = OpaqueToken::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), TOKEN_LEN);
        let parsed = OpaqueToken::parse(a.expose_secret()).unwrap();
        assert_eq!(parsed.hash(), a.hash());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = OpaqueToken::generate().unwrap();
        let s = good.expose_secret();
        assert!(OpaqueToken::parse(&s[..42]).is_none());
        assert!(OpaqueToken::parse(&format!("{s}A")).is_none());
        assert!(OpaqueToken::parse(&format!("{}=", &s[..42])).is_none());
        assert!(OpaqueToken::parse(&format!("{}+", &s[..42])).is_none());
        assert!(OpaqueToken::parse("").is_none());
        // Non-canonical last character: same bytes, different spelling.
        let last = s.as_bytes()[42];
        let idx = URL_SAFE_ALPHABET.iter().position(|&c| c == last).unwrap();
        let alt = URL_SAFE_ALPHABET[(idx & !0b11) | ((idx + 1) & 0b11)];
        let tampered = format!("{}{}", &s[..42], char::from(alt));
        assert!(OpaqueToken::parse(&tampered).is_none());
    }

    const URL_SAFE_ALPHABET: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[test]
    fn debug_is_redacted_and_handles_round_trip() {
        let t = OpaqueToken::generate().unwrap();
        assert!(!format!("{t:?}").contains(t.expose_secret()));
        let h = t.hash();
        assert_eq!(TokenHash::from_handle(&h.handle()), Some(h));
        assert!(TokenHash::from_handle("zz").is_none());
        assert!(TokenHash::from_handle(&h.handle().to_uppercase()).is_none());
    }

    #[test]
    fn handles_are_lowercase_hex_of_every_byte() {
        for start in (0u8..=224).step_by(32) {
            let mut bytes = [0u8; 32];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = start + i as u8;
            }
            let h = TokenHash::from_bytes(bytes);
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(h.handle(), expected);
            assert_eq!(h.hex().as_slice(), expected.as_bytes());
            assert_eq!(h.with_handle(|s| format!("p:{s}")), format!("p:{expected}"));
        }
    }
}
