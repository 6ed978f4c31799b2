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

use std::{net::SocketAddr, sync::Arc, time::Duration};

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

/// How [`Auth::login_with`] logs in: the cookie's lifetime ("remember me") and, optionally,
/// shorter timeouts for this one session.
///
/// A persistent cookie carries a `Max-Age` equal to the session's absolute lifetime, so the
/// cookie never outlives the session nor expires before it: sliding renewal never extends a
/// session past its absolute expiry, so it never needs to re-send the cookie. A browser-session
/// cookie has no `Max-Age` and goes when the browser closes. The choice is stored with the
/// session, so a rotation or step-up re-sends the cookie with the same lifetime.
///
/// [`idle_timeout`](Self::idle_timeout) and [`absolute_timeout`](Self::absolute_timeout) shorten
/// this session's timeouts; they never lengthen them: a longer value than the strategy's
/// configured one is capped at it. A timeout under a millisecond is refused (400 `invalid_data`).
///
/// ```
/// use std::time::Duration;
/// use keycard::Login;
///
/// // A shared computer: the cookie goes with the browser, the session after 10 idle minutes
/// // and at most 2 hours.
/// let login = Login::browser_session()
///     .idle_timeout(Duration::from_secs(600))
///     .absolute_timeout(Duration::from_secs(2 * 3600));
/// assert!(!login.is_persistent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    persistent: bool,
    idle_timeout: Option<Duration>,
    absolute_timeout: Option<Duration>,
}

impl Default for Login {
    /// A persistent cookie and the strategy's timeouts (as [`Auth::login`]).
    fn default() -> Self {
        Self::remember(true)
    }
}

impl Login {
    /// A persistent cookie when `remember`, else a browser-session cookie.
    pub fn remember(remember: bool) -> Self {
        Self {
            persistent: remember,
            idle_timeout: None,
            absolute_timeout: None,
        }
    }

    /// A browser-session cookie: no `Max-Age`, no `Expires`.
    pub fn browser_session() -> Self {
        Self::remember(false)
    }

    /// Ends the session after `timeout` without a request, if that is sooner than the
    /// strategy's idle timeout (for tokens: the refresh token's idle timeout).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Ends the session `timeout` after login whatever its activity, if that is sooner than the
    /// strategy's absolute timeout (for tokens: the refresh family's lifetime).
    #[must_use]
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = Some(timeout);
        self
    }

    /// Whether the cookie is persistent.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The idle timeout of the session: the shorter of the requested one and `configured`.
    /// `None` when none was requested or the configured one is not longer.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidData`](ErrorKind::InvalidData) for a timeout under a millisecond.
    pub fn idle_within(&self, configured: Duration) -> crate::Result<Option<Duration>> {
        Ok(Self::within(self.idle_timeout, configured)?.filter(|t| *t < configured))
    }

    /// The absolute timeout of the session: the shorter of the requested one and `configured`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidData`](ErrorKind::InvalidData) for a timeout under a millisecond.
    pub fn absolute_within(&self, configured: Duration) -> crate::Result<Duration> {
        Ok(Self::within(self.absolute_timeout, configured)?.unwrap_or(configured))
    }

    fn within(
        requested: Option<Duration>,
        configured: Duration,
    ) -> crate::Result<Option<Duration>> {
        match requested {
            // Stores keep whole milliseconds.
            Some(t) if t < Duration::from_millis(1) => Err(Error::with_message(
                ErrorKind::InvalidData,
                "a session timeout must be at least a millisecond",
            )),
            requested => Ok(requested.map(|t| t.min(configured))),
        }
    }
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
        Ok(Self {
            ctx: context(parts)?.clone(),
            meta: client_meta(parts),
        })
    }
}

/// The client facts recorded with new sessions: its `User-Agent` (at most 256 bytes) and, when
/// the server provides `ConnectInfo`, its address.
pub(crate) fn client_meta(parts: &Parts) -> ClientMeta {
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| truncate(s, 256).to_owned());
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    ClientMeta { user_agent, ip }
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
        self.ctx
            .principal()
            .await
            .map_err(|kind| self.reject(Error::new(kind)))
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
    /// request already carried is revoked first; data of an anonymous session moves into the new
    /// one. The response gets the credential cookies, persistent ones (see
    /// [`login_with`](Self::login_with) for a browser-session cookie).
    pub async fn login(&self, spec: impl Into<PrincipalSpec>) -> Result<Issued, Rejection> {
        self.login_with(spec, Login::default()).await
    }

    /// [`login`](Self::login) with a choice of cookie lifetime ("remember me") and, optionally,
    /// shorter timeouts for this session (see [`Login`]).
    ///
    /// ```
    /// use keycard::{Auth, Login, Principal, Rejection};
    ///
    /// async fn login(auth: Auth, remember: bool) -> Result<(), Rejection> {
    ///     // ... check the password first ...
    ///     auth.login_with(Principal::builder("alice"), Login::remember(remember)).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn login_with(
        &self,
        spec: impl Into<PrincipalSpec>,
        options: Login,
    ) -> Result<Issued, Rejection> {
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
        let mut issued = self
            .ctx
            .shared
            .strategy
            .login(spec.into(), &self.meta, options)
            .await
            .map_err(|e| self.reject(e))?;
        if !options.persistent {
            issued.session_max_age = None;
            issued.refresh_max_age = None;
        }
        self.ctx.issue(&issued);
        self.ctx
            .data_moved(&issued.principal, false)
            .await
            .map_err(|e| self.reject(e))?;
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
        self.ctx.data_ended();
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
        self.ctx.data_ended();
        Ok(n)
    }

    /// Revokes every other session (or refresh family) of the current subject and keeps the
    /// current one: its credential keeps working and no cookie changes. Returns how many
    /// sessions were revoked.
    ///
    /// For tokens, each revoked family's access tokens are voided with it (by family, not by the
    /// subject's epoch that [`logout_all`](Self::logout_all) moves, which would void the
    /// caller's access token too).
    ///
    /// # Password changed: end every other session
    /// After the handler has checked the old password and stored the new one, it calls
    /// `logout_others`: whoever knew the old password (or holds a stolen session) is signed out
    /// everywhere, and the user stays signed in where they made the change. Change the password
    /// *first*: a login racing this call with the old password is refused from then on, while a
    /// session created between the listing and the revocations would survive them.
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use keycard::{Auth, Principal, Rejection};
    ///
    /// async fn change_password(auth: Auth, user: Principal /* , the passwords */) -> Result<StatusCode, Rejection> {
    ///     // check the old password, store the new one's hash for `user.subject()`, then:
    ///     auth.logout_others().await?;
    ///     Ok(StatusCode::NO_CONTENT)
    /// }
    /// ```
    pub async fn logout_others(&self) -> Result<u64, Rejection> {
        let current = self.current().await?;
        let strategy = &self.ctx.shared.strategy;
        let listed = strategy
            .list(current.subject())
            .await
            .map_err(|e| self.reject(e))?;
        let mut revoked = 0;
        for info in listed {
            if info.id == current.session().id {
                continue;
            }
            if strategy
                .revoke(current.subject(), &info.id)
                .await
                .map_err(|e| self.reject(e))?
            {
                revoked += 1;
            }
        }
        Ok(revoked)
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
        self.reissue(Reissue::Rotate(spec)).await
    }

    /// Records a fresh authentication (step-up, after re-checking the password) without a new
    /// login: the credentials are rotated with a new authentication time.
    pub async fn step_up(&self) -> Result<Issued, Rejection> {
        self.reissue(Reissue::StepUp(&self.meta)).await
    }

    /// Fresh credentials for the current session; its data goes with them.
    async fn reissue(&self, change: Reissue<'_>) -> Result<Issued, Rejection> {
        let current = self.current().await?;
        let issued = self
            .ctx
            .shared
            .strategy
            .reissue(&current, change)
            .await
            .map_err(|e| self.reject(e))?;
        self.ctx.issue(&issued);
        self.ctx
            .data_moved(&issued.principal, true)
            .await
            .map_err(|e| self.reject(e))?;
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
