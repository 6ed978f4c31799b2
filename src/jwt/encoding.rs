//! Small, strict decoders used at key-load time: PEM armour, the few DER shapes keycard needs
//! (SubjectPublicKeyInfo, PKCS#1 `RSAPublicKey`) and base64url.
//!
//! None of this runs on the request path. Every function returns an error instead of panicking.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};

/// One PEM block: its label and DER bytes.
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// Decodes the PEM blocks of `input`, ignoring text outside them. `EC PARAMETERS` blocks (as
/// written by `openssl ecparam -genkey`) are skipped.
pub(crate) fn pem_blocks(input: &str) -> Result<Vec<PemBlock>, &'static str> {
    let mut out = Vec::new();
    let mut lines = input.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let mut body = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if let Some(end) = line
                .strip_prefix("-----END ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                if end != label {
                    return Err("PEM END label does not match its BEGIN label");
                }
                closed = true;
                break;
            }
            if line.contains(':') {
                return Err("encrypted or annotated PEM is not supported");
            }
            body.push_str(line);
        }
        if !closed {
            return Err("PEM block is not terminated");
        }
        if label == "EC PARAMETERS" {
            continue;
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| "PEM body is not valid base64")?;
        out.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    if out.is_empty() {
        return Err("no PEM block found");
    }
    Ok(out)
}

/// Decodes unpadded base64url (the only form JOSE allows), rejecting padding and non-canonical
/// trailing bits.
pub(crate) fn b64url(input: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(input.as_bytes())
}

/// Encodes unpadded base64url.
pub(crate) fn b64url_encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_SEQUENCE: u8 = 0x30;

/// A cursor over DER bytes.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// Reads one TLV with the expected tag, returning its value.
    fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.rest.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Some(value)
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// The public-key bit string of a SubjectPublicKeyInfo.
pub(crate) fn spki_public_key(spki: &[u8]) -> Option<&[u8]> {
    let mut outer = Der::new(spki);
    let seq = outer.read(TAG_SEQUENCE)?;
    if !outer.is_empty() {
        return None;
    }
    let mut inner = Der::new(seq);
    inner.read(TAG_SEQUENCE)?;
    let bits = inner.read(TAG_BIT_STRING)?;
    if !inner.is_empty() {
        return None;
    }
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then_some(key)
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey`, big-endian without leading zeros.
pub(crate) fn rsa_public_components(pkcs1: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut outer = Der::new(pkcs1);
    let seq = outer.read(TAG_SEQUENCE)?;
    let mut inner = Der::new(seq);
    let n = strip_zeros(inner.read(TAG_INTEGER)?);
    let e = strip_zeros(inner.read(TAG_INTEGER)?);
    (inner.is_empty() && !n.is_empty() && !e.is_empty()).then_some((n, e))
}

fn strip_zeros(mut v: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = v {
        v = rest;
    }
    v
}

/// The bit length of a big-endian unsigned integer without leading zeros.
pub(crate) fn bit_len(n: &[u8]) -> usize {
    match n.first() {
        Some(&first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::b64url_decode_into;

    #[test]
    fn pem_skips_ec_parameters_and_rejects_garbage() {
        let pem = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n";
        let blocks = pem_blocks(pem).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "PRIVATE KEY");
        assert_eq!(blocks[0].der, vec![0, 1, 2]);
        assert!(pem_blocks("nothing here").is_err());
        assert!(pem_blocks("-----BEGIN PRIVATE KEY-----\nAAEC\n").is_err());
        assert!(pem_blocks("-----BEGIN A-----\nAAEC\n-----END B-----\n").is_err());
        assert!(pem_blocks("-----BEGIN A-----\n!!\n-----END A-----\n").is_err());
    }

    #[test]
    fn fast_decoder_agrees_with_the_base64_crate() {
        // A deterministic pseudo-random walk over lengths and alphabets, including invalid bytes.
        let charset: Vec<u8> = (0u8..=255).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Long enough for the SIMD loops (and their tails) to see invalid bytes at every position.
        let mut out = [0u8; 256];
        for round in 0..100_000 {
            let len = (next() % 330) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if round % 3 == 0 {
                        charset[(r % 256) as usize]
                    } else {
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                            [(r % 64) as usize]
                    }
                })
                .collect();
            let expected = URL_SAFE_NO_PAD.decode(&input).ok();
            let got = b64url_decode_into(&input, &mut out).map(|n| out[..n].to_vec());
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&input));
        }
        // Round trips of every length, and refusals the crate also makes.
        for len in 0..48 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = b64url_encode(&bytes);
            let n = b64url_decode_into(enc.as_bytes(), &mut out).unwrap();
            assert_eq!(&out[..n], &bytes[..]);
        }
        assert!(b64url_decode_into(b"QQ==", &mut out).is_none());
        assert!(b64url_decode_into(b"QR", &mut out).is_none());
        assert!(b64url_decode_into(b"Q", &mut out).is_none());
        assert!(b64url_decode_into(b"QUFB", &mut [0u8; 2]).is_none());
    }

    #[test]
    fn der_reader_never_panics_on_truncation() {
        let spki = [
            0x30, 0x0a, 0x30, 0x03, 0x06, 0x01, 0x00, 0x03, 0x03, 0x00, 0xaa, 0xbb,
        ];
        assert_eq!(spki_public_key(&spki), Some(&[0xaa, 0xbb][..]));
        for i in 0..spki.len() {
            let _ = spki_public_key(&spki[..i]);
        }
        let rsa = [0x30, 0x07, 0x02, 0x02, 0x00, 0x81, 0x02, 0x01, 0x03];
        assert_eq!(
            rsa_public_components(&rsa),
            Some((&[0x81][..], &[0x03][..]))
        );
        assert_eq!(bit_len(&[0x81]), 8);
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert!(rsa_public_components(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
