//! Connections: opening a single node or a cluster, the [`Conn`] both kinds hide behind, routing
//! to cluster primaries (`SCAN`, `WAIT`), durability, and the mapping of Redis errors.

use std::{future::Future, time::Duration};

use redis::{
    Cmd, Pipeline, RedisError, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};

use super::{RedisOptions, keys::key_slot, record::millis_of};
use crate::{
    error::{Error, ErrorKind},
    store::{StoreError, StoreErrorKind, StoreResult},
};

/// The two connection kinds behind one [`ConnectionLike`], so that the store's logic is written
/// once.
#[derive(Clone)]
pub(super) enum Conn {
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

/// The connections of a store: one for commands, a second one for writes when `WAIT` is on, and
/// clients for dedicated pub/sub connections.
pub(super) struct Connected {
    pub(super) conn: Conn,
    /// Present only when [`RedisOptions::wait_replicas`] is above 0.
    pub(super) writer: Option<Conn>,
    /// One client per configured node.
    pub(super) pubsub: Vec<redis::Client>,
}

impl Connected {
    /// Connects to a single Redis node (see [`super::RedisStore::connect_with`]).
    pub(super) async fn single(url: &str, options: &RedisOptions) -> Result<Self, Error> {
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
        let conn = open_single(&client, &config, options.timeout).await?;
        let writer = if options.wait_replicas > 0 {
            Some(open_single(&client, &config, options.timeout).await?)
        } else {
            None
        };
        Ok(Self {
            conn,
            writer,
            pubsub: vec![client],
        })
    }

    /// Connects to a Redis Cluster through the seed nodes `urls` (see
    /// [`super::RedisStore::connect_cluster_with`]).
    pub(super) async fn cluster(urls: &[String], options: &RedisOptions) -> Result<Self, Error> {
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
        let conn = open_cluster(&client, options.timeout).await?;
        let writer = if options.wait_replicas > 0 {
            Some(open_cluster(&client, options.timeout).await?)
        } else {
            None
        };
        Ok(Self {
            conn,
            writer,
            pubsub: clients,
        })
    }
}

impl Conn {
    /// Keys matching `pattern` on every primary.
    pub(super) async fn scan(self, pattern: &str) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        match self {
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

/// A connection manager for one node. (A function rather than a closure returning a future: the
/// closure's borrowed captures made the callers' futures `Send` for one lifetime only, so
/// `Keycard::from_config` could not run in `tokio::spawn`.)
async fn open_single(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
    limit: Duration,
) -> Result<Conn, Error> {
    let manager = ConnectionManager::new_with_config(client.clone(), config.clone());
    Ok(Conn::Single(bounded(limit, manager).await?))
}

/// A connection to the cluster (see [`open_single`] for why a function).
async fn open_cluster(client: &ClusterClient, limit: Duration) -> Result<Conn, Error> {
    let conn = bounded(limit, client.get_async_connection()).await?;
    Ok(Conn::Cluster(conn))
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
pub(super) struct Durability {
    replicas: u32,
    timeout_ms: i64,
}

impl Durability {
    /// The `WAIT` that `options` ask for.
    pub(super) fn of(options: &RedisOptions) -> Self {
        // `WAIT` must return before the connection gives up on its reply.
        let wait = options.wait_timeout.min(options.response_timeout * 3 / 4);
        Self {
            replicas: options.wait_replicas,
            timeout_ms: millis_of(wait).max(1),
        }
    }

    /// Waits until the write of `key` reached the configured number of replicas.
    pub(super) async fn wait(self, conn: &mut Conn, key: &str) -> StoreResult<()> {
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

/// Maps a redis error into a store error, keeping it as the source.
pub(super) fn store_err(e: RedisError) -> StoreError {
    if e.kind() == redis::ErrorKind::TypeError {
        StoreError::corrupt(e)
    } else {
        StoreError::unavailable(e)
    }
}
