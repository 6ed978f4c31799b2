//! The HTTP layer: the server-session suite through the real layer and router on every store,
//! fail-closed behaviour with stores that are down or hung, session data across two cached
//! instances, the client-address policy and the ready-made refresh handler, and the public
//! strategy suite against every strategy. They drive keycard's test application,
//! `keycard::testing::router` (feature `test-suite`). Besides, the migration guide's two apps run
//! through one HTTP script (`guide/`).
#![cfg(feature = "test-suite")]

#[path = "../common/mod.rs"]
mod common;

mod bearer_sessions;
mod cached_instances;
mod client_policy;
mod cookie_scope;
#[cfg(feature = "sqlite")]
mod guide;
mod http_memory;
mod http_redis;
mod http_sql;
mod refresh_handler;
mod strategy_suite;
