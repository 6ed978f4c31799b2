//! Extractors: [`Principal`] (401 when absent), `Option<Principal>`, [`RequireRole`] (403),
//! [`HighRisk`] (server-side check plus recent authentication) and the [`Auth`] handle.
//!
//! Resolution is lazy and happens once per request: the first extractor that needs the principal
//! asks the strategy; later extractors reuse the answer.
//!
//! # Example
//! ```
//! use axum::{Router, routing::{get, post}};
//! use keycard::{Auth, Principal, RequireRole, Role};
//!
//! struct Admin;
//! impl Role for Admin { const NAME: &'static str = "admin"; }
//!
//! async fn me(user: Principal) -> String { user.subject().to_owned() }
//! async fn maybe(user: Option<Principal>) -> String {
//!     user.map(|u| u.subject().to_owned()).unwrap_or_else(|| "anonymous".into())
//! }
//! async fn admin(RequireRole(user, ..): RequireRole<Admin>) -> String { user.subject().to_owned() }
//! async fn logout(auth: Auth) -> Result<(), keycard::Rejection> { Ok(auth.logout().await?) }
//!
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route("/maybe", get(maybe))
//!     .route("/admin", get(admin))
//!     .route("/logout", post(logout));
//! ```

use std::{marker::PhantomData, net::SocketAddr, sync::Arc, time::Duration};

use axum::extract::ConnectInfo;
use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, header, request::Parts};

use crate::{
    error::{Challenge, Error, ErrorKind},
    layer::RequestContext,
    principal::{Principal, PrincipalSpec},
    strategy::{ClientMeta, Issued, SessionInfo},
};

/// Why an extractor refused a request. Implements [`IntoResponse`].
#[derive(Debug)]
pub struct Rejection {
    error: Error,
    challenge: Challenge,
}

impl Rejection {
    fn new(error: Error, ctx: Option<&RequestContext>) -> Self {
        Self {
            error,
            challenge: ctx.map_or(Challenge::Bearer, |c| c.shared.challenge),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.error.status()
    }

    /// The human-readable body text.
    pub fn body_text(&self) -> String {
        self.error.message().to_owned()
    }

    /// The error kind.
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// The underlying error.
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl From<Error> for Rejection {
    fn from(error: Error) -> Self {
        Self {
            error,
            challenge: Challenge::Bearer,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.error.into_response_with(self.challenge)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

fn context(parts: &Parts) -> Result<&Arc<RequestContext>, Rejection> {
    parts
        .extensions
        .get::<Arc<RequestContext>>()
        .ok_or_else(|| Rejection::new(Error::new(ErrorKind::MissingLayer), None))
}

async fn resolve(ctx: &RequestContext) -> Result<Principal, Rejection> {
    ctx.resolve()
        .await
        .map_err(|kind| Rejection::new(Error::new(kind), Some(ctx)))
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context(parts)?;
        resolve(ctx).await
    }
}

/// `Option<Principal>`: `None` only when no credential was sent; an invalid one is still a 401.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let ctx = context(parts)?;
        if !ctx.has_credential() {
            return Ok(None);
        }
        resolve(ctx).await.map(Some)
    }
}

/// A role name for [`RequireRole`].
pub trait Role: Send + Sync + 'static {
    /// The role required.
    const NAME: &'static str;
}

/// Extracts the principal if it has role `R`: 401 when unauthenticated, 403 otherwise.
pub struct RequireRole<R: Role>(pub Principal, pub PhantomData<R>);

impl<R: Role> std::fmt::Debug for RequireRole<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequireRole")
            .field(&R::NAME)
            .field(&self.0)
            .finish()
    }
}

impl<S: Send + Sync, R: Role> FromRequestParts<S> for RequireRole<R> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context(parts)?;
        let principal = resolve(ctx).await?;
        if principal.has_role(R::NAME) {
            Ok(Self(principal, PhantomData))
        } else {
            Err(Rejection::new(Error::new(ErrorKind::Forbidden), Some(ctx)))
        }
    }
}

/// How recent an authentication a [`HighRisk`] route demands.
pub trait MaxAuthAge: Send + Sync + 'static {
    /// The largest accepted age of the last authentication.
    const MAX_AGE: Duration;
}

/// Five minutes: the bound the demo's `/account/email` uses.
#[derive(Debug)]
pub struct FiveMinutes;

impl MaxAuthAge for FiveMinutes {
    const MAX_AGE: Duration = Duration::from_secs(300);
}

/// Extracts the principal for a high-risk operation: the server-side session must still be live
/// (checked against the store even when the credential is a self-contained token) and the last
/// authentication must be no older than `A::MAX_AGE`; otherwise 401 with
/// `error="insufficient_user_authentication"` (RFC 9470).
pub struct HighRisk<A: MaxAuthAge = FiveMinutes>(pub Principal, pub PhantomData<A>);

impl<A: MaxAuthAge> std::fmt::Debug for HighRisk<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HighRisk").field(&self.0).finish()
    }
}

impl<S: Send + Sync, A: MaxAuthAge> FromRequestParts<S> for HighRisk<A> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context(parts)?;
        let principal = resolve(ctx).await?;
        ctx.shared
            .strategy
            .verify_live(&principal)
            .await
            .map_err(|e| Rejection::new(e, Some(ctx)))?;
        let age = ctx
            .shared
            .clock
            .now()
            .duration_since(principal.authenticated_at())
            .unwrap_or(Duration::ZERO);
        if age > A::MAX_AGE {
            return Err(Rejection::new(
                Error::new(ErrorKind::StepUpRequired),
                Some(ctx),
            ));
        }
        Ok(Self(principal, PhantomData))
    }
}

/// The handle for logging in and out, listing and revoking sessions, rotating and refreshing.
///
/// Extracting it never fails on credentials (it works for anonymous requests, e.g. a login form);
/// only a missing layer is an error.
#[derive(Debug, Clone)]
pub struct Auth {
    ctx: Arc<RequestContext>,
    meta: ClientMeta,
}

/// A session of the caller, with whether it is the one making this request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedSession {
    /// The session's details.
    #[serde(flatten)]
    pub info: SessionInfo,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context(parts)?.clone();
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| truncate(s, 256).to_owned());
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self {
            ctx,
            meta: ClientMeta { user_agent, ip },
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Auth {
    fn reject(&self, error: Error) -> Rejection {
        Rejection::new(error, Some(&self.ctx))
    }

    /// The principal, if the request is authenticated; `Ok(None)` when no credential was sent.
    pub async fn principal(&self) -> Result<Option<Principal>, Rejection> {
        if !self.ctx.has_credential() {
            return Ok(None);
        }
        resolve(&self.ctx).await.map(Some)
    }

    async fn current(&self) -> Result<Principal, Rejection> {
        resolve(&self.ctx).await
    }

    /// Client facts recorded with new sessions.
    pub fn client(&self) -> &ClientMeta {
        &self.meta
    }

    /// The signed double-submit CSRF token for this request's session cookie, to send back in the
    /// `X-CSRF-Token` header (see [`csrf`](crate::csrf)). `None` when the feature is off or the
    /// request carries no session cookie. After a login or rotation, ask the next request.
    pub fn csrf_token(&self) -> Option<String> {
        let secret = self.ctx.shared.csrf.double_submit_secret.as_ref()?;
        match &self.ctx.found.credential {
            Some(Ok(l)) if l.source == crate::strategy::CredentialSource::Cookie => {
                crate::csrf::token_for(secret, l.value())
            }
            _ => None,
        }
    }

    /// Logs `spec` in with a fresh session (never reusing a presented ID). A valid session the
    /// request already carried is revoked first. The response gets the credential cookies.
    pub async fn login(&self, spec: impl Into<PrincipalSpec>) -> Result<Issued, Rejection> {
        if self.ctx.has_credential()
            && let Ok(previous) = self.ctx.resolve().await
        {
            self.ctx
                .shared
                .strategy
                .logout(&previous)
                .await
                .map_err(|e| self.reject(e))?;
        }
        let issued = self
            .ctx
            .shared
            .strategy
            .login(spec.into(), &self.meta)
            .await
            .map_err(|e| self.reject(e))?;
        self.ctx.issue(&issued);
        Ok(issued)
    }

    /// Revokes the current session and clears the credential cookies.
    pub async fn logout(&self) -> Result<(), Rejection> {
        let current = self.current().await?;
        self.ctx
            .shared
            .strategy
            .logout(&current)
            .await
            .map_err(|e| self.reject(e))?;
        self.ctx.clear();
        Ok(())
    }

    /// Revokes every session of the current subject (and for tokens, every access token issued
    /// before now) and clears the credential cookies. Returns how many sessions were revoked.
    pub async fn logout_all(&self) -> Result<u64, Rejection> {
        let current = self.current().await?;
        let n = self
            .ctx
            .shared
            .strategy
            .logout_all(current.subject())
            .await
            .map_err(|e| self.reject(e))?;
        self.ctx.clear();
        Ok(n)
    }

    /// The current subject's live sessions.
    pub async fn sessions(&self) -> Result<Vec<ListedSession>, Rejection> {
        let current = self.current().await?;
        let list = self
            .ctx
            .shared
            .strategy
            .list(current.subject())
            .await
            .map_err(|e| self.reject(e))?;
        Ok(list
            .into_iter()
            .map(|info| ListedSession {
                current: info.id == current.session().id,
                info,
            })
            .collect())
    }

    /// Revokes one of the current subject's sessions by its public handle: 404 when the subject
    /// has no such session. Revoking the current session also clears its cookies.
    pub async fn revoke(&self, session_id: &str) -> Result<(), Rejection> {
        let current = self.current().await?;
        let found = self
            .ctx
            .shared
            .strategy
            .revoke(current.subject(), session_id)
            .await
            .map_err(|e| self.reject(e))?;
        if !found {
            return Err(self.reject(Error::new(ErrorKind::NotFound)));
        }
        if current.session().id == session_id {
            self.ctx.clear();
        }
        Ok(())
    }

    /// Replaces the session ID (after a privilege change, with new roles in `spec`).
    pub async fn rotate(&self, spec: Option<PrincipalSpec>) -> Result<Issued, Rejection> {
        let current = self.current().await?;
        let issued = self
            .ctx
            .shared
            .strategy
            .rotate(&current, spec, None)
            .await
            .map_err(|e| self.reject(e))?;
        self.ctx.issue(&issued);
        Ok(issued)
    }

    /// Records a fresh authentication (step-up, after re-checking the password) without a new
    /// login: the credentials are rotated with a new authentication time.
    pub async fn step_up(&self) -> Result<Issued, Rejection> {
        let current = self.current().await?;
        let issued = self
            .ctx
            .shared
            .strategy
            .rotate(&current, None, Some(&self.meta))
            .await
            .map_err(|e| self.reject(e))?;
        self.ctx.issue(&issued);
        Ok(issued)
    }

    /// Exchanges a refresh token (from `token`, else the refresh cookie) for new credentials.
    pub async fn refresh(&self, token: Option<&str>) -> Result<Issued, Rejection> {
        let cookie = self.ctx.found.refresh.as_ref().map(|l| l.value());
        let Some(token) = token.or(cookie) else {
            return Err(self.reject(Error::new(ErrorKind::InvalidGrant)));
        };
        let issued = self
            .ctx
            .shared
            .strategy
            .refresh(token, &self.meta)
            .await
            .map_err(|e| self.reject(e))?;
        self.ctx.issue(&issued);
        Ok(issued)
    }
}
