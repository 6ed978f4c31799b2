//! The JWT strategy: short-lived signed access tokens, opaque rotating refresh tokens, and
//! revocation mirrored in process.
//!
//! See [`crate::jwt`] for keys, validation rules, the JWKS and the revocation mirror.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use keycard::{Principal, SessionStrategy, jwt::{JwtConfig, JwtStrategy, KeyRing}};
//! use keycard::strategy::{ClientMeta, Credential, CredentialSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> keycard::Result<()> {
//! let strategy = JwtStrategy::builder(JwtConfig::new("https://auth.example", "api"))
//!     .key_ring(Arc::new(KeyRing::ephemeral()?))
//!     .build()?;
//! strategy.ready().await?;
//!
//! let issued = strategy
//!     .login(Principal::builder("alice").role("user").build(), &ClientMeta::default())
//!     .await?;
//! let token = issued.access_token.unwrap().token;
//! let me = strategy
//!     .authenticate(Credential { value: &token, source: CredentialSource::Bearer })
//!     .await?;
//! assert_eq!(me.subject(), "alice");
//! # Ok(()) }
//! ```

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use http::{HeaderValue, header};
use tokio::sync::oneshot;

use super::{
    AccessToken, AuthFuture, ClientMeta, Credential, CredentialSource, Issued, RefreshTokens,
    Reissue, SessionInfo, SessionStrategy,
};
use crate::{
    clock::{Clock, SystemClock, from_millis, to_millis, truncate_millis},
    error::{Error, ErrorKind, Result},
    events::{Events, SecurityEvent},
    jwt::{
        JwtConfig, KeyRing,
        cache::TokenCache,
        claims::{IssueClaims, Validation, Verified, check_attributes, invalid, secs_floor},
        config::{MAX_ACCESS_TTL, MAX_CACHE_SIZE, MAX_LEEWAY, MAX_REFRESH_GRACE},
        jwk::Jwks,
        jws::{self, Failure, KeyQuery, Lookup},
        keys::JwtKey,
        remote::{RemoteJwks, RemoteSettings, refresher},
    },
    principal::{Principal, PrincipalSpec, SessionRef},
    revocation::{self, Check, FAMILY_PREFIX, Mirror},
    store::{
        MemoryStore, RefreshRecord, RefreshStore, Revocation, RevocationStore, RotateOutcome,
        RotateRequest, timeout::Timed,
    },
    token::{OpaqueToken, random_id},
};

/// The path the JWKS is served at.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The JWT [`SessionStrategy`]. Cheap to clone (one reference count); clones share keys, cache
/// and mirror.
///
/// Build it with [`JwtStrategy::from_config`] or [`JwtStrategy::builder`], then await
/// [`JwtStrategy::ready`] at start-up to fail fast when the revocation store or the remote JWKS
/// is unreachable (until then verifications ask the store, or answer 503 in verifier-only mode).
///
/// - [`authenticate`](SessionStrategy::authenticate) verifies locally and answers with a ready
///   future (no allocation beyond the principal); it only goes to the store while the revocation
///   mirror is stale, or to the network when a remote JWKS must be refetched for an unknown `kid`.
/// - [`login`](SessionStrategy::login) starts a refresh family and issues an access token and a
///   refresh token; [`refresh`](RefreshTokens::refresh) rotates the refresh token (reuse of a
///   spent one revokes the family and its access tokens and emits
///   [`SecurityEvent::RefreshReuseDetected`]).
/// - [`logout`](SessionStrategy::logout) ends the family and denylists its access tokens;
///   [`logout_all`](SessionStrategy::logout_all) ends every family and moves the subject's epoch,
///   voiding every access token issued before it.
#[derive(Clone)]
pub struct JwtStrategy {
    inner: Arc<Inner>,
}

struct Inner {
    validation: Validation,
    access_ttl_secs: i64,
    refresh: RefreshSettings,
    keys: KeySource,
    cache: TokenCache,
    mirror: Arc<Mirror>,
    refresh_store: Arc<dyn RefreshStore>,
    revocations: Arc<dyn RevocationStore>,
    events: Events,
    clock: Arc<dyn Clock>,
    /// Dropping these stops the background tasks.
    _shutdown: Vec<oneshot::Sender<()>>,
}

#[derive(Debug, Clone, Copy)]
struct RefreshSettings {
    idle: Duration,
    absolute: Duration,
    grace: Duration,
}

#[derive(Clone)]
enum KeySource {
    Local(Arc<KeyRing>),
    Remote(Arc<RemoteJwks>),
}

impl KeySource {
    fn ring(&self) -> &KeyRing {
        match self {
            Self::Local(ring) => ring,
            Self::Remote(remote) => &remote.ring,
        }
    }

    #[inline]
    fn lookup(&self, query: KeyQuery<'_>, now_ms: i64) -> Lookup {
        match self {
            Self::Local(ring) => match query.find(&ring.snapshot()) {
                Some(key) => Lookup::Found(key.clone()),
                None => Lookup::Unknown,
            },
            Self::Remote(remote) => remote.lookup(query, now_ms),
        }
    }

    fn signer(&self) -> Option<JwtKey> {
        match self {
            Self::Local(ring) => ring.signer(),
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
                    KeySource::Remote(_) => "remote-jwks",
                },
            )
            .field("keys", &i.keys.ring().kids())
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtStrategy`]. Stores default to one shared in-process [`MemoryStore`], events to
/// `tracing` only, and the clock to the system clock.
#[must_use]
pub struct JwtStrategyBuilder {
    config: JwtConfig,
    ring: Option<Arc<KeyRing>>,
    refresh_store: Option<Arc<dyn RefreshStore>>,
    revocations: Option<Arc<dyn RevocationStore>>,
    events: Events,
    clock: Arc<dyn Clock>,
    store_timeout: Duration,
}

impl fmt::Debug for JwtStrategyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtStrategyBuilder")
            .field("config", &self.config)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

impl JwtStrategyBuilder {
    /// Uses this key ring instead of `config.keys` (which must then be empty). Keep a clone of the
    /// `Arc` to rotate keys at run time.
    pub fn key_ring(mut self, ring: Arc<KeyRing>) -> Self {
        self.ring = Some(ring);
        self
    }

    /// Where refresh families live.
    pub fn refresh_store(mut self, store: Arc<dyn RefreshStore>) -> Self {
        self.refresh_store = Some(store);
        self
    }

    /// Where access-token revocations live (shared by every instance).
    pub fn revocation_store(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocations = Some(store);
        self
    }

    /// Where security events go.
    pub fn events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The clock (tests move a [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Store calls slower than this fail with 503 (fail closed). Default 2 seconds.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Validates the configuration, loads and self-tests the keys, and starts the background
    /// tasks (revocation mirror; remote JWKS refresh). Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the offending field (`jwt.issuer`, `jwt.keys[0].pem`, ...).
    pub fn build(self) -> Result<JwtStrategy> {
        let c = &self.config;
        if c.issuer.trim().is_empty() {
            return Err(Error::config("jwt.issuer", "required"));
        }
        if c.audience.trim().is_empty() {
            return Err(Error::config("jwt.audience", "required"));
        }
        if c.access_ttl < Duration::from_secs(1) || c.access_ttl > MAX_ACCESS_TTL {
            return Err(Error::config(
                "jwt.access_ttl",
                "must be between 1s and 60m",
            ));
        }
        if c.access_ttl.subsec_nanos() != 0 {
            return Err(Error::config("jwt.access_ttl", "must be whole seconds"));
        }
        let max_lifetime = c.max_token_lifetime.unwrap_or(c.access_ttl);
        if max_lifetime < c.access_ttl || max_lifetime > MAX_ACCESS_TTL {
            return Err(Error::config(
                "jwt.max_token_lifetime",
                "must be between jwt.access_ttl and 60m",
            ));
        }
        if c.leeway > MAX_LEEWAY {
            return Err(Error::config("jwt.leeway", "must be at most 300s"));
        }
        if c.refresh.idle.is_zero() {
            return Err(Error::config("jwt.refresh.idle", "must be positive"));
        }
        if c.refresh.absolute.is_zero() {
            return Err(Error::config("jwt.refresh.absolute", "must be positive"));
        }
        if c.refresh.grace > MAX_REFRESH_GRACE {
            return Err(Error::config("jwt.refresh.grace", "must be at most 60s"));
        }
        if c.cache_size > MAX_CACHE_SIZE {
            return Err(Error::config("jwt.cache_size", "must be at most 1000000"));
        }
        if c.revocation_poll_interval < Duration::from_millis(10) {
            return Err(Error::config(
                "jwt.revocation_poll_interval",
                "must be at least 10ms",
            ));
        }
        // The crypto provider must work before the first request: sign and verify a probe with
        // a throwaway key (configured keys are self-tested as they load).
        JwtKey::generate("keycard-crypto-probe", crate::jwt::Algorithm::EdDSA).map_err(|e| {
            Error::config(
                "jwt",
                "the crypto provider (aws-lc-rs) failed its self-test",
            )
            .with_source(e)
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "jwt",
                "the JWT strategy must be built inside a tokio runtime",
            )
        })?;

        let mut shutdown = Vec::new();
        let keys = match (&c.jwks, self.ring, c.keys.is_empty()) {
            (Some(_), Some(_), _) | (Some(_), None, false) => {
                return Err(Error::config(
                    "jwt.jwks",
                    "verifier-only mode (jwks) excludes local keys",
                ));
            }
            (Some(remote), None, true) => {
                let url = remote.validate()?;
                let jwks = Arc::new(RemoteJwks::new(
                    RemoteSettings {
                        url,
                        refresh_interval: remote.refresh_interval,
                        refetch_cooldown: remote.refetch_cooldown,
                        max_stale: remote.max_stale,
                        timeout: remote.timeout,
                    },
                    self.clock.clone(),
                )?);
                let (tx, rx) = oneshot::channel();
                shutdown.push(tx);
                runtime.spawn(refresher(Arc::downgrade(&jwks), rx));
                KeySource::Remote(jwks)
            }
            (None, Some(_), false) => {
                return Err(Error::config(
                    "jwt.keys",
                    "keys come from the key ring given to the builder",
                ));
            }
            (None, Some(ring), true) => KeySource::Local(ring),
            (None, None, true) => {
                if !c.ephemeral_key {
                    return Err(Error::config(
                        "jwt.keys",
                        "no keys: configure jwt.keys, jwt.jwks, or set jwt.ephemeral_key = true",
                    ));
                }
                let ring = KeyRing::ephemeral()?;
                tracing::warn!(
                    kid = ?ring.kids(),
                    "keycard: generated an ephemeral Ed25519 signing key; tokens will not survive a restart"
                );
                KeySource::Local(Arc::new(ring))
            }
            (None, None, false) => {
                let mut loaded = Vec::with_capacity(c.keys.len());
                let mut signer = None;
                for (i, k) in c.keys.iter().enumerate() {
                    let key = k.load(i)?;
                    if loaded.iter().any(|o: &JwtKey| o.kid() == key.kid()) {
                        return Err(Error::config(
                            &format!("jwt.keys[{i}].kid"),
                            "duplicate kid",
                        ));
                    }
                    if k.signing {
                        if signer.is_some() {
                            return Err(Error::config(
                                &format!("jwt.keys[{i}].signing"),
                                "only one key may sign",
                            ));
                        }
                        signer = Some(key.kid().to_owned());
                    }
                    loaded.push(key);
                }
                let Some(signer) = signer else {
                    return Err(Error::config(
                        "jwt.keys",
                        "exactly one key needs signing = true",
                    ));
                };
                let ring = KeyRing::new(loaded, Some(&signer))
                    .map_err(|e| Error::config("jwt.keys", e.message()))?;
                KeySource::Local(Arc::new(ring))
            }
        };
        if let KeySource::Local(ring) = &keys
            && ring.signer().is_none()
        {
            tracing::info!("keycard: the JWT key ring has no signer; login and refresh will fail");
        }

        let (refresh_store, revocations) = match (self.refresh_store, self.revocations) {
            (Some(r), Some(v)) => (r, v),
            (r, v) => {
                let memory = Arc::new(MemoryStore::new());
                (
                    r.unwrap_or_else(|| memory.clone()),
                    v.unwrap_or_else(|| memory.clone()),
                )
            }
        };
        if self.store_timeout.is_zero() {
            return Err(Error::config("session.store_timeout", "must be positive"));
        }
        let refresh_store: Arc<dyn RefreshStore> =
            Arc::new(Timed::new(refresh_store, self.store_timeout));
        let revocations: Arc<dyn RevocationStore> =
            Arc::new(Timed::new(revocations, self.store_timeout));

        let leeway_ms = ms(c.leeway);
        let max_ttl_secs = i64::try_from(max_lifetime.as_secs()).unwrap_or(i64::MAX);
        // An epoch older than this cannot void a token that still verifies.
        let horizon = max_lifetime + c.leeway * 2 + Duration::from_secs(60);
        let mirror = Arc::new(Mirror::new(horizon));
        let (tx, rx) = oneshot::channel();
        shutdown.push(tx);
        runtime.spawn(
            revocation::Task {
                mirror: Arc::downgrade(&mirror),
                store: revocations.clone(),
                clock: self.clock.clone(),
                poll_interval: c.revocation_poll_interval,
                shutdown: rx,
            }
            .run(),
        );

        Ok(JwtStrategy {
            inner: Arc::new(Inner {
                validation: Validation {
                    issuer: c.issuer.as_str().into(),
                    audience: c.audience.as_str().into(),
                    leeway_ms,
                    max_ttl_secs,
                },
                access_ttl_secs: i64::try_from(c.access_ttl.as_secs()).unwrap_or(i64::MAX),
                refresh: RefreshSettings {
                    idle: c.refresh.idle,
                    absolute: c.refresh.absolute,
                    grace: c.refresh.grace,
                },
                keys,
                cache: TokenCache::new(c.cache_size),
                mirror,
                refresh_store,
                revocations,
                events: self.events,
                clock: self.clock,
                _shutdown: shutdown,
            }),
        })
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn truncate_utf8(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn grant_error() -> Error {
    Error::new(ErrorKind::InvalidGrant)
}

impl JwtStrategy {
    /// Builds the strategy from config (see [`JwtStrategyBuilder::build`]). Await
    /// [`JwtStrategy::ready`] before serving.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the offending field.
    pub fn from_config(
        config: &JwtConfig,
        refresh_store: Arc<dyn RefreshStore>,
        revocations: Arc<dyn RevocationStore>,
        events: Events,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        Self::builder(config.clone())
            .refresh_store(refresh_store)
            .revocation_store(revocations)
            .events(events)
            .clock(clock)
            .build()
    }

    /// A builder starting from `config`.
    pub fn builder(config: JwtConfig) -> JwtStrategyBuilder {
        JwtStrategyBuilder {
            config,
            ring: None,
            refresh_store: None,
            revocations: None,
            events: Events::default(),
            clock: Arc::new(SystemClock),
            store_timeout: Duration::from_secs(2),
        }
    }

    /// Resolves once the revocation mirror is loaded and live and, in verifier-only mode, the
    /// remote JWKS has been fetched.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`] when the revocation store or the JWKS is unreachable at
    /// start-up. The strategy keeps retrying in the background (and fails closed meanwhile).
    pub async fn ready(&self) -> Result<()> {
        if let KeySource::Remote(remote) = &self.inner.keys {
            remote.ready().await?;
        }
        self.inner.mirror.ready().await
    }

    /// The local key ring, for rotation at run time (`None` in verifier-only mode).
    pub fn key_ring(&self) -> Option<&Arc<KeyRing>> {
        match &self.inner.keys {
            KeySource::Local(ring) => Some(ring),
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

    fn now_ms(&self) -> i64 {
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

    /// Issues an access token for a family.
    fn issue_access(
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

    /// Denylists every access token of `family` for as long as any of them can verify.
    async fn revoke_family_tokens(&self, family: &str, now_ms: i64) -> Result<()> {
        let v = &self.inner.validation;
        let until = now_ms
            .saturating_add(v.max_ttl_secs.saturating_mul(1000))
            .saturating_add(v.leeway_ms)
            .saturating_add(1000);
        self.record_revocation(Revocation::Jti {
            jti: format!("{FAMILY_PREFIX}{family}"),
            until: from_millis(until),
        })
        .await
    }

    async fn record_revocation(&self, revocation: Revocation) -> Result<()> {
        self.inner.revocations.revoke(&revocation).await?;
        // Effective here at once, whatever the feed's latency.
        self.inner.mirror.apply(&revocation);
        Ok(())
    }

    /// Inserts a new family (retrying once on an ID collision), returning its id and token.
    async fn start_family(
        &self,
        spec: &PrincipalSpec,
        f: NewFamily,
    ) -> Result<(String, OpaqueToken)> {
        for _ in 0..2 {
            let family = random_id()?;
            let token = OpaqueToken::generate()?;
            let record = RefreshRecord {
                id: token.hash(),
                family: family.clone(),
                subject: spec.subject.clone(),
                roles: spec.roles.clone(),
                attributes: spec.attributes.clone(),
                issued_at: f.now,
                expires_at: (f.now + self.inner.refresh.idle).min(f.expires_at),
                family_created_at: f.now,
                family_expires_at: f.expires_at,
                authenticated_at: f.authenticated_at,
                used_at: None,
                user_agent: f.user_agent.clone(),
                ip: f.ip.clone(),
            };
            if self.inner.refresh_store.insert(&record).await? {
                return Ok((family, token));
            }
        }
        Err(Error::with_message(
            ErrorKind::Internal,
            "refresh family ID collided twice",
        ))
    }
}

/// Facts of a family about to start.
struct NewFamily {
    now: SystemTime,
    expires_at: SystemTime,
    authenticated_at: SystemTime,
    user_agent: Option<String>,
    ip: Option<String>,
}

fn revoked() -> Error {
    Error::with_message(ErrorKind::Revoked, "the token has been revoked")
}

fn remaining(until: SystemTime, now: SystemTime) -> Duration {
    until.duration_since(now).unwrap_or_default()
}

#[async_trait]
impl SessionStrategy for JwtStrategy {
    fn credential_source(&self) -> CredentialSource {
        CredentialSource::Bearer
    }

    fn refresh_tokens(&self) -> Option<&dyn RefreshTokens> {
        Some(self)
    }

    fn authenticate<'a>(&'a self, credential: Credential<'a>) -> AuthFuture<'a> {
        let now_ms = self.now_ms();
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

    async fn login(&self, spec: PrincipalSpec, meta: &ClientMeta) -> Result<Issued> {
        check_attributes(&spec.attributes)?;
        if spec.subject.is_empty() {
            return Err(Error::with_message(
                ErrorKind::Internal,
                "the subject is empty",
            ));
        }
        if self.inner.keys.signer().is_none() {
            return Err(Error::with_message(
                ErrorKind::Internal,
                "this JWT strategy has no signing key",
            ));
        }
        let now = truncate_millis(self.inner.clock.now());
        let now_ms = to_millis(now);
        let absolute_end = now + self.inner.refresh.absolute;
        let (family, refresh_token) = self
            .start_family(
                &spec,
                NewFamily {
                    now,
                    expires_at: absolute_end,
                    authenticated_at: now,
                    user_agent: meta.user_agent.as_deref().map(|ua| truncate_utf8(ua, 256)),
                    ip: meta.ip.map(|ip| ip.to_string()),
                },
            )
            .await?;
        let subject = spec.subject.clone();
        let (access, principal) = match self.issue_access(spec, &family, now_ms, now_ms) {
            Ok(issued) => issued,
            Err(e) => {
                // Do not leave a family behind that no client holds.
                let _ = self
                    .inner
                    .refresh_store
                    .delete_family(&subject, &family)
                    .await;
                return Err(e);
            }
        };
        self.inner.events.emit(SecurityEvent::Login {
            subject,
            session: family,
            ip: meta.ip,
        });
        Ok(Issued {
            principal,
            session_token: None,
            session_max_age: None,
            access_token: Some(access),
            refresh_token: Some(refresh_token),
            refresh_max_age: Some(remaining(absolute_end, now)),
        })
    }

    async fn reissue(&self, current: &Principal, change: Reissue<'_>) -> Result<Issued> {
        let (spec, reauthenticated) = change.into_parts();
        let spec = spec.unwrap_or_else(|| current.spec());
        if spec.subject != current.subject() {
            return Err(Error::with_message(
                ErrorKind::Internal,
                "rotate cannot change the subject; log the new subject in instead",
            ));
        }
        check_attributes(&spec.attributes)?;
        let now = truncate_millis(self.inner.clock.now());
        let now_ms = to_millis(now);
        let old_family = current.session().id.clone();
        let old = self
            .inner
            .refresh_store
            .list(&spec.subject, now)
            .await?
            .into_iter()
            .find(|r| r.family == old_family)
            .ok_or_else(revoked)?;
        let (authenticated_at, family_expires_at) = if reauthenticated.is_some() {
            (now, now + self.inner.refresh.absolute)
        } else {
            (old.authenticated_at, old.family_expires_at)
        };
        let (family, refresh_token) = self
            .start_family(
                &spec,
                NewFamily {
                    now,
                    expires_at: family_expires_at,
                    authenticated_at,
                    user_agent: match reauthenticated {
                        Some(meta) => meta.user_agent.clone(),
                        None => old.user_agent.clone(),
                    },
                    ip: match reauthenticated {
                        Some(meta) => meta.ip.map(|ip| ip.to_string()),
                        None => old.ip.clone(),
                    },
                },
            )
            .await?;
        self.inner
            .refresh_store
            .delete_family(&spec.subject, &old_family)
            .await?;
        self.revoke_family_tokens(&old_family, now_ms).await?;
        let subject = spec.subject.clone();
        let (access, principal) =
            self.issue_access(spec, &family, to_millis(authenticated_at), now_ms)?;
        self.inner.events.emit(SecurityEvent::SessionRotated {
            subject: subject.clone(),
            old: old_family,
            new: family,
        });
        if reauthenticated.is_some() {
            self.inner.events.emit(SecurityEvent::StepUp { subject });
        }
        Ok(Issued {
            principal,
            session_token: None,
            session_max_age: None,
            access_token: Some(access),
            refresh_token: Some(refresh_token),
            refresh_max_age: Some(remaining(family_expires_at, now)),
        })
    }

    async fn logout(&self, current: &Principal) -> Result<()> {
        let now_ms = self.now_ms();
        let family = current.session().id.as_str();
        if let Some(jti) = &current.session().jti {
            let until =
                to_millis(current.expires_at()).saturating_add(self.inner.validation.leeway_ms);
            self.record_revocation(Revocation::Jti {
                jti: jti.clone(),
                until: from_millis(until),
            })
            .await?;
        }
        self.revoke_family_tokens(family, now_ms).await?;
        self.inner
            .refresh_store
            .delete_family(current.subject(), family)
            .await?;
        self.inner.events.emit(SecurityEvent::Logout {
            subject: current.subject().to_owned(),
            session: family.to_owned(),
        });
        Ok(())
    }

    async fn logout_all(&self, subject: &str) -> Result<u64> {
        let now_ms = to_millis(self.inner.clock.now());
        // `T + 1 ms`: tokens issued up to and including this millisecond are void. Tokens are
        // never stamped before the current epoch, so the new epoch moves past it too.
        let current = self.inner.mirror.epoch_ms(subject).unwrap_or(i64::MIN);
        let epoch = from_millis(now_ms.max(current).saturating_add(1));
        self.record_revocation(Revocation::Epoch {
            subject: subject.to_owned(),
            epoch,
        })
        .await?;
        let count = self.inner.refresh_store.delete_all(subject).await?;
        self.inner.events.emit(SecurityEvent::AllSessionsRevoked {
            subject: subject.to_owned(),
            count,
        });
        Ok(count)
    }

    async fn list(&self, subject: &str) -> Result<Vec<SessionInfo>> {
        let now = self.inner.clock.now();
        Ok(self
            .inner
            .refresh_store
            .list(subject, now)
            .await?
            .into_iter()
            .map(|r| SessionInfo {
                id: r.family,
                created_at: r.family_created_at,
                last_seen_at: r.issued_at,
                user_agent: r.user_agent,
                ip: r.ip,
            })
            .collect())
    }

    async fn revoke(&self, subject: &str, session_id: &str) -> Result<bool> {
        let now_ms = self.now_ms();
        let deleted = self
            .inner
            .refresh_store
            .delete_family(subject, session_id)
            .await?;
        if deleted {
            // Only after the store confirmed the family is this subject's.
            self.revoke_family_tokens(session_id, now_ms).await?;
            self.inner.events.emit(SecurityEvent::SessionRevoked {
                subject: subject.to_owned(),
                session: session_id.to_owned(),
            });
        }
        Ok(deleted)
    }

    async fn verify_live(&self, current: &Principal) -> Result<()> {
        let now = self.inner.clock.now();
        if self
            .inner
            .refresh_store
            .family_live(&current.session().id, now)
            .await?
        {
            Ok(())
        } else {
            Err(revoked())
        }
    }
}

#[async_trait]
impl RefreshTokens for JwtStrategy {
    async fn refresh(&self, refresh_token: &str, _meta: &ClientMeta) -> Result<Issued> {
        let presented = OpaqueToken::parse(refresh_token).ok_or_else(grant_error)?;
        if self.inner.keys.signer().is_none() {
            return Err(grant_error());
        }
        let now = truncate_millis(self.inner.clock.now());
        let now_ms = to_millis(now);
        let next_token = OpaqueToken::generate()?;
        let next_hash = next_token.hash();
        let outcome = self
            .inner
            .refresh_store
            .rotate(RotateRequest {
                presented: &presented.hash(),
                next: &next_hash,
                now,
                idle: self.inner.refresh.idle,
                grace: self.inner.refresh.grace,
            })
            .await?;
        match outcome {
            RotateOutcome::Rotated { next } => {
                let spec = PrincipalSpec {
                    subject: next.subject.clone(),
                    roles: next.roles.clone(),
                    attributes: next.attributes.clone(),
                };
                let (access, principal) = self.issue_access(
                    spec,
                    &next.family,
                    to_millis(next.authenticated_at),
                    now_ms,
                )?;
                self.inner.events.emit(SecurityEvent::RefreshRotated {
                    subject: next.subject,
                    family: next.family,
                });
                Ok(Issued {
                    principal,
                    session_token: None,
                    session_max_age: None,
                    access_token: Some(access),
                    refresh_token: Some(next_token),
                    refresh_max_age: Some(remaining(next.family_expires_at, now)),
                })
            }
            RotateOutcome::Reused { family, subject } => {
                self.inner.events.emit(SecurityEvent::RefreshReuseDetected {
                    subject,
                    family: family.clone(),
                });
                // The thief may hold an access token from this family: void them all.
                if let Err(e) = self.revoke_family_tokens(&family, now_ms).await {
                    tracing::error!(error = %e, "keycard: could not denylist the access tokens of a reused refresh family");
                }
                Err(Error::with_message(
                    ErrorKind::InvalidGrant,
                    "the refresh token was already used; its session has been revoked",
                ))
            }
            RotateOutcome::Invalid => Err(grant_error()),
        }
    }
}
