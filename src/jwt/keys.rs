//! Signing and verifying keys, each pinned to one algorithm and named by a `kid`, and the
//! [`KeyRing`] that holds them and rotates them at run time.
//!
//! Public keys are parsed once, when they are loaded (aws-lc-rs `ParsedPublicKey`), so a request
//! pays only for the signature check itself. Every key is self-tested when it is loaded: a key that
//! can sign signs and verifies a probe, a verify-only key must reject a bogus signature without
//! error. A crypto provider that does not work is therefore found at start-up, never on a request.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use aws_lc_rs::{
    encoding::AsDer,
    hmac,
    rand::{SecureRandom, SystemRandom},
    rsa::KeySize,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair},
};
use parking_lot::RwLock;

use super::{
    alg::Algorithm,
    encoding::{b64url, b64url_encode, bit_len, rsa_public_components, spki_public_key},
    jwk::{Jwk, Jwks},
};
use crate::error::{Error, ErrorKind, Result};

/// Smallest RSA modulus accepted, in bits.
pub(crate) const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub(crate) const RSA_MAX_BITS: usize = 4096;
/// Longest accepted `kid`, in bytes.
pub(crate) const MAX_KID_LEN: usize = 256;

pub(super) fn key_err(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::with_message(ErrorKind::Config, message)
}

/// A key pinned to one [`Algorithm`] and named by a `kid`: a verifying key, and optionally the
/// matching signing key.
///
/// Cheap to clone (one reference count). `Debug` prints the `kid` and algorithm only; the key
/// material is `[redacted]`.
///
/// ```
/// use keycard::jwt::{Algorithm, JwtKey};
///
/// let key = JwtKey::generate("2026-01", Algorithm::EdDSA).unwrap();
/// assert!(key.can_sign());
/// assert_eq!(key.algorithm(), Algorithm::EdDSA);
/// assert!(format!("{key:?}").contains("[redacted]"));
/// ```
#[derive(Clone)]
pub struct JwtKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    kid: Box<str>,
    alg: Algorithm,
    verifier: VerifyKey,
    signer: Option<SignKey>,
    /// The public JWK (asymmetric keys only).
    public: Option<Jwk>,
    /// base64url of the protected header this key signs with.
    header_b64: Box<str>,
    /// Exact signature length in bytes.
    sig_len: usize,
}

enum VerifyKey {
    Public(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

pub(super) enum SignKey {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Hmac(Box<hmac::Key>),
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.inner.kid)
            .field("alg", &self.inner.alg)
            .field("signing", &self.inner.signer.is_some())
            .field("material", &"[redacted]")
            .finish()
    }
}

pub(super) fn verification_alg(
    alg: Algorithm,
) -> Option<&'static dyn signature::VerificationAlgorithm> {
    Some(match alg {
        Algorithm::EdDSA => &signature::ED25519,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        _ => return None,
    })
}

pub(super) fn rsa_params(alg: Algorithm) -> Option<&'static signature::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::PS256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
        _ => None,
    }
}

pub(super) fn ecdsa_signing(alg: Algorithm) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn hmac_alg(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

pub(super) fn curve_of(alg: Algorithm) -> Option<(&'static str, usize)> {
    match alg {
        Algorithm::ES256 => Some(("P-256", 32)),
        Algorithm::ES384 => Some(("P-384", 48)),
        _ => None,
    }
}

/// Checks a `kid`: 1 to [`MAX_KID_LEN`] bytes, no control characters.
pub(crate) fn check_kid(kid: &str) -> Result<()> {
    if kid.is_empty() {
        return Err(key_err("a key needs a non-empty kid"));
    }
    if kid.len() > MAX_KID_LEN {
        return Err(key_err(format!("kid is longer than {MAX_KID_LEN} bytes")));
    }
    if kid.chars().any(char::is_control) {
        return Err(key_err("kid contains control characters"));
    }
    Ok(())
}

impl JwtKey {
    /// An HMAC key (`HS256`/`HS384`/`HS512`) from a random secret of at least 32/48/64 bytes.
    ///
    /// # Security
    /// An HMAC secret is shared: anyone who can verify can also forge tokens. It is never
    /// published in the JWKS. Generate it with a CSPRNG (`openssl rand -base64 64`); a secret that
    /// is too short or obviously not random (fewer than 8 distinct byte values) is refused.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `alg` is not an HMAC algorithm or the secret is too short.
    pub fn hmac(kid: impl Into<String>, alg: Algorithm, secret: &[u8]) -> Result<Self> {
        let kid = kid.into();
        check_kid(&kid)?;
        let (Some(algorithm), Some(min)) = (hmac_alg(alg), alg.min_secret_len()) else {
            return Err(key_err(format!("{alg} is not an HMAC algorithm")));
        };
        if secret.len() < min {
            return Err(key_err(format!(
                "{alg} needs a secret of at least {min} random bytes (got {})",
                secret.len()
            )));
        }
        let mut seen = [false; 256];
        for &b in secret {
            seen[usize::from(b)] = true;
        }
        if seen.iter().filter(|s| **s).count() < 8 {
            return Err(key_err(format!("the {alg} secret does not look random")));
        }
        let key = Box::new(hmac::Key::new(algorithm, secret));
        let signer = key.clone();
        Self::build(
            kid,
            alg,
            VerifyKey::Hmac(key),
            Some(SignKey::Hmac(signer)),
            None,
        )
    }

    /// Generates a fresh key for `alg` (Ed25519, P-256, P-384, RSA 2048-bit, or a random HMAC
    /// secret of the minimum length). Meant for demos, tests and ephemeral deployments: a
    /// generated key dies with the process, and tokens it signed stop verifying at restart.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`] when the random source or key generation fails.
    pub fn generate(kid: impl Into<String>, alg: Algorithm) -> Result<Self> {
        let kid = kid.into();
        check_kid(&kid)?;
        let failed = |_| Error::with_message(ErrorKind::Internal, "key generation failed");
        let signer = match alg {
            Algorithm::EdDSA => SignKey::Ed25519(Ed25519KeyPair::generate().map_err(failed)?),
            Algorithm::ES256 | Algorithm::ES384 => {
                let signing = ecdsa_signing(alg).ok_or_else(|| key_err("unsupported curve"))?;
                SignKey::Ecdsa(EcdsaKeyPair::generate(signing).map_err(failed)?)
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                SignKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?)
            }
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let len = alg.min_secret_len().unwrap_or(64);
                let mut secret = vec![0u8; len];
                SystemRandom::new().fill(&mut secret).map_err(failed)?;
                return Self::hmac(kid, alg, &secret);
            }
        };
        Self::from_signer(kid, alg, signer)
    }

    pub(super) fn from_signer(kid: String, alg: Algorithm, signer: SignKey) -> Result<Self> {
        let mismatch = || key_err(format!("the private key is not a {alg} key"));
        let parsed = match (&signer, alg) {
            (SignKey::Ed25519(pair), Algorithm::EdDSA) => {
                ParsedPublicKey::new(&signature::ED25519, pair.public_key().as_ref())
            }
            (SignKey::Ecdsa(pair), Algorithm::ES256 | Algorithm::ES384) => {
                let algorithm = verification_alg(alg).ok_or_else(mismatch)?;
                ParsedPublicKey::new(algorithm, pair.public_key().as_ref())
            }
            (SignKey::Rsa(pair), Algorithm::RS256 | Algorithm::PS256) => {
                let algorithm = verification_alg(alg).ok_or_else(mismatch)?;
                ParsedPublicKey::new(algorithm, pair.public_key().as_ref())
            }
            _ => return Err(mismatch()),
        }
        .map_err(|_| key_err("the key's public part cannot be parsed"))?;
        Self::from_public(kid, alg, parsed, Some(signer))
    }

    pub(super) fn from_public(
        kid: String,
        alg: Algorithm,
        parsed: ParsedPublicKey,
        signer: Option<SignKey>,
    ) -> Result<Self> {
        let spki = parsed
            .as_der()
            .map_err(|_| key_err("the public key cannot be encoded"))?;
        let raw = spki_public_key(spki.as_ref())
            .ok_or_else(|| key_err("the public key has an unexpected encoding"))?;
        let mut jwk = Jwk {
            kty: String::new(),
            use_: Some("sig".into()),
            kid: Some(kid.clone()),
            alg: Some(alg.as_str().into()),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        };
        match alg {
            Algorithm::EdDSA => {
                if raw.len() != 32 {
                    return Err(key_err("not an Ed25519 public key"));
                }
                jwk.kty = "OKP".into();
                jwk.crv = Some("Ed25519".into());
                jwk.x = Some(b64url_encode(raw));
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let (crv, len) = curve_of(alg).ok_or_else(|| key_err("unsupported curve"))?;
                let coords = match raw.split_first() {
                    Some((4, coords)) if coords.len() == 2 * len => coords,
                    _ => return Err(key_err(format!("not an uncompressed {crv} point"))),
                };
                let (x, y) = coords.split_at(len);
                jwk.kty = "EC".into();
                jwk.crv = Some(crv.into());
                jwk.x = Some(b64url_encode(x));
                jwk.y = Some(b64url_encode(y));
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                let (n, e) =
                    rsa_public_components(raw).ok_or_else(|| key_err("not an RSA public key"))?;
                let bits = bit_len(n);
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(key_err(format!(
                        "RSA keys must have {RSA_MIN_BITS} to {RSA_MAX_BITS} bits (this one has {bits})"
                    )));
                }
                jwk.kty = "RSA".into();
                jwk.n = Some(b64url_encode(n));
                jwk.e = Some(b64url_encode(e));
            }
            _ => return Err(key_err("not an asymmetric algorithm")),
        }
        Self::build(kid, alg, VerifyKey::Public(parsed), signer, Some(jwk))
    }

    fn build(
        kid: String,
        alg: Algorithm,
        verifier: VerifyKey,
        signer: Option<SignKey>,
        public: Option<Jwk>,
    ) -> Result<Self> {
        let sig_len = match (&public, alg.fixed_signature_len()) {
            (_, Some(len)) => len,
            (Some(jwk), None) => {
                let n = jwk.n.as_deref().map(b64url).and_then(|r| r.ok());
                n.map(|n| n.len())
                    .ok_or_else(|| key_err("the RSA modulus is missing"))?
            }
            (None, None) => return Err(key_err("unsupported algorithm")),
        };
        let header = serde_json::json!({ "alg": alg.as_str(), "typ": "at+jwt", "kid": kid });
        let header = serde_json::to_vec(&header)
            .map_err(|e| Error::new(ErrorKind::Internal).with_source(e))?;
        let key = Self {
            inner: Arc::new(KeyInner {
                header_b64: b64url_encode(&header).into(),
                kid: kid.into(),
                alg,
                verifier,
                signer,
                public,
                sig_len,
            }),
        };
        key.self_test()?;
        Ok(key)
    }

    /// Signs and verifies a probe (or, for a verify-only key, checks that a bogus signature is
    /// refused), so that a broken crypto provider or an inconsistent key is found at load time.
    fn self_test(&self) -> Result<()> {
        let probe = b"keycard key self-test";
        let failed = || {
            Error::with_message(
                ErrorKind::Config,
                format!(
                    "key `{}` failed its {} self-test (crypto provider or key is broken)",
                    self.inner.kid, self.inner.alg
                ),
            )
        };
        if self.inner.signer.is_some() {
            let sig = self.sign_raw(probe).map_err(|_| failed())?;
            if sig.len() != self.inner.sig_len || !self.verify(probe, &sig) {
                return Err(failed());
            }
            if self.verify(b"keycard key self-test!", &sig) {
                return Err(failed());
            }
        } else if self.verify(probe, &vec![1u8; self.inner.sig_len]) {
            return Err(failed());
        }
        Ok(())
    }

    /// The key ID.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The algorithm this key is pinned to.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.alg
    }

    /// Whether this key holds private material and can sign.
    pub fn can_sign(&self) -> bool {
        self.inner.signer.is_some()
    }

    /// The public JWK (`None` for HMAC keys, which are never published).
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.inner.public.as_ref()
    }

    /// A verify-only copy of this key (what another service may hold). For HMAC keys the copy
    /// still holds the shared secret.
    pub fn verifying_only(&self) -> Self {
        let verifier = match &self.inner.verifier {
            VerifyKey::Public(p) => VerifyKey::Public(p.clone()),
            VerifyKey::Hmac(k) => VerifyKey::Hmac(k.clone()),
        };
        Self {
            inner: Arc::new(KeyInner {
                kid: self.inner.kid.clone(),
                alg: self.inner.alg,
                verifier,
                signer: None,
                public: self.inner.public.clone(),
                header_b64: self.inner.header_b64.clone(),
                sig_len: self.inner.sig_len,
            }),
        }
    }

    /// base64url of the protected header `{"alg","typ":"at+jwt","kid"}` this key signs with.
    pub(crate) fn header_b64(&self) -> &str {
        &self.inner.header_b64
    }

    /// The exact signature length in bytes.
    pub(crate) fn signature_len(&self) -> usize {
        self.inner.sig_len
    }

    /// Verifies `sig` over `message`. Never panics; any failure is `false`.
    #[inline]
    pub(crate) fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        if sig.len() != self.inner.sig_len {
            return false;
        }
        match &self.inner.verifier {
            VerifyKey::Public(key) => key.verify_sig(message, sig).is_ok(),
            VerifyKey::Hmac(key) => hmac::verify(key, message, sig).is_ok(),
        }
    }

    /// Signs `message`, returning the raw signature.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = || Error::with_message(ErrorKind::Internal, "signing failed");
        let signer = self
            .inner
            .signer
            .as_ref()
            .ok_or_else(|| Error::with_message(ErrorKind::Internal, "this key cannot sign"))?;
        Ok(match signer {
            SignKey::Ed25519(pair) => pair
                .try_sign(message)
                .map_err(|_| failed())?
                .as_ref()
                .to_vec(),
            SignKey::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map_err(|_| failed())?
                .as_ref()
                .to_vec(),
            SignKey::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match self.inner.alg {
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &SystemRandom::new(), message, &mut sig)
                    .map_err(|_| failed())?;
                sig
            }
            SignKey::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
        })
    }
}

/// A set of keys: any of them verifies tokens bearing its `kid`; at most one signs.
///
/// The ring is shared by reference (`Arc<KeyRing>`) and changes at run time without a restart:
///
/// 1. [`KeyRing::add`] the next key: it verifies at once and is published in the JWKS, so
///    relying services can fetch it before it is used;
/// 2. [`KeyRing::set_signer`] to sign new tokens with it;
/// 3. once every token signed by the old key has expired (the access-token lifetime plus
///    leeway), [`KeyRing::retire`] the old key.
///
/// ```
/// use keycard::jwt::{Algorithm, JwtKey, KeyRing};
///
/// let ring = KeyRing::new([JwtKey::generate("k1", Algorithm::EdDSA).unwrap()], Some("k1")).unwrap();
/// ring.add(JwtKey::generate("k2", Algorithm::ES256).unwrap()).unwrap();
/// ring.set_signer("k2").unwrap();
/// assert!(ring.retire("k1").unwrap());
/// assert_eq!(ring.signer().unwrap().kid(), "k2");
/// ```
pub struct KeyRing {
    state: RwLock<Arc<KeySet>>,
    generation: AtomicU64,
}

/// An immutable snapshot of a ring.
pub(crate) struct KeySet {
    keys: Vec<JwtKey>,
    signer: Option<usize>,
    jwks: Arc<str>,
}

impl KeySet {
    fn build(keys: Vec<JwtKey>, signer: Option<&str>) -> Result<Self> {
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.kid() == k.kid()) {
                return Err(key_err(format!("duplicate kid `{}`", k.kid())));
            }
        }
        let signer = match signer {
            None => None,
            Some(kid) => {
                let i = keys
                    .iter()
                    .position(|k| k.kid() == kid)
                    .ok_or_else(|| key_err(format!("no key with kid `{kid}`")))?;
                if !keys[i].can_sign() {
                    return Err(key_err(format!(
                        "key `{kid}` has no private part and cannot sign"
                    )));
                }
                Some(i)
            }
        };
        let jwks = Jwks {
            keys: keys
                .iter()
                .filter_map(|k| k.public_jwk().cloned())
                .collect(),
        };
        let jwks = serde_json::to_string(&jwks)
            .map_err(|e| Error::new(ErrorKind::Internal).with_source(e))?;
        Ok(Self {
            keys,
            signer,
            jwks: jwks.into(),
        })
    }

    #[inline]
    pub(crate) fn find(&self, kid: &str) -> Option<&JwtKey> {
        self.keys.iter().find(|k| k.kid() == kid)
    }

    /// The key whose own protected header (base64url) is exactly `header_b64`.
    #[inline]
    pub(crate) fn find_by_header(&self, header_b64: &str) -> Option<&JwtKey> {
        self.keys.iter().find(|k| k.header_b64() == header_b64)
    }

    pub(crate) fn signer(&self) -> Option<&JwtKey> {
        self.signer.and_then(|i| self.keys.get(i))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.snapshot();
        f.debug_struct("KeyRing")
            .field("keys", &set.keys)
            .field("signer", &set.signer().map(JwtKey::kid))
            .finish()
    }
}

impl KeyRing {
    /// A ring of `keys`, signing with the key named `signer` (which must hold a private part).
    /// `None` makes a verify-only ring.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] on duplicate `kid`s or an unknown or verify-only signer.
    pub fn new(keys: impl IntoIterator<Item = JwtKey>, signer: Option<&str>) -> Result<Self> {
        Ok(Self {
            state: RwLock::new(Arc::new(KeySet::build(keys.into_iter().collect(), signer)?)),
            generation: AtomicU64::new(0),
        })
    }

    /// A ring with one freshly generated Ed25519 key (random `kid`) that signs. Tokens it signs
    /// stop verifying when the process exits: for demos and single-process tests only.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`] when key generation fails.
    pub fn ephemeral() -> Result<Self> {
        let kid = format!("ephemeral-{}", crate::token::random_id()?);
        let key = JwtKey::generate(kid.clone(), Algorithm::EdDSA)?;
        Self::new([key], Some(&kid))
    }

    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        self.state.read().clone()
    }

    /// Bumped whenever a key stops verifying, so that cached verifications made with it lapse.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn update(&self, f: impl FnOnce(&KeySet) -> Result<Option<KeySet>>) -> Result<bool> {
        let mut guard = self.state.write();
        match f(&guard)? {
            Some(next) => {
                let removed = guard.keys.iter().any(|old| {
                    next.find(old.kid())
                        .is_none_or(|new| !Arc::ptr_eq(&new.inner, &old.inner))
                });
                *guard = Arc::new(next);
                if removed {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Adds a verifying (and possibly signing) key. It verifies at once and, unless it is an HMAC
    /// key, appears in the JWKS. It does not sign until [`KeyRing::set_signer`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when a key with the same `kid` exists.
    pub fn add(&self, key: JwtKey) -> Result<()> {
        self.update(|set| {
            let mut keys = set.keys.clone();
            keys.push(key);
            let signer = set.signer().map(|k| k.kid().to_owned());
            KeySet::build(keys, signer.as_deref()).map(Some)
        })
        .map(|_| ())
    }

    /// Makes the key named `kid` sign new tokens.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when there is no such key or it cannot sign.
    pub fn set_signer(&self, kid: &str) -> Result<()> {
        self.update(|set| KeySet::build(set.keys.clone(), Some(kid)).map(Some))
            .map(|_| ())
    }

    /// Removes the key named `kid`: tokens bearing it stop verifying at once (cached
    /// verifications included). Returns whether a key was removed.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `kid` is the current signer (switch the signer first).
    pub fn retire(&self, kid: &str) -> Result<bool> {
        self.update(|set| {
            if set.signer().is_some_and(|k| k.kid() == kid) {
                return Err(key_err(format!(
                    "key `{kid}` is the current signer; set another signer before retiring it"
                )));
            }
            if set.find(kid).is_none() {
                return Ok(None);
            }
            let keys = set
                .keys
                .iter()
                .filter(|k| k.kid() != kid)
                .cloned()
                .collect();
            let signer = set.signer().map(|k| k.kid().to_owned());
            KeySet::build(keys, signer.as_deref()).map(Some)
        })
    }

    /// Replaces every key (remote JWKS refresh). Verify-only.
    #[cfg(feature = "remote-jwks")]
    pub(crate) fn replace(&self, keys: Vec<JwtKey>) -> Result<()> {
        self.update(|_| KeySet::build(keys, None).map(Some))
            .map(|_| ())
    }

    /// The key that signs new tokens, if any.
    pub fn signer(&self) -> Option<JwtKey> {
        self.snapshot().signer().cloned()
    }

    /// The key named `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<JwtKey> {
        self.snapshot().find(kid).cloned()
    }

    /// The `kid`s of every key, in insertion order.
    pub fn kids(&self) -> Vec<String> {
        self.snapshot()
            .keys
            .iter()
            .map(|k| k.kid().to_owned())
            .collect()
    }

    /// The public keys as a JWK Set (HMAC keys are never included).
    pub fn jwks(&self) -> Jwks {
        serde_json::from_str(&self.snapshot().jwks).unwrap_or_default()
    }

    /// The JWK Set serialized as JSON, as served by the JWKS handler.
    pub fn jwks_json(&self) -> Arc<str> {
        self.snapshot().jwks.clone()
    }
}
