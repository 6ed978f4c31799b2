//! The stores: the shared conformance suite (`tests/common/conformance.rs`) and each backend's
//! own cases on memory, SQLite, PostgreSQL, MySQL/MariaDB, Redis and Redis Cluster; and the
//! server-session read cache on top of them; the login throttle on every store.

#[path = "../common/mod.rs"]
mod common;

mod session_cache;
mod store_memory;
mod store_mysql;
mod store_postgres;
mod store_redis;
mod store_redis_cluster;
mod store_sqlite;
mod throttle;
