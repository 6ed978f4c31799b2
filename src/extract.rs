//! Extractors: [`Principal`] (401 when absent), `Option<Principal>`, [`RequireRole`] (403),
//! [`HighRisk`] (server-side check plus recent authentication), and the [`Rejection`] they answer
//! with. The [`Auth`](crate::Auth) handle is in its own module.
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

use std::{marker::PhantomData, sync::Arc, time::Duration};

use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};

use crate::{
    context::RequestContext,
    error::{Challenge, Error, ErrorKind},
    principal::Principal,
};

/// Why an extractor refused a request. Implements [`IntoResponse`].
#[derive(Debug)]
pub struct Rejection {
    error: Error,
    challenge: Challenge,
}

impl Rejection {
    pub(crate) fn new(error: Error, ctx: Option<&RequestContext>) -> Self {
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

pub(crate) fn context(parts: &Parts) -> Result<&Arc<RequestContext>, Rejection> {
    parts
        .extensions
        .get::<Arc<RequestContext>>()
        .ok_or_else(|| Rejection::new(Error::new(ErrorKind::MissingLayer), None))
}

pub(crate) async fn resolve(ctx: &RequestContext) -> Result<Principal, Rejection> {
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
        ctx.principal()
            .await
            .map_err(|kind| Rejection::new(Error::new(kind), Some(ctx)))
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
