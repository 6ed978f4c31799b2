//! The [`Auth`] handle: log in, log out, log out everywhere, list and revoke sessions, rotate,
//! step up and refresh, from a handler.
//!
//! # Example
//! ```
//! use axum::{Router, routing::post};
//! use keycard::{Auth, Principal, Rejection};
//!
//! async fn login(auth: Auth) -> Result<(), Rejection> {
//!     // ... check the password first ...
//!     auth.login(Principal::builder("alice").role("user")).await?;
//!     Ok(())
//! }
//! async fn logout(auth: Auth) -> Result<(), Rejection> { auth.logout().await }
//!
//! let app: Router = Router::new().route("/login", post(login)).route("/logout", post(logout));
//! ```

use std::{net::SocketAddr, sync::Arc};

use axum::extract::ConnectInfo;
use axum_core::extract::FromRequestParts;
use http::{header, request::Parts};

use crate::{
    context::RequestContext,
    credential::{ClientMeta, Issued, SessionInfo},
    error::{Error, ErrorKind},
    extract::{Rejection, context, resolve},
    principal::{Principal, PrincipalSpec},
    strategy::Reissue,
};

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
            Some(Ok(l)) if l.source == crate::credential::CredentialSource::Cookie => {
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
            .reissue(&current, Reissue::Rotate(spec))
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
            .reissue(&current, Reissue::StepUp(&self.meta))
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
        let Some(refresher) = self.ctx.shared.strategy.refresh_tokens() else {
            return Err(self.reject(Error::with_message(
                ErrorKind::InvalidGrant,
                "this strategy issues no refresh tokens",
            )));
        };
        let issued = crate::metrics::refresh(refresher.refresh(token, &self.meta).await)
            .map_err(|e| self.reject(e))?;
        self.ctx.issue(&issued);
        Ok(issued)
    }
}
