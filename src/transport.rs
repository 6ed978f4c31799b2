//! Where credentials travel: the session cookie and the `Authorization: Bearer` header.
//!
//! Reading is strict and allocation-free: the credential is kept as a slice of the original header
//! value (a reference-counted buffer), the cookie name matches byte for byte (no percent-decoding,
//! no case folding), and oversized input is refused before any decoding.
//!
//! # Security
//! - Two session cookies with the configured name are ambiguous and rejected (401), never guessed.
//! - A Bearer header next to a session cookie is ambiguous and rejected (400) for strategies that
//!   accept both.
//! - Credentials are never read from the query string.
//!
//! # Cookie scope
//! By default the session cookie is `__Host-keycard`: `Secure`, `Path=/` and no `Domain`, so the
//! browser sends it to the exact host that set it and no other host (not even a subdomain) can
//! set or overwrite it. Sharing one login across subdomains is an explicit opt-in: `cookie.domain
//! = "example.com"` in config, [`TransportSettings::shared_with`] in code. The cookie is then
//! named `__Secure-keycard` (a `__Host-` cookie cannot carry `Domain`) and sent with
//! `Domain=example.com` to `example.com` and every subdomain.
//!
//! What it costs: every host under the domain receives the session token, so any of them that
//! is compromised or serves untrusted content (user pages, a third-party status page) can read
//! or plant session cookies (cookie tossing). Share only across hosts you run. Refused at start,
//! with a config error naming the field: cookies without `Secure`, a `__Host-` name with a
//! domain, a name without the `__Secure-` prefix, and a domain that is not a plain host name (a
//! leading dot, an IP address, a single label such as `com`, a port, a scheme, upper case).
//! A public suffix (`co.uk`) is not detected; browsers refuse such cookies.

use std::{ops::Range, time::Duration};

use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue, header};

use crate::{
    credential::{Credential, CredentialSource},
    error::{Error, ErrorKind},
};

/// Cookie names and attributes, and input limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSettings {
    /// Name of the session cookie (server sessions) or access-token cookie (JWT with cookie
    /// transport). Default `__Host-keycard`.
    pub cookie_name: String,
    /// Whether the session/access cookie is read at all (always for server sessions; opt-in for
    /// JWT).
    pub read_cookie: bool,
    /// Whether `Authorization: Bearer` is read (JWT and hybrid).
    pub read_bearer: bool,
    /// Name of the refresh-token cookie, when refresh tokens travel in a cookie. Default
    /// `__Secure-keycard-refresh`.
    pub refresh_cookie_name: Option<String>,
    /// Path the refresh cookie is scoped to. Default `/refresh`.
    pub refresh_cookie_path: String,
    /// Whether cookies carry `Secure`. Default: they do; only
    /// [`dangerous::insecure_cookies`](crate::dangerous::insecure_cookies) turns it off.
    pub secure: CookieSecurity,
    /// `Domain` of the session (or access-token) cookie, to share it across subdomains. Default:
    /// none, a host-only `__Host-` cookie. Set it with [`TransportSettings::shared_with`], which
    /// also switches the name to the `__Secure-` prefix; see [Cookie
    /// scope](self#cookie-scope) for what it costs and what is refused at start.
    pub cookie_domain: Option<String>,
    /// Largest `Authorization` header accepted, in bytes. Default 8192.
    pub max_authorization_bytes: usize,
    /// Largest session cookie value accepted, in bytes. Default 4096.
    pub max_cookie_bytes: usize,
    /// Most cookies scanned in a request; more is refused (431). Default 150.
    pub max_cookies: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            cookie_name: "__Host-keycard".into(),
            read_cookie: true,
            read_bearer: false,
            refresh_cookie_name: None,
            refresh_cookie_path: "/refresh".into(),
            secure: CookieSecurity::default(),
            cookie_domain: None,
            max_authorization_bytes: 8192,
            max_cookie_bytes: 4096,
            max_cookies: 150,
        }
    }
}

impl TransportSettings {
    /// Shares the session cookie with every subdomain of `domain` (`Domain=domain`): a
    /// `__Host-` cookie name becomes `__Secure-` (a `__Host-` cookie cannot carry `Domain`).
    /// [`Keycard`](crate::Keycard)'s builder refuses the result when `domain` is not a plain
    /// registrable host name or cookies are not `Secure` (see [Cookie scope](self#cookie-scope)).
    ///
    /// ```
    /// use keycard::transport::TransportSettings;
    ///
    /// let t = TransportSettings::default().shared_with("example.com");
    /// assert_eq!(t.cookie_name, "__Secure-keycard");
    /// assert_eq!(t.cookie_domain.as_deref(), Some("example.com"));
    /// ```
    pub fn shared_with(mut self, domain: impl Into<String>) -> Self {
        if let Some(rest) = self.cookie_name.strip_prefix("__Host-") {
            self.cookie_name = format!("__Secure-{rest}");
        }
        self.cookie_domain = Some(domain.into());
        self
    }
}

/// Checks a cookie `Domain` (`cookie.domain`): a lowercase host name of at least two labels
/// (letters, digits, hyphens; no label longer than 63 bytes, none starting or ending with a
/// hyphen; at most 253 bytes), not an IP address, with no leading or trailing dot, no port, no
/// scheme and no path. The reason when it is not.
pub(crate) fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.starts_with('.') {
        return Err(
            "no leading dot: write `example.com` (a Domain cookie already covers every subdomain)",
        );
    }
    if domain.ends_with('.') {
        return Err("no trailing dot");
    }
    if domain.is_empty() || domain.len() > 253 {
        return Err("must be a host name of 1 to 253 bytes");
    }
    if domain.parse::<std::net::IpAddr>().is_ok() || domain.starts_with('[') {
        return Err("must be a host name, not an IP address (an IP host cannot share cookies)");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("must have at least two labels (a top-level domain cannot hold cookies)");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !labels.iter().all(|l| label_ok(l)) {
        return Err(
            "must be a lowercase host name (letters, digits, hyphens; punycode for IDNs), without scheme, port or path",
        );
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("must be a host name, not an IP address");
    }
    Ok(())
}

/// Whether cookies carry the `Secure` attribute: yes by default;
/// [`dangerous::insecure_cookies`](crate::dangerous::insecure_cookies) is the only way to say no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieSecurity(pub(crate) bool);

impl CookieSecurity {
    /// Whether cookies carry `Secure`.
    pub fn is_on(self) -> bool {
        self.0
    }
}

impl Default for CookieSecurity {
    fn default() -> Self {
        Self(true)
    }
}

/// A credential located in a request, kept as a cheap clone of the header it came from.
#[derive(Clone)]
pub(crate) struct Located {
    header: HeaderValue,
    range: Range<usize>,
    pub(crate) source: CredentialSource,
}

impl Located {
    pub(crate) fn value(&self) -> &str {
        // The header passed `to_str` (visible ASCII) when located, so this cannot fail; an empty
        // string is returned defensively rather than panicking.
        std::str::from_utf8(&self.header.as_bytes()[self.range.clone()]).unwrap_or("")
    }

    /// Whether the value has the syntax its transport requires: an RFC 6750 `b64token` for a
    /// Bearer credential (checked lazily, see [`locate_bearer`]); cookie values were checked
    /// when located.
    pub(crate) fn is_well_formed(&self) -> bool {
        self.source != CredentialSource::Bearer
            || is_b64token(&self.header.as_bytes()[self.range.clone()])
    }

    pub(crate) fn credential(&self) -> Credential<'_> {
        Credential {
            value: self.value(),
            source: self.source,
        }
    }
}

/// What the transport found in a request.
#[derive(Clone, Default)]
pub(crate) struct Found {
    /// The primary credential, or why the request's credentials are unusable.
    pub(crate) credential: Option<Result<Located, ErrorKind>>,
    /// The refresh cookie, when configured and present exactly once.
    pub(crate) refresh: Option<Located>,
}

/// Reads the credentials from request headers.
///
/// # Errors
/// [`ErrorKind::TooLarge`] when a limit is exceeded: the request is refused outright.
pub(crate) fn read(settings: &TransportSettings, headers: &HeaderMap) -> Result<Found, Error> {
    let mut found = Found::default();
    let bearer = if settings.read_bearer {
        read_bearer(settings, headers)?
    } else {
        None
    };
    let mut cookie: Option<Result<Located, ErrorKind>> = None;
    let mut refresh_seen = 0usize;
    let mut scanned = 0usize;
    let want_cookie = settings.read_cookie;
    let refresh_name = settings.refresh_cookie_name.as_deref();
    if want_cookie || refresh_name.is_some() {
        for value in headers.get_all(header::COOKIE) {
            // Bytes, not `to_str`: a cookie of another application with non-ASCII bytes must not
            // hide the session cookie. The value found is checked when it is read.
            let bytes = value.as_bytes();
            let mut start = 0usize;
            while start <= bytes.len() {
                let end = memchr::memchr(b';', &bytes[start..]).map_or(bytes.len(), |i| start + i);
                let pair = (start, end);
                start = end + 1;
                scanned += 1;
                if scanned > settings.max_cookies {
                    return Err(Error::with_message(
                        ErrorKind::TooLarge,
                        "too many cookies in the request",
                    ));
                }
                let Some((name, range)) = cookie_pair(bytes, pair) else {
                    continue;
                };
                if want_cookie && name == settings.cookie_name.as_bytes() {
                    if range.len() > settings.max_cookie_bytes {
                        return Err(Error::with_message(
                            ErrorKind::TooLarge,
                            "the session cookie is too large",
                        ));
                    }
                    cookie = Some(match cookie {
                        None => Ok(Located {
                            header: value.clone(),
                            range,
                            source: CredentialSource::Cookie,
                        }),
                        // A second session cookie: ambiguous, rejected as invalid.
                        Some(_) => Err(ErrorKind::InvalidCredential),
                    });
                } else if refresh_name.is_some_and(|r| name == r.as_bytes()) {
                    refresh_seen += 1;
                    if range.len() <= settings.max_cookie_bytes {
                        found.refresh = Some(Located {
                            header: value.clone(),
                            range,
                            source: CredentialSource::Cookie,
                        });
                    }
                }
            }
        }
    }
    if refresh_seen > 1 {
        found.refresh = None;
    }
    found.credential = match (bearer, cookie) {
        (None, c) => c,
        (Some(b), None) => Some(b),
        (Some(_), Some(_)) => Some(Err(ErrorKind::MalformedRequest)),
    };
    Ok(found)
}

/// One `name=value` pair of a `Cookie` header, between byte offsets `start..end`, with spaces
/// and tabs around it trimmed: the name, and the value's range in the whole header.
fn cookie_pair(
    bytes: &[u8],
    (mut start, mut end): (usize, usize),
) -> Option<(&[u8], Range<usize>)> {
    let blank = |b: u8| b == b' ' || b == b'\t';
    while start < end && blank(bytes[start]) {
        start += 1;
    }
    while end > start && blank(bytes[end - 1]) {
        end -= 1;
    }
    let eq = memchr::memchr(b'=', &bytes[start..end])? + start;
    Some((&bytes[start..eq], eq + 1..end))
}

fn read_bearer(
    settings: &TransportSettings,
    headers: &HeaderMap,
) -> Result<Option<Result<Located, ErrorKind>>, Error> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if value.len() > settings.max_authorization_bytes {
        return Err(Error::with_message(
            ErrorKind::TooLarge,
            "the Authorization header is too large",
        ));
    }
    if values.next().is_some() {
        return Ok(Some(Err(ErrorKind::MalformedRequest)));
    }
    Ok(locate_bearer(value.as_bytes()).map(|r| {
        r.map(|range| Located {
            header: value.clone(),
            range,
            source: CredentialSource::Bearer,
        })
    }))
}

/// Parses an `Authorization` value per RFC 6750 §2.1: `Bearer` (any case), one or more spaces,
/// then a `b64token`. Returns `None` for other schemes, the token's byte range when well formed,
/// and [`ErrorKind::MalformedRequest`] when the scheme is Bearer but the rest is not.
pub(crate) fn parse_bearer(value: &[u8]) -> Option<Result<Range<usize>, ErrorKind>> {
    locate_bearer(value).map(|r| {
        r.and_then(|range| {
            if is_b64token(&value[range.clone()]) {
                Ok(range)
            } else {
                Err(ErrorKind::MalformedRequest)
            }
        })
    })
}

/// [`parse_bearer`] without the `b64token` character check, which the layer defers: a token the
/// strategy accepts is well formed (a verified JWT, a cached one, an opaque ID), so the check
/// runs only when the strategy refuses one, to answer 400 rather than 401 for a malformed value
/// ([`Located::is_well_formed`]). This keeps a per-byte scan off the hot path.
fn locate_bearer(value: &[u8]) -> Option<Result<Range<usize>, ErrorKind>> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    if rest.is_empty() {
        return Some(Err(ErrorKind::MalformedRequest));
    }
    if rest[0] != b' ' {
        // e.g. "Bearerx": another scheme that merely starts with "bearer".
        return if rest[0].is_ascii_alphanumeric() || rest[0] == b'-' {
            None
        } else {
            Some(Err(ErrorKind::MalformedRequest))
        };
    }
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    let start = SCHEME.len() + spaces;
    if start == value.len() {
        return Some(Err(ErrorKind::MalformedRequest));
    }
    Some(Ok(start..value.len()))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    // Branch-free over the body (`=` is not a body character, so padding inside it fails): a
    // bitwise fold the compiler unrolls, instead of a byte-at-a-time early-exit scan.
    !body.is_empty()
        && body
            .iter()
            .fold(true, |ok, &b| ok & B64TOKEN[usize::from(b)])
}

/// The `b64token` body characters, as a lookup table (this runs over every Bearer token).
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || b == b'-'
            || b == b'.'
            || b == b'_'
            || b == b'~'
            || b == b'+'
            || b == b'/';
        i += 1;
    }
    table
};

/// A cookie to send.
pub(crate) fn set_cookie(
    settings: &TransportSettings,
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<Duration>,
) -> Option<HeaderValue> {
    let mut c = Cookie::build((name, value))
        .http_only(true)
        .secure(settings.secure.is_on())
        .same_site(SameSite::Lax)
        .path(path);
    if let Some(age) = max_age {
        let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    if let Some(domain) = domain_of(settings, name) {
        c = c.domain(domain);
    }
    HeaderValue::from_str(&c.build().to_string()).ok()
}

/// The `Domain` of cookie `name`: the configured one for the session cookie only (the refresh
/// cookie stays host-only).
fn domain_of<'s>(settings: &'s TransportSettings, name: &str) -> Option<&'s str> {
    settings
        .cookie_domain
        .as_deref()
        .filter(|_| name == settings.cookie_name)
}

/// A removal cookie carrying the same attributes as the one it removes.
pub(crate) fn removal_cookie(
    settings: &TransportSettings,
    name: &str,
    path: &str,
) -> Option<HeaderValue> {
    let mut c = Cookie::build((name, ""))
        .http_only(true)
        .secure(settings.secure.is_on())
        .same_site(SameSite::Lax)
        .path(path)
        .max_age(cookie::time::Duration::ZERO)
        .expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    if let Some(domain) = domain_of(settings, name) {
        c = c.domain(domain);
    }
    HeaderValue::from_str(&c.build().to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn cookie_value(found: &Found) -> Option<Result<String, ErrorKind>> {
        found
            .credential
            .as_ref()
            .map(|r| r.as_ref().map(|l| l.value().to_owned()).map_err(|e| *e))
    }

    #[test]
    fn bearer_parsing_follows_rfc6750() {
        let ok = |v: &str| parse_bearer(v.as_bytes()).unwrap().unwrap();
        assert_eq!(
            &"Bearer abc.def-ghi"[ok("Bearer abc.def-ghi")],
            "abc.def-ghi"
        );
        assert_eq!(&"bEaReR   tok=="[ok("bEaReR   tok==")], "tok==");
        assert!(parse_bearer(b"Basic dXNlcjpwYXNz").is_none());
        assert!(parse_bearer(b"Bearerish x").is_none());
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a=b",
            "Bearer\ttok",
            "Bearer ;",
        ] {
            assert_eq!(
                parse_bearer(bad.as_bytes()),
                Some(Err(ErrorKind::MalformedRequest)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cookie_name_matches_byte_for_byte() {
        let s = TransportSettings::default();
        let f = read(&s, &headers(&[("cookie", "a=1; __Host-keycard=tok; b=2")])).unwrap();
        assert_eq!(cookie_value(&f), Some(Ok("tok".into())));
        for other in [
            "__host-keycard=tok",
            "__Host-keycard%20=tok",
            "%5F_Host-keycard=tok",
        ] {
            let f = read(&s, &headers(&[("cookie", other)])).unwrap();
            assert!(f.credential.is_none(), "{other}");
        }
    }

    #[test]
    fn other_cookies_with_non_ascii_bytes_do_not_hide_the_session_cookie() {
        let s = TransportSettings::default();
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xc3\xa9; __Host-keycard=tok ;x=1").unwrap(),
        );
        let f = read(&s, &h).unwrap();
        assert_eq!(cookie_value(&f), Some(Ok("tok".into())));
    }

    #[test]
    fn duplicate_session_cookies_are_rejected() {
        let s = TransportSettings::default();
        let f = read(
            &s,
            &headers(&[("cookie", "__Host-keycard=a; __Host-keycard=b")]),
        )
        .unwrap();
        assert_eq!(cookie_value(&f), Some(Err(ErrorKind::InvalidCredential)));
        let f = read(
            &s,
            &headers(&[
                ("cookie", "__Host-keycard=a"),
                ("cookie", "__Host-keycard=a"),
            ]),
        )
        .unwrap();
        assert_eq!(cookie_value(&f), Some(Err(ErrorKind::InvalidCredential)));
    }

    #[test]
    fn limits_are_enforced_before_decoding() {
        let s = TransportSettings::default();
        let many = (0..300)
            .map(|i| format!("c{i}=v"))
            .collect::<Vec<_>>()
            .join("; ");
        let err = read(&s, &headers(&[("cookie", &many)])).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        let big = format!("__Host-keycard={}", "a".repeat(5000));
        assert_eq!(
            read(&s, &headers(&[("cookie", &big)]))
                .err()
                .unwrap()
                .kind(),
            ErrorKind::TooLarge
        );
        let bearer = TransportSettings {
            read_bearer: true,
            ..TransportSettings::default()
        };
        let huge = format!("Bearer {}", "a".repeat(9000));
        assert_eq!(
            read(&bearer, &headers(&[("authorization", &huge)]))
                .err()
                .unwrap()
                .kind(),
            ErrorKind::TooLarge
        );
    }

    #[test]
    fn bearer_and_cookie_together_are_ambiguous() {
        let s = TransportSettings {
            read_bearer: true,
            ..TransportSettings::default()
        };
        let f = read(
            &s,
            &headers(&[
                ("authorization", "Bearer abc"),
                ("cookie", "__Host-keycard=x"),
            ]),
        )
        .unwrap();
        assert_eq!(cookie_value(&f), Some(Err(ErrorKind::MalformedRequest)));
        let f = read(
            &s,
            &headers(&[
                ("authorization", "Bearer abc"),
                ("authorization", "Bearer abc"),
            ]),
        )
        .unwrap();
        assert_eq!(cookie_value(&f), Some(Err(ErrorKind::MalformedRequest)));
    }

    #[test]
    fn cookies_carry_secure_defaults() {
        let s = TransportSettings::default();
        let v = set_cookie(
            &s,
            "__Host-keycard",
            "tok",
            "/",
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        let v = v.to_str().unwrap();
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(v.contains(attr), "{v} lacks {attr}");
        }
        assert!(!v.contains("Domain"));
        let r = removal_cookie(&s, "__Host-keycard", "/").unwrap();
        let r = r.to_str().unwrap();
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=0"] {
            assert!(r.contains(attr), "{r} lacks {attr}");
        }
    }
}
