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
    /// A secret of at least 32 bytes turning on the signed double-submit token (see the
    /// [module docs](self)). Default: none (off). Keep it out of logs; `Debug` redacts it.
    #[serde(default)]
    pub double_submit_secret: Option<Secret>,
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

/// The double-submit token for a session cookie value (`None` only if HMAC refused the key,
/// which it does not for any length).
pub(crate) fn token_for(secret: &Secret, cookie_value: &str) -> Option<String> {
    use base64::Engine;
    use hmac::Mac;
    use sha2::Digest;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.0.as_bytes()).ok()?;
    mac.update(&sha2::Sha256::digest(cookie_value.as_bytes()));
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Whether `presented` is the double-submit token for `cookie_value` (constant time).
pub(crate) fn token_matches(secret: &Secret, cookie_value: &str, presented: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    token_for(secret, cookie_value).is_some_and(|expected| {
        expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented))
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
            Some(s) if s.0.len() < 32 => Err(crate::Error::config(
                "csrf.double_submit_secret",
                "must be at least 32 bytes",
            )),
            _ => Ok(()),
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
