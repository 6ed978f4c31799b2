//! SQL stores: one [`SqlStore`] for SQLite, PostgreSQL and MySQL/MariaDB, via sqlx.
//!
//! [`SqlStore`] implements [`SessionStore`], [`RefreshStore`] and [`RevocationStore`] over the
//! backend named by the URL scheme (`sqlite:`, `postgres:`/`postgresql:`, `mysql:`/`mariadb:`).
//! Each backend sits behind its cargo feature (`sqlite`, `postgres`, `mysql`).
//!
//! # Example
//! ```no_run
//! use keycard::store::sql::{SqlOptions, SqlStore};
//!
//! # async fn demo() -> Result<(), keycard::Error> {
//! let store = SqlStore::connect("sqlite://keycard.db", SqlOptions::default()).await?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! # Schema
//! The schema ships as sqlx migrations (`migrations/<backend>/` in the crate), applied by
//! [`SqlStore::connect`] unless [`SqlOptions::run_migrations`] is `false`. Every table is
//! prefixed `keycard_`; times are `BIGINT` Unix milliseconds; session and refresh-token IDs are
//! the 32-byte SHA-256 of the client's token, never the token itself.
//!
//! keycard records its migrations in sqlx's `_sqlx_migrations` table and ignores migrations it
//! does not know, so it can share a database with an application that also uses sqlx
//! migrations; that application must then call `set_ignore_missing(true)` on its own migrator
//! (or run keycard's SQL itself and set `run_migrations` to `false`).
//!
//! # Consistency
//! - Creation is insert-if-absent everywhere (`ON CONFLICT DO NOTHING`; on MySQL a plain
//!   `INSERT` whose duplicate-key error is reported as a collision).
//! - Creation under a [`SessionLimit`] serializes on a per-subject lock row
//!   (`keycard_subjects`, locked with `SELECT … FOR UPDATE`), so concurrent logins never exceed
//!   the limit. Refresh rotation serializes on the family's row in the same way and spends the
//!   presented token with a conditional `UPDATE … WHERE used_at IS NULL`. On SQLite, writing
//!   transactions start with `BEGIN IMMEDIATE`, which serializes writers.
//! - MySQL connections run at `READ COMMITTED`, so that reads inside a transaction see rows
//!   committed while it waited for a lock, and no gap locks are taken.
//!
//! # Connections
//! A pooled connection is not pinged before each use (sqlx's `test_before_acquire` is off): that
//! ping is a round trip of its own, and a session lookup would pay two instead of one. A read,
//! or the `BEGIN` of a transaction, that finds its connection broken (closed by the server, a
//! restart, a reset) is repeated on another connection, up to one more time than the pool
//! holds connections; a single-statement write, which may not be repeated, pings its
//! connection first. sqlx still checks every connection when it is returned to the pool.
//!
//! # Revocation feed
//! On PostgreSQL, [`RevocationStore::revoke`] sends a `NOTIFY` on the channel
//! `keycard_revocations` in the transaction that records the revocation, and
//! [`RevocationStore::subscribe`] listens on it (holding one pooled connection per
//! subscription). The feed yields an error and ends when its connection is lost. A `NOTIFY`
//! payload is limited to 8000 bytes, so revoking a `jti` or subject of several kilobytes fails.
//! SQLite and MySQL have no push channel: `subscribe` returns `Ok(None)`.

use std::{fmt, sync::Arc, time::Duration};

#[cfg(doc)]
use super::{RefreshStore, RevocationStore, SessionLimit, SessionStore};
use crate::error::Error;
#[cfg(doc)]
use crate::error::ErrorKind;

mod codec;
mod connect;
mod data;
mod dialect;
mod exec;
mod refresh;
mod revocation;
mod session;
mod statements;
mod throttle;

use connect::URL_FIELD;
use exec::Pool;
use statements::Statements;

/// Connection-pool and schema options of [`SqlStore::connect`].
///
/// ```
/// use std::time::Duration;
/// use keycard::store::sql::SqlOptions;
///
/// let mut options = SqlOptions::default();
/// options.max_connections = 20;
/// options.connect_timeout = Duration::from_secs(2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlOptions {
    /// Maximum number of pooled connections. Default: `10`.
    pub max_connections: u32,
    /// Connections kept open while idle. Default: `0`.
    pub min_connections: u32,
    /// How long an operation waits for a pooled connection, including opening a new one;
    /// past it the operation fails as unavailable. Default: 5 seconds.
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long; `None` keeps them. Default: 10
    /// minutes.
    pub idle_timeout: Option<Duration>,
    /// SQLite only: how long a writer waits for the database lock held by another writer
    /// (`busy_timeout`). Default: 5 seconds.
    pub busy_timeout: Duration,
    /// Whether [`SqlStore::connect`] applies keycard's migrations. Default: `true`. Turn it off
    /// when migrations are run by a deployment step instead (see [`SqlStore::migrate`]).
    pub run_migrations: bool,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            busy_timeout: Duration::from_secs(5),
            run_migrations: true,
        }
    }
}

/// A session, refresh-token and revocation store over SQLite, PostgreSQL or MySQL/MariaDB.
///
/// Clones share the connection pool. See the [module docs](self) for the schema and the
/// consistency guarantees.
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool,
    sql: Arc<Statements>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.pool.dialect())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects to the database at `url` and, unless [`SqlOptions::run_migrations`] is off,
    /// applies keycard's migrations.
    ///
    /// The scheme picks the backend: `sqlite:` (the file is created if missing and put in WAL
    /// mode; `sqlite::memory:` for a private in-memory database), `postgres:`/`postgresql:`, or
    /// `mysql:`/`mariadb:`.
    ///
    /// # Errors
    /// - [`ErrorKind::Config`] naming `database.url` when the URL is malformed, its scheme is
    ///   unknown, or the scheme's cargo feature is not compiled in.
    /// - [`ErrorKind::StoreUnavailable`] when the database cannot be reached or refuses the
    ///   connection, or a migration fails.
    pub async fn connect(url: &str, options: SqlOptions) -> Result<Self, Error> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::config(
                    URL_FIELD,
                    "expected a URL such as `sqlite://keycard.db`, `postgres://…` or `mysql://…`",
                )
            })?;
        let pool = match scheme.as_str() {
            "sqlite" => connect::sqlite(url, &options).await?,
            "postgres" | "postgresql" => connect::postgres(url, &options).await?,
            "mysql" | "mariadb" => connect::mysql(url, &options).await?,
            other => {
                return Err(Error::config(
                    URL_FIELD,
                    format_args!(
                        "unsupported scheme `{other}:`; expected `sqlite:`, `postgres:` or `mysql:`"
                    ),
                ));
            }
        };
        let store = Self {
            sql: Arc::new(Statements::new(pool.dialect())),
            pool,
        };
        if options.run_migrations {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies keycard's pending migrations. Safe to call concurrently from several instances:
    /// sqlx takes a database lock while migrating.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`] when a migration cannot be applied; [`ErrorKind::Config`]
    /// when the database holds a keycard migration that differs from the one compiled in.
    pub async fn migrate(&self) -> Result<(), Error> {
        connect::migrate(&self.pool).await
    }

    /// Closes the pool: waits for checked-out connections to return, then closes them all.
    pub async fn close(&self) {
        self.pool.close().await
    }
}
