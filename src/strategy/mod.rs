//! The [`SessionStrategy`] trait: how a credential becomes a [`Principal`], and how credentials
//! are issued, refreshed, listed and revoked.
//!
//! keycard ships the server-session strategy ([`ServerSessions`], over any
//! [`SessionStore`](crate::store::SessionStore)), the JWT strategy and the hybrid strategy. The
//! layer holds the strategy as `Arc<dyn SessionStrategy>`, chosen by config at run time.
//!
//! # The hot path
//! [`SessionStrategy::authenticate`] returns an [`AuthFuture`], which is either already complete
//! (a verified-token or session cache hit, a local signature check: no allocation, no box) or a
//! boxed future (a store round trip, where a box costs nothing measurable).
//!
//! # Example: wrapping a strategy
//! A strategy written outside keycard implements the trait like any of keycard's own, and
//! `keycard::testing::strategy` (feature `test-suite`) runs the same suite against it. This one
//! puts a list of banned subjects in front of any strategy:
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use keycard::{
//!     Error, ErrorKind, Keycard, Login, Principal, PrincipalSpec, Result,
//!     store::MemoryStore,
//!     strategy::{
//!         AuthFuture, ClientMeta, Credential, CredentialSource, Issued, RefreshTokens, Reissue,
//!         ServerSessions, ServerSettings, SessionDataStore, SessionInfo, SessionStrategy,
//!     },
//! };
//!
//! #[derive(Debug)]
//! struct Banning {
//!     inner: Arc<dyn SessionStrategy>,
//!     banned: Vec<String>,
//! }
//!
//! impl Banning {
//!     fn check(&self, subject: &str) -> Result<()> {
//!         match self.banned.iter().any(|b| b == subject) {
//!             true => Err(Error::new(ErrorKind::Forbidden)),
//!             false => Ok(()),
//!         }
//!     }
//! }
//!
//! #[async_trait]
//! impl SessionStrategy for Banning {
//!     fn credential_source(&self) -> CredentialSource {
//!         self.inner.credential_source()
//!     }
//!     fn authenticate<'a>(&'a self, credential: Credential<'a>) -> AuthFuture<'a> {
//!         // One box per request: fine next to a store round trip.
//!         AuthFuture::boxed(async move {
//!             let principal = self.inner.authenticate(credential).await?;
//!             self.check(principal.subject())?;
//!             Ok(principal)
//!         })
//!     }
//!     async fn login(&self, spec: PrincipalSpec, meta: &ClientMeta, options: Login) -> Result<Issued> {
//!         self.check(&spec.subject)?;
//!         self.inner.login(spec, meta, options).await
//!     }
//!     async fn reissue(&self, current: &Principal, change: Reissue<'_>) -> Result<Issued> {
//!         self.inner.reissue(current, change).await
//!     }
//!     async fn logout(&self, current: &Principal) -> Result<()> {
//!         self.inner.logout(current).await
//!     }
//!     async fn logout_all(&self, subject: &str) -> Result<u64> {
//!         self.inner.logout_all(subject).await
//!     }
//!     async fn list(&self, subject: &str) -> Result<Vec<SessionInfo>> {
//!         self.inner.list(subject).await
//!     }
//!     async fn revoke(&self, subject: &str, session_id: &str) -> Result<bool> {
//!         self.inner.revoke(subject, session_id).await
//!     }
//!     async fn verify_live(&self, current: &Principal) -> Result<()> {
//!         self.inner.verify_live(current).await
//!     }
//!     fn refresh_tokens(&self) -> Option<&dyn RefreshTokens> {
//!         self.inner.refresh_tokens()
//!     }
//!     fn session_data(&self) -> Option<&dyn SessionDataStore> {
//!         self.inner.session_data()
//!     }
//! }
//!
//! let sessions = ServerSessions::new(Arc::new(MemoryStore::new()), ServerSettings::default());
//! let keycard = Keycard::builder()
//!     .strategy(Banning { inner: Arc::new(sessions), banned: vec!["mallory".into()] })
//!     .build()?;
//! # let _ = keycard;
//! # Ok::<(), keycard::Error>(())
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use async_trait::async_trait;
use futures_util::future::BoxFuture;

pub use crate::credential::{
    AccessToken, ClientMeta, Credential, CredentialSource, Issued, SessionInfo,
};
use crate::{
    auth::Login,
    error::Result,
    principal::{Principal, PrincipalSpec},
};

pub(crate) mod cache;
mod data;
pub(crate) mod server;

pub use cache::CacheSettings;
pub use data::SessionDataStore;
pub use server::{AnonymousSettings, ServerSessions, ServerSettings};

/// The future returned by [`SessionStrategy::authenticate`]: either ready (no allocation) or a
/// boxed store round trip.
#[must_use = "futures do nothing unless polled"]
pub struct AuthFuture<'a> {
    inner: AuthFutureInner<'a>,
}

enum AuthFutureInner<'a> {
    Ready(Option<Result<Principal>>),
    Boxed(BoxFuture<'a, Result<Principal>>),
}

impl<'a> AuthFuture<'a> {
    /// An already-known outcome.
    pub fn ready(outcome: Result<Principal>) -> Self {
        Self {
            inner: AuthFutureInner::Ready(Some(outcome)),
        }
    }

    /// An outcome that needs I/O.
    pub fn boxed(fut: impl Future<Output = Result<Principal>> + Send + 'a) -> Self {
        Self {
            inner: AuthFutureInner::Boxed(Box::pin(fut)),
        }
    }

    /// Whether the outcome is already known (no I/O needed).
    pub fn is_ready(&self) -> bool {
        matches!(self.inner, AuthFutureInner::Ready(_))
    }
}

impl Future for AuthFuture<'_> {
    type Output = Result<Principal>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            AuthFutureInner::Ready(outcome) => {
                Poll::Ready(outcome.take().expect("AuthFuture polled after completion"))
            }
            AuthFutureInner::Boxed(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for AuthFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFuture")
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// What [`SessionStrategy::reissue`] replaces the credentials for.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reissue<'a> {
    /// A privilege change: fresh credentials for `Some(spec)` (same subject, new roles or
    /// attributes), or for the same principal when `None`. The old credentials stop working.
    Rotate(Option<PrincipalSpec>),
    /// A step-up: the client that just proved who it is again (its user agent and IP are
    /// recorded) gets fresh credentials with a new authentication time.
    StepUp(&'a ClientMeta),
}

impl<'a> Reissue<'a> {
    /// The new principal (if any) and the re-authenticated client (if any).
    pub(crate) fn into_parts(self) -> (Option<PrincipalSpec>, Option<&'a ClientMeta>) {
        match self {
            Self::Rotate(spec) => (spec, None),
            Self::StepUp(meta) => (None, Some(meta)),
        }
    }
}

/// An authentication strategy: how a credential becomes a [`Principal`], and how credentials
/// are issued, listed and revoked.
///
/// The layer asks the strategy, not the config, what it needs to know: where its credentials
/// travel ([`credential_source`](Self::credential_source)) and whether it issues refresh tokens
/// ([`refresh_tokens`](Self::refresh_tokens)). A strategy written outside keycard is therefore a
/// first-class citizen; `keycard::testing` (feature `test-suite`) runs the same HTTP suite
/// against it as against keycard's own.
///
/// Every method that touches a store fails closed: an unreachable or slow store is
/// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable), never an anonymous result.
/// Strategies emit [`SecurityEvent`](crate::events::SecurityEvent)s for what they do.
#[async_trait]
pub trait SessionStrategy: Send + Sync + fmt::Debug + 'static {
    /// Where this strategy's primary credential travels unless the transport settings say
    /// otherwise: a session cookie ([`CredentialSource::Cookie`]) or `Authorization: Bearer`
    /// ([`CredentialSource::Bearer`]).
    fn credential_source(&self) -> CredentialSource;

    /// A short, fixed name for the strategy: the `strategy` label of keycard's
    /// [metrics](crate::metrics) and the `keycard.strategy` span field when the keycard is built
    /// in code (one built from config uses the configured strategy's name). Lowercase ASCII, one
    /// value per strategy type, never per-user data. Default: `"custom"`.
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Resolves a credential to a principal. Called at most once per request, lazily, by the
    /// first extractor that needs the principal.
    ///
    /// A Bearer credential arrives as sent after the scheme, before its RFC 6750 `b64token`
    /// syntax is checked: the layer checks it only when this method refuses the credential (and
    /// then answers 400 for a malformed one), which keeps a per-byte scan off the hot path. A
    /// strategy should accept only tokens of its own strict syntax.
    fn authenticate<'a>(&'a self, credential: Credential<'a>) -> AuthFuture<'a>;

    /// Logs `spec` in: always creates a fresh session (or refresh family) and returns its
    /// credentials.
    ///
    /// `options` carries the app's choices for this session: the cookie's lifetime, which the
    /// strategy keeps with the session so that [`reissue`](Self::reissue) re-sends its cookies
    /// with the same lifetime, and shorter timeouts, capped at the strategy's own (see
    /// [`Login::idle_within`] and [`Login::absolute_within`]).
    async fn login(&self, spec: PrincipalSpec, meta: &ClientMeta, options: Login)
    -> Result<Issued>;

    /// Replaces the principal's credentials by fresh ones and revokes the old ones, after a
    /// privilege change or a step-up (see [`Reissue`]).
    async fn reissue(&self, current: &Principal, change: Reissue<'_>) -> Result<Issued>;

    /// Revokes the principal's own session (or refresh family), and for tokens its access token.
    async fn logout(&self, current: &Principal) -> Result<()>;

    /// Revokes every session of `subject`; for tokens, voids every access token issued before now.
    async fn logout_all(&self, subject: &str) -> Result<u64>;

    /// The live sessions (or refresh families) of `subject`.
    async fn list(&self, subject: &str) -> Result<Vec<SessionInfo>>;

    /// Revokes one session of `subject` by its public handle. `Ok(false)` when there is no such
    /// session of this subject.
    async fn revoke(&self, subject: &str, session_id: &str) -> Result<bool>;

    /// Confirms against the server-side state that the principal's session is still live, for
    /// [`HighRisk`](crate::HighRisk) routes: for server sessions, the session record; for
    /// tokens, the refresh family the access token belongs to.
    async fn verify_live(&self, current: &Principal) -> Result<()>;

    /// The strategy's refresh-token exchange, when it issues refresh tokens. `None` (the
    /// default) means it has none, and [`Auth::refresh`](crate::Auth::refresh) answers
    /// `invalid_grant`.
    fn refresh_tokens(&self) -> Option<&dyn RefreshTokens> {
        None
    }

    /// Where the strategy keeps per-session data ([`SessionData`](crate::SessionData)). `None`
    /// (the default) means it keeps none, and writing data answers 500.
    fn session_data(&self) -> Option<&dyn SessionDataStore> {
        None
    }
}

/// The refresh-token exchange of a strategy that issues refresh tokens (see
/// [`SessionStrategy::refresh_tokens`]).
#[async_trait]
pub trait RefreshTokens: Send + Sync {
    /// Exchanges a refresh token for new credentials. An unknown, expired, revoked or reused
    /// token is [`ErrorKind::InvalidGrant`](crate::ErrorKind::InvalidGrant).
    async fn refresh(&self, refresh_token: &str, meta: &ClientMeta) -> Result<Issued>;
}
