//! The request vocabulary: the credential a request carries, facts about the client, and the
//! credentials a strategy issues. Every other module speaks it; it depends on nothing above it.

use std::{
    fmt,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use crate::{principal::Principal, token::OpaqueToken};

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// The session (or access-token) cookie.
    Cookie,
    /// `Authorization: Bearer`.
    Bearer,
}

/// A credential presented by the client, borrowed from the request. Its `Debug` is redacted.
#[derive(Clone, Copy)]
pub struct Credential<'a> {
    /// The raw value (session token or access token).
    pub value: &'a str,
    /// Where it came from.
    pub source: CredentialSource,
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("value", &"[redacted]")
            .field("source", &self.source)
            .finish()
    }
}

/// Facts about the client recorded with a new session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMeta {
    /// `User-Agent`, truncated to 256 bytes.
    pub user_agent: Option<String>,
    /// The peer address (from axum's `ConnectInfo`) when known.
    pub ip: Option<IpAddr>,
}

/// A signed access token issued to a client. `Debug` is redacted.
#[derive(Clone)]
pub struct AccessToken {
    /// The compact JWS.
    pub token: String,
    /// Lifetime from issue.
    pub expires_in: Duration,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Credentials produced by a login, a refresh or a rotation.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The principal the credentials stand for.
    pub principal: Principal,
    /// A server-session token: the layer puts it in the session cookie (unless the transport
    /// is Bearer only), and a handler returns it to a Bearer client, which sends it back as
    /// `Authorization: Bearer` (see [`SessionTransport`](crate::config::SessionTransport)).
    /// `Debug` redacts it.
    pub session_token: Option<OpaqueToken>,
    /// `Max-Age` of the cookie holding the session token, or the access token when there is
    /// none (the time left of the session, or of the access token); `None` for a
    /// browser-session cookie.
    pub session_max_age: Option<Duration>,
    /// A JWT access token.
    pub access_token: Option<AccessToken>,
    /// A refresh token.
    pub refresh_token: Option<OpaqueToken>,
    /// `Max-Age` of the refresh cookie (the family's remaining absolute lifetime); `None` for a
    /// browser-session cookie.
    pub refresh_max_age: Option<Duration>,
}

/// One of a subject's sessions (or refresh families), as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Public handle: usable with [`SessionStrategy::revoke`](crate::strategy::SessionStrategy::revoke), never the secret.
    pub id: String,
    /// Creation (login) time.
    #[serde(serialize_with = "ser_time")]
    pub created_at: SystemTime,
    /// Last time the session was seen (or its refresh token rotated).
    #[serde(serialize_with = "ser_time")]
    pub last_seen_at: SystemTime,
    /// `User-Agent` at login.
    pub user_agent: Option<String>,
    /// Client IP at login.
    pub ip: Option<String>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*t))
}
