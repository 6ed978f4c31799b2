//! An opt-in local read cache for server sessions whose invalidation is pushed, not waited out.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, SystemTime},
};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::{
    clock::{Clock, to_millis},
    principal::Principal,
    revocation::{self, Check, FAMILY_PREFIX, Mirror},
    store::{Revocation, RevocationStore},
    token::TOKEN_LEN,
};

/// A cache key: the session cookie's text. Equality has no early exit, so a lookup's timing does
/// not tell how much of a guessed ID matched a cached one.
#[derive(Clone, Copy)]
pub(crate) struct CacheKey([u8; TOKEN_LEN]);

impl CacheKey {
    /// The key for a presented session ID; `None` when it cannot be one (wrong length).
    #[inline]
    pub(crate) fn of(token: &str) -> Option<Self> {
        token.as_bytes().try_into().ok().map(Self)
    }
}

impl PartialEq for CacheKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

/// Settings of the server-session read cache: an opt-in local cache whose invalidation is
/// pushed, not waited out.
///
/// A cache hit answers without a store round trip and without allocating (the cached
/// [`Principal`] is shared). Entries are keyed by the session cookie's whole value (the 43
/// characters of a canonical session ID, compared without early exit), so a hit needs neither
/// base64 decoding nor SHA-256; only IDs the store has just vouched for are ever inserted. The
/// map is bounded by [`CacheSettings::capacity`]. Like the JWT cache, it holds live credentials
/// in process memory (never in a store or a log).
///
/// # Invalidation
/// Every revoking operation (logout, revoke, rotation, log out everywhere, eviction at the session
/// limit) is applied to the local mirror at once (so a hit on the entry is refused) and is
/// published through a
/// [`RevocationStore`]: a denylist entry for one session, an epoch
/// for a subject. Every instance keeps an in-process mirror of those revocations, fed by the
/// store's push channel (Redis pub/sub, PostgreSQL `LISTEN/NOTIFY`, the in-memory store's
/// broadcast) or, without one, by polling every [`CacheSettings::poll_interval`]. A hit is served
/// only while the mirror is current; when the feed drops, every lookup goes to the store until the
/// mirror has re-subscribed and reloaded.
///
/// Independently of the feed, an entry is served no longer than the session's renewal interval
/// and never past the session's expiry, so even a change that was never published (a crashed
/// instance between delete and publish) is bounded.
///
/// With SQLite, which has no push channel, the cache assumes one process owns the database file:
/// revocations made by this process apply at once; another process's are seen after the poll
/// interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most sessions cached (entries). Default 10 000; beyond it an arbitrary entry is dropped.
    pub capacity: usize,
    /// How often revocations are polled when the store has no push channel. Default 1 second.
    pub poll_interval: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            poll_interval: Duration::from_secs(1),
        }
    }
}

struct Entry {
    principal: Principal,
    created_ms: i64,
    /// Served until this instant, then the store is asked again (renewal or expiry).
    valid_until_ms: i64,
}

pub(crate) struct SessionCache {
    /// Only IDs the store vouched for are inserted, so a fast seeded hash is enough.
    entries: RwLock<HashMap<CacheKey, Entry, foldhash::fast::RandomState>>,
    capacity: usize,
    mirror: Arc<Mirror>,
    revocations: Arc<dyn RevocationStore>,
    /// Dropping it stops the mirror's task.
    _shutdown: oneshot::Sender<()>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("entries", &self.entries.read().len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl SessionCache {
    /// Starts the cache and its revocation mirror. Needs a Tokio runtime.
    pub(crate) fn start(
        settings: CacheSettings,
        revocations: Arc<dyn RevocationStore>,
        clock: Arc<dyn Clock>,
        horizon: Duration,
    ) -> Self {
        let mirror = Arc::new(Mirror::new(horizon));
        let (tx, rx) = oneshot::channel();
        tokio::spawn(
            revocation::Task {
                mirror: Arc::downgrade(&mirror),
                store: revocations.clone(),
                clock,
                poll_interval: settings.poll_interval,
                shutdown: rx,
            }
            .run(),
        );
        Self {
            entries: RwLock::new(HashMap::default()),
            capacity: settings.capacity.max(1),
            mirror,
            revocations,
            _shutdown: tx,
        }
    }

    /// Resolves once the mirror has loaded (or fails when the store is unreachable).
    pub(crate) async fn ready(&self) -> crate::Result<()> {
        self.mirror.ready().await
    }

    fn check(&self, principal: &Principal, created_ms: i64, now_ms: i64) -> Check {
        self.mirror.check(
            principal.subject(),
            "",
            &principal.session().id,
            created_ms,
            now_ms,
        )
    }

    /// A live cached principal, or `None` to ask the store.
    #[inline]
    pub(crate) fn get(&self, key: &CacheKey, now: SystemTime) -> Option<Principal> {
        let hit = self.lookup(key, now);
        crate::metrics::session_cache_lookup(hit.is_some());
        hit
    }

    #[inline]
    fn lookup(&self, key: &CacheKey, now: SystemTime) -> Option<Principal> {
        let now_ms = to_millis(now);
        let entries = self.entries.read();
        let entry = entries.get(key)?;
        if now_ms >= entry.valid_until_ms {
            return None;
        }
        match self.check(&entry.principal, entry.created_ms, now_ms) {
            Check::Live => Some(entry.principal.clone()),
            Check::Revoked | Check::Unknown => None,
        }
    }

    /// Caches a principal just read from the store, unless the mirror says otherwise.
    pub(crate) fn put(
        &self,
        key: CacheKey,
        principal: &Principal,
        created_at: SystemTime,
        valid_until: SystemTime,
        now: SystemTime,
    ) {
        let created_ms = to_millis(created_at);
        if self.check(principal, created_ms, to_millis(now)) != Check::Live {
            return;
        }
        let mut entries = self.entries.write();
        if entries.len() >= self.capacity
            && !entries.contains_key(&key)
            && let Some(victim) = entries.keys().next().copied()
        {
            entries.remove(&victim);
        }
        entries.insert(
            key,
            Entry {
                principal: principal.clone(),
                created_ms,
                valid_until_ms: to_millis(valid_until),
            },
        );
        crate::metrics::session_cache_entries(entries.len());
    }

    /// Revokes one session everywhere: locally now (the mirror refuses its entry, which is
    /// replaced or evicted later), on other instances through the store.
    pub(crate) async fn revoke_session(&self, handle: &str, until: SystemTime) {
        self.publish(Revocation::Jti {
            jti: format!("{FAMILY_PREFIX}{handle}"),
            until,
        })
        .await;
    }

    /// Revokes every session of `subject` created before `epoch`, everywhere.
    pub(crate) async fn revoke_subject(&self, subject: &str, epoch: SystemTime) {
        {
            let mut entries = self.entries.write();
            entries.retain(|_, e| e.principal.subject() != subject);
            crate::metrics::session_cache_entries(entries.len());
        }
        self.publish(Revocation::Epoch {
            subject: subject.to_owned(),
            epoch,
        })
        .await;
    }

    async fn publish(&self, revocation: Revocation) {
        self.mirror.apply(&revocation);
        if let Err(e) = self.revocations.revoke(&revocation).await {
            // The change is in the session store already; other instances' entries expire
            // within the renewal interval, and a lost feed sends them to the store anyway.
            tracing::error!(error = ?e, "keycard: could not publish a session revocation");
        }
    }

    /// Number of cached sessions.
    pub(crate) fn len(&self) -> usize {
        self.entries.read().len()
    }
}
