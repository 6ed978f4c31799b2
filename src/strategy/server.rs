//! Server sessions: an opaque 256-bit token in a cookie, the session record in a store.
//!
//! The store keeps only the token's SHA-256, so a leaked table yields no usable session. Each
//! authenticated request costs one store read; sliding renewal adds a write at most once per
//! [`ServerSettings::renewal_interval`]. Login always creates a fresh token (session fixation is
//! impossible: a client-chosen ID is never adopted), and [`SessionStrategy::reissue`] replaces it
//! after a privilege change.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use super::{
    AuthFuture, ClientMeta, Credential, CredentialSource, Issued, Reissue, SessionDataStore,
    SessionInfo, SessionStrategy,
    cache::{CacheKey, CacheSettings, SessionCache},
};
use crate::{
    auth::Login,
    clock::{Clock, SystemClock, truncate_millis},
    error::{Error, ErrorKind, Result},
    events::{Events, SecurityEvent},
    principal::{DataLoad, Principal, PrincipalSpec, SessionRef},
    store::{
        CreateOutcome, DataLimits, DataPatch, RevocationStore, SessionLimit, SessionRecord,
        SessionStore, StoreResult, metered::Metered, timeout,
    },
    token::{OpaqueToken, TokenHash},
};

/// `timed!(self.op(args))`: the store call `self.store.op(args)`, timed into the store-call
/// histogram while a recorder would keep the duration (no clock read and no wrapper otherwise).
macro_rules! timed {
    ($self:ident . $op:ident ( $($arg:expr),* $(,)? )) => {
        crate::metrics::store_call(
            crate::metrics::key!(
                crate::metrics::STORE_CALL_DURATION,
                "store" => "session",
                "operation" => stringify!($op),
            ),
            $self.store.$op($($arg),*),
        )
    };
}

/// Timeouts and limits of server sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// A session unused for this long expires. Default 30 minutes.
    pub idle_timeout: Duration,
    /// A session expires this long after login, however active. Default 12 hours.
    pub absolute_timeout: Duration,
    /// Sliding renewal writes `last_seen_at` at most once per this interval. Default: a tenth
    /// of the idle timeout (3 minutes).
    pub renewal_interval: Duration,
    /// Concurrent-session limit per subject. Default none.
    pub limit: Option<SessionLimit>,
    /// A store call slower than this fails the request with 503. Default 2 seconds.
    pub store_timeout: Duration,
    /// Anonymous sessions (opt-in): a caller without a credential who writes
    /// [`SessionData`](crate::SessionData) gets a session that holds data only. Default: off.
    pub anonymous: Option<AnonymousSettings>,
}

/// The lifetime of anonymous sessions (see [`ServerSettings::anonymous`]). At login their data
/// moves into the new session, under a fresh ID, and the anonymous ID stops working.
///
/// In config: `[session.anonymous]` (an empty table turns them on with the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnonymousSettings {
    /// An anonymous session unused for this long expires. Default 30 minutes.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// An anonymous session expires this long after it started. Default 24 hours.
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
}

impl Default for AnonymousSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            renewal_interval: Duration::from_secs(3 * 60),
            limit: None,
            store_timeout: Duration::from_secs(2),
            anonymous: None,
        }
    }
}

/// The server-session strategy over any [`SessionStore`].
///
/// ```
/// use std::sync::Arc;
/// use keycard::{store::MemoryStore, strategy::{ServerSessions, ServerSettings}};
///
/// let sessions = ServerSessions::new(Arc::new(MemoryStore::new()), ServerSettings::default());
/// # let _ = sessions;
/// ```
#[derive(Debug, Clone)]
pub struct ServerSessions {
    /// The store; every call goes through [`timed!`], which times it into the store-call
    /// histogram while a recorder would keep the duration.
    store: Arc<dyn SessionStore>,
    settings: ServerSettings,
    clock: Arc<dyn Clock>,
    events: Events,
    cache: Option<Arc<SessionCache>>,
    /// The timeout to put on each store call; `None` when the store bounds its own calls within
    /// `store_timeout`.
    timeout: Option<Duration>,
}

impl ServerSessions {
    /// Server sessions over `store` with the system clock and no event hook.
    pub fn new(store: Arc<dyn SessionStore>, settings: ServerSettings) -> Self {
        Self {
            timeout: timeout::needed(&*store, settings.store_timeout),
            store,
            settings,
            clock: Arc::new(SystemClock),
            events: Events::default(),
            cache: None,
        }
    }

    /// Turns on the local read cache (see [`CacheSettings`]): hits cost no store round
    /// trip; revocations are published through `revocations` and pushed to every instance.
    /// Call after [`with_clock`](Self::with_clock); needs a Tokio runtime. Await
    /// [`ready`](Self::ready) before serving.
    pub fn with_cache(
        mut self,
        settings: CacheSettings,
        revocations: Arc<dyn RevocationStore>,
    ) -> Self {
        self.cache = Some(Arc::new(SessionCache::start(
            settings,
            Arc::new(Metered::new(revocations)),
            self.clock.clone(),
            self.settings.absolute_timeout,
        )));
        self
    }

    /// Resolves once the cache's revocation mirror is loaded (at once without a cache).
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`] when the revocation store cannot be reached.
    pub async fn ready(&self) -> Result<()> {
        match &self.cache {
            Some(cache) => cache.ready().await,
            None => Ok(()),
        }
    }

    /// How many sessions the read cache holds (0 without a cache).
    pub fn cached_sessions(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    async fn revoked_locally(&self, handle: &str) {
        if let Some(cache) = &self.cache {
            let until = self.clock.now() + self.settings.absolute_timeout;
            cache.revoke_session(handle, until).await;
        }
    }

    /// Uses `clock` (tests use [`ManualClock`](crate::clock::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends security events to `events`.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// Awaits a store call, bounded by `store_timeout` (by the store itself when it promises a
    /// deadline within it: one timer per call, no wrapper allocation).
    async fn guarded<T>(&self, call: impl Future<Output = StoreResult<T>>) -> Result<T> {
        match self.timeout {
            Some(t) => timeout::within(t, call).await,
            None => call.await,
        }
        .map_err(Into::into)
    }

    fn principal(record: SessionRecord, handle: String) -> Principal {
        let anonymous = record.is_anonymous();
        let data = DataLoad::Loaded(record.data.map(Arc::from));
        let session = SessionRef {
            id: handle,
            jti: None,
            issued_at: record.created_at,
            client_ip: record.ip.as_deref().and_then(|ip| ip.parse().ok()),
        };
        Principal::new(
            PrincipalSpec {
                subject: record.subject,
                roles: record.roles,
                attributes: record.attributes,
            },
            session,
            record.authenticated_at,
            record.expires_at,
        )
        .with_data(data, anonymous)
    }

    /// The idle timeout of `record`: its own when chosen at login, else its kind's.
    fn idle_of(&self, record: &SessionRecord) -> Duration {
        match (&self.settings.anonymous, record.is_anonymous()) {
            (Some(anonymous), true) => anonymous.idle_timeout,
            _ => record
                .idle_timeout
                .map_or(self.settings.idle_timeout, |own| {
                    own.min(self.settings.idle_timeout)
                }),
        }
    }

    async fn resolve(&self, id: TokenHash, key: Option<CacheKey>) -> Result<Principal> {
        let now = self.clock.now();
        let Some(mut record) = self.guarded(timed!(self.load(&id, now))).await? else {
            return Err(Error::new(ErrorKind::InvalidCredential));
        };
        if record.expires_at <= now || record.absolute_expires_at <= now {
            return Err(Error::new(ErrorKind::Expired));
        }
        let since_seen = now
            .duration_since(record.last_seen_at)
            .unwrap_or(Duration::ZERO);
        if since_seen >= self.settings.renewal_interval {
            let now = truncate_millis(now);
            let expires = (now + self.idle_of(&record)).min(record.absolute_expires_at);
            if self.guarded(timed!(self.touch(&id, now, expires))).await? {
                record.last_seen_at = now;
                record.expires_at = expires;
            } else {
                return Err(Error::new(ErrorKind::InvalidCredential));
            }
        }
        let created_at = record.created_at;
        let valid_until = record
            .expires_at
            .min(record.last_seen_at + self.settings.renewal_interval);
        let principal = Self::principal(record, id.handle());
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            // Hits read the data from the store when asked: another instance may change it.
            let anonymous = principal.is_anonymous();
            let cached = principal.clone().with_data(DataLoad::Lazy, anonymous);
            cache.put(key, &cached, created_at, valid_until, now);
        }
        Ok(principal)
    }

    fn new_record(
        &self,
        spec: PrincipalSpec,
        meta: &ClientMeta,
        options: Login,
    ) -> Result<(OpaqueToken, SessionRecord)> {
        let idle_timeout = options.idle_within(self.settings.idle_timeout)?;
        let absolute_timeout = options.absolute_within(self.settings.absolute_timeout)?;
        let token = OpaqueToken::generate()?;
        let now = truncate_millis(self.clock.now());
        let absolute = now + absolute_timeout;
        let idle = idle_timeout.unwrap_or(self.settings.idle_timeout);
        let record = SessionRecord {
            id: token.hash(),
            subject: spec.subject,
            roles: spec.roles,
            attributes: spec.attributes,
            created_at: now,
            last_seen_at: now,
            authenticated_at: now,
            expires_at: (now + idle).min(absolute),
            absolute_expires_at: absolute,
            user_agent: meta.user_agent.clone(),
            ip: meta.ip.map(|ip| ip.to_string()),
            data: None,
            idle_timeout,
            persistent: options.is_persistent(),
        };
        Ok((token, record))
    }

    fn issued(&self, token: OpaqueToken, record: SessionRecord) -> Issued {
        // Issued now (`last_seen_at`): a persistent cookie lives until the absolute expiry.
        let max_age = record
            .absolute_expires_at
            .duration_since(record.last_seen_at)
            .unwrap_or(Duration::ZERO);
        let handle = record.id.handle();
        let persistent = record.persistent;
        Issued {
            principal: Self::principal(record, handle),
            session_token: Some(token),
            session_max_age: persistent.then_some(max_age),
            access_token: None,
            refresh_token: None,
            refresh_max_age: None,
        }
    }

    fn handle_of(principal: &Principal) -> Result<TokenHash> {
        TokenHash::from_handle(&principal.session().id).ok_or_else(|| {
            Error::with_message(ErrorKind::Internal, "principal has no server session")
        })
    }
}

#[async_trait]
impl SessionStrategy for ServerSessions {
    fn name(&self) -> &'static str {
        "server"
    }

    fn credential_source(&self) -> CredentialSource {
        CredentialSource::Cookie
    }

    fn authenticate<'a>(&'a self, credential: Credential<'a>) -> AuthFuture<'a> {
        // A hit needs no decoding: only canonical IDs the store vouched for are cached.
        let key = self
            .cache
            .as_ref()
            .and_then(|_| CacheKey::of(credential.value));
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Some(principal) = cache.get(key, self.clock.now())
        {
            return AuthFuture::ready(Ok(principal));
        }
        let Some(id) = TokenHash::of_encoded(credential.value) else {
            return AuthFuture::ready(Err(Error::new(ErrorKind::InvalidCredential)));
        };
        AuthFuture::boxed(self.resolve(id, key))
    }

    async fn login(
        &self,
        spec: PrincipalSpec,
        meta: &ClientMeta,
        options: Login,
    ) -> Result<Issued> {
        if spec.subject.is_empty() {
            // An empty subject marks an anonymous session.
            return Err(Error::with_message(
                ErrorKind::InvalidData,
                "the subject must not be empty",
            ));
        }
        let subject = spec.subject.clone();
        let (token, record) = self.new_record(spec, meta, options)?;
        match self
            .guarded(timed!(self.create(&record, self.settings.limit)))
            .await?
        {
            CreateOutcome::Created { evicted } => {
                for id in evicted {
                    let handle = id.handle();
                    self.revoked_locally(&handle).await;
                    self.events.emit(SecurityEvent::SessionEvicted {
                        subject: subject.clone(),
                        session: handle,
                    });
                }
                self.events.emit(SecurityEvent::Login {
                    subject,
                    session: record.id.handle(),
                    ip: meta.ip,
                });
                Ok(self.issued(token, record))
            }
            CreateOutcome::LimitReached => {
                self.events.emit(SecurityEvent::LoginRefused { subject });
                Err(Error::new(ErrorKind::SessionLimit))
            }
            // 2^-256: report rather than retry silently.
            CreateOutcome::Collision => Err(Error::with_message(
                ErrorKind::Internal,
                "session ID collision",
            )),
        }
    }

    async fn reissue(&self, current: &Principal, change: Reissue<'_>) -> Result<Issued> {
        let (spec, reauthenticated) = change.into_parts();
        let old_id = Self::handle_of(current)?;
        let now = self.clock.now();
        let Some(old) = self.guarded(timed!(self.load(&old_id, now))).await? else {
            return Err(Error::new(ErrorKind::Revoked));
        };
        let token = OpaqueToken::generate()?;
        let now = truncate_millis(now);
        let spec = spec.unwrap_or_else(|| current.spec());
        let record = SessionRecord {
            id: token.hash(),
            subject: spec.subject,
            roles: spec.roles,
            attributes: spec.attributes,
            created_at: old.created_at,
            last_seen_at: now,
            authenticated_at: if reauthenticated.is_some() {
                now
            } else {
                old.authenticated_at
            },
            expires_at: (now + self.idle_of(&old)).min(old.absolute_expires_at),
            absolute_expires_at: old.absolute_expires_at,
            user_agent: match reauthenticated {
                Some(meta) => meta.user_agent.clone(),
                None => old.user_agent,
            },
            ip: match reauthenticated {
                Some(meta) => meta.ip.map(|ip| ip.to_string()),
                None => old.ip,
            },
            data: old.data,
            idle_timeout: old.idle_timeout,
            persistent: old.persistent,
        };
        if !self.guarded(timed!(self.rotate(&old_id, &record))).await? {
            return Err(Error::new(ErrorKind::Revoked));
        }
        self.revoked_locally(&current.session().id).await;
        self.events.emit(SecurityEvent::SessionRotated {
            subject: record.subject.clone(),
            old: old_id.handle(),
            new: record.id.handle(),
        });
        if reauthenticated.is_some() {
            self.events.emit(SecurityEvent::StepUp {
                subject: record.subject.clone(),
            });
        }
        Ok(self.issued(token, record))
    }

    async fn logout(&self, current: &Principal) -> Result<()> {
        let id = Self::handle_of(current)?;
        self.guarded(timed!(self.delete(current.subject(), &id)))
            .await?;
        self.revoked_locally(&current.session().id).await;
        self.events.emit(SecurityEvent::Logout {
            subject: current.subject().to_owned(),
            session: current.session().id.clone(),
        });
        Ok(())
    }

    async fn logout_all(&self, subject: &str) -> Result<u64> {
        let count = self.guarded(timed!(self.delete_all(subject))).await?;
        if let Some(cache) = &self.cache {
            // Sessions created before this instant are void on every instance.
            let epoch = truncate_millis(self.clock.now()) + Duration::from_millis(1);
            cache.revoke_subject(subject, epoch).await;
        }
        self.events.emit(SecurityEvent::AllSessionsRevoked {
            subject: subject.to_owned(),
            count,
        });
        Ok(count)
    }

    async fn list(&self, subject: &str) -> Result<Vec<SessionInfo>> {
        let records = self
            .guarded(timed!(self.list(subject, self.clock.now())))
            .await?;
        Ok(records
            .into_iter()
            .map(|r| SessionInfo {
                id: r.id.handle(),
                created_at: r.created_at,
                last_seen_at: r.last_seen_at,
                user_agent: r.user_agent,
                ip: r.ip,
            })
            .collect())
    }

    async fn revoke(&self, subject: &str, session_id: &str) -> Result<bool> {
        let Some(id) = TokenHash::from_handle(session_id) else {
            return Ok(false);
        };
        let deleted = self.guarded(timed!(self.delete(subject, &id))).await?;
        if deleted {
            self.revoked_locally(session_id).await;
            self.events.emit(SecurityEvent::SessionRevoked {
                subject: subject.to_owned(),
                session: session_id.to_owned(),
            });
        }
        Ok(deleted)
    }

    async fn verify_live(&self, current: &Principal) -> Result<()> {
        let id = Self::handle_of(current)?;
        match self
            .guarded(timed!(self.load(&id, self.clock.now())))
            .await?
        {
            Some(_) => Ok(()),
            None => Err(Error::new(ErrorKind::Revoked)),
        }
    }

    fn session_data(&self) -> Option<&dyn SessionDataStore> {
        Some(self)
    }
}

#[async_trait]
impl SessionDataStore for ServerSessions {
    async fn load(&self, session: &Principal) -> Result<Option<String>> {
        let id = Self::handle_of(session)?;
        match self
            .guarded(timed!(self.load(&id, self.clock.now())))
            .await?
        {
            Some(record) => Ok(record.data),
            None => Err(Error::new(ErrorKind::Revoked)),
        }
    }

    async fn save(
        &self,
        session: &Principal,
        patch: &DataPatch,
        limits: &DataLimits,
    ) -> Result<()> {
        let id = Self::handle_of(session)?;
        let now = self.clock.now();
        match self
            .guarded(timed!(self.update_data(&id, patch, limits, now)))
            .await?
        {
            true => Ok(()),
            false => Err(Error::new(ErrorKind::Revoked)),
        }
    }

    fn anonymous(&self) -> bool {
        self.settings.anonymous.is_some()
    }

    async fn start_anonymous(
        &self,
        patch: &DataPatch,
        limits: &DataLimits,
        meta: &ClientMeta,
    ) -> Result<Option<Issued>> {
        let Some(lifetime) = self.settings.anonymous else {
            return Ok(None);
        };
        let data = patch.apply(None, limits)?;
        let token = OpaqueToken::generate()?;
        let now = truncate_millis(self.clock.now());
        let absolute = now + lifetime.absolute_timeout;
        let record = SessionRecord {
            id: token.hash(),
            subject: String::new(),
            roles: Vec::new(),
            attributes: serde_json::Map::new(),
            created_at: now,
            last_seen_at: now,
            authenticated_at: now,
            expires_at: (now + lifetime.idle_timeout).min(absolute),
            absolute_expires_at: absolute,
            user_agent: meta.user_agent.clone(),
            ip: meta.ip.map(|ip| ip.to_string()),
            data,
            idle_timeout: None,
            persistent: true,
        };
        match self.guarded(timed!(self.create(&record, None))).await? {
            CreateOutcome::Created { .. } => Ok(Some(self.issued(token, record))),
            _ => Err(Error::with_message(
                ErrorKind::Internal,
                "session ID collision",
            )),
        }
    }

    async fn discard_anonymous(&self, session: &Principal) -> Result<()> {
        let id = Self::handle_of(session)?;
        self.guarded(timed!(self.delete("", &id))).await?;
        self.revoked_locally(&session.session().id).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{
        store::{MemoryStore, StoreError, StoreErrorKind, StoreResult},
        strategy::CredentialSource,
    };

    /// A store whose reads never finish, claiming (or not) a deadline of its own; when it claims
    /// one, its reads fail with a timeout once that much time has passed, as a real store would.
    #[derive(Debug)]
    struct Hung {
        inner: MemoryStore,
        own: Option<Duration>,
    }

    #[async_trait]
    impl SessionStore for Hung {
        fn call_timeout(&self) -> Option<Duration> {
            self.own
        }
        async fn create(
            &self,
            record: &SessionRecord,
            limit: Option<SessionLimit>,
        ) -> StoreResult<CreateOutcome> {
            self.inner.create(record, limit).await
        }
        async fn load(&self, _: &TokenHash, _: SystemTime) -> StoreResult<Option<SessionRecord>> {
            match self.own {
                Some(own) => tokio::time::sleep(own).await,
                None => std::future::pending::<()>().await,
            }
            Err(StoreError::new(StoreErrorKind::Timeout))
        }
        async fn touch(
            &self,
            id: &TokenHash,
            seen: SystemTime,
            exp: SystemTime,
        ) -> StoreResult<bool> {
            self.inner.touch(id, seen, exp).await
        }
        async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
            self.inner.rotate(old, new).await
        }
        async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
            self.inner.delete(subject, id).await
        }
        async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
            self.inner.delete_all(subject).await
        }
        async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
            self.inner.list(subject, now).await
        }
        async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
            SessionStore::sweep(&self.inner, now).await
        }
        async fn update_data(
            &self,
            id: &TokenHash,
            patch: &crate::store::DataPatch,
            limits: &crate::store::DataLimits,
            now: SystemTime,
        ) -> StoreResult<bool> {
            self.inner.update_data(id, patch, limits, now).await
        }
    }

    /// How long a read of a hung store takes to fail, and with what status.
    async fn failure(own: Option<Duration>) -> (Duration, http::StatusCode) {
        let settings = ServerSettings {
            store_timeout: Duration::from_secs(2),
            ..ServerSettings::default()
        };
        let store = Hung {
            inner: MemoryStore::new(),
            own,
        };
        let sessions = ServerSessions::new(Arc::new(store), settings);
        let token = OpaqueToken::generate().unwrap();
        let started = tokio::time::Instant::now();
        let credential = Credential {
            value: token.expose_secret(),
            source: CredentialSource::Cookie,
        };
        let error = sessions.authenticate(credential).await.unwrap_err();
        (started.elapsed(), error.status())
    }

    #[tokio::test(start_paused = true)]
    async fn every_store_call_is_bounded_by_the_store_timeout() {
        // No deadline of its own: the strategy's 2 s apply.
        let (took, status) = failure(None).await;
        assert_eq!(status, 503);
        assert_eq!(took, Duration::from_secs(2));
        // A longer deadline of its own does not stretch the strategy's.
        let (took, status) = failure(Some(Duration::from_secs(60))).await;
        assert_eq!(status, 503);
        assert_eq!(took, Duration::from_secs(2));
        // A shorter one is relied on: it fails first, with the same status.
        let (took, status) = failure(Some(Duration::from_millis(500))).await;
        assert_eq!(status, 503);
        assert_eq!(took, Duration::from_millis(500));
    }
}
