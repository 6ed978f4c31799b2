//! The server-session HTTP conformance suite on Redis: a single node at `REDIS_URL` and a 6-node
//! Redis Cluster started by the test itself.

#![cfg(feature = "redis")]

use crate::common::http_suite::http_suite;
use crate::common::redis_support;

use std::sync::Arc;

use keycard::store::{
    SessionStore,
    redis::{RedisOptions, RedisStore},
};

fn options() -> RedisOptions {
    let mut o = RedisOptions::default();
    o.key_prefix = redis_support::unique_prefix();
    o
}

async fn single() -> Arc<dyn SessionStore> {
    let url = crate::common::redis_url();
    Arc::new(
        RedisStore::connect_with(&url, options())
            .await
            .expect("redis"),
    )
}

async fn cluster() -> Arc<dyn SessionStore> {
    let urls = redis_support::cluster::Cluster::shared().urls();
    Arc::new(
        RedisStore::connect_cluster_with(&urls, options())
            .await
            .expect("redis cluster"),
    )
}

http_suite!(redis_single, single().await);
http_suite!(redis_cluster, cluster().await);
