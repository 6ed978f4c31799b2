//! Storage seams: [`SessionStore`] for server sessions, [`RefreshStore`] for refresh-token
//! families and [`RevocationStore`] for access-token revocation (denylist and per-subject epoch).
//!
//! Every backend passes the same conformance suite (`keycard::testing::store`, feature
//! `test-suite`), run against real servers. The traits are object safe and used as `Arc<dyn _>`.
//!
//! # Contract highlights
//! - Stores key everything by [`TokenHash`]; the secret token never reaches a store.
//! - Creation is insert-if-absent: a colliding ID is reported, never overwritten.
//! - A record whose `expires_at` has passed is never returned, whether or not it has been swept.
//! - Multi-step operations (creation under a session limit, rotation, refresh rotation) are
//!   atomic: concurrent callers cannot observe or produce a state between the steps.
//!
//! # Example: wrapping a store
//! A store written outside keycard implements the traits like keycard's own backends, and
//! `keycard::testing::store` (feature `test-suite`) runs the same conformance suite against it.
//! This one counts session lookups in front of any session store:
//! ```
//! use std::{
//!     sync::{Arc, atomic::{AtomicU64, Ordering}},
//!     time::SystemTime,
//! };
//!
//! use async_trait::async_trait;
//! use keycard::{
//!     Keycard,
//!     store::{
//!         CreateOutcome, DataLimits, DataPatch, MemoryStore, SessionLimit, SessionRecord,
//!         SessionStore, StoreResult,
//!     },
//!     strategy::{ServerSessions, ServerSettings},
//!     token::TokenHash,
//! };
//!
//! #[derive(Debug)]
//! struct Counted {
//!     inner: Arc<dyn SessionStore>,
//!     lookups: AtomicU64,
//! }
//!
//! #[async_trait]
//! impl SessionStore for Counted {
//!     async fn create(&self, r: &SessionRecord, limit: Option<SessionLimit>) -> StoreResult<CreateOutcome> {
//!         self.inner.create(r, limit).await
//!     }
//!     async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>> {
//!         self.lookups.fetch_add(1, Ordering::Relaxed);
//!         self.inner.load(id, now).await
//!     }
//!     async fn touch(&self, id: &TokenHash, seen: SystemTime, expires: SystemTime) -> StoreResult<bool> {
//!         self.inner.touch(id, seen, expires).await
//!     }
//!     async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
//!         self.inner.rotate(old, new).await
//!     }
//!     async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
//!         self.inner.delete(subject, id).await
//!     }
//!     async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
//!         self.inner.delete_all(subject).await
//!     }
//!     async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
//!         self.inner.list(subject, now).await
//!     }
//!     async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
//!         self.inner.sweep(now).await
//!     }
//!     async fn update_data(
//!         &self, id: &TokenHash, patch: &DataPatch, limits: &DataLimits, now: SystemTime,
//!     ) -> StoreResult<bool> {
//!         self.inner.update_data(id, patch, limits, now).await
//!     }
//! }
//!
//! let store = Counted { inner: Arc::new(MemoryStore::new()), lookups: AtomicU64::new(0) };
//! let keycard = Keycard::builder()
//!     .strategy(ServerSessions::new(Arc::new(store), ServerSettings::default()))
//!     .build()?;
//! # let _ = keycard;
//! # Ok::<(), keycard::Error>(())
//! ```

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde_json::{Map, Value};

use crate::token::TokenHash;

mod data;
pub(crate) mod decorate;
mod error;
mod memory;
pub(crate) mod metered;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "_sql")]
pub mod sql;
mod throttle;
pub(crate) mod timeout;
#[cfg(any(feature = "redis", feature = "_sql"))]
mod wire;

pub use data::{DataLimits, DataPatch};
pub use error::{StoreError, StoreErrorKind, StoreResult};
pub use memory::MemoryStore;
pub(crate) use throttle::Counter;
#[cfg(feature = "_sql")]
pub(crate) use throttle::step as throttle_step;
pub use throttle::{Admission, ThrottleKey, ThrottleRule, ThrottleStore};

/// One server-side session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// SHA-256 of the session token; the primary key.
    pub id: TokenHash,
    /// The subject (user ID).
    pub subject: String,
    /// Roles granted to the session.
    pub roles: Vec<String>,
    /// Extra attributes.
    pub attributes: Map<String, Value>,
    /// When the session was created.
    pub created_at: SystemTime,
    /// When the session was last seen (updated by throttled sliding renewal).
    pub last_seen_at: SystemTime,
    /// When the user last authenticated (login or step-up).
    pub authenticated_at: SystemTime,
    /// When the session stops being served: `min(last_seen_at + idle, absolute_expires_at)`.
    pub expires_at: SystemTime,
    /// The absolute timeout, fixed at creation.
    pub absolute_expires_at: SystemTime,
    /// The client's `User-Agent` at login (truncated to 256 bytes).
    pub user_agent: Option<String>,
    /// The client's IP address at login.
    pub ip: Option<String>,
    /// The session's data: a JSON object as text (see [`DataPatch`]); `None` when it has none.
    /// Written by [`SessionStore::create`] and [`SessionStore::rotate`] as given, changed by
    /// [`SessionStore::update_data`], returned by [`SessionStore::load`] (so reading it costs no
    /// round trip of its own); [`SessionStore::list`] may leave it out.
    pub data: Option<String>,
    /// The idle timeout chosen for this session at login (see [`Login`](crate::Login)), shorter
    /// than the strategy's; `None` for the strategy's own. Fixed at creation; kept by rotation.
    pub idle_timeout: Option<Duration>,
    /// Whether the session's cookie is persistent (`Max-Age`) rather than a browser-session
    /// cookie (see [`Login::remember`](crate::Login::remember)). Fixed at creation; kept by
    /// rotation, so a rotated or stepped-up session's cookie keeps the lifetime chosen at login.
    pub persistent: bool,
}

impl SessionRecord {
    /// Whether this is an anonymous session: one that holds data for a caller who has not logged
    /// in. Its subject is empty and it never yields a principal.
    pub fn is_anonymous(&self) -> bool {
        self.subject.is_empty()
    }
}

/// What to do when a subject already has the maximum number of live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPolicy {
    /// Refuse the new session ([`CreateOutcome::LimitReached`]).
    Reject,
    /// Delete the oldest live sessions (by `created_at`) to make room.
    EvictOldest,
}

/// A per-subject concurrent-session limit, enforced atomically by [`SessionStore::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimit {
    /// Maximum live sessions per subject (at least 1).
    pub max: u32,
    /// What happens at the limit.
    pub policy: LimitPolicy,
}

/// Outcome of [`SessionStore::create`].
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// Inserted; `evicted` lists sessions removed to respect the limit (oldest first).
    Created {
        /// IDs of evicted sessions.
        evicted: Vec<TokenHash>,
    },
    /// A record with this ID already exists; nothing was written.
    Collision,
    /// The subject is at its limit and the policy is [`LimitPolicy::Reject`]; nothing was written.
    LimitReached,
}

/// Storage for server-side sessions.
///
/// Implementations must keep the guarantees in the [module docs](self); the conformance suite
/// checks them.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// The deadline this store itself puts on every call, if it has one.
    ///
    /// [`ServerSessions`](crate::strategy::ServerSessions) bounds each store call by its
    /// `store_timeout`; when the store already enforces a deadline no longer than that, the
    /// strategy relies on it instead of starting a second timer per call. The default, `None`,
    /// means the store promises nothing and the strategy always applies its own timeout.
    fn call_timeout(&self) -> Option<Duration> {
        None
    }

    /// Inserts `record` if no record with its ID exists. With a `limit`, counts the subject's live
    /// sessions (`expires_at > record.created_at`) and applies the policy, atomically with the
    /// insert: concurrent creations never exceed the limit.
    async fn create(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome>;

    /// Loads a live session: `None` when absent or when `expires_at <= now`.
    async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>>;

    /// Sliding renewal: sets `last_seen_at` and `expires_at` of a live session. `expires_at` never
    /// exceeds the record's `absolute_expires_at` (callers compute it). Returns whether a live
    /// record was updated.
    async fn touch(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool>;

    /// Atomically replaces the live session `old` by `new` (session-ID rotation after a privilege
    /// change or step-up). Returns `false` and writes nothing when `old` is absent or no longer
    /// live at `new.last_seen_at` (the caller's "now"). A collision on `new.id` is
    /// [`StoreErrorKind::Conflict`] and leaves `old` in place.
    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool>;

    /// Deletes session `id` if it belongs to `subject`. Returns whether a record was deleted.
    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool>;

    /// Deletes every session of `subject`. Returns how many were deleted.
    async fn delete_all(&self, subject: &str) -> StoreResult<u64>;

    /// The subject's live sessions, oldest first.
    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>>;

    /// Removes records that expired before `now` (and prunes per-subject indexes). Returns how
    /// many sessions were removed.
    async fn sweep(&self, now: SystemTime) -> StoreResult<u64>;

    /// Applies `patch` to the data of the live session `id`, atomically and key by key: keys the
    /// patch does not name keep whatever concurrent writers stored (no lost update). Returns
    /// `false`, writing nothing, when the session is absent or not live at `now`.
    ///
    /// # Errors
    /// [`StoreErrorKind::TooLarge`] when the result would exceed `limits`; nothing is written.
    async fn update_data(
        &self,
        id: &TokenHash,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool>;
}

/// One refresh token of a refresh family, as stored.
///
/// A family starts at login and is extended by each rotation; at most one token of a family is
/// unused (the head). Spent tokens are kept (with `used_at`) until the family expires so that
/// reuse can be detected.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRecord {
    /// SHA-256 of the refresh token; the primary key.
    pub id: TokenHash,
    /// The family's public ID (also the `sid` of access tokens issued from it).
    pub family: String,
    /// The subject.
    pub subject: String,
    /// Roles carried into access tokens.
    pub roles: Vec<String>,
    /// Extra attributes carried into access tokens.
    pub attributes: Map<String, Value>,
    /// When this token was issued.
    pub issued_at: SystemTime,
    /// When this token stops being accepted: `min(issued_at + idle, family_expires_at)`.
    pub expires_at: SystemTime,
    /// When the family was created (login).
    pub family_created_at: SystemTime,
    /// The family's absolute expiry.
    pub family_expires_at: SystemTime,
    /// When the user last authenticated.
    pub authenticated_at: SystemTime,
    /// When this token was exchanged; `None` for the family head.
    pub used_at: Option<SystemTime>,
    /// The client's `User-Agent` at login.
    pub user_agent: Option<String>,
    /// The client's IP at login.
    pub ip: Option<String>,
    /// The family's idle timeout chosen at login (see [`Login`](crate::Login)), shorter than the
    /// strategy's; `None` for the strategy's own. Successors keep it.
    pub idle_timeout: Option<Duration>,
    /// Whether the refresh cookie is persistent (`Max-Age`) rather than a browser-session
    /// cookie. Successors keep it.
    pub persistent: bool,
}

impl RefreshRecord {
    /// The record that replaces `self` on rotation: same family and identity, new ID, issued at
    /// `now`, expiring at `min(now + idle, family_expires_at)` (with the family's own idle
    /// timeout when it is shorter), unused. Backends call this so that every store derives
    /// successors identically.
    pub fn successor(&self, id: TokenHash, now: SystemTime, idle: Duration) -> Self {
        let idle_end = now + self.idle_timeout.map_or(idle, |own| own.min(idle));
        Self {
            id,
            family: self.family.clone(),
            subject: self.subject.clone(),
            roles: self.roles.clone(),
            attributes: self.attributes.clone(),
            issued_at: now,
            expires_at: idle_end.min(self.family_expires_at),
            family_created_at: self.family_created_at,
            family_expires_at: self.family_expires_at,
            authenticated_at: self.authenticated_at,
            used_at: None,
            user_agent: self.user_agent.clone(),
            ip: self.ip.clone(),
            idle_timeout: self.idle_timeout,
            persistent: self.persistent,
        }
    }
}

/// Parameters of [`RefreshStore::rotate`].
#[derive(Debug, Clone, Copy)]
pub struct RotateRequest<'a> {
    /// Hash of the presented refresh token.
    pub presented: &'a TokenHash,
    /// Hash of the token that will replace it.
    pub next: &'a TokenHash,
    /// The current time.
    pub now: SystemTime,
    /// Idle lifetime of a refresh token.
    pub idle: std::time::Duration,
    /// Grace window: a token spent less than this long ago whose successor is still the unused
    /// head may be exchanged again (see [`RotateOutcome::Rotated`]). Zero disables it.
    pub grace: std::time::Duration,
}

/// Outcome of [`RefreshStore::rotate`].
// `Rotated` is large, but rotation is rare next to verification and the record is moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RotateOutcome {
    /// The presented token was the head (or, within the grace window, the immediate predecessor
    /// of an unused head): it is now spent, the old head (if different) is deleted, and `next` is
    /// the new head, derived with [`RefreshRecord::successor`].
    Rotated {
        /// The new head.
        next: RefreshRecord,
    },
    /// The presented token was already spent (outside the grace window): the whole family has been
    /// deleted. The caller must raise a security event.
    Reused {
        /// The revoked family.
        family: String,
        /// Its subject.
        subject: String,
    },
    /// Unknown, expired or from a revoked family. Nothing changed.
    Invalid,
}

/// Storage for refresh-token families.
#[async_trait]
pub trait RefreshStore: Send + Sync + fmt::Debug + 'static {
    /// Inserts the first token of a new family, insert-if-absent. Returns `false` on collision.
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool>;

    /// Exchanges a refresh token atomically: of N concurrent calls with the same token exactly
    /// one gets [`RotateOutcome::Rotated`]; with a zero grace window the others see the token as
    /// spent and get [`RotateOutcome::Reused`] or, once the family is revoked,
    /// [`RotateOutcome::Invalid`].
    async fn rotate(&self, request: RotateRequest<'_>) -> StoreResult<RotateOutcome>;

    /// Whether `family` is live (has an unexpired head) at `now`. Used by the hybrid strategy's
    /// server-side check.
    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool>;

    /// Deletes a family of `subject`. Returns whether anything was deleted.
    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool>;

    /// Deletes every family of `subject`. Returns how many families were deleted.
    async fn delete_all(&self, subject: &str) -> StoreResult<u64>;

    /// The subject's live family heads, oldest family first.
    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>>;

    /// Removes expired tokens and families. Returns how many records were removed.
    async fn sweep(&self, now: SystemTime) -> StoreResult<u64>;

    /// The data of a live family (a JSON object as text, see [`DataPatch`]); `None` when it has
    /// none or the family is not live at `now`. The data goes when the family does.
    async fn family_data(&self, family: &str, now: SystemTime) -> StoreResult<Option<String>>;

    /// Applies `patch` to the data of the live family `family`, atomically and key by key (as
    /// [`SessionStore::update_data`]). Returns `false`, writing nothing, when the family is not
    /// live at `now`.
    ///
    /// # Errors
    /// [`StoreErrorKind::TooLarge`] when the result would exceed `limits`; nothing is written.
    async fn update_family_data(
        &self,
        family: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool>;
}

/// One access-token revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The token with this `jti` is void until `until` (its own expiry).
    Jti {
        /// The JWT ID.
        jti: String,
        /// When the entry may be forgotten.
        until: SystemTime,
    },
    /// Tokens of `subject` issued before `epoch` are void.
    Epoch {
        /// The subject.
        subject: String,
        /// Tokens with `iat` before this instant are void.
        epoch: SystemTime,
    },
}

/// A stream of revocations made by any instance, for keeping in-process mirrors current.
/// The stream ends or yields an error when the feed is lost; the consumer then falls back to the
/// store until it has re-subscribed and reloaded.
pub type RevocationFeed = BoxStream<'static, StoreResult<Revocation>>;

/// Storage for access-token revocations, shared by all instances.
#[async_trait]
pub trait RevocationStore: Send + Sync + fmt::Debug + 'static {
    /// Records a revocation and publishes it to subscribers. Epochs only move forward.
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()>;

    /// Every revocation still in force at `now` (denylist entries with `until > now`, all epochs).
    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>>;

    /// Whether a token is revoked, asked of the store directly (used while the feed is down).
    /// A denylist entry past its `until` but not yet swept still counts: it errs towards
    /// refusing, and the token it names has expired anyway.
    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool>;

    /// Subscribes to revocations. `Ok(None)` when the backend has no push channel; the consumer
    /// then polls [`RevocationStore::load`].
    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>>;

    /// Removes denylist entries whose `until` has passed.
    async fn sweep(&self, now: SystemTime) -> StoreResult<u64>;
}
