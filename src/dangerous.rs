//! Settings that weaken one of keycard's secure defaults. Each is a call whose name says so (as
//! jsonwebtoken's `dangerous`), so that one search finds every weakened default in a code base.
//!
//! The configuration file can weaken the same defaults (`cookie.secure = false`,
//! `csrf.enabled = false`); those keys document the risk where they are read.
//!
//! # Example
//! ```
//! use keycard::{csrf::CsrfConfig, dangerous, transport::TransportSettings};
//!
//! // Plain-HTTP development on a host other than `localhost`: cookies without `Secure`, which
//! // also rules out the `__Host-` name prefix.
//! let transport = TransportSettings {
//!     cookie_name: "keycard".into(),
//!     secure: dangerous::insecure_cookies(),
//!     ..TransportSettings::default()
//! };
//! // An API that takes no cookie-authenticated unsafe requests from browsers.
//! let csrf = CsrfConfig { enabled: dangerous::no_csrf_check(), ..CsrfConfig::default() };
//! # let _ = (transport, csrf);
//! ```

use crate::{csrf::CsrfCheck, transport::CookieSecurity};

/// Cookies without the `Secure` attribute: a session cookie then travels over plain HTTP, where
/// anyone on the path can read it. For plain-HTTP development only; a cookie name with the
/// `__Host-` or `__Secure-` prefix is refused with it at start.
pub fn insecure_cookies() -> CookieSecurity {
    CookieSecurity(false)
}

/// No CSRF check (Fetch Metadata, `Origin`, double-submit token) on cookie-authenticated unsafe
/// requests: any site the user visits can then make the browser act with the user's session.
pub fn no_csrf_check() -> CsrfCheck {
    CsrfCheck(false)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method, header};

    use super::*;
    use crate::{
        csrf::CsrfConfig,
        transport::{self, TransportSettings},
    };

    #[test]
    fn insecure_cookies_drop_secure_and_nothing_else() {
        let secure = TransportSettings::default();
        let insecure = TransportSettings {
            cookie_name: "keycard".into(),
            secure: insecure_cookies(),
            ..TransportSettings::default()
        };
        let on = transport::set_cookie(&secure, "__Host-keycard", "v", "/", None).unwrap();
        let off = transport::set_cookie(&insecure, "keycard", "v", "/", None).unwrap();
        assert!(on.to_str().unwrap().contains("Secure"));
        let off = off.to_str().unwrap();
        assert!(!off.contains("Secure"), "{off}");
        assert!(
            off.contains("HttpOnly") && off.contains("SameSite=Lax"),
            "{off}"
        );
    }

    #[test]
    fn no_csrf_check_lets_a_cross_site_post_through() {
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        headers.insert(header::HOST, HeaderValue::from_static("app.example"));
        assert!(
            CsrfConfig::default()
                .check(&Method::POST, &headers)
                .is_err()
        );
        let off = CsrfConfig {
            enabled: no_csrf_check(),
            ..CsrfConfig::default()
        };
        assert!(off.check(&Method::POST, &headers).is_ok());
    }
}
