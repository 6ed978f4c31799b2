//! Errors and their mapping to HTTP responses.
//!
//! keycard has one opaque [`Error`] type carrying a [`#[non_exhaustive]`](ErrorKind) kind and,
//! where there is one, the underlying source. Third-party errors (sqlx, redis, aws-lc-rs, reqwest) are
//! mapped into these kinds and kept as sources; they are never flattened to strings.
//!
//! An [`Error`] is also an axum response: [`Error::status`] gives the status code and the response
//! carries a `WWW-Authenticate` challenge where the kind calls for one.

use std::{borrow::Cow, fmt};

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, without the details.
///
/// Marked `#[non_exhaustive]`: new kinds may be added in minor releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No credential was presented on a route that needs one (401).
    MissingCredential,
    /// A credential was presented but is unknown, forged, tampered with or malformed in content
    /// (401, `invalid_token`).
    InvalidCredential,
    /// The credential was valid once but has expired (idle or absolute timeout, `exp`) (401).
    Expired,
    /// The credential was revoked (logout, revoke-all, denylist, epoch, refresh reuse) (401).
    Revoked,
    /// The request carries credentials in a shape the layer refuses to interpret: two session
    /// cookies, a Bearer header next to a session cookie, a malformed `Authorization` header
    /// (400, `invalid_request`).
    MalformedRequest,
    /// A credential or header is larger than the configured limit (431 for oversized headers).
    TooLarge,
    /// The principal lacks a required role (403, `insufficient_scope`).
    Forbidden,
    /// A cross-site request was refused by CSRF protection (403).
    CsrfRejected,
    /// The authentication is older than the route allows; re-authenticate (401,
    /// `insufficient_user_authentication`, RFC 9470).
    StepUpRequired,
    /// A refresh token is unknown, expired, revoked or was reused (401 `invalid_grant` in JSON).
    InvalidGrant,
    /// Session data was refused: a key longer than
    /// [`DataLimits::max_key_bytes`](crate::store::DataLimits::max_key_bytes), or a value that
    /// cannot be stored as JSON (400, `invalid_data`).
    InvalidData,
    /// Session data would exceed its [`DataLimits`](crate::store::DataLimits) (a value or the
    /// session's total); nothing was saved (413, `payload_too_large`).
    PayloadTooLarge,
    /// The per-subject session limit is reached and the policy is to refuse new sessions (403).
    SessionLimit,
    /// The session to act on does not exist or belongs to someone else (404).
    NotFound,
    /// The session or key store is unreachable, failing or slower than its timeout (503).
    StoreUnavailable,
    /// Too many attempts (login throttling): try again after the error's
    /// [`retry_after`](Error::retry_after) (429, `too_many_attempts`, with `Retry-After`).
    TooManyAttempts,
    /// The configuration is invalid; raised at start-up only.
    Config,
    /// [`SessionLayer`](crate::SessionLayer) is not installed on this route (500).
    MissingLayer,
    /// An internal invariant failed (500). Never caused by request input.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind maps to.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingCredential
            | Self::InvalidCredential
            | Self::Expired
            | Self::Revoked
            | Self::StepUpRequired
            | Self::InvalidGrant => StatusCode::UNAUTHORIZED,
            Self::MalformedRequest | Self::InvalidData => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Forbidden | Self::CsrfRejected | Self::SessionLimit => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Self::Config | Self::MissingLayer | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, stable, machine-readable code (used in JSON bodies and `WWW-Authenticate`).
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingCredential => "unauthenticated",
            Self::InvalidCredential | Self::Expired | Self::Revoked => "invalid_token",
            Self::MalformedRequest => "invalid_request",
            Self::InvalidData => "invalid_data",
            Self::PayloadTooLarge => "payload_too_large",
            Self::TooLarge => "request_header_too_large",
            Self::Forbidden => "insufficient_scope",
            Self::CsrfRejected => "csrf_rejected",
            Self::StepUpRequired => "insufficient_user_authentication",
            Self::InvalidGrant => "invalid_grant",
            Self::SessionLimit => "session_limit",
            Self::NotFound => "not_found",
            Self::StoreUnavailable => "temporarily_unavailable",
            Self::TooManyAttempts => "too_many_attempts",
            Self::Config => "config",
            Self::MissingLayer => "missing_layer",
            Self::Internal => "internal",
        }
    }

    fn default_message(self) -> &'static str {
        match self {
            Self::MissingCredential => "authentication required",
            Self::InvalidCredential => "the credential is invalid",
            Self::Expired => "the credential has expired",
            Self::Revoked => "the credential has been revoked",
            Self::MalformedRequest => "the request carries malformed or ambiguous credentials",
            Self::InvalidData => "the session data key or value is invalid",
            Self::PayloadTooLarge => "the session data is over its size limit",
            Self::TooLarge => "a credential header is too large",
            Self::Forbidden => "the principal lacks a required role",
            Self::CsrfRejected => "cross-site request refused",
            Self::StepUpRequired => "re-authentication is needed for this operation",
            Self::InvalidGrant => "the refresh token is invalid",
            Self::SessionLimit => "the session limit for this subject is reached",
            Self::NotFound => "no such session",
            Self::StoreUnavailable => "the session store is unavailable",
            Self::TooManyAttempts => "too many attempts; try again later",
            Self::Config => "invalid configuration",
            Self::MissingLayer => {
                "keycard's SessionLayer is missing: add `keycard.layer()` to the router"
            }
            Self::Internal => "internal error",
        }
    }
}

/// keycard's error: an opaque kind, a message and an optional source.
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
    retry_after: Option<std::time::Duration>,
}

impl Error {
    /// An error of `kind` with its default message.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            message: Cow::Borrowed(kind.default_message()),
            source: None,
            retry_after: None,
        }
    }

    /// An error of `kind` with a message. The message must not contain a secret.
    pub fn with_message(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            retry_after: None,
        }
    }

    /// Attaches a source.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A configuration error naming the offending field.
    pub fn config(field: &str, problem: impl fmt::Display) -> Self {
        Self::with_message(
            ErrorKind::Config,
            format!("invalid config `{field}`: {problem}"),
        )
    }

    /// Sets how long the client should wait before trying again; the response carries it as
    /// `Retry-After` (whole seconds, rounded up).
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// How long the client should wait before trying again, when known
    /// ([`ErrorKind::TooManyAttempts`]).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The human-readable message (never contains a secret).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

/// The challenge scheme to put in `WWW-Authenticate` on a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Bearer realm="keycard", error="…"` (RFC 6750).
    Bearer,
    /// `Cookie realm="keycard"` for cookie-only strategies.
    Cookie,
}

impl Error {
    pub(crate) fn into_response_with(self, challenge: Challenge) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(kind = ?self.kind, error = ?self, "keycard request failed");
        } else {
            tracing::debug!(kind = ?self.kind, message = %self.message, "keycard rejected request");
        }
        let body = serde_json::json!({
            "error": self.kind.code(),
            "error_description": self.message,
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        let challenged = status == StatusCode::UNAUTHORIZED
            || self.kind == ErrorKind::Forbidden
            || (self.kind == ErrorKind::MalformedRequest && challenge == Challenge::Bearer);
        if challenged && let Ok(v) = HeaderValue::from_str(&challenge_value(challenge, self.kind)) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

fn challenge_value(challenge: Challenge, kind: ErrorKind) -> String {
    match (challenge, kind) {
        (Challenge::Bearer, ErrorKind::MissingCredential) => r#"Bearer realm="keycard""#.into(),
        (Challenge::Cookie, ErrorKind::MissingCredential) => r#"Cookie realm="keycard""#.into(),
        (Challenge::Bearer, kind) => format!(
            r#"Bearer realm="keycard", error="{}", error_description="{}""#,
            kind.code(),
            kind.default_message()
        ),
        (Challenge::Cookie, kind) => {
            format!(r#"Cookie realm="keycard", error="{}""#, kind.code())
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.into_response_with(Challenge::Bearer)
    }
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(ErrorKind::MissingCredential.status(), 401);
        assert_eq!(ErrorKind::MalformedRequest.status(), 400);
        assert_eq!(ErrorKind::Forbidden.status(), 403);
        assert_eq!(ErrorKind::StoreUnavailable.status(), 503);
        assert_eq!(ErrorKind::MissingLayer.status(), 500);
    }

    #[test]
    fn step_up_challenge_names_rfc9470_error() {
        let resp = Error::new(ErrorKind::StepUpRequired).into_response_with(Challenge::Bearer);
        let www = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            www.contains(r#"error="insufficient_user_authentication""#),
            "{www}"
        );
        assert_eq!(resp.status(), 401);
    }
}
