//! Redis and Redis Cluster stores: one round trip per authenticated request, exact revoke-all,
//! listing and session limits, and no `CROSSSLOT` errors.
//!
//! [`RedisStore`] implements [`SessionStore`], [`RefreshStore`] and [`RevocationStore`] on a single
//! Redis node ([`RedisStore::connect`], one multiplexed [`ConnectionManager`] that reconnects by
//! itself) or on a Redis Cluster ([`RedisStore::connect_cluster`]). The same code drives both:
//! every multi-key step touches keys of one hash slot only.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), keycard::Error> {
//! use keycard::store::redis::{RedisOptions, RedisStore};
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let mut options = RedisOptions::default();
//! options.key_prefix = "myapp".into();
//! let cluster = RedisStore::connect_cluster_with(
//!     &["redis://10.0.0.1:7000".to_string(), "redis://10.0.0.2:7000".to_string()],
//!     options,
//! )
//! .await?;
//! # let _ = (store, cluster);
//! # Ok(())
//! # }
//! ```
//!
//! # Key layout
//! `P` is [`RedisOptions::key_prefix`] (default `keycard`); `<id>` is a [`TokenHash`] in hex;
//! `<h(x)>` is the SHA-256 of `x` in hex, so that user-chosen strings (subjects, family IDs)
//! never contain a `{` or `}` that would move a key to another slot.
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:{s:<id>}` | string | a session: `last_seen|expires|absolute|<fixed fields, binary>`, `PXAT expires` |
//! | `P:{s:<id>}:d` | hash | the session's data: key → value JSON text, same slot and expiry as the session |
//! | `P:{u:<h(subject)>}:si` | zset | the subject's session IDs scored by `created_at` |
//! | `P:{u:<h(subject)>}:se` | zset | the same IDs scored by an upper bound of their expiry |
//! | `P:{u:<h(subject)>}:sg` | zset | IDs removed from the index whose keys are being deleted |
//! | `P:{f:<h(family)>}` | hash | a refresh family: subject, fixed fields, head, predecessor, tokens, and its session data as fields `d:<key>` |
//! | `P:{r:<id>}` | string | refresh token → `family_expires|family`, `PXAT family_expires` |
//! | `P:{u:<h(subject)>}:rf` / `:rx` | zset | the subject's families by creation / absolute expiry |
//! | `P:{rv}:jti` | zset | access-token denylist, `jti` scored by `until` |
//! | `P:{rv}:epoch` | hash | subject → revocation epoch |
//! | channel `P:revocations` | pub/sub | revocations as JSON, for in-process mirrors |
//! | `P:{t:<key>}` | hash | a login-throttle counter (`a` attempts, `f` failures, `w` window end, `e` forgotten at, `l` last lockout), `PXAT e`; `<key>` is already a hash |
//!
//! Times are milliseconds since the Unix epoch. Every key carries a server-side expiry
//! (`PXAT`/`PEXPIREAT`): sessions at their `expires_at`, families and their pointers at the family's
//! absolute expiry, index keys at the largest expiry they hold, so an abandoned subject leaves
//! nothing behind even if [`SessionStore::sweep`] never runs.
//!
//! # Why session keys are tagged by their own ID
//! [`SessionStore::load`] knows only the token hash, and it is the hot path: one `GET` of
//! `P:{s:<id>}` answers it, whatever node owns that slot. Putting sessions under their subject's
//! tag would need a pointer and a second round trip; encoding the subject into the token is ruled
//! out because tokens are opaque. So a session and its subject index live in different slots, and
//! the operations that involve both are ordered so that every intermediate state is safe:
//!
//! - The subject index (`:si`/`:se`/`:sg`, one slot) is the serialization point. Each change to it
//!   is one Lua script, so concurrent logins, rotations and revocations of one subject are ordered
//!   by Redis itself; the session limit is checked and the new ID inserted in the same script, so
//!   it is never exceeded.
//! - **Invariant**: every live session key that has been handed out is in its subject's index, with
//!   an index expiry at least its real expiry. Pruning the index (by the server's clock) therefore
//!   never drops a live session, and revoke-all finds every one of them.
//! - `create`: `SET NX PXAT` of the session (insert-if-absent), *then* the index script (limit,
//!   eviction, insert). Until the script runs nobody holds the token, so the brief unindexed
//!   window is invisible. A refused or failed creation deletes its own key.
//! - Removal (`delete`, `delete_all`, eviction, the old ID of a rotation): the index script moves
//!   the IDs to `:sg` atomically, then their keys are deleted, then `:sg` is cleared. A login or a
//!   rotation that reaches the index after a revoke-all is ordered after it; one that reached it
//!   before is in the set the revoke-all deletes. If the deletions fail midway (Redis down, timeout)
//!   the IDs stay in `:sg` and the next operation on that subject (or `sweep`) deletes them; the
//!   deletions also run in a spawned task, so a caller's timeout does not abandon them.
//! - `touch`: the index expiry is raised (only ever raised) *before* the session's, so the index
//!   bound holds even if the second write fails.
//! - `rotate`: the new key is written with `NX`, then one index script checks that the old ID is
//!   still indexed and live and swaps the IDs; of two concurrent rotations of one session exactly
//!   one wins, and a rotation racing revoke-all either loses or is revoked.
//!
//! Session data lives in the hash `P:{s:<id>}:d`, in the session's slot: `load` pipelines `GET`
//! and `HGETALL` (still one round trip), `update_data` is one script that checks the session is
//! live, checks the limits against what is stored and applies the patch key by key (so concurrent
//! writers of different keys all land), `touch` extends both keys in one script, and every
//! deletion of a session deletes both keys.
//!
//! Costs: `load` is one round trip; `touch` (throttled by the strategy) three; `create` two plus
//! one per evicted or pending-deletion session; `list` two.
//!
//! # Refresh families
//! A family is one hash `P:{f:<h(family)>}` holding every token of the family (issue, expiry and
//! use times), the head and its predecessor, so rotation — the head check, reuse detection, the
//! grace window and the new head — is one Lua script on one slot: of N concurrent rotations of a
//! token exactly one wins. The client presents only a token, so a pointer `P:{r:<id>}` (written
//! `NX`, which is also the global collision check for the next token) names the family. Rotation
//! costs three round trips: resolve the pointer, reserve the next pointer, run the script. Pointers
//! of deleted families may linger until they expire; they lead to a missing family and so to
//! [`RotateOutcome::Invalid`].
//!
//! # Revocations
//! The denylist and the epochs share the `{rv}` slot so that [`RevocationStore::load`] is one
//! script on one node (no `SCAN` of the keyspace, exact on a cluster) and
//! [`RevocationStore::is_revoked`] is one round trip. Revocations are rare writes and reads are
//! served from in-process mirrors, so the single slot is not a hot spot. Denylist entries are
//! pruned once their `until` has passed on the server's clock. Each revocation is published on
//! `P:revocations` by the same script that records it. [`RevocationStore::subscribe`] opens a
//! dedicated pub/sub connection (on a cluster, to the first reachable node: classic pub/sub is
//! broadcast to every node of a cluster), pinged every [`RedisOptions::feed_heartbeat`]. The feed
//! yields an error and ends when that connection closes or stops answering; the consumer then
//! reloads and re-subscribes.
//!
//! # Failing closed
//! Every operation runs under [`RedisOptions::timeout`]: an unreachable, hung or slow Redis yields
//! a [`StoreError`] ([`StoreErrorKind::Timeout`] or [`StoreErrorKind::Unavailable`]) within that
//! bound, never a stale or anonymous answer. The single-node connection reconnects by itself; the
//! cluster client re-reads the topology after errors, so a promoted replica is found without a
//! restart.
//!
//! # Durability and failover
//! Redis replicates asynchronously. A write acknowledged by a primary that then fails before the
//! replica received it is lost when the replica is promoted: a new session vanishes (the user logs
//! in again), but also a logout, a revoke-all or a refresh rotation can be undone — a revoked
//! session or a spent refresh token comes back. With sessions and indexes on different nodes, a
//! lost index write can also leave a session outside its subject's index until it expires. Setting
//! [`RedisOptions::wait_replicas`] makes every write step wait (`WAIT`) until that many replicas
//! have it, on a dedicated writer connection so that reads are not queued behind `WAIT`; it
//! narrows the window (`WAIT` is not a consensus protocol) at the cost of a replica round trip per
//! write step.
//!
//! # Security caveats
//! Keys are derived from hashes, so nothing in Redis is a usable credential; the records do hold
//! subjects, roles, attributes, user agents and IPs in clear. Protect Redis with authentication
//! and TLS (`rediss://`) as you would the user database.

mod codec;
mod connection;
mod data;
mod keys;
mod record;
mod refresh;
mod revocation;
mod scripts;
mod session;
mod throttle;

use std::{fmt, future::Future, sync::Arc, time::Duration};

#[cfg(doc)]
use redis::aio::ConnectionManager;

use self::{
    connection::{Conn, Connected, Durability},
    keys::Keys,
};
#[cfg(doc)]
use super::{RefreshStore, RevocationStore, RotateOutcome, SessionStore};
use super::{StoreError, StoreErrorKind, StoreResult};
use crate::error::Error;
#[cfg(doc)]
use crate::{error::ErrorKind, token::TokenHash};

/// Settings of a [`RedisStore`]. Start from [`RedisOptions::default`] and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key and of the pub/sub channel. Default `keycard`. Must not contain `{` or
    /// `}` (they would change the keys' hash slots). Use distinct prefixes to share one Redis
    /// between applications.
    pub key_prefix: String,
    /// Deadline of one store operation, including reconnects, cluster redirections and retries.
    /// Default 2 s. When it passes the operation fails with [`StoreErrorKind::Timeout`] (a 503),
    /// so this is how long a request waits on a hung or unreachable Redis.
    pub timeout: Duration,
    /// Deadline of one TCP connection attempt (and of the initial connection). Default 1 s.
    pub connection_timeout: Duration,
    /// Deadline of one command's reply on an open cluster connection, after which the cluster
    /// client may retry elsewhere. Default 1 s. On a single node a command has nowhere else to
    /// go, so its reply is bounded by [`RedisOptions::timeout`] alone: one timer per operation
    /// rather than one more per command.
    pub response_timeout: Duration,
    /// How many times the cluster client retries a command after a redirection or a connection
    /// error (it re-reads the topology in between). Default 3. Ignored on a single node.
    pub cluster_retries: u32,
    /// Number of replicas that must acknowledge each write step (`WAIT`) before it counts as
    /// done. Default 0 (off: Redis's asynchronous replication, see the module docs). When fewer
    /// replicas acknowledge within [`RedisOptions::wait_timeout`], the operation fails with
    /// [`StoreErrorKind::Unavailable`] although the primary has applied the write.
    pub wait_replicas: u32,
    /// How long `WAIT` may block. Default 500 ms, and never more than three quarters of
    /// [`RedisOptions::response_timeout`] (so that a cluster connection does not give up on the
    /// reply first). Keep it well under [`RedisOptions::timeout`], which bounds the whole
    /// operation. Used only when [`RedisOptions::wait_replicas`] is above 0.
    pub wait_timeout: Duration,
    /// How often the revocation feed ([`RevocationStore::subscribe`]) pings its connection.
    /// Default 5 s. A feed whose ping fails or takes longer than [`RedisOptions::timeout`] ends
    /// with an error, so a hung or partitioned Redis is noticed within about this interval plus
    /// the timeout (a closed connection is noticed at once).
    pub feed_heartbeat: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "keycard".to_owned(),
            timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            cluster_retries: 3,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            feed_heartbeat: Duration::from_secs(5),
        }
    }
}

/// A [`SessionStore`], [`RefreshStore`] and [`RevocationStore`] on Redis or Redis Cluster.
///
/// Clones share the connection. See the [module docs](self) for the key layout and guarantees.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    /// A second connection for writes when `WAIT` is on, so reads never queue behind `WAIT`.
    writer: Option<Conn>,
    keys: Keys,
    options: RedisOptions,
    /// Clients for dedicated pub/sub connections (one per configured node on a cluster).
    pubsub: Vec<redis::Client>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner.conn {
            Conn::Single(_) => "single",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl RedisStore {
    /// Connects to a single Redis node with [`RedisOptions::default`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming `redis.url` when the URL is invalid;
    /// [`ErrorKind::StoreUnavailable`] when Redis cannot be reached within the timeouts.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to a single Redis node.
    ///
    /// # Errors
    /// As [`RedisStore::connect`]; also [`ErrorKind::Config`] naming `redis.key_prefix` for a
    /// prefix containing `{` or `}`.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, Error> {
        let keys = Keys::new(&options.key_prefix)?;
        let connected = Connected::single(url, &options).await?;
        Ok(Self::assemble(connected, keys, options))
    }

    /// Connects to a Redis Cluster with [`RedisOptions::default`]. `urls` are seed nodes; the
    /// client discovers the rest.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming `redis.cluster_urls` when the list is empty or a URL is
    /// invalid; [`ErrorKind::StoreUnavailable`] when no node can be reached within the timeouts.
    pub async fn connect_cluster(urls: &[String]) -> Result<Self, Error> {
        Self::connect_cluster_with(urls, RedisOptions::default()).await
    }

    /// Connects to a Redis Cluster.
    ///
    /// # Errors
    /// As [`RedisStore::connect_cluster`]; also [`ErrorKind::Config`] naming `redis.key_prefix`
    /// for a prefix containing `{` or `}`.
    pub async fn connect_cluster_with(
        urls: &[String],
        options: RedisOptions,
    ) -> Result<Self, Error> {
        let keys = Keys::new(&options.key_prefix)?;
        let connected = Connected::cluster(urls, &options).await?;
        Ok(Self::assemble(connected, keys, options))
    }

    /// The store over `connected`.
    fn assemble(connected: Connected, keys: Keys, options: RedisOptions) -> Self {
        let Connected {
            conn,
            writer,
            pubsub,
        } = connected;
        Self {
            inner: Arc::new(Inner {
                conn,
                writer,
                keys,
                options,
                pubsub,
            }),
        }
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Whether this store runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.conn, Conn::Cluster(_))
    }

    fn reader(&self) -> Conn {
        self.inner.conn.clone()
    }

    fn writer(&self) -> Conn {
        self.inner
            .writer
            .clone()
            .unwrap_or_else(|| self.inner.conn.clone())
    }

    fn durability(&self) -> Durability {
        Durability::of(&self.inner.options)
    }

    /// Runs one store operation under the store timeout.
    async fn run<T>(&self, op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.inner.options.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(StoreErrorKind::Timeout)),
        }
    }
}
