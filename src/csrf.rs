//! Protection of cookie-authenticated unsafe requests against cross-site request forgery.
//!
//! On by default. For `POST`, `PUT`, `PATCH` and `DELETE` (and any other non-safe method) that do
//! not carry a Bearer credential, the layer checks, in order:
//! 1. **Fetch Metadata**: `Sec-Fetch-Site: same-origin` or `none` passes; `same-site` and
//!    `cross-site` are refused (403) unless the request's `Origin` is a trusted origin.
//! 2. **Origin**, when Fetch Metadata is absent: it must equal the request's own origin (its
//!    `Host`) or a trusted origin; `Origin: null` is refused.
//! 3. A request with neither header (a non-browser client) passes.
//!
//! Login and refresh endpoints are covered too (login CSRF), because the check does not depend on
//! a session being present. Bearer-authenticated requests are exempt: browsers never attach
//! Authorization headers on their own.
//!
//! # Signed double-submit token (optional)
//! For apps that want a token as well, [`CsrfConfig::double_submit_secret`] turns on a signed
//! token bound to the session: [`Auth::csrf_token`](crate::Auth::csrf_token) gives
//! `HMAC-SHA256(secret, SHA-256(session cookie))` (base64url), which the page sends back in the
//! `X-CSRF-Token` header on unsafe requests carrying the session cookie. A missing or wrong token
//! is 403. A cross-site attacker can neither read the cookie nor compute the HMAC.
//!
//! # Rotating the secret
//! `double_submit_secret` is a key list ([`SecretKeys`]): the first key signs, every key
//! verifies. A single string is a list of one. To rotate without refusing the tokens pages
//! already hold, deploy in two steps:
//! 1. put the new secret first and keep the old one second (`["new…", "old…"]`): new tokens are
//!    signed with the new key, tokens signed with the old one still pass;
//! 2. once every page has fetched a fresh token (after the session idle timeout at the latest),
//!    remove the old secret; a token signed with it is then refused (403).
//!
//! ```toml
//! [csrf]
//! double_submit_secret = ["new-secret-of-at-least-32-bytes-…", "old-secret-of-at-least-32-bytes-…"]
//! ```

use http::{HeaderMap, Method, header};

/// CSRF settings. The default: the check on, no trusted origins, no double-submit token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsrfConfig {
    /// Whether the check runs. Default: it does; in code only
    /// [`dangerous::no_csrf_check`](crate::dangerous::no_csrf_check) turns it off (in config,
    /// `enabled = false`), which exposes cookie-authenticated routes to cross-site request
    /// forgery.
    pub enabled: CsrfCheck,
    /// Origins (e.g. `https://app.example.com`) allowed to send unsafe requests in addition to
    /// the request's own origin. Default empty.
    pub trusted_origins: Vec<String>,
    /// Secrets of at least 32 bytes turning on the signed double-submit token (see the
    /// [module docs](self)): one string, or a list of up to 8 whose first signs and every one
    /// verifies (rotation). Default: none (off). Keep them out of logs; `Debug` redacts them.
    #[serde(default)]
    pub double_submit_secret: Option<SecretKeys>,
}

/// Most keys a [`SecretKeys`] list may hold: a failing token is checked against each.
pub const MAX_SECRET_KEYS: usize = 8;

/// A server-side secret as a key list: the first key signs, every key verifies, so a secret
/// rotates without refusing what the old one signed (see [Rotating the
/// secret](self#rotating-the-secret)). Deserializes from one string or a list of strings;
/// `Debug` redacts every key.
///
/// ```
/// use keycard::csrf::{Secret, SecretKeys};
///
/// let keys = SecretKeys::new([Secret("new".repeat(11)), Secret("old".repeat(11))]);
/// assert_eq!(keys.len(), 2);
/// assert_eq!(keys.signing().map(|k| k.0.as_str()), Some("new".repeat(11).as_str()));
/// assert!(!format!("{keys:?}").contains("new"));
/// ```
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct SecretKeys(Vec<Secret>);

impl SecretKeys {
    /// The list `keys`, the first of which signs.
    pub fn new(keys: impl IntoIterator<Item = Secret>) -> Self {
        Self(keys.into_iter().collect())
    }

    /// The signing key: the first one (`None` for an empty list, which validation refuses).
    pub fn signing(&self) -> Option<&Secret> {
        self.0.first()
    }

    /// Every key, the signing one first.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// How many keys the list holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list holds no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the list: 1 to [`MAX_SECRET_KEYS`] keys of at least `min_len` bytes each. Errors
    /// name `field` (and the index of a bad key).
    pub(crate) fn validate(&self, field: &str, min_len: usize) -> Result<(), crate::Error> {
        if self.0.is_empty() || self.0.len() > MAX_SECRET_KEYS {
            return Err(crate::Error::config(
                field,
                format_args!("must hold 1 to {MAX_SECRET_KEYS} secrets"),
            ));
        }
        for (i, key) in self.0.iter().enumerate() {
            if key.0.len() < min_len {
                let at = if self.0.len() == 1 {
                    field.to_owned()
                } else {
                    format!("{field}[{i}]")
                };
                return Err(crate::Error::config(
                    &at,
                    format_args!("must be at least {min_len} bytes"),
                ));
            }
        }
        Ok(())
    }
}

impl From<Secret> for SecretKeys {
    fn from(key: Secret) -> Self {
        Self(vec![key])
    }
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKeys([redacted; {}])", self.0.len())
    }
}

impl<'de> serde::Deserialize<'de> for SecretKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged, expecting = "a secret string or a list of secret strings")]
        enum OneOrMany {
            One(Secret),
            Many(Vec<Secret>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(key) => Self(vec![key]),
            OneOrMany::Many(keys) => Self(keys),
        })
    }
}

/// Whether the CSRF check runs: yes by default;
/// [`dangerous::no_csrf_check`](crate::dangerous::no_csrf_check) is the only way to say no in
/// code. In config it is the boolean `csrf.enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct CsrfCheck(pub(crate) bool);

impl CsrfCheck {
    /// Whether the check runs.
    pub fn is_on(self) -> bool {
        self.0
    }
}

impl Default for CsrfCheck {
    fn default() -> Self {
        Self(true)
    }
}

/// A secret string whose `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The header carrying the double-submit token.
pub const TOKEN_HEADER: &str = "x-csrf-token";

/// The double-submit token for a session cookie value, signed with the first key (`None` for an
/// empty list, or if HMAC refused the key, which it does not for any length).
pub(crate) fn token_for(keys: &SecretKeys, cookie_value: &str) -> Option<String> {
    sign(keys.signing()?, cookie_value)
}

/// The double-submit token for a session cookie value under one key.
fn sign(secret: &Secret, cookie_value: &str) -> Option<String> {
    use base64::Engine;
    use hmac::Mac;
    use sha2::Digest;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.0.as_bytes()).ok()?;
    mac.update(&sha2::Sha256::digest(cookie_value.as_bytes()));
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Whether `presented` is the double-submit token for `cookie_value` under any of the keys
/// (each comparison in constant time).
pub(crate) fn token_matches(keys: &SecretKeys, cookie_value: &str, presented: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    keys.iter().any(|key| {
        sign(key, cookie_value).is_some_and(|expected| {
            expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented))
        })
    })
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) origin: Option<String>,
    pub(crate) fetch_site: Option<String>,
}

impl CsrfConfig {
    /// Validates the settings.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        match &self.double_submit_secret {
            Some(keys) => keys.validate("csrf.double_submit_secret", 32),
            None => Ok(()),
        }
    }

    /// The signed double-submit check for a request carrying the session cookie `cookie_value`
    /// (read only when an unsafe method needs it).
    pub(crate) fn check_token<'v>(
        &self,
        method: &Method,
        headers: &HeaderMap,
        cookie_value: impl FnOnce() -> &'v str,
    ) -> Result<(), Refusal> {
        let Some(secret) = &self.double_submit_secret else {
            return Ok(());
        };
        if !self.enabled.is_on() || is_safe(method) {
            return Ok(());
        }
        match headers.get(TOKEN_HEADER) {
            Some(t) if token_matches(secret, cookie_value(), t.as_bytes()) => Ok(()),
            _ => Err(Refusal {
                origin: None,
                fetch_site: None,
            }),
        }
    }

    /// Checks a request; `Err` when it must be refused.
    pub(crate) fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.enabled.is_on() || is_safe(method) {
            return Ok(());
        }
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().map_err(|_| ()));
        let fetch_site = headers
            .get("sec-fetch-site")
            .map(|v| v.to_str().map_err(|_| ()));
        let refusal = || Refusal {
            origin: origin
                .and_then(|o| o.ok())
                .map(|s| s.chars().take(200).collect()),
            fetch_site: fetch_site
                .and_then(|o| o.ok())
                .map(|s| s.chars().take(40).collect()),
        };
        let trusted = |o: &str| self.trusted_origins.iter().any(|t| t == o);
        match fetch_site {
            Some(Ok("same-origin" | "none")) => return Ok(()),
            Some(Ok("same-site" | "cross-site")) => {
                return match origin {
                    Some(Ok(o)) if trusted(o) => Ok(()),
                    _ => Err(refusal()),
                };
            }
            Some(_) => return Err(refusal()),
            None => {}
        }
        match origin {
            None => Ok(()),
            Some(Ok(o)) if o != "null" && (trusted(o) || same_as_host(o, headers)) => Ok(()),
            Some(_) => Err(refusal()),
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether `origin` (`scheme://host[:port]`) names the same host and port as the request's
/// `Host` header. The scheme is not compared: behind a TLS-terminating proxy the app cannot see it.
fn same_as_host(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    normalise(authority, default_port) == normalise(host, default_port)
}

fn normalise(authority: &str, default_port: &str) -> (String, String) {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => (authority, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = port.filter(|p| !p.is_empty()).unwrap_or(default_port);
    (host.to_ascii_lowercase(), port.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn fetch_metadata_decides_first() {
        let c = CsrfConfig::default();
        let post = Method::POST;
        assert!(
            c.check(&post, &h(&[("sec-fetch-site", "same-origin")]))
                .is_ok()
        );
        assert!(c.check(&post, &h(&[("sec-fetch-site", "none")])).is_ok());
        assert!(
            c.check(&post, &h(&[("sec-fetch-site", "cross-site")]))
                .is_err()
        );
        assert!(
            c.check(&post, &h(&[("sec-fetch-site", "same-site")]))
                .is_err()
        );
        assert!(
            c.check(&Method::GET, &h(&[("sec-fetch-site", "cross-site")]))
                .is_ok()
        );
    }

    #[test]
    fn origin_is_compared_with_host() {
        let c = CsrfConfig::default();
        let post = Method::POST;
        assert!(
            c.check(
                &post,
                &h(&[
                    ("origin", "http://localhost:3000"),
                    ("host", "localhost:3000")
                ])
            )
            .is_ok()
        );
        assert!(
            c.check(
                &post,
                &h(&[
                    ("origin", "http://127.0.0.1:3000"),
                    ("host", "localhost:3000")
                ])
            )
            .is_err()
        );
        assert!(
            c.check(&post, &h(&[("origin", "null"), ("host", "localhost")]))
                .is_err()
        );
        assert!(
            c.check(
                &post,
                &h(&[("origin", "https://example.com"), ("host", "example.com")])
            )
            .is_ok()
        );
        assert!(c.check(&post, &h(&[("host", "example.com")])).is_ok());
    }

    fn key(c: char) -> Secret {
        Secret(c.to_string().repeat(32))
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let old = SecretKeys::from(key('o'));
        let token = token_for(&old, "cookie").unwrap();
        // Rotation: the new key first, the old one second.
        let rotated = SecretKeys::new([key('n'), key('o')]);
        assert!(token_matches(&rotated, "cookie", token.as_bytes()));
        let fresh = token_for(&rotated, "cookie").unwrap();
        assert_ne!(fresh, token, "the new key signs");
        assert!(token_matches(&rotated, "cookie", fresh.as_bytes()));
        assert!(!token_matches(&old, "cookie", fresh.as_bytes()));
        // The old key removed: what it signed is refused.
        let removed = SecretKeys::from(key('n'));
        assert!(!token_matches(&removed, "cookie", token.as_bytes()));
        assert!(token_matches(&removed, "cookie", fresh.as_bytes()));
        assert!(!token_matches(&rotated, "other", token.as_bytes()));
    }

    #[test]
    fn secret_lists_parse_from_a_string_or_a_list_and_are_checked() {
        #[derive(serde::Deserialize)]
        struct C {
            csrf: CsrfConfig,
        }
        let one = "a".repeat(32);
        let c: C = toml::from_str(&format!("[csrf]\ndouble_submit_secret = \"{one}\"")).unwrap();
        assert_eq!(c.csrf.double_submit_secret, Some(key('a').into()));
        let two = format!(
            "[csrf]\ndouble_submit_secret = [\"{one}\", \"{}\"]",
            "b".repeat(32)
        );
        let c: C = toml::from_str(&two).unwrap();
        let keys = c.csrf.double_submit_secret.clone().unwrap();
        assert_eq!(keys, SecretKeys::new([key('a'), key('b')]));
        assert!(c.csrf.validate().is_ok());
        assert!(!format!("{keys:?}").contains(&one));

        let short = CsrfConfig {
            double_submit_secret: Some(SecretKeys::new([key('a'), Secret("short".into())])),
            ..CsrfConfig::default()
        };
        let err = short.validate().unwrap_err();
        assert!(
            err.message().contains("csrf.double_submit_secret[1]"),
            "{err}"
        );
        let empty = CsrfConfig {
            double_submit_secret: Some(SecretKeys::new([])),
            ..CsrfConfig::default()
        };
        assert!(empty.validate().is_err());
        let many = CsrfConfig {
            double_submit_secret: Some(SecretKeys::new((0..9).map(|_| key('a')))),
            ..CsrfConfig::default()
        };
        assert!(many.validate().is_err());
    }

    #[test]
    fn trusted_origins_pass() {
        let c = CsrfConfig {
            trusted_origins: vec!["https://app.example.com".into()],
            ..CsrfConfig::default()
        };
        let hs = h(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://app.example.com"),
        ]);
        assert!(c.check(&Method::DELETE, &hs).is_ok());
    }
}
