//! The JWT strategy: short-lived signed access tokens, opaque rotating refresh tokens, and
//! revocation mirrored in process.
//!
//! See [`crate::jwt`] for keys, validation rules, the JWKS and the revocation mirror.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use keycard::{Login, Principal, SessionStrategy, jwt::{JwtConfig, JwtStrategy, KeyRing}};
//! use keycard::strategy::{ClientMeta, Credential, CredentialSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> keycard::Result<()> {
//! let strategy = JwtStrategy::builder(JwtConfig::new("https://auth.example", "api"))
//!     .key_ring(Arc::new(KeyRing::ephemeral()?))
//!     .build()?;
//! strategy.ready().await?;
//!
//! let alice = Principal::builder("alice").role("user").build();
//! let issued = strategy.login(alice, &ClientMeta::default(), Login::default()).await?;
//! let token = issued.access_token.unwrap().token;
//! let me = strategy
//!     .authenticate(Credential { value: &token, source: CredentialSource::Bearer })
//!     .await?;
//! assert_eq!(me.subject(), "alice");
//! # Ok(()) }
//! ```

use std::{fmt, sync::Arc, time::Duration};

use http::{HeaderValue, header};
use tokio::sync::oneshot;

#[cfg(feature = "remote-jwks")]
use super::remote::RemoteJwks;
use crate::{
    clock::{Clock, from_millis, to_millis},
    error::{Error, ErrorKind, Result},
    events::Events,
    jwt::{
        KeyRing,
        cache::TokenCache,
        claims::{IssueClaims, Validation, Verified, invalid, secs_floor},
        jwk::Jwks,
        jws::{self, Failure, KeyQuery, Lookup},
        keys::JwtKey,
    },
    principal::{Principal, PrincipalSpec, SessionRef},
    revocation::{self, Check, Mirror},
    store::{RefreshStore, RevocationStore},
    strategy::{AccessToken, AuthFuture, Credential},
    token::random_id,
};

/// The path the JWKS is served at.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The JWT [`SessionStrategy`](crate::SessionStrategy). Cheap to clone (one reference count);
/// clones share keys, cache and mirror.
///
/// Build it with [`JwtStrategy::from_config`] or [`JwtStrategy::builder`], then await
/// [`JwtStrategy::ready`] at start-up to fail fast when the revocation store or the remote JWKS
/// is unreachable (until then verifications ask the store, or answer 503 in verifier-only mode).
///
/// - [`authenticate`](crate::SessionStrategy::authenticate) verifies locally and answers with a
///   ready future (no allocation beyond the principal); it only goes to the store while the
///   revocation mirror is stale, or to the network when a remote JWKS must be refetched for an
///   unknown `kid`.
/// - [`login`](crate::SessionStrategy::login) starts a refresh family and issues an access token
///   and a refresh token; [`refresh`](crate::strategy::RefreshTokens::refresh) rotates the refresh
///   token (reuse of a spent one revokes the family and its access tokens and emits
///   [`SecurityEvent::RefreshReuseDetected`]).
/// - [`logout`](crate::SessionStrategy::logout) ends the family and denylists its access tokens;
///   [`logout_all`](crate::SessionStrategy::logout_all) ends every family and moves the subject's
///   epoch, voiding every access token issued before it.
///
/// [`SecurityEvent::RefreshReuseDetected`]: crate::events::SecurityEvent::RefreshReuseDetected
#[derive(Clone)]
pub struct JwtStrategy {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) validation: Validation,
    pub(super) access_ttl_secs: i64,
    pub(super) refresh: RefreshSettings,
    pub(super) keys: KeySource,
    pub(super) cache: TokenCache,
    pub(super) mirror: Arc<Mirror>,
    pub(super) refresh_store: Arc<dyn RefreshStore>,
    pub(super) revocations: Arc<dyn RevocationStore>,
    pub(super) events: Events,
    pub(super) clock: Arc<dyn Clock>,
    /// Dropping these stops the background tasks.
    pub(super) _shutdown: Vec<oneshot::Sender<()>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RefreshSettings {
    pub(super) idle: Duration,
    pub(super) absolute: Duration,
    pub(super) grace: Duration,
}

#[derive(Clone)]
pub(super) enum KeySource {
    Local(Arc<KeyRing>),
    /// Verifier-only mode.
    #[cfg(feature = "remote-jwks")]
    Remote(Arc<RemoteJwks>),
}

impl KeySource {
    fn ring(&self) -> &KeyRing {
        match self {
            Self::Local(ring) => ring,
            #[cfg(feature = "remote-jwks")]
            Self::Remote(remote) => &remote.ring,
        }
    }

    #[inline]
    // `now_ms` bounds the staleness of a remote JWKS only.
    #[cfg_attr(not(feature = "remote-jwks"), allow(unused_variables))]
    fn lookup(&self, query: KeyQuery<'_>, now_ms: i64) -> Lookup {
        match self {
            Self::Local(ring) => match query.find(&ring.snapshot()) {
                Some(key) => Lookup::Found(key.clone()),
                None => Lookup::Unknown,
            },
            #[cfg(feature = "remote-jwks")]
            Self::Remote(remote) => remote.lookup(query, now_ms),
        }
    }

    pub(super) fn signer(&self) -> Option<JwtKey> {
        match self {
            Self::Local(ring) => ring.signer(),
            #[cfg(feature = "remote-jwks")]
            Self::Remote(_) => None,
        }
    }
}

impl fmt::Debug for JwtStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("JwtStrategy")
            .field("issuer", &i.validation.issuer)
            .field("audience", &i.validation.audience)
            .field("access_ttl_secs", &i.access_ttl_secs)
            .field(
                "mode",
                &match i.keys {
                    KeySource::Local(_) => "local",
                    #[cfg(feature = "remote-jwks")]
                    KeySource::Remote(_) => "remote-jwks",
                },
            )
            .field("keys", &i.keys.ring().kids())
            .finish_non_exhaustive()
    }
}

impl JwtStrategy {
    /// Resolves once the revocation mirror is loaded and live and, in verifier-only mode, the
    /// remote JWKS has been fetched.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`] when the revocation store or the JWKS is unreachable at
    /// start-up. The strategy keeps retrying in the background (and fails closed meanwhile).
    pub async fn ready(&self) -> Result<()> {
        #[cfg(feature = "remote-jwks")]
        if let KeySource::Remote(remote) = &self.inner.keys {
            remote.ready().await?;
        }
        self.inner.mirror.ready().await
    }

    /// The local key ring, for rotation at run time (`None` in verifier-only mode).
    pub fn key_ring(&self) -> Option<&Arc<KeyRing>> {
        match &self.inner.keys {
            KeySource::Local(ring) => Some(ring),
            #[cfg(feature = "remote-jwks")]
            KeySource::Remote(_) => None,
        }
    }

    /// The public keys this strategy verifies with, as a JWK Set (HMAC keys excluded).
    pub fn jwks(&self) -> Jwks {
        self.inner.keys.ring().jwks()
    }

    /// A handler for `GET /.well-known/jwks.json`: the public keys, `Content-Type:
    /// application/json`, cacheable for 5 minutes. It follows key rotation.
    pub fn jwks_handler(&self) -> axum::routing::MethodRouter {
        // Holds the keys only, not the strategy (and its background tasks).
        let keys = self.inner.keys.clone();
        axum::routing::get(move || {
            let json = keys.ring().jwks_json();
            async move {
                (
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        ),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=300"),
                        ),
                    ],
                    json.to_string(),
                )
            }
        })
    }

    /// A router serving [`JWKS_PATH`] with [`JwtStrategy::jwks_handler`], to merge into an app.
    pub fn jwks_router(&self) -> axum::Router {
        axum::Router::new().route(JWKS_PATH, self.jwks_handler())
    }

    /// The access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.inner.access_ttl_secs.unsigned_abs())
    }

    /// Empties the verified-token cache (it also follows key retirement on its own).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    pub(super) fn now_ms(&self) -> i64 {
        to_millis(self.inner.clock.now())
    }

    /// Revocation checks for a verified token.
    #[inline]
    fn admit(&self, verified: Verified, now_ms: i64) -> AuthFuture<'_> {
        let p = &verified.principal;
        let jti = p.session().jti.as_deref().unwrap_or_default();
        match self
            .inner
            .mirror
            .check(p.subject(), jti, &p.session().id, verified.iat_ms, now_ms)
        {
            Check::Live => AuthFuture::ready(Ok(verified.principal)),
            Check::Revoked => AuthFuture::ready(Err(revoked())),
            Check::Unknown => AuthFuture::boxed(async move {
                let p = verified.principal;
                let jti = p.session().jti.as_deref().unwrap_or_default();
                let is_revoked = revocation::check_store(
                    &*self.inner.revocations,
                    p.subject(),
                    jti,
                    &p.session().id,
                    verified.iat_ms,
                )
                .await?;
                if is_revoked { Err(revoked()) } else { Ok(p) }
            }),
        }
    }

    fn verify_now(&self, token: &str, now_ms: i64) -> std::result::Result<Verified, Failure> {
        let inner = &*self.inner;
        let generation = inner.keys.ring().generation();
        if let Some(v) = inner
            .cache
            .get(token, now_ms, inner.validation.leeway_ms, generation)
        {
            return Ok(v);
        }
        let v = jws::verify(token, &inner.validation, now_ms, |query| {
            inner.keys.lookup(query, now_ms)
        })?;
        inner
            .cache
            .insert(token, &v, generation, now_ms, inner.validation.leeway_ms);
        Ok(v)
    }

    /// The whole of [`SessionStrategy::authenticate`](crate::SessionStrategy::authenticate): the
    /// hot path, kept next to the cache and the revocation check it calls.
    #[inline]
    pub(super) fn authenticate_now<'a>(&'a self, credential: Credential<'a>) -> AuthFuture<'a> {
        let now_ms = self.now_ms();
        #[cfg(feature = "remote-jwks")]
        if let KeySource::Remote(remote) = &self.inner.keys {
            // Cached verifications are not served past the JWKS's max-stale bound either.
            if let Lookup::Unavailable(e) = remote.lookup(KeyQuery::Kid(""), now_ms) {
                return AuthFuture::ready(Err(e));
            }
        }
        match self.verify_now(credential.value, now_ms) {
            Ok(verified) => self.admit(verified, now_ms),
            Err(Failure::Error(e)) => AuthFuture::ready(Err(e)),
            Err(Failure::UnknownKid) => match &self.inner.keys {
                KeySource::Local(_) => {
                    AuthFuture::ready(Err(invalid("the token's key is unknown")))
                }
                #[cfg(feature = "remote-jwks")]
                KeySource::Remote(remote) => AuthFuture::boxed(async move {
                    if !remote.refetch_for_unknown_kid().await {
                        return Err(invalid("the token's key is unknown"));
                    }
                    let now_ms = self.now_ms();
                    match self.verify_now(credential.value, now_ms) {
                        Ok(verified) => self.admit(verified, now_ms).await,
                        Err(Failure::Error(e)) => Err(e),
                        Err(Failure::UnknownKid) => Err(invalid("the token's key is unknown")),
                    }
                }),
            },
        }
    }

    /// Issues an access token for a family.
    pub(super) fn issue_access(
        &self,
        spec: PrincipalSpec,
        family: &str,
        authenticated_at_ms: i64,
        now_ms: i64,
    ) -> Result<(AccessToken, Principal)> {
        let inner = &*self.inner;
        let signer = inner.keys.signer().ok_or_else(|| {
            Error::with_message(ErrorKind::Internal, "this JWT strategy has no signing key")
        })?;
        // Never stamp a token before the subject's epoch: a login right after log-out-everywhere
        // must work even within the same millisecond.
        let iat_ms = inner
            .mirror
            .epoch_ms(&spec.subject)
            .map_or(now_ms, |e| e.max(now_ms));
        let iat = secs_floor(iat_ms);
        let exp = iat + inner.access_ttl_secs;
        let auth_time = secs_floor(authenticated_at_ms).min(iat);
        let jti = random_id()?;
        let token = jws::sign(
            &signer,
            &IssueClaims {
                iss: &inner.validation.issuer,
                sub: &spec.subject,
                aud: &inner.validation.audience,
                exp,
                iat,
                iat_ms,
                auth_time,
                jti: &jti,
                sid: family,
                roles: &spec.roles,
                attributes: &spec.attributes,
            },
        )?;
        let principal = Principal::new(
            spec,
            SessionRef {
                id: family.to_owned(),
                jti: Some(jti),
                issued_at: from_millis(iat_ms),
                client_ip: None,
            },
            from_millis(auth_time * 1000),
            from_millis(exp * 1000),
        );
        let access = AccessToken {
            token,
            expires_in: Duration::from_secs(inner.access_ttl_secs.unsigned_abs()),
        };
        Ok((access, principal))
    }
}

pub(super) fn revoked() -> Error {
    Error::with_message(ErrorKind::Revoked, "the token has been revoked")
}
