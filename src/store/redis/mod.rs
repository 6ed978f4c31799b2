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
//! | `P:{u:<h(subject)>}:si` | zset | the subject's session IDs scored by `created_at` |
//! | `P:{u:<h(subject)>}:se` | zset | the same IDs scored by an upper bound of their expiry |
//! | `P:{u:<h(subject)>}:sg` | zset | IDs removed from the index whose keys are being deleted |
//! | `P:{f:<h(family)>}` | hash | a refresh family: subject, data, head, predecessor, tokens |
//! | `P:{r:<id>}` | string | refresh token → `family_expires|family`, `PXAT family_expires` |
//! | `P:{u:<h(subject)>}:rf` / `:rx` | zset | the subject's families by creation / absolute expiry |
//! | `P:{rv}:jti` | zset | access-token denylist, `jti` scored by `until` |
//! | `P:{rv}:epoch` | hash | subject → revocation epoch |
//! | channel `P:revocations` | pub/sub | revocations as JSON, for in-process mirrors |
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

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    sync::{Arc, LazyLock},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures_util::{StreamExt, future::try_join_all};
use redis::{
    Cmd, Pipeline, RedisError, RedisFuture, RedisWrite, Script, ToRedisArgs, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::{
    CreateOutcome, LimitPolicy, RefreshRecord, RefreshStore, Revocation, RevocationFeed,
    RevocationStore, RotateOutcome, RotateRequest, SessionLimit, SessionRecord, SessionStore,
    StoreError, StoreErrorKind, StoreResult, wire::RevocationMessage,
};
use crate::{
    clock::{from_millis, to_millis},
    error::{Error, ErrorKind},
    token::TokenHash,
};

mod codec;

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

/// The two connection kinds behind one [`ConnectionLike`], so that the store's logic is written
/// once.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
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
        let client = redis::Client::open(url)
            .map_err(|e| Error::config("redis.url", "not a valid Redis URL").with_source(e))?;
        // No response timeout on the connection: every operation runs under `options.timeout`
        // (`RedisStore::run`), and a reply that times out would not make the manager reconnect
        // anyway (only a broken connection does), so a second timer per command bought nothing.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(options.connection_timeout)
            .set_number_of_retries(2)
            .set_factor(50)
            .set_max_delay(1_000);
        let open = || async {
            let manager = ConnectionManager::new_with_config(client.clone(), config.clone());
            let manager = bounded(options.timeout, manager).await?;
            Ok::<_, Error>(Conn::Single(manager))
        };
        let conn = open().await?;
        let writer = if options.wait_replicas > 0 {
            Some(open().await?)
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                writer,
                keys,
                options,
                pubsub: vec![client],
            }),
        })
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
        if urls.is_empty() {
            return Err(Error::config("redis.cluster_urls", "no node given"));
        }
        let mut clients = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let client = redis::Client::open(url.as_str()).map_err(|e| {
                Error::config(
                    "redis.cluster_urls",
                    format!("entry {i} is not a valid Redis URL"),
                )
                .with_source(e)
            })?;
            clients.push(client);
        }
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(options.connection_timeout)
            .response_timeout(options.response_timeout)
            .retries(options.cluster_retries)
            .min_retry_wait(10)
            .max_retry_wait(250)
            .build()
            .map_err(|e| {
                Error::config("redis.cluster_urls", "invalid cluster URLs").with_source(e)
            })?;
        let open = || async {
            let conn = bounded(options.timeout, client.get_async_connection()).await?;
            Ok::<_, Error>(Conn::Cluster(conn))
        };
        let conn = open().await?;
        let writer = if options.wait_replicas > 0 {
            Some(open().await?)
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                writer,
                keys,
                options,
                pubsub: clients,
            }),
        })
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
        let options = &self.inner.options;
        // `WAIT` must return before the connection gives up on its reply.
        let wait = options.wait_timeout.min(options.response_timeout * 3 / 4);
        Durability {
            replicas: options.wait_replicas,
            timeout_ms: millis_of(wait).max(1),
        }
    }

    /// Runs one store operation under the store timeout.
    async fn run<T>(&self, op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.inner.options.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(StoreErrorKind::Timeout)),
        }
    }

    /// Deletes the session keys of `ids` (hex), then clears them from the subject's pending set.
    /// Runs in its own task so that a caller's timeout does not abandon it halfway. Returns, per
    /// ID, whether a key was deleted.
    async fn finish_removal(&self, sg: String, ids: Vec<String>) -> StoreResult<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.writer();
        let durability = self.durability();
        let keys: Vec<String> = ids.iter().map(|h| self.inner.keys.session_hex(h)).collect();
        let limit = self.inner.options.timeout;
        let task = tokio::spawn(tokio::time::timeout(limit, async move {
            let deleted = try_join_all(keys.iter().map(|key| {
                let mut c = conn.clone();
                async move {
                    let n: i64 = redis::cmd("DEL")
                        .arg(key)
                        .query_async(&mut c)
                        .await
                        .map_err(store_err)?;
                    durability.wait(&mut c, key).await?;
                    Ok::<_, StoreError>(n > 0)
                }
            }))
            .await?;
            let mut c = conn.clone();
            let _: i64 = redis::cmd("ZREM")
                .arg(&sg)
                .arg(&ids)
                .query_async(&mut c)
                .await
                .map_err(store_err)?;
            Ok::<_, StoreError>(deleted)
        }));
        match task.await.map_err(StoreError::unavailable)? {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(StoreErrorKind::Timeout)),
        }
    }

    /// Keys matching `pattern` on every primary.
    async fn scan(&self, pattern: &str) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        match self.reader() {
            Conn::Single(mut c) => {
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                        .map_err(store_err)?;
                    out.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            Conn::Cluster(mut c) => {
                let slots = c
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS"),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await
                    .map_err(store_err)?;
                for (host, port) in primaries(&slots)? {
                    let mut cursor: u64 = 0;
                    loop {
                        let reply = c
                            .route_command(
                                redis::cmd("SCAN")
                                    .arg(cursor)
                                    .arg("MATCH")
                                    .arg(pattern)
                                    .arg("COUNT")
                                    .arg(1000),
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                    host: host.clone(),
                                    port,
                                }),
                            )
                            .await
                            .map_err(store_err)?;
                        let (next, batch): (u64, Vec<String>) =
                            redis::from_redis_value(&reply).map_err(store_err)?;
                        out.extend(batch);
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Awaits a connection attempt under `limit`, mapping failures to `StoreUnavailable`.
async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::with_message(
            ErrorKind::StoreUnavailable,
            "cannot connect to Redis",
        )
        .with_source(StoreError::unavailable(e))),
        Err(_) => Err(Error::with_message(
            ErrorKind::StoreUnavailable,
            "timed out connecting to Redis",
        )
        .with_source(StoreError::new(StoreErrorKind::Timeout))),
    }
}

/// The `(host, port)` of each primary in a `CLUSTER SLOTS` reply.
fn primaries(slots: &Value) -> StoreResult<Vec<(String, u16)>> {
    let corrupt = || StoreError::corrupt("unexpected CLUSTER SLOTS reply");
    let Value::Array(ranges) = slots else {
        return Err(corrupt());
    };
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else {
            return Err(corrupt());
        };
        let Some(Value::Array(node)) = parts.get(2) else {
            return Err(corrupt());
        };
        let host: String = node
            .first()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(store_err)?
            .ok_or_else(corrupt)?;
        let port: u16 = node
            .get(1)
            .map(redis::from_redis_value)
            .transpose()
            .map_err(store_err)?
            .ok_or_else(corrupt)?;
        if !out.contains(&(host.clone(), port)) {
            out.push((host, port));
        }
    }
    Ok(out)
}

/// Optional `WAIT` after writes.
#[derive(Clone, Copy)]
struct Durability {
    replicas: u32,
    timeout_ms: i64,
}

impl Durability {
    /// Waits until the write of `key` reached the configured number of replicas.
    async fn wait(self, conn: &mut Conn, key: &str) -> StoreResult<()> {
        if self.replicas == 0 {
            return Ok(());
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(self.timeout_ms);
        let acked: i64 = match conn {
            Conn::Single(c) => cmd.query_async(c).await.map_err(store_err)?,
            Conn::Cluster(c) => {
                let route = Route::new(key_slot(key.as_bytes()), SlotAddr::Master);
                let reply = c
                    .route_command(
                        &cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
                    .map_err(store_err)?;
                redis::from_redis_value(&reply).map_err(store_err)?
            }
        };
        if acked < i64::from(self.replicas) {
            return Err(StoreError::unavailable(format!(
                "only {acked} of {} replicas acknowledged the write",
                self.replicas
            )));
        }
        Ok(())
    }
}

/// The cluster hash slot of a key (CRC16/XMODEM of its hash tag, modulo 16384).
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Maps a redis error into a store error, keeping it as the source.
fn store_err(e: RedisError) -> StoreError {
    if e.kind() == redis::ErrorKind::TypeError {
        StoreError::corrupt(e)
    } else {
        StoreError::unavailable(e)
    }
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::corrupt(what)
}

fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A `PXAT`/`PEXPIREAT` argument: Redis refuses values below 1.
fn expire_at(t: SystemTime) -> i64 {
    to_millis(t).max(1)
}

fn hex_of(data: &[u8]) -> String {
    TokenHash::from_bytes(Sha256::digest(data).into()).handle()
}

fn parse_id(hex: &str) -> StoreResult<TokenHash> {
    TokenHash::from_handle(hex).ok_or_else(|| corrupt("malformed token hash in Redis"))
}

/// Key names. Every user-chosen string is hashed before it goes into a key.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Result<Self, Error> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(Error::config(
                "redis.key_prefix",
                "must be non-empty and contain neither `{` nor `}`",
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    fn session(&self, id: &TokenHash) -> String {
        id.with_handle(|hex| self.session_hex(hex))
    }

    /// The key of the session whose handle is `hex`: one allocation, no formatting machinery.
    fn session_hex(&self, hex: &str) -> String {
        let parts = session_parts(&self.prefix, hex.as_bytes());
        let mut key = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|p| key.extend_from_slice(p));
        // The prefix is a `str` and the rest ASCII.
        String::from_utf8(key).unwrap_or_default()
    }

    /// The key of session `id` as a command argument, written straight into the command's buffer
    /// (`load`, the hot path, needs no `String` of its own).
    fn session_arg<'a>(&'a self, id: &TokenHash) -> SessionKey<'a> {
        SessionKey {
            prefix: &self.prefix,
            hex: id.hex(),
        }
    }

    /// `(si, se, sg)`: by creation, by expiry, pending removal.
    fn session_index(&self, subject: &str) -> (String, String, String) {
        let tag = self.subject_tag(subject);
        (
            format!("{tag}:si"),
            format!("{tag}:se"),
            format!("{tag}:sg"),
        )
    }

    /// `(rf, rx)`: families by creation, by absolute expiry.
    fn family_index(&self, subject: &str) -> (String, String) {
        let tag = self.subject_tag(subject);
        (format!("{tag}:rf"), format!("{tag}:rx"))
    }

    fn subject_tag(&self, subject: &str) -> String {
        format!("{}:{{u:{}}}", self.prefix, hex_of(subject.as_bytes()))
    }

    fn family(&self, family: &str) -> String {
        format!("{}:{{f:{}}}", self.prefix, hex_of(family.as_bytes()))
    }

    fn pointer(&self, id: &TokenHash) -> String {
        self.pointer_hex(&id.handle())
    }

    fn pointer_hex(&self, hex: &str) -> String {
        format!("{}:{{r:{hex}}}", self.prefix)
    }

    fn denylist(&self) -> String {
        format!("{}:{{rv}}:jti", self.prefix)
    }

    fn epochs(&self) -> String {
        format!("{}:{{rv}}:epoch", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    /// The prefix with glob characters escaped, for `SCAN MATCH`.
    fn glob_prefix(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len());
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Record encoding
// ---------------------------------------------------------------------------------------------

/// The parts of a session that never change, as compact JSON: the form of records written before
/// the binary form ([`codec`]); still read, never written.
#[derive(Deserialize)]
struct LegacySessionData {
    s: String,
    #[serde(default)]
    r: Vec<String>,
    #[serde(default)]
    a: Map<String, Json>,
    c: i64,
    t: i64,
    #[serde(default)]
    ua: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

/// `last_seen|expires|absolute|<fixed>`: the times the touch script rewrites come first, as
/// decimal text, so Lua never parses the rest; `<fixed>` is the binary form of [`codec`].
fn encode_session(r: &SessionRecord) -> StoreResult<Vec<u8>> {
    let mut out = format!(
        "{}|{}|{}|",
        to_millis(r.last_seen_at),
        to_millis(r.expires_at),
        to_millis(r.absolute_expires_at)
    )
    .into_bytes();
    codec::encode(r, &mut out)?;
    Ok(out)
}

/// The one definition of the session key layout: `<prefix>:{s:<handle>}`.
fn session_parts<'a>(prefix: &'a str, hex: &'a [u8]) -> [&'a [u8]; 4] {
    [prefix.as_bytes(), b":{s:", hex, b"}"]
}

/// A session key as a command argument (see [`Keys::session_arg`]).
struct SessionKey<'a> {
    prefix: &'a str,
    hex: [u8; 64],
}

impl SessionKey<'_> {
    fn len(&self) -> usize {
        session_parts(self.prefix, &self.hex)
            .iter()
            .map(|p| p.len())
            .sum()
    }
}

impl ToRedisArgs for SessionKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        for part in session_parts(self.prefix, &self.hex) {
            // The writer appends to the command's buffer in memory: it cannot fail.
            let _ = arg.write_all(part);
        }
    }
}

/// An optionally negative decimal integer, as Lua's `%-?%d+` matches it and the scripts write it.
fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    // Past leading zeros, at most 19 digits fit a `u64` without overflow, so the loop needs no
    // check per digit (a time in milliseconds has 13 digits, and three are read per request);
    // the range of `i64` is checked once at the end.
    let significant = &digits[digits.iter().take_while(|&&d| d == b'0').count()..];
    if significant.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &d in significant {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        value = value * 10 + u64::from(d);
    }
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

fn decode_session(id: TokenHash, raw: &[u8]) -> StoreResult<SessionRecord> {
    let mut rest = raw;
    let mut time = || -> StoreResult<i64> {
        // A dozen bytes: an inline scan beats a call into `memchr`'s vector search.
        let end = rest
            .iter()
            .position(|&b| b == b'|')
            .ok_or_else(|| corrupt("malformed session record"))?;
        let value = decimal(&rest[..end]).ok_or_else(|| corrupt("malformed session record"))?;
        rest = &rest[end + 1..];
        Ok(value)
    };
    let (last_seen, expires, absolute) = (time()?, time()?, time()?);
    let fixed = if rest.first() == Some(&codec::MARKER) {
        codec::decode(rest)?
    } else {
        let d: LegacySessionData = serde_json::from_slice(rest).map_err(StoreError::corrupt)?;
        codec::Fixed {
            subject: d.s,
            roles: d.r,
            attributes: d.a,
            created_at: d.c,
            authenticated_at: d.t,
            user_agent: d.ua,
            ip: d.ip,
        }
    };
    Ok(SessionRecord {
        id,
        subject: fixed.subject,
        roles: fixed.roles,
        attributes: fixed.attributes,
        created_at: from_millis(fixed.created_at),
        last_seen_at: from_millis(last_seen),
        authenticated_at: from_millis(fixed.authenticated_at),
        expires_at: from_millis(expires),
        absolute_expires_at: from_millis(absolute),
        user_agent: fixed.user_agent,
        ip: fixed.ip,
    })
}

/// The parts of a refresh family shared by all its tokens, as compact JSON.
#[derive(Serialize, Deserialize)]
struct FamilyData<'a> {
    #[serde(default)]
    r: Cow<'a, [String]>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    a: Cow<'a, Map<String, Json>>,
    c: i64,
    x: i64,
    t: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<Cow<'a, str>>,
}

fn encode_family(r: &RefreshRecord) -> StoreResult<String> {
    let data = FamilyData {
        r: Cow::Borrowed(&r.roles),
        a: Cow::Borrowed(&r.attributes),
        c: to_millis(r.family_created_at),
        x: to_millis(r.family_expires_at),
        t: to_millis(r.authenticated_at),
        ua: r.user_agent.as_deref().map(Cow::Borrowed),
        ip: r.ip.as_deref().map(Cow::Borrowed),
    };
    serde_json::to_string(&data).map_err(StoreError::corrupt)
}

/// `issued|expires|used` (`used` empty for the head).
fn encode_token(r: &RefreshRecord) -> String {
    match r.used_at {
        Some(used) => format!(
            "{}|{}|{}",
            to_millis(r.issued_at),
            to_millis(r.expires_at),
            to_millis(used)
        ),
        None => format!("{}|{}|", to_millis(r.issued_at), to_millis(r.expires_at)),
    }
}

fn decode_refresh(
    id: TokenHash,
    subject: String,
    family: String,
    data: &str,
    token: &str,
) -> StoreResult<RefreshRecord> {
    let data: FamilyData<'static> = serde_json::from_str(data).map_err(StoreError::corrupt)?;
    let bad = || corrupt("malformed refresh token record");
    let mut parts = token.splitn(3, '|');
    let issued: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let expires: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let used = match parts.next().ok_or_else(bad)? {
        "" => None,
        p => Some(from_millis(p.parse().map_err(|_| bad())?)),
    };
    Ok(RefreshRecord {
        id,
        family,
        subject,
        roles: data.r.into_owned(),
        attributes: data.a.into_owned(),
        issued_at: from_millis(issued),
        expires_at: from_millis(expires),
        family_created_at: from_millis(data.c),
        family_expires_at: from_millis(data.x),
        authenticated_at: from_millis(data.t),
        used_at: used,
        user_agent: data.ua.map(Cow::into_owned),
        ip: data.ip.map(Cow::into_owned),
    })
}

// ---------------------------------------------------------------------------------------------
// Lua scripts. Each touches keys of one hash slot only (all KEYS share a tag).
// ---------------------------------------------------------------------------------------------

/// Helpers shared by the scripts.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n)
  return string.format('%.0f', n)
end
local function zrem_many(key, ids)
  for i = 1, #ids, 1000 do
    redis.call('ZREM', key, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
-- Removes entries scored <= cutoff from `expiry` and from its companion `order` (if any).
local function prune(order, expiry, cutoff)
  local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', fmt(cutoff))
  if #dead > 0 then
    zrem_many(expiry, dead)
    if order then zrem_many(order, dead) end
  end
  return dead
end
-- Expires `expiry` and the companion keys with the largest score it holds; deletes them when empty.
local function settle(expiry, companion)
  local top = redis.call('ZRANGE', expiry, -1, -1, 'WITHSCORES')
  if #top == 0 then
    if companion then redis.call('DEL', expiry, companion) else redis.call('DEL', expiry) end
    return
  end
  local at = math.max(1, tonumber(top[2]))
  redis.call('PEXPIREAT', expiry, fmt(at))
  if companion then redis.call('PEXPIREAT', companion, fmt(at)) end
end
-- Moves `id` (scored `score` in the expiry index) to the pending-removal set.
local function retire(si, se, sg, id, score)
  redis.call('ZADD', sg, score, id)
  redis.call('ZREM', si, id)
  redis.call('ZREM', se, id)
end
local function token_ids(fam)
  local ids = {}
  for _, f in ipairs(redis.call('HKEYS', fam)) do
    if string.sub(f, 1, 2) == 't:' then table.insert(ids, string.sub(f, 3)) end
  end
  return ids
end
local function parse_token(v)
  local i, e, u = string.match(v, '^(%-?%d+)|(%-?%d+)|(%-?%d*)$')
  return i, e, u
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// Session index: limit check, eviction and insertion.
/// KEYS si se sg; ARGV id created expires max policy. Returns {status, evicted, pending}.
static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local id, created, expires = ARGV[1], ARGV[2], ARGV[3]
local max, policy = tonumber(ARGV[4]), ARGV[5]
local now = now_ms()
prune(si, se, now)
prune(nil, sg, now)
local evicted = {}
if max > 0 then
  local live = redis.call('ZRANGEBYSCORE', se, '(' .. created, '+inf', 'WITHSCORES')
  local count = #live / 2
  if count >= max then
    if policy == 'reject' then
      settle(sg)
      return {0, {}, redis.call('ZRANGE', sg, 0, -1)}
    end
    local score = {}
    for i = 1, #live, 2 do score[live[i]] = live[i + 1] end
    local excess = count + 1 - max
    for _, m in ipairs(redis.call('ZRANGE', si, 0, -1)) do
      if #evicted >= excess then break end
      if score[m] then table.insert(evicted, m) end
    end
    for _, m in ipairs(evicted) do retire(si, se, sg, m, score[m]) end
  end
end
redis.call('ZADD', si, created, id)
redis.call('ZADD', se, expires, id)
settle(se, si)
settle(sg)
return {1, evicted, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session index: swap `old` for `new` if `old` is indexed and live at ARGV[5].
/// KEYS si se sg; ARGV old new created expires now. `new` may be '' (remove only).
/// Returns {status, pending}.
static INDEX_SWAP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local old, new = ARGV[1], ARGV[2]
local now = now_ms()
prune(si, se, now)
prune(nil, sg, now)
local score = redis.call('ZSCORE', se, old)
local status = 0
if score and tonumber(score) > tonumber(ARGV[5]) then
  retire(si, se, sg, old, score)
  if new ~= '' then
    redis.call('ZADD', si, ARGV[3], new)
    redis.call('ZADD', se, ARGV[4], new)
  end
  status = 1
end
settle(se, si)
settle(sg)
return {status, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session index: retire one ID (ARGV[1]) or all ('') for deletion.
/// KEYS si se sg. Returns {retired by this call, all pending (including those)}.
static INDEX_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
prune(si, se, now)
prune(nil, sg, now)
local retired = {}
if ARGV[1] == '' then
  local all = redis.call('ZRANGE', se, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    redis.call('ZADD', sg, all[i + 1], all[i])
    table.insert(retired, all[i])
  end
  redis.call('DEL', si, se)
else
  local score = redis.call('ZSCORE', se, ARGV[1])
  if score then
    retire(si, se, sg, ARGV[1], score)
    table.insert(retired, ARGV[1])
  end
  settle(se, si)
end
settle(sg)
return {retired, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session index: raise the expiry bound of a live entry. KEYS se si; ARGV id expires now.
static INDEX_TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or tonumber(score) <= tonumber(ARGV[3]) then return 0 end
if tonumber(ARGV[2]) > tonumber(score) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  settle(KEYS[1], KEYS[2])
end
return 1
"#,
    )
});

/// Session index: move entries that expired by ARGV[1] to the pending set.
/// KEYS si se sg. Returns {count, pending}.
static INDEX_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local dead = redis.call('ZRANGEBYSCORE', se, '-inf', ARGV[1], 'WITHSCORES')
for i = 1, #dead, 2 do retire(si, se, sg, dead[i], dead[i + 1]) end
prune(nil, sg, now_ms())
settle(se, si)
settle(sg)
return {#dead / 2, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session: sliding renewal. KEYS session; ARGV last_seen expires.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local l, e, a, rest = string.match(v, '^(%-?%d+)|(%-?%d+)|(%-?%d+)|(.*)$')
if not a then return redis.error_reply('keycard: malformed session record') end
if tonumber(e) <= tonumber(ARGV[1]) then return 0 end
local ne = ARGV[2]
if tonumber(ne) > tonumber(a) then ne = a end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ne .. '|' .. a .. '|' .. rest,
  'PXAT', fmt(math.max(1, tonumber(ne))))
return 1
"#,
    )
});

/// Family: create. KEYS fam; ARGV subject family data family_expires id token.
static FAMILY_INSERT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'f', ARGV[2], 'd', ARGV[3], 'x', ARGV[4],
  'h', ARGV[5], 't:' .. ARGV[5], ARGV[6])
redis.call('PEXPIREAT', KEYS[1], fmt(math.max(1, tonumber(ARGV[4]))))
return 1
"#,
    )
});

/// Subject's family index: add. KEYS rf rx; ARGV family created family_expires.
static FAMILY_INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
prune(KEYS[1], KEYS[2], now_ms())
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
settle(KEYS[2], KEYS[1])
return 1
"#,
    )
});

/// Family: rotation, mirroring `MemoryStore`. KEYS fam;
/// ARGV presented next now idle grace next_collides.
/// Returns {'invalid'} | {'conflict'} | {'reused', subject, family, ids...} |
/// {'rotated', subject, family, data, presented_token, removed_head}.
static FAMILY_ROTATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local fam = KEYS[1]
local presented, nxt = ARGV[1], ARGV[2]
local now, idle, grace = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = redis.call('HGET', fam, 't:' .. presented)
if not cur then return {'invalid'} end
local x = tonumber(redis.call('HGET', fam, 'x'))
if (not x) or x <= now then return {'invalid'} end
local issued, exp, used = parse_token(cur)
if not issued then return redis.error_reply('keycard: malformed refresh token record') end
local head = redis.call('HGET', fam, 'h')
local removed = ''
if used == '' then
  if tonumber(exp) <= now then return {'invalid'} end
else
  local pred = redis.call('HGET', fam, 'p')
  local head_unused = false
  if head then
    local hv = redis.call('HGET', fam, 't:' .. head)
    if hv then
      local _, he, hu = parse_token(hv)
      head_unused = hu == '' and tonumber(he) > now
    end
  end
  local in_grace = grace > 0 and tonumber(used) + grace > now and pred == presented and head_unused
  if not in_grace then
    local reply = {'reused', redis.call('HGET', fam, 's'), redis.call('HGET', fam, 'f')}
    for _, id in ipairs(token_ids(fam)) do table.insert(reply, id) end
    redis.call('DEL', fam)
    return reply
  end
  if ARGV[6] == '1' then return {'conflict'} end
  if head then
    redis.call('HDEL', fam, 't:' .. head)
    removed = head
  end
end
if ARGV[6] == '1' then return {'conflict'} end
if used == '' then
  cur = issued .. '|' .. exp .. '|' .. ARGV[3]
  redis.call('HSET', fam, 't:' .. presented, cur)
end
local nexp = math.min(now + idle, x)
redis.call('HSET', fam, 't:' .. nxt, ARGV[3] .. '|' .. fmt(nexp) .. '|', 'h', nxt, 'p', presented)
return {'rotated', redis.call('HGET', fam, 's'), redis.call('HGET', fam, 'f'),
  redis.call('HGET', fam, 'd'), cur, removed}
"#,
    )
});

/// Family: the head. KEYS fam. Returns {subject, family, data, head, head_token} or {}.
static FAMILY_HEAD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local v = redis.call('HMGET', KEYS[1], 's', 'f', 'd', 'h')
if not v[4] then return {} end
local t = redis.call('HGET', KEYS[1], 't:' .. v[4])
if not t then return {} end
return {v[1], v[2], v[3], v[4], t}
"#,
    )
});

/// Family: delete if it belongs to ARGV[1]. KEYS fam. Returns the token IDs or nil.
static FAMILY_DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HGET', KEYS[1], 's') ~= ARGV[1] then return false end
local ids = token_ids(KEYS[1])
redis.call('DEL', KEYS[1])
return ids
"#,
    )
});

/// Family: delete if its head is missing or expired at ARGV[1]. KEYS fam.
/// Returns {subject, family, ids...} or nil.
static FAMILY_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local v = redis.call('HMGET', KEYS[1], 's', 'f', 'h')
if not v[1] then return false end
if v[3] then
  local t = redis.call('HGET', KEYS[1], 't:' .. v[3])
  if t then
    local _, e = parse_token(t)
    if e and tonumber(e) > tonumber(ARGV[1]) then return false end
  end
end
local reply = {v[1], v[2] or ''}
for _, id in ipairs(token_ids(KEYS[1])) do table.insert(reply, id) end
redis.call('DEL', KEYS[1])
return reply
"#,
    )
});

/// Denylist: add (keeping the later `until`) and publish. KEYS jti; ARGV jti until channel msg.
static REVOKE_JTI: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now_ms()))
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
settle(KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#,
    )
});

/// Epoch: raise (never lower) and publish. KEYS epoch; ARGV subject epoch channel msg.
static REVOKE_EPOCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(ARGV[2]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#,
    )
});

/// Revocation check. KEYS jti epoch; ARGV jti subject issued_at.
static IS_REVOKED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
local e = redis.call('HGET', KEYS[2], ARGV[2])
if e and tonumber(ARGV[3]) < tonumber(e) then return 1 end
return 0
"#,
    )
});

/// Snapshot of revocations in force at ARGV[1]. KEYS jti epoch. Returns {denylist, epochs}.
static LOAD_REVOCATIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
return {redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES'),
  redis.call('HGETALL', KEYS[2])}
"#,
    )
});

// ---------------------------------------------------------------------------------------------
// SessionStore
// ---------------------------------------------------------------------------------------------

impl RedisStore {
    async fn create_inner(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        let mut conn = self.writer();
        let durability = self.durability();
        let keys = &self.inner.keys;
        let key = keys.session(&record.id);
        let value = encode_session(record)?;
        let set: Value = redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("NX")
            .arg("PXAT")
            .arg(expire_at(record.expires_at))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        if set == Value::Nil {
            return Ok(CreateOutcome::Collision);
        }
        durability.wait(&mut conn, &key).await?;
        let (si, se, sg) = keys.session_index(&record.subject);
        let (max, policy) = match limit {
            None => (0, "none"),
            Some(l) => (
                l.max.max(1),
                match l.policy {
                    LimitPolicy::Reject => "reject",
                    LimitPolicy::EvictOldest => "evict",
                },
            ),
        };
        let indexed: StoreResult<(i64, Vec<String>, Vec<String>)> = INDEX_ADD
            .key(&si)
            .key(&se)
            .key(&sg)
            .arg(record.id.handle())
            .arg(to_millis(record.created_at))
            .arg(to_millis(record.expires_at))
            .arg(max)
            .arg(policy)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        let (status, evicted, pending) = match indexed {
            Ok(v) => v,
            Err(e) => {
                // Not indexed, so it must not stay loadable; nobody holds the token yet.
                let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
                return Err(e);
            }
        };
        if status == 0 {
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(store_err)?;
            self.finish_removal(sg, pending).await?;
            return Ok(CreateOutcome::LimitReached);
        }
        durability.wait(&mut conn, &si).await?;
        self.finish_removal(sg, pending).await?;
        let evicted = evicted
            .iter()
            .map(|h| parse_id(h))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(CreateOutcome::Created { evicted })
    }

    async fn load_inner(
        &self,
        id: &TokenHash,
        now: SystemTime,
    ) -> StoreResult<Option<SessionRecord>> {
        let mut conn = self.reader();
        let key = self.inner.keys.session_arg(id);
        // Sized up front: the key is written into the command's buffer without regrowing it.
        let raw: Option<Vec<u8>> = Cmd::with_capacity(2, 3 + key.len())
            .arg("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let record = decode_session(*id, &raw)?;
        Ok((record.expires_at > now).then_some(record))
    }

    async fn touch_inner(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let key = self.inner.keys.session(id);
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let Some(raw) = raw else {
            return Ok(false);
        };
        let current = decode_session(*id, &raw)?;
        if current.expires_at <= last_seen_at {
            return Ok(false);
        }
        let expires = expires_at.min(current.absolute_expires_at);
        let (si, se, _) = self.inner.keys.session_index(&current.subject);
        // Raise the index bound first: it must never be below the session's real expiry.
        let indexed: i64 = INDEX_TOUCH
            .key(&se)
            .key(&si)
            .arg(id.handle())
            .arg(to_millis(expires))
            .arg(to_millis(last_seen_at))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        if indexed == 0 {
            return Ok(false);
        }
        durability.wait(&mut conn, &se).await?;
        let touched: i64 = TOUCH
            .key(&key)
            .arg(to_millis(last_seen_at))
            .arg(to_millis(expires))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        durability.wait(&mut conn, &key).await?;
        Ok(touched == 1)
    }

    async fn rotate_inner(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let keys = &self.inner.keys;
        let old_key = keys.session(old);
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&old_key)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let Some(raw) = raw else {
            return Ok(false);
        };
        let current = decode_session(*old, &raw)?;
        if current.expires_at <= new.last_seen_at {
            return Ok(false);
        }
        let new_key = keys.session(&new.id);
        let set: Value = redis::cmd("SET")
            .arg(&new_key)
            .arg(encode_session(new)?)
            .arg("NX")
            .arg("PXAT")
            .arg(expire_at(new.expires_at))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        if set == Value::Nil {
            return Err(StoreError::new(StoreErrorKind::Conflict));
        }
        durability.wait(&mut conn, &new_key).await?;
        let same_subject = current.subject == new.subject;
        let (si, se, sg) = keys.session_index(&current.subject);
        let swapped: StoreResult<(i64, Vec<String>)> = INDEX_SWAP
            .key(&si)
            .key(&se)
            .key(&sg)
            .arg(old.handle())
            .arg(if same_subject {
                new.id.handle()
            } else {
                String::new()
            })
            .arg(to_millis(new.created_at))
            .arg(to_millis(new.expires_at))
            .arg(to_millis(new.last_seen_at))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        let (status, pending) = match swapped {
            Ok(v) => v,
            Err(e) => {
                let _: Result<i64, _> =
                    redis::cmd("DEL").arg(&new_key).query_async(&mut conn).await;
                return Err(e);
            }
        };
        if status == 0 {
            let _: i64 = redis::cmd("DEL")
                .arg(&new_key)
                .query_async(&mut conn)
                .await
                .map_err(store_err)?;
            self.finish_removal(sg, pending).await?;
            return Ok(false);
        }
        durability.wait(&mut conn, &si).await?;
        if !same_subject {
            let (nsi, nse, nsg) = keys.session_index(&new.subject);
            let (_, _, pending): (i64, Vec<String>, Vec<String>) = INDEX_ADD
                .key(&nsi)
                .key(&nse)
                .key(&nsg)
                .arg(new.id.handle())
                .arg(to_millis(new.created_at))
                .arg(to_millis(new.expires_at))
                .arg(0)
                .arg("none")
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            durability.wait(&mut conn, &nsi).await?;
            self.finish_removal(nsg, pending).await?;
        }
        self.finish_removal(sg, pending).await?;
        Ok(true)
    }

    async fn remove_inner(&self, subject: &str, id: Option<&TokenHash>) -> StoreResult<u64> {
        let mut conn = self.writer();
        let durability = self.durability();
        let (si, se, sg) = self.inner.keys.session_index(subject);
        let target = id.map(TokenHash::handle);
        let (retired, pending): (Vec<String>, Vec<String>) = INDEX_REMOVE
            .key(&si)
            .key(&se)
            .key(&sg)
            .arg(target.as_deref().unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        durability.wait(&mut conn, &sg).await?;
        let deleted = self.finish_removal(sg, pending.clone()).await?;
        // Count what this call took out of the index. Other operations drain pending IDs too, so
        // a key deleted by them is still ours to count. The one exception: the ID this call was
        // asked to delete was already pending (an earlier attempt failed midway); then it counts
        // if this call's deletion removed the key.
        let count = match target {
            None => retired.len(),
            Some(hex) => {
                let finished_here = pending.iter().zip(&deleted).any(|(h, d)| *h == hex && *d);
                usize::from(retired.contains(&hex) || finished_here)
            }
        };
        Ok(count as u64)
    }

    async fn list_inner(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        let mut conn = self.reader();
        let (si, _, _) = self.inner.keys.session_index(subject);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&si)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let keys = &self.inner.keys;
        let records = try_join_all(ids.iter().map(|hex| {
            let mut c = conn.clone();
            let key = keys.session_hex(hex);
            async move {
                let id = parse_id(hex)?;
                let raw: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .map_err(store_err)?;
                raw.map(|raw| decode_session(id, &raw)).transpose()
            }
        }))
        .await?;
        let mut live: Vec<SessionRecord> = records
            .into_iter()
            .flatten()
            .filter(|r| r.expires_at > now && r.subject == subject)
            .collect();
        live.sort_by_key(|r| (r.created_at, *r.id.as_bytes()));
        Ok(live)
    }

    async fn sweep_sessions(&self, now: SystemTime) -> StoreResult<u64> {
        let pattern = format!("{}:{{u:*}}:s[eg]", self.inner.keys.glob_prefix());
        let mut tags: Vec<String> = self
            .scan(&pattern)
            .await?
            .into_iter()
            .filter_map(|k| {
                k.strip_suffix(":se")
                    .or(k.strip_suffix(":sg"))
                    .map(str::to_owned)
            })
            .collect();
        tags.dedup();
        let mut removed = 0u64;
        for tag in tags {
            let mut conn = self.writer();
            let (si, se, sg) = (
                format!("{tag}:si"),
                format!("{tag}:se"),
                format!("{tag}:sg"),
            );
            let (count, pending): (u64, Vec<String>) = INDEX_SWEEP
                .key(&si)
                .key(&se)
                .key(&sg)
                .arg(to_millis(now))
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            self.finish_removal(sg, pending).await?;
            removed += count;
        }
        Ok(removed)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        self.run(self.create_inner(record, limit)).await
    }

    fn call_timeout(&self) -> Option<Duration> {
        Some(self.inner.options.timeout)
    }

    async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>> {
        self.run(self.load_inner(id, now)).await
    }

    async fn touch(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool> {
        self.run(self.touch_inner(id, last_seen_at, expires_at))
            .await
    }

    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        self.run(self.rotate_inner(old, new)).await
    }

    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
        self.run(self.remove_inner(subject, Some(id)))
            .await
            .map(|n| n > 0)
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.run(self.remove_inner(subject, None)).await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        self.run(self.list_inner(subject, now)).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.sweep_sessions(now)).await
    }
}

// ---------------------------------------------------------------------------------------------
// RefreshStore
// ---------------------------------------------------------------------------------------------

/// What a family's pointer holds: `family_expires|family`.
fn parse_pointer(raw: &str) -> StoreResult<(i64, &str)> {
    let (x, family) = raw
        .split_once('|')
        .ok_or_else(|| corrupt("malformed refresh pointer"))?;
    let x = x
        .parse()
        .map_err(|_| corrupt("malformed refresh pointer"))?;
    Ok((x, family))
}

impl RedisStore {
    /// Deletes pointers of deleted tokens. Best effort: a lingering pointer leads to a missing
    /// family, which is `Invalid`, and expires with the family's lifetime.
    async fn drop_pointers(&self, conn: &Conn, ids: &[String]) {
        let keys = &self.inner.keys;
        let _ = try_join_all(ids.iter().map(|hex| {
            let mut c = conn.clone();
            let key = keys.pointer_hex(hex);
            async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut c).await }
        }))
        .await;
    }

    async fn insert_inner(&self, record: &RefreshRecord) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let keys = &self.inner.keys;
        let pointer = keys.pointer(&record.id);
        let x = to_millis(record.family_expires_at);
        let set: Value = redis::cmd("SET")
            .arg(&pointer)
            .arg(format!("{x}|{}", record.family))
            .arg("NX")
            .arg("PXAT")
            .arg(expire_at(record.family_expires_at))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        if set == Value::Nil {
            return Ok(false);
        }
        let family_key = keys.family(&record.family);
        let inserted: StoreResult<i64> = FAMILY_INSERT
            .key(&family_key)
            .arg(&record.subject)
            .arg(&record.family)
            .arg(encode_family(record)?)
            .arg(x)
            .arg(record.id.handle())
            .arg(encode_token(record))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        match inserted {
            Ok(1) => {}
            Ok(_) => {
                let _: i64 = redis::cmd("DEL")
                    .arg(&pointer)
                    .query_async(&mut conn)
                    .await
                    .map_err(store_err)?;
                return Ok(false);
            }
            Err(e) => {
                let _: Result<i64, _> =
                    redis::cmd("DEL").arg(&pointer).query_async(&mut conn).await;
                return Err(e);
            }
        }
        durability.wait(&mut conn, &family_key).await?;
        let (rf, rx) = keys.family_index(&record.subject);
        let _: i64 = FAMILY_INDEX_ADD
            .key(&rf)
            .key(&rx)
            .arg(&record.family)
            .arg(to_millis(record.family_created_at))
            .arg(x)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        durability.wait(&mut conn, &rf).await?;
        Ok(true)
    }

    async fn rotate_refresh(&self, req: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        let mut conn = self.writer();
        let durability = self.durability();
        let keys = &self.inner.keys;
        let raw: Option<String> = redis::cmd("GET")
            .arg(keys.pointer(req.presented))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let Some(raw) = raw else {
            return Ok(RotateOutcome::Invalid);
        };
        let (x, family) = parse_pointer(&raw)?;
        let now_ms = to_millis(req.now);
        if x <= now_ms {
            return Ok(RotateOutcome::Invalid);
        }
        // Reserve the next token's pointer: the global collision check.
        let next_pointer = keys.pointer(req.next);
        let set: Value = redis::cmd("SET")
            .arg(&next_pointer)
            .arg(&raw)
            .arg("NX")
            .arg("PXAT")
            .arg(x.max(1))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let collides = set == Value::Nil;
        let family_key = keys.family(family);
        let reply: StoreResult<Vec<String>> = FAMILY_ROTATE
            .key(&family_key)
            .arg(req.presented.handle())
            .arg(req.next.handle())
            .arg(now_ms)
            .arg(millis_of(req.idle))
            .arg(millis_of(req.grace))
            .arg(if collides { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        let release_next = async |conn: &mut Conn| {
            if !collides {
                let _: Result<i64, _> =
                    redis::cmd("DEL").arg(&next_pointer).query_async(conn).await;
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                release_next(&mut conn).await;
                return Err(e);
            }
        };
        match reply.first().map(String::as_str) {
            Some("rotated") => {
                durability.wait(&mut conn, &family_key).await?;
                let [_, subject, family, data, token, removed] = reply.as_slice() else {
                    return Err(corrupt("unexpected rotation reply"));
                };
                let current =
                    decode_refresh(*req.presented, subject.clone(), family.clone(), data, token)?;
                if !removed.is_empty() {
                    self.drop_pointers(&conn, std::slice::from_ref(removed))
                        .await;
                }
                let next = current.successor(*req.next, from_millis(now_ms), req.idle);
                Ok(RotateOutcome::Rotated { next })
            }
            Some("reused") => {
                release_next(&mut conn).await;
                durability.wait(&mut conn, &family_key).await?;
                let [_, subject, family, ids @ ..] = reply.as_slice() else {
                    return Err(corrupt("unexpected rotation reply"));
                };
                self.drop_pointers(&conn, ids).await;
                let (rf, rx) = keys.family_index(subject);
                redis::pipe()
                    .cmd("ZREM")
                    .arg(&rf)
                    .arg(family)
                    .ignore()
                    .cmd("ZREM")
                    .arg(&rx)
                    .arg(family)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(store_err)?;
                Ok(RotateOutcome::Reused {
                    family: family.clone(),
                    subject: subject.clone(),
                })
            }
            Some("conflict") => Err(StoreError::new(StoreErrorKind::Conflict)),
            Some("invalid") => {
                release_next(&mut conn).await;
                Ok(RotateOutcome::Invalid)
            }
            _ => {
                release_next(&mut conn).await;
                Err(corrupt("unexpected rotation reply"))
            }
        }
    }

    async fn head(&self, conn: &mut Conn, family: &str) -> StoreResult<Option<RefreshRecord>> {
        let reply: Vec<String> = FAMILY_HEAD
            .key(self.inner.keys.family(family))
            .invoke_async(conn)
            .await
            .map_err(store_err)?;
        let [subject, family, data, head, token] = reply.as_slice() else {
            return Ok(None);
        };
        decode_refresh(
            parse_id(head)?,
            subject.clone(),
            family.clone(),
            data,
            token,
        )
        .map(Some)
    }

    async fn family_live_inner(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        let mut conn = self.reader();
        Ok(self
            .head(&mut conn, family)
            .await?
            .is_some_and(|h| h.expires_at > now))
    }

    /// Deletes `family` if it belongs to `subject`, then its index entry and pointers.
    async fn delete_family_inner(&self, subject: &str, family: &str) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let family_key = self.inner.keys.family(family);
        let ids: Option<Vec<String>> = FAMILY_DELETE
            .key(&family_key)
            .arg(subject)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        let (rf, rx) = self.inner.keys.family_index(subject);
        let deleted = ids.is_some();
        if let Some(ids) = ids {
            durability.wait(&mut conn, &family_key).await?;
            self.drop_pointers(&conn, &ids).await;
        }
        // Remove the index entry only once the family is gone, so a failure leaves it findable.
        redis::pipe()
            .cmd("ZREM")
            .arg(&rf)
            .arg(family)
            .ignore()
            .cmd("ZREM")
            .arg(&rx)
            .arg(family)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(store_err)?;
        Ok(deleted)
    }

    async fn delete_all_families(&self, subject: &str) -> StoreResult<u64> {
        let mut conn = self.writer();
        let (rf, _) = self.inner.keys.family_index(subject);
        let families: Vec<String> = redis::cmd("ZRANGE")
            .arg(&rf)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let deleted = try_join_all(
            families
                .iter()
                .map(|f| self.delete_family_inner(subject, f)),
        )
        .await?;
        Ok(deleted.into_iter().filter(|d| *d).count() as u64)
    }

    async fn list_families(
        &self,
        subject: &str,
        now: SystemTime,
    ) -> StoreResult<Vec<RefreshRecord>> {
        let mut conn = self.reader();
        let (rf, _) = self.inner.keys.family_index(subject);
        let families: Vec<String> = redis::cmd("ZRANGE")
            .arg(&rf)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let heads = try_join_all(families.iter().map(|f| {
            let mut c = conn.clone();
            async move { self.head(&mut c, f).await }
        }))
        .await?;
        let mut heads: Vec<RefreshRecord> = heads
            .into_iter()
            .flatten()
            .filter(|r| r.subject == subject && r.used_at.is_none() && r.expires_at > now)
            .collect();
        heads.sort_by(|a, b| {
            (a.family_created_at, &a.family).cmp(&(b.family_created_at, &b.family))
        });
        Ok(heads)
    }

    async fn sweep_families(&self, now: SystemTime) -> StoreResult<u64> {
        let pattern = format!("{}:{{f:*}}", self.inner.keys.glob_prefix());
        let mut removed = 0u64;
        for key in self.scan(&pattern).await? {
            let mut conn = self.writer();
            let reply: Option<Vec<String>> = FAMILY_SWEEP
                .key(&key)
                .arg(to_millis(now))
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            let Some(reply) = reply else { continue };
            let [subject, family, ids @ ..] = reply.as_slice() else {
                return Err(corrupt("unexpected sweep reply"));
            };
            removed += ids.len() as u64;
            self.drop_pointers(&conn, ids).await;
            let (rf, rx) = self.inner.keys.family_index(subject);
            redis::pipe()
                .cmd("ZREM")
                .arg(&rf)
                .arg(family)
                .ignore()
                .cmd("ZREM")
                .arg(&rx)
                .arg(family)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(store_err)?;
        }
        Ok(removed)
    }
}

#[async_trait]
impl RefreshStore for RedisStore {
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool> {
        self.run(self.insert_inner(record)).await
    }

    async fn rotate(&self, request: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        self.run(self.rotate_refresh(request)).await
    }

    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        self.run(self.family_live_inner(family, now)).await
    }

    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        self.run(self.delete_family_inner(subject, family)).await
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.run(self.delete_all_families(subject)).await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        self.run(self.list_families(subject, now)).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.sweep_families(now)).await
    }
}

// ---------------------------------------------------------------------------------------------
// RevocationStore
// ---------------------------------------------------------------------------------------------

/// `(denylist with scores, epochs)` as [`LOAD_REVOCATIONS`] returns them.
type RevocationSnapshot = (Vec<(String, f64)>, Vec<(String, i64)>);

impl RedisStore {
    async fn revoke_inner(&self, revocation: &Revocation) -> StoreResult<()> {
        let mut conn = self.writer();
        let keys = &self.inner.keys;
        let message = RevocationMessage::of(revocation).to_json();
        let key = match revocation {
            Revocation::Jti { jti, until } => {
                let key = keys.denylist();
                let _: i64 = REVOKE_JTI
                    .key(&key)
                    .arg(jti)
                    .arg(to_millis(*until))
                    .arg(keys.channel())
                    .arg(message)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(store_err)?;
                key
            }
            Revocation::Epoch { subject, epoch } => {
                let key = keys.epochs();
                let _: i64 = REVOKE_EPOCH
                    .key(&key)
                    .arg(subject)
                    .arg(to_millis(*epoch))
                    .arg(keys.channel())
                    .arg(message)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(store_err)?;
                key
            }
        };
        self.durability().wait(&mut conn, &key).await
    }

    async fn load_revocations(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        let mut conn = self.reader();
        let (denied, epochs): RevocationSnapshot = LOAD_REVOCATIONS
            .key(self.inner.keys.denylist())
            .key(self.inner.keys.epochs())
            .arg(to_millis(now))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        let mut out: Vec<Revocation> = denied
            .into_iter()
            .map(|(jti, until)| Revocation::Jti {
                jti,
                // Scores are whole milliseconds, well inside f64's exact range.
                until: from_millis(until.round() as i64),
            })
            .collect();
        out.extend(epochs.into_iter().map(|(subject, e)| Revocation::Epoch {
            subject,
            epoch: from_millis(e),
        }));
        Ok(out)
    }

    async fn is_revoked_inner(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        let mut conn = self.reader();
        let revoked: i64 = IS_REVOKED
            .key(self.inner.keys.denylist())
            .key(self.inner.keys.epochs())
            .arg(jti)
            .arg(subject)
            .arg(to_millis(issued_at))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        Ok(revoked == 1)
    }

    async fn subscribe_inner(&self) -> StoreResult<Option<RevocationFeed>> {
        let channel = self.inner.keys.channel();
        let mut last_error = None;
        for client in &self.inner.pubsub {
            let attempt = async {
                let mut pubsub = client.get_async_pubsub().await.map_err(store_err)?;
                pubsub.subscribe(&channel).await.map_err(store_err)?;
                Ok::<_, StoreError>(pubsub)
            };
            match tokio::time::timeout(self.inner.options.connection_timeout, attempt).await {
                Ok(Ok(pubsub)) => return Ok(Some(self.feed(pubsub))),
                Ok(Err(e)) => last_error = Some(e),
                Err(_) => last_error = Some(StoreError::new(StoreErrorKind::Timeout)),
            }
        }
        Err(last_error.unwrap_or_else(|| StoreError::new(StoreErrorKind::Unavailable)))
    }

    /// Turns a subscribed connection into a feed that ends with an error when the connection
    /// closes, stops answering its heartbeat `PING`, or delivers an undecodable message (which may
    /// be a missed revocation): the consumer then reloads and re-subscribes.
    fn feed(&self, pubsub: redis::aio::PubSub) -> RevocationFeed {
        let (mut sink, messages) = pubsub.split();
        let (mut lost_tx, lost_rx) = tokio::sync::oneshot::channel::<StoreError>();
        let interval = self.inner.options.feed_heartbeat;
        let limit = self.inner.options.timeout;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // The consumer dropped the feed.
                    () = lost_tx.closed() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                let error = match tokio::time::timeout(limit, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => store_err(e),
                    Err(_) => StoreError::new(StoreErrorKind::Timeout),
                };
                let _ = lost_tx.send(error);
                return;
            }
        });
        futures_util::stream::unfold(Some((messages, lost_rx)), |state| async move {
            let (mut messages, mut lost) = state?;
            tokio::select! {
                biased;
                msg = messages.next() => match msg {
                    Some(msg) => match serde_json::from_slice::<RevocationMessage>(msg.get_payload_bytes()) {
                        Ok(p) => Some((Ok(p.into_revocation()), Some((messages, lost)))),
                        Err(e) => Some((Err(StoreError::corrupt(e)), None)),
                    },
                    None => Some((
                        Err(StoreError::unavailable("the revocation feed's connection closed")),
                        None,
                    )),
                },
                error = &mut lost => error.ok().map(|e| (Err(e), None)),
            }
        })
        .boxed()
    }

    async fn sweep_revocations(&self, now: SystemTime) -> StoreResult<u64> {
        let mut conn = self.writer();
        let removed: u64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(self.inner.keys.denylist())
            .arg("-inf")
            .arg(to_millis(now))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        Ok(removed)
    }
}

#[async_trait]
impl RevocationStore for RedisStore {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        self.run(self.revoke_inner(revocation)).await
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        self.run(self.load_revocations(now)).await
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        self.run(self.is_revoked_inner(jti, subject, issued_at))
            .await
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        self.run(self.subscribe_inner()).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.sweep_revocations(now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_hash_tags() {
        // Reference values from the Redis Cluster specification.
        // CRC16/XMODEM("123456789") = 0x31C3.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        let keys = Keys::new("keycard").unwrap();
        let (si, se, sg) = keys.session_index("alice");
        let (rf, rx) = keys.family_index("alice");
        for k in [&se, &sg, &rf, &rx] {
            assert_eq!(key_slot(k.as_bytes()), key_slot(si.as_bytes()));
        }
        assert_eq!(
            key_slot(keys.denylist().as_bytes()),
            key_slot(keys.epochs().as_bytes())
        );
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        assert!(Keys::new("a{b").is_err());
        assert!(Keys::new("").is_err());
        assert_eq!(Keys::new("a*b").unwrap().glob_prefix(), "a\\*b");
    }

    #[test]
    fn session_records_round_trip() {
        let t = from_millis(1_700_000_000_123);
        let record = SessionRecord {
            id: TokenHash::from_bytes([7; 32]),
            subject: "a|b{c}".into(),
            roles: vec!["admin".into()],
            attributes: serde_json::json!({"k": [1, 2]})
                .as_object()
                .cloned()
                .unwrap(),
            created_at: t,
            last_seen_at: t,
            authenticated_at: t,
            expires_at: t + Duration::from_secs(60),
            absolute_expires_at: t + Duration::from_secs(3600),
            user_agent: Some("ua|x".into()),
            ip: None,
        };
        let encoded = encode_session(&record).unwrap();
        assert_eq!(decode_session(record.id, &encoded).unwrap(), record);
        assert!(decode_session(record.id, b"1|2|x").is_err());
        assert!(decode_session(record.id, b"1|2|3|").is_err());
        assert!(decode_session(record.id, b"1|x|3|{}").is_err());

        // Records written in the JSON form before the binary one are still read.
        let legacy = format!(
            "{}|{}|{}|{}",
            to_millis(record.last_seen_at),
            to_millis(record.expires_at),
            to_millis(record.absolute_expires_at),
            serde_json::json!({
                "s": record.subject, "r": record.roles, "a": record.attributes,
                "c": to_millis(record.created_at), "t": to_millis(record.authenticated_at),
                "ua": record.user_agent,
            })
        );
        assert_eq!(
            decode_session(record.id, legacy.as_bytes()).unwrap(),
            record
        );
    }

    #[test]
    fn decimals_read_as_the_scripts_write_them() {
        for (text, value) in [
            ("0", Some(0)),
            ("1700000000123", Some(1_700_000_000_123)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
            ("999999999999999999", Some(999_999_999_999_999_999)),
            ("-999999999999999999", Some(-999_999_999_999_999_999)),
            ("1000000000000000000", Some(1_000_000_000_000_000_000)),
            ("00000000000000000000000001", Some(1)),
            ("12345678901234567x", None),
            ("9223372036854775808", None),
            ("", None),
            ("-", None),
            ("+1", None),
            ("1 ", None),
            ("1.5", None),
            ("--1", None),
        ] {
            assert_eq!(decimal(text.as_bytes()), value, "{text:?}");
            if let Some(v) = value {
                assert_eq!(text.parse::<i64>().ok(), Some(v));
            }
        }
    }

    #[test]
    fn session_keys_are_built_as_documented() {
        let keys = Keys::new("app").unwrap();
        let id = TokenHash::from_bytes([0xab; 32]);
        assert_eq!(keys.session(&id), keys.session_hex(&id.handle()));
        assert_eq!(keys.session(&id), format!("app:{{s:{}}}", "ab".repeat(32)));
        // The argument written into a command's buffer is the same key, as one argument.
        assert_eq!(
            keys.session_arg(&id).to_redis_args(),
            vec![keys.session(&id).into_bytes()]
        );
    }
}
