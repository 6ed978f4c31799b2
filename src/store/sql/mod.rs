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

use std::{fmt, str::FromStr, time::Duration, time::SystemTime};

use async_trait::async_trait;
use sqlx::{Database, Executor, FromRow};

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

/// The configuration field named in connection errors.
const URL_FIELD: &str = "database.url";
/// The PostgreSQL channel carrying revocations.
#[cfg(feature = "postgres")]
const CHANNEL: &str = "keycard_revocations";
/// How many keys go into one `IN (…)` list.
const CHUNK: usize = 500;

/// Matches `$on` (a `Pool` or `Tx`) with `$x` bound to the backend's value.
macro_rules! dispatch {
    ($on:expr, $enum:ident, $x:ident => $body:expr) => {
        match $on {
            #[cfg(feature = "sqlite")]
            $enum::Sqlite($x) => $body,
            #[cfg(feature = "postgres")]
            $enum::Postgres($x) => $body,
            #[cfg(feature = "mysql")]
            $enum::MySql($x) => $body,
        }
    };
}

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
    sql: std::sync::Arc<Statements>,
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
            "sqlite" => connect_sqlite(url, &options).await?,
            "postgres" | "postgresql" => connect_postgres(url, &options).await?,
            "mysql" | "mariadb" => connect_mysql(url, &options).await?,
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
            sql: std::sync::Arc::new(Statements::new(pool.dialect())),
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
        macro_rules! run {
            ($path:literal, $pool:expr) => {{
                let mut migrator = sqlx::migrate!($path);
                migrator.set_ignore_missing(true);
                migrator.run($pool).await
            }};
        }
        let result = match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => run!("./migrations/sqlite", p),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => run!("./migrations/postgres", p),
            #[cfg(feature = "mysql")]
            Pool::MySql(p) => {
                // sqlx's own migration lock is `GET_LOCK(…, -1)`, which MariaDB treats as
                // "do not wait": take a named lock with a real timeout on the migrating
                // connection so that concurrent instances migrate one at a time.
                async {
                    let mut conn = p.acquire().await?;
                    sqlx::query("SELECT GET_LOCK('keycard_migrations', 60)")
                        .execute(&mut *conn)
                        .await?;
                    let result = run!("./migrations/mysql", &mut *conn);
                    let released = sqlx::query("SELECT RELEASE_LOCK('keycard_migrations')")
                        .execute(&mut *conn)
                        .await;
                    result.and(released.map(drop).map_err(Into::into))
                }
                .await
            }
        };
        result.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(_)
            | sqlx::migrate::MigrateError::ExecuteMigration(..) => Error::with_message(
                ErrorKind::StoreUnavailable,
                "applying keycard's database migrations failed",
            )
            .with_source(e),
            _ => Error::with_message(
                ErrorKind::Config,
                "keycard's database migrations do not match the database",
            )
            .with_source(e),
        })
    }

    /// Closes the pool: waits for checked-out connections to return, then closes them all.
    pub async fn close(&self) {
        dispatch!(&self.pool, Pool, p => p.close().await)
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting

fn pool_options<DB: Database>(options: &SqlOptions) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .min_connections(options.min_connections)
        .acquire_timeout(options.connect_timeout)
        .idle_timeout(options.idle_timeout)
        // No ping before each use: it is a round trip of its own (a lookup would cost two).
        // Reads and `BEGIN`s that meet a broken connection are repeated on another; writes
        // outside a transaction check their connection first (see `Pool`). sqlx still pings
        // a connection when it is returned, off the request's path.
        .test_before_acquire(false)
}

/// A malformed URL: the message names the field, never the URL (it may hold a password).
fn bad_url(e: sqlx::Error) -> Error {
    Error::config(URL_FIELD, "the database URL is malformed").with_source(e)
}

#[allow(dead_code)]
fn missing_feature(feature: &str) -> Error {
    Error::config(
        URL_FIELD,
        format_args!(
            "the `{feature}` backend is not compiled in; enable keycard's `{feature}` feature"
        ),
    )
}

fn unreachable_db(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Configuration(_) => bad_url(e),
        e => Error::with_message(
            ErrorKind::StoreUnavailable,
            "cannot connect to the database",
        )
        .with_source(e),
    }
}

#[cfg(feature = "sqlite")]
async fn connect_sqlite(url: &str, options: &SqlOptions) -> Result<Pool, Error> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(bad_url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(options.busy_timeout);
    let pool = pool_options(options)
        .connect_with(connect)
        .await
        .map_err(unreachable_db)?;
    Ok(Pool::Sqlite(pool))
}

#[cfg(not(feature = "sqlite"))]
async fn connect_sqlite(_: &str, _: &SqlOptions) -> Result<Pool, Error> {
    Err(missing_feature("sqlite"))
}

#[cfg(feature = "postgres")]
async fn connect_postgres(url: &str, options: &SqlOptions) -> Result<Pool, Error> {
    let connect = sqlx::postgres::PgConnectOptions::from_str(url).map_err(bad_url)?;
    let pool = pool_options(options)
        .connect_with(connect)
        .await
        .map_err(unreachable_db)?;
    Ok(Pool::Postgres(pool))
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(_: &str, _: &SqlOptions) -> Result<Pool, Error> {
    Err(missing_feature("postgres"))
}

#[cfg(feature = "mysql")]
async fn connect_mysql(url: &str, options: &SqlOptions) -> Result<Pool, Error> {
    let connect = sqlx::mysql::MySqlConnectOptions::from_str(url).map_err(bad_url)?;
    let pool = pool_options(options)
        .after_connect(|conn: &mut sqlx::MySqlConnection, _| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await
                    .map(drop)
            })
        })
        .connect_with(connect)
        .await
        .map_err(unreachable_db)?;
    Ok(Pool::MySql(pool))
}

#[cfg(not(feature = "mysql"))]
async fn connect_mysql(_: &str, _: &SqlOptions) -> Result<Pool, Error> {
    Err(missing_feature("mysql"))
}

// ---------------------------------------------------------------------------------------------
// Dialects and statements: the SQL text is the only thing that differs between backends.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Only the compiled-in backends are constructed.
enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    /// Rewrites the `?` placeholders of `sql` into this dialect's form (`$1`, `$2`… on
    /// PostgreSQL).
    fn finish(self, sql: &str) -> String {
        if self != Self::Postgres {
            return sql.to_owned();
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Suffix making an `INSERT` insert-if-absent. MySQL has no such clause short of `INSERT
    /// IGNORE` (which also hides unrelated errors): its duplicate-key error is caught instead.
    fn if_absent(self) -> &'static str {
        match self {
            Self::Sqlite | Self::Postgres => " ON CONFLICT DO NOTHING",
            Self::MySql => "",
        }
    }

    /// Suffix of a locking read. SQLite needs none: its writing transactions are exclusive.
    fn lock(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres | Self::MySql => " FOR UPDATE",
        }
    }

    /// Two-argument minimum.
    fn least(self) -> &'static str {
        match self {
            Self::Sqlite => "MIN",
            Self::Postgres | Self::MySql => "LEAST",
        }
    }

    /// `INSERT` of `(key, col)` that, on an existing key, keeps the larger `col`.
    fn upsert_max(self, table: &str, key: &str, col: &str) -> String {
        let insert = format!("INSERT INTO {table} ({key}, {col}) VALUES (?, ?)");
        match self {
            Self::Sqlite => format!(
                "{insert} ON CONFLICT ({key}) DO UPDATE SET {col} = MAX({table}.{col}, excluded.{col})"
            ),
            Self::Postgres => format!(
                "{insert} ON CONFLICT ({key}) DO UPDATE SET {col} = GREATEST({table}.{col}, excluded.{col})"
            ),
            Self::MySql => {
                format!("{insert} ON DUPLICATE KEY UPDATE {col} = GREATEST({col}, VALUES({col}))")
            }
        }
    }

    /// `prefix (?, ?, …)` with `n` placeholders.
    fn in_list(self, prefix: &str, n: usize) -> String {
        let marks = vec!["?"; n].join(", ");
        self.finish(&format!("{prefix} ({marks})"))
    }
}

const SESSION_COLUMNS: &str = "id, subject, roles, attributes, created_at, last_seen_at, \
     authenticated_at, expires_at, absolute_expires_at, user_agent, ip";
const REFRESH_COLUMNS: &str = "id, family, subject, roles, attributes, issued_at, expires_at, \
     family_created_at, family_expires_at, authenticated_at, used_at, user_agent, ip";

/// Every statement, in the dialect of the connected backend; built once per store.
struct Statements {
    dialect: Dialect,
    session_insert: String,
    session_exists: String,
    session_load: String,
    session_touch: String,
    session_delete_live: String,
    session_delete: String,
    session_delete_all: String,
    session_list: String,
    session_live_ids: String,
    session_delete_id: String,
    session_sweep: String,
    subject_upsert: String,
    subject_sweep: String,
    family_insert: String,
    token_insert: String,
    family_lock_by_token: String,
    token_pair: String,
    token_spend: String,
    token_delete: String,
    family_advance: String,
    family_delete: String,
    family_tokens_delete: String,
    family_delete_owned: String,
    families_delete_subject: String,
    orphans_delete_subject: String,
    family_live: String,
    heads_list: String,
    families_dead: String,
    deny_upsert: String,
    epoch_upsert: String,
    notify: Option<String>,
    deny_live: String,
    epochs_all: String,
    is_revoked: String,
    deny_sweep: String,
}

impl Statements {
    fn new(d: Dialect) -> Self {
        let lock = d.lock();
        let absent = d.if_absent();
        let least = d.least();
        let f = |sql: &str| d.finish(sql);
        let head_columns = REFRESH_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            dialect: d,
            session_insert: f(&format!(
                "INSERT INTO keycard_sessions ({SESSION_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){absent}"
            )),
            session_exists: f("SELECT COUNT(*) FROM keycard_sessions WHERE id = ?"),
            session_load: f(&format!(
                "SELECT {SESSION_COLUMNS} FROM keycard_sessions WHERE id = ?"
            )),
            session_touch: f(&format!(
                "UPDATE keycard_sessions SET last_seen_at = ?, \
                 expires_at = {least}(?, absolute_expires_at) WHERE id = ? AND expires_at > ?"
            )),
            session_delete_live: f("DELETE FROM keycard_sessions WHERE id = ? AND expires_at > ?"),
            session_delete: f("DELETE FROM keycard_sessions WHERE id = ? AND subject = ?"),
            session_delete_all: f("DELETE FROM keycard_sessions WHERE subject = ?"),
            session_list: f(&format!(
                "SELECT {SESSION_COLUMNS} FROM keycard_sessions \
                 WHERE subject = ? AND expires_at > ? ORDER BY created_at, id"
            )),
            session_live_ids: f(&format!(
                "SELECT id FROM keycard_sessions WHERE subject = ? AND expires_at > ? \
                 ORDER BY created_at, id{lock}"
            )),
            session_delete_id: f("DELETE FROM keycard_sessions WHERE id = ?"),
            session_sweep: f("DELETE FROM keycard_sessions WHERE expires_at <= ?"),
            subject_upsert: f(&d.upsert_max("keycard_subjects", "subject", "expires_at")),
            subject_sweep: f("DELETE FROM keycard_subjects WHERE expires_at <= ?"),
            family_insert: f(&format!(
                "INSERT INTO keycard_refresh_families (family, subject, head, prev, head_expires_at) \
                 VALUES (?, ?, ?, NULL, ?){absent}"
            )),
            token_insert: f(&format!(
                "INSERT INTO keycard_refresh_tokens ({REFRESH_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){absent}"
            )),
            family_lock_by_token: f(&format!(
                "SELECT family, head, prev FROM keycard_refresh_families WHERE family = \
                 (SELECT family FROM keycard_refresh_tokens WHERE id = ?){lock}"
            )),
            token_pair: f(&format!(
                "SELECT {REFRESH_COLUMNS} FROM keycard_refresh_tokens WHERE id IN (?, ?){lock}"
            )),
            token_spend: f(
                "UPDATE keycard_refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL",
            ),
            token_delete: f("DELETE FROM keycard_refresh_tokens WHERE id = ?"),
            family_advance: f(
                "UPDATE keycard_refresh_families SET head = ?, prev = ?, head_expires_at = ? \
                 WHERE family = ?",
            ),
            family_delete: f("DELETE FROM keycard_refresh_families WHERE family = ?"),
            family_tokens_delete: f("DELETE FROM keycard_refresh_tokens WHERE family = ?"),
            family_delete_owned: f(
                "DELETE FROM keycard_refresh_families WHERE family = ? AND subject = ?",
            ),
            families_delete_subject: f("DELETE FROM keycard_refresh_families WHERE subject = ?"),
            orphans_delete_subject: f(
                "DELETE FROM keycard_refresh_tokens WHERE subject = ? AND NOT EXISTS \
                 (SELECT family FROM keycard_refresh_families f \
                  WHERE f.family = keycard_refresh_tokens.family)",
            ),
            family_live: f("SELECT COUNT(*) FROM keycard_refresh_families \
                 WHERE family = ? AND head_expires_at > ?"),
            heads_list: f(&format!(
                "SELECT {head_columns} FROM keycard_refresh_families f \
                 JOIN keycard_refresh_tokens t ON t.id = f.head \
                 WHERE f.subject = ? AND t.used_at IS NULL AND t.expires_at > ? \
                 ORDER BY t.family_created_at, t.family"
            )),
            families_dead: f(&format!(
                "SELECT family FROM keycard_refresh_families WHERE head_expires_at <= ?{lock}"
            )),
            deny_upsert: f(&d.upsert_max("keycard_denylist", "jti", "expires_at")),
            epoch_upsert: f(&d.upsert_max("keycard_epochs", "subject", "epoch")),
            notify: (d == Dialect::Postgres)
                .then(|| f("SELECT pg_notify('keycard_revocations', ?)")),
            deny_live: f("SELECT jti, expires_at FROM keycard_denylist WHERE expires_at > ?"),
            epochs_all: f("SELECT subject, epoch FROM keycard_epochs"),
            is_revoked: f(
                "SELECT (SELECT COUNT(*) FROM keycard_denylist WHERE jti = ?) + \
                 (SELECT COUNT(*) FROM keycard_epochs WHERE subject = ? AND epoch > ?)",
            ),
            deny_sweep: f("DELETE FROM keycard_denylist WHERE expires_at <= ?"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A small execution layer: the store logic is written once against `Pool` and `Tx`, which
// dispatch to the compiled-in backend.

/// A bind parameter.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
}

/// Row types decodable from every compiled-in backend.
trait SqlRow: FromSqliteRow + FromPgRow + FromMySqlRow + Send + Unpin {}
impl<T: FromSqliteRow + FromPgRow + FromMySqlRow + Send + Unpin> SqlRow for T {}

macro_rules! row_bound {
    ($name:ident, $feature:literal, $row:ty) => {
        #[cfg(feature = $feature)]
        trait $name: for<'r> FromRow<'r, $row> {}
        #[cfg(feature = $feature)]
        impl<T: for<'r> FromRow<'r, $row>> $name for T {}
        #[cfg(not(feature = $feature))]
        trait $name {}
        #[cfg(not(feature = $feature))]
        impl<T> $name for T {}
    };
}
row_bound!(FromSqliteRow, "sqlite", sqlx::sqlite::SqliteRow);
row_bound!(FromPgRow, "postgres", sqlx::postgres::PgRow);
row_bound!(FromMySqlRow, "mysql", sqlx::mysql::MySqlRow);

/// Runs statements with [`Arg`]s on one backend.
trait Backend: Database {
    /// `sql` with `args` bound.
    fn query<'q>(
        sql: &'q str,
        args: &'q [Arg<'q>],
    ) -> sqlx::query::Query<'q, Self, <Self as Database>::Arguments<'q>>;

    fn run<'e, 'c: 'e, E>(
        ex: E,
        sql: &'e str,
        args: &'e [Arg<'e>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'e
    where
        E: 'e + Executor<'c, Database = Self>;

    fn rows<'e, 'c: 'e, E, T: SqlRow>(
        ex: E,
        sql: &'e str,
        args: &'e [Arg<'e>],
    ) -> impl Future<Output = Result<Vec<T>, sqlx::Error>> + Send + 'e
    where
        E: 'e + Executor<'c, Database = Self>;

    /// The first row, if any: for lookups by primary key (no row stream, no `Vec`).
    fn row<'e, 'c: 'e, E, T: SqlRow>(
        ex: E,
        sql: &'e str,
        args: &'e [Arg<'e>],
    ) -> impl Future<Output = Result<Option<T>, sqlx::Error>> + Send + 'e
    where
        E: 'e + Executor<'c, Database = Self>;
}

macro_rules! backend {
    ($feature:literal, $db:ty, $row:ty) => {
        #[cfg(feature = $feature)]
        impl Backend for $db {
            fn query<'q>(
                sql: &'q str,
                args: &'q [Arg<'q>],
            ) -> sqlx::query::Query<'q, Self, <Self as Database>::Arguments<'q>> {
                let mut query = sqlx::query::<$db>(sql);
                for arg in args {
                    query = match *arg {
                        Arg::Int(v) => query.bind(v),
                        Arg::OptInt(v) => query.bind(v),
                        Arg::Text(v) => query.bind(v),
                        Arg::OptText(v) => query.bind(v),
                        Arg::Bytes(v) => query.bind(v),
                    };
                }
                query
            }

            fn run<'e, 'c: 'e, E>(
                ex: E,
                sql: &'e str,
                args: &'e [Arg<'e>],
            ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'e
            where
                E: 'e + Executor<'c, Database = Self>,
            {
                async move {
                    let query = Self::query(sql, args);
                    Ok(query.execute(ex).await?.rows_affected())
                }
            }

            fn rows<'e, 'c: 'e, E, T: SqlRow>(
                ex: E,
                sql: &'e str,
                args: &'e [Arg<'e>],
            ) -> impl Future<Output = Result<Vec<T>, sqlx::Error>> + Send + 'e
            where
                E: 'e + Executor<'c, Database = Self>,
            {
                async move {
                    let query = Self::query(sql, args);
                    let rows = query.fetch_all(ex).await?;
                    rows.iter()
                        .map(|row| <T as FromRow<'_, $row>>::from_row(row))
                        .collect()
                }
            }

            fn row<'e, 'c: 'e, E, T: SqlRow>(
                ex: E,
                sql: &'e str,
                args: &'e [Arg<'e>],
            ) -> impl Future<Output = Result<Option<T>, sqlx::Error>> + Send + 'e
            where
                E: 'e + Executor<'c, Database = Self>,
            {
                async move {
                    let query = Self::query(sql, args);
                    let row = query.fetch_optional(ex).await?;
                    row.as_ref()
                        .map(|row| <T as FromRow<'_, $row>>::from_row(row))
                        .transpose()
                }
            }
        }
    };
}
backend!("sqlite", sqlx::Sqlite, sqlx::sqlite::SqliteRow);
backend!("postgres", sqlx::Postgres, sqlx::postgres::PgRow);
backend!("mysql", sqlx::MySql, sqlx::mysql::MySqlRow);

fn run<'e, 'c: 'e, E>(
    ex: E,
    sql: &'e str,
    args: &'e [Arg<'e>],
) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'e
where
    E: 'e + Executor<'c>,
    E::Database: Backend,
{
    <E::Database as Backend>::run(ex, sql, args)
}

fn rows<'e, 'c: 'e, E, T: SqlRow>(
    ex: E,
    sql: &'e str,
    args: &'e [Arg<'e>],
) -> impl Future<Output = Result<Vec<T>, sqlx::Error>> + Send + 'e
where
    E: 'e + Executor<'c>,
    E::Database: Backend,
{
    <E::Database as Backend>::rows(ex, sql, args)
}

fn row<'e, 'c: 'e, E, T: SqlRow>(
    ex: E,
    sql: &'e str,
    args: &'e [Arg<'e>],
) -> impl Future<Output = Result<Option<T>, sqlx::Error>> + Send + 'e
where
    E: 'e + Executor<'c>,
    E::Database: Backend,
{
    <E::Database as Backend>::row(ex, sql, args)
}

#[derive(Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
}

/// A transaction. Dropped without [`Tx::commit`], it rolls back.
enum Tx {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    #[cfg(feature = "mysql")]
    MySql(sqlx::Transaction<'static, sqlx::MySql>),
}

impl Pool {
    fn dialect(&self) -> Dialect {
        Dialect::from_pool(self)
    }

    /// How many times a statement that found its connection broken is tried: one more than
    /// the pool holds connections, so that every stale one can be met and dropped.
    fn attempts(&self) -> u32 {
        dispatch!(self, Pool, p => p.options().get_max_connections()).saturating_add(1)
    }

    /// A single-statement write, on a connection that answered a ping ([`checked`]): a write is
    /// never repeated, since one whose reply was lost may have been applied.
    async fn write(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        let attempts = self.attempts();
        dispatch!(self, Pool, p => {
            let mut conn = checked(p, attempts).await?;
            run(&mut *conn, sql, args).await
        })
    }

    async fn run(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        self.write(sql, args).await.map_err(db_error)
    }

    async fn insert(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<bool> {
        inserted(self.write(sql, args).await)
    }

    async fn rows<T: SqlRow>(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<T>> {
        self.retrying(move || async move { dispatch!(self, Pool, p => rows(p, sql, args).await) })
            .await
    }

    /// The hot path's lookup: one round trip on a healthy pool; on a broken connection, the
    /// read (which has no effect) is repeated on the next one.
    async fn row<T: SqlRow>(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Option<T>> {
        self.retrying(move || async move { dispatch!(self, Pool, p => row(p, sql, args).await) })
            .await
    }

    /// Starts a writing transaction (`BEGIN IMMEDIATE` on SQLite). A `BEGIN` that found its
    /// connection broken changed nothing, so it is repeated on the next connection.
    async fn begin(&self) -> StoreResult<Tx> {
        self.retrying(move || async move {
            match self {
                #[cfg(feature = "sqlite")]
                Pool::Sqlite(p) => p.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite),
                #[cfg(feature = "postgres")]
                Pool::Postgres(p) => p.begin().await.map(Tx::Postgres),
                #[cfg(feature = "mysql")]
                Pool::MySql(p) => p.begin().await.map(Tx::MySql),
            }
        })
        .await
    }

    /// Runs `op`, again while it fails on a broken connection ([`is_stale`]), up to
    /// [`Pool::attempts`] times: only for statements that had no effect if they failed so.
    async fn retrying<T, F>(&self, mut op: impl FnMut() -> F) -> StoreResult<T>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut attempts = self.attempts();
        loop {
            match op().await {
                Err(e) if attempts > 1 && is_stale(&e) => attempts -= 1,
                result => return result.map_err(db_error),
            }
        }
    }
}

/// A pooled connection that answered a ping, within `attempts` tries; one that fails it is
/// closed rather than returned. This is sqlx's `test_before_acquire`, kept for single-statement
/// writes only: the pool itself does not ping (that would double every lookup's round trips).
async fn checked<DB: Database>(
    pool: &sqlx::Pool<DB>,
    mut attempts: u32,
) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
    loop {
        let mut conn = pool.acquire().await?;
        match sqlx::Connection::ping(&mut *conn).await {
            Ok(()) => return Ok(conn),
            Err(e) if attempts <= 1 || !is_stale(&e) => return Err(e),
            Err(_) => {
                conn.close_on_drop();
                attempts -= 1;
            }
        }
    }
}

/// Whether `e` says the connection itself is gone (closed by the server, reset, its SQLite
/// worker stopped) rather than that the statement failed: the statement never ran, and another
/// connection may succeed.
fn is_stale(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL's admin_shutdown, crash_shutdown and cannot_connect_now: the server ended
        // this session (e.g. `pg_terminate_backend`, a restart).
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

impl Dialect {
    fn from_pool(pool: &Pool) -> Self {
        match pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Self::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Self::Postgres,
            #[cfg(feature = "mysql")]
            Pool::MySql(_) => Self::MySql,
        }
    }
}

impl Tx {
    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        dispatch!(self, Tx, t => run(&mut **t, sql, args).await).map_err(db_error)
    }

    async fn rows<T: SqlRow>(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<T>> {
        dispatch!(self, Tx, t => rows(&mut **t, sql, args).await).map_err(db_error)
    }

    async fn insert(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<bool> {
        inserted(dispatch!(self, Tx, t => run(&mut **t, sql, args).await))
    }

    async fn commit(self) -> StoreResult<()> {
        dispatch!(self, Tx, t => t.commit().await).map_err(db_error)
    }

    /// Rolls back now rather than when the connection is next used, releasing locks at once.
    async fn rollback(self) -> StoreResult<()> {
        dispatch!(self, Tx, t => t.rollback().await).map_err(db_error)
    }
}

/// The outcome of an insert-if-absent: `false` when the key already existed.
fn inserted(result: Result<u64, sqlx::Error>) -> StoreResult<bool> {
    match result {
        Ok(n) => Ok(n > 0),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(db_error(e)),
    }
}

/// Whether the database aborted a transaction to break a deadlock or a serialization conflict
/// (SQLSTATE 40001, PostgreSQL's 40P01): safe to retry.
fn is_serialization_failure(e: &StoreError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<sqlx::Error>())
        .and_then(|s| match s {
            sqlx::Error::Database(db) => db.code(),
            _ => None,
        })
        .is_some_and(|code| code == "40001" || code == "40P01")
}

fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::new(StoreErrorKind::Timeout),
        // A decoder's own verdict on a stored value (see `SessionRow`), passed through as is.
        sqlx::Error::Decode(source) => match source.downcast::<StoreError>() {
            Ok(e) => *e,
            Err(source) => StoreError::corrupt(sqlx::Error::Decode(source)),
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::corrupt(e),
        e => StoreError::unavailable(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Rows and their conversion to records.

/// UTF-8 text. MySQL keys are `VARBINARY` (byte-wise comparison), which sqlx will not decode
/// into a `String`; this type accepts both text and binary columns.
struct Text(String);

macro_rules! text_as_string {
    ($feature:literal, $db:ty) => {
        #[cfg(feature = $feature)]
        impl sqlx::Type<$db> for Text {
            fn type_info() -> <$db as Database>::TypeInfo {
                <String as sqlx::Type<$db>>::type_info()
            }
            fn compatible(ty: &<$db as Database>::TypeInfo) -> bool {
                <String as sqlx::Type<$db>>::compatible(ty)
            }
        }
        #[cfg(feature = $feature)]
        impl<'r> sqlx::Decode<'r, $db> for Text {
            fn decode(
                value: <$db as Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, $db>>::decode(value).map(Text)
            }
        }
    };
}
text_as_string!("sqlite", sqlx::Sqlite);
text_as_string!("postgres", sqlx::Postgres);

#[cfg(feature = "mysql")]
impl sqlx::Type<sqlx::MySql> for Text {
    fn type_info() -> sqlx::mysql::MySqlTypeInfo {
        <[u8] as sqlx::Type<sqlx::MySql>>::type_info()
    }
    fn compatible(ty: &sqlx::mysql::MySqlTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::MySql>>::compatible(ty)
            || <[u8] as sqlx::Type<sqlx::MySql>>::compatible(ty)
    }
}

#[cfg(feature = "mysql")]
impl<'r> sqlx::Decode<'r, sqlx::MySql> for Text {
    fn decode(value: sqlx::mysql::MySqlValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let bytes = <&[u8] as sqlx::Decode<'r, sqlx::MySql>>::decode(value)?;
        Ok(Text(std::str::from_utf8(bytes)?.to_owned()))
    }
}

/// A session record decoded straight from a row of `SELECT {SESSION_COLUMNS}`, read by position
/// (the hot path: no column-name lookups). Text and blob columns are borrowed from the row, so
/// the only allocations are the record's own fields. MySQL's `VARBINARY` subject decodes as
/// `&str` too: the unchecked read skips the type check that would refuse it, not the UTF-8 one.
struct SessionRow(SessionRecord);

impl<'r, R: sqlx::Row> FromRow<'r, R> for SessionRow
where
    usize: sqlx::ColumnIndex<R>,
    &'r [u8]: sqlx::Decode<'r, R::Database>,
    &'r str: sqlx::Decode<'r, R::Database>,
    i64: sqlx::Decode<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        // The order of SESSION_COLUMNS. The schema is keycard's own (its migrations), so the
        // column types are known: decoding skips sqlx's per-column type-compatibility lookup.
        // Each decoder still refuses a value of the wrong shape (length, UTF-8, JSON), which
        // then surfaces as a corrupt record.
        let text = |i: usize| row.try_get_unchecked::<&'r str, _>(i);
        let opt_text = |i: usize| row.try_get_unchecked::<Option<&'r str>, _>(i);
        let time = |i: usize| row.try_get_unchecked::<i64, _>(i).map(from_millis);
        let decoded = |e: StoreError| sqlx::Error::Decode(Box::new(e));
        Ok(Self(SessionRecord {
            id: hash(row.try_get_unchecked(0)?).map_err(decoded)?,
            subject: text(1)?.to_owned(),
            roles: decode_json(text(2)?).map_err(decoded)?,
            attributes: decode_json(text(3)?).map_err(decoded)?,
            created_at: time(4)?,
            last_seen_at: time(5)?,
            authenticated_at: time(6)?,
            expires_at: time(7)?,
            absolute_expires_at: time(8)?,
            user_agent: opt_text(9)?.map(str::to_owned),
            ip: opt_text(10)?.map(str::to_owned),
        }))
    }
}

#[derive(FromRow)]
struct RefreshRow {
    id: Vec<u8>,
    family: Text,
    subject: Text,
    roles: Text,
    attributes: Text,
    issued_at: i64,
    expires_at: i64,
    family_created_at: i64,
    family_expires_at: i64,
    authenticated_at: i64,
    used_at: Option<i64>,
    user_agent: Option<Text>,
    ip: Option<Text>,
}

impl RefreshRow {
    fn into_record(self) -> StoreResult<RefreshRecord> {
        Ok(RefreshRecord {
            id: hash(&self.id)?,
            family: self.family.0,
            subject: self.subject.0,
            roles: decode_json(&self.roles.0)?,
            attributes: decode_json(&self.attributes.0)?,
            issued_at: from_millis(self.issued_at),
            expires_at: from_millis(self.expires_at),
            family_created_at: from_millis(self.family_created_at),
            family_expires_at: from_millis(self.family_expires_at),
            authenticated_at: from_millis(self.authenticated_at),
            used_at: self.used_at.map(from_millis),
            user_agent: self.user_agent.map(|t| t.0),
            ip: self.ip.map(|t| t.0),
        })
    }
}

fn hash(bytes: &[u8]) -> StoreResult<TokenHash> {
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash::from_bytes)
        .map_err(|_| StoreError::corrupt("a stored token hash is not 32 bytes long"))
}

fn decode_json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(StoreError::corrupt)
}

fn encode_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(StoreError::corrupt)
}

fn count(rows: Vec<(i64,)>) -> i64 {
    rows.first().map_or(0, |r| r.0)
}

/// The bind parameters of a session row, in [`SESSION_COLUMNS`] order.
struct SessionParams<'a> {
    record: &'a SessionRecord,
    roles: String,
    attributes: String,
}

impl<'a> SessionParams<'a> {
    fn new(record: &'a SessionRecord) -> StoreResult<Self> {
        Ok(Self {
            record,
            roles: encode_json(&record.roles)?,
            attributes: encode_json(&record.attributes)?,
        })
    }

    fn args(&self) -> [Arg<'_>; 11] {
        let r = self.record;
        [
            Arg::Bytes(r.id.as_bytes()),
            Arg::Text(&r.subject),
            Arg::Text(&self.roles),
            Arg::Text(&self.attributes),
            Arg::Int(to_millis(r.created_at)),
            Arg::Int(to_millis(r.last_seen_at)),
            Arg::Int(to_millis(r.authenticated_at)),
            Arg::Int(to_millis(r.expires_at)),
            Arg::Int(to_millis(r.absolute_expires_at)),
            Arg::OptText(r.user_agent.as_deref()),
            Arg::OptText(r.ip.as_deref()),
        ]
    }
}

/// The bind parameters of a refresh-token row, in [`REFRESH_COLUMNS`] order.
struct RefreshParams<'a> {
    record: &'a RefreshRecord,
    roles: String,
    attributes: String,
}

impl<'a> RefreshParams<'a> {
    fn new(record: &'a RefreshRecord) -> StoreResult<Self> {
        Ok(Self {
            record,
            roles: encode_json(&record.roles)?,
            attributes: encode_json(&record.attributes)?,
        })
    }

    fn args(&self) -> [Arg<'_>; 13] {
        let r = self.record;
        [
            Arg::Bytes(r.id.as_bytes()),
            Arg::Text(&r.family),
            Arg::Text(&r.subject),
            Arg::Text(&self.roles),
            Arg::Text(&self.attributes),
            Arg::Int(to_millis(r.issued_at)),
            Arg::Int(to_millis(r.expires_at)),
            Arg::Int(to_millis(r.family_created_at)),
            Arg::Int(to_millis(r.family_expires_at)),
            Arg::Int(to_millis(r.authenticated_at)),
            Arg::OptInt(r.used_at.map(to_millis)),
            Arg::OptText(r.user_agent.as_deref()),
            Arg::OptText(r.ip.as_deref()),
        ]
    }
}

impl SqlStore {
    /// One attempt at a creation under a session limit, in one transaction.
    async fn create_limited(
        &self,
        record: &SessionRecord,
        params: &SessionParams<'_>,
        limit: SessionLimit,
    ) -> StoreResult<CreateOutcome> {
        let id = Arg::Bytes(record.id.as_bytes());
        let subject = Arg::Text(&record.subject);
        let mut tx = self.pool.begin().await?;
        if count(tx.rows(&self.sql.session_exists, &[id]).await?) > 0 {
            tx.rollback().await?;
            return Ok(CreateOutcome::Collision);
        }
        // Serialize creations for this subject on its lock row. The upsert inserts or updates the
        // row and so holds its lock until commit, even if a sweep deleted it meanwhile.
        let until = Arg::Int(to_millis(record.absolute_expires_at));
        tx.run(&self.sql.subject_upsert, &[subject, until]).await?;
        let live: Vec<(Vec<u8>,)> = tx
            .rows(
                &self.sql.session_live_ids,
                &[subject, Arg::Int(to_millis(record.created_at))],
            )
            .await?;
        let max = usize::try_from(limit.max.max(1)).unwrap_or(usize::MAX);
        let mut evicted = Vec::new();
        if live.len() >= max {
            if limit.policy == LimitPolicy::Reject {
                tx.rollback().await?;
                return Ok(CreateOutcome::LimitReached);
            }
            let excess = live.len() + 1 - max;
            for (old,) in live.into_iter().take(excess) {
                let old = hash(&old)?;
                tx.run(&self.sql.session_delete_id, &[Arg::Bytes(old.as_bytes())])
                    .await?;
                evicted.push(old);
            }
        }
        if !tx.insert(&self.sql.session_insert, &params.args()).await? {
            tx.rollback().await?;
            return Ok(CreateOutcome::Collision);
        }
        tx.commit().await?;
        Ok(CreateOutcome::Created { evicted })
    }
}

// ---------------------------------------------------------------------------------------------
// SessionStore

#[async_trait]
impl SessionStore for SqlStore {
    async fn create(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        let params = SessionParams::new(record)?;
        let Some(limit) = limit else {
            return Ok(
                if self
                    .pool
                    .insert(&self.sql.session_insert, &params.args())
                    .await?
                {
                    CreateOutcome::Created {
                        evicted: Vec::new(),
                    }
                } else {
                    CreateOutcome::Collision
                },
            );
        };
        // Concurrent first logins of one subject can deadlock on its lock row (InnoDB takes
        // shared locks on a duplicate key before the exclusive one); the database then aborts one
        // transaction, which is retried: nothing of it was written.
        let mut attempt = 0;
        loop {
            match self.create_limited(record, &params, limit).await {
                Err(e) if attempt < 8 && is_serialization_failure(&e) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(2 * attempt)).await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>> {
        // A primary-key lookup with nothing else bound; expiry is checked on the decoded record.
        let args = [Arg::Bytes(id.as_bytes())];
        let Some(row) = self
            .pool
            .row::<SessionRow>(&self.sql.session_load, &args)
            .await?
        else {
            return Ok(None);
        };
        let SessionRow(record) = row;
        Ok((record.expires_at > now).then_some(record))
    }

    async fn touch(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool> {
        let seen = Arg::Int(to_millis(last_seen_at));
        let args = [
            seen,
            Arg::Int(to_millis(expires_at)),
            Arg::Bytes(id.as_bytes()),
            seen,
        ];
        Ok(self.pool.run(&self.sql.session_touch, &args).await? > 0)
    }

    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        let params = SessionParams::new(new)?;
        let mut tx = self.pool.begin().await?;
        let args = [
            Arg::Bytes(old.as_bytes()),
            Arg::Int(to_millis(new.last_seen_at)),
        ];
        if tx.run(&self.sql.session_delete_live, &args).await? == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if !tx.insert(&self.sql.session_insert, &params.args()).await? {
            tx.rollback().await?;
            return Err(StoreError::new(StoreErrorKind::Conflict));
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
        let args = [Arg::Bytes(id.as_bytes()), Arg::Text(subject)];
        Ok(self.pool.run(&self.sql.session_delete, &args).await? > 0)
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.pool
            .run(&self.sql.session_delete_all, &[Arg::Text(subject)])
            .await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        let args = [Arg::Text(subject), Arg::Int(to_millis(now))];
        let rows: Vec<SessionRow> = self.pool.rows(&self.sql.session_list, &args).await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let now = [Arg::Int(to_millis(now))];
        let removed = self.pool.run(&self.sql.session_sweep, &now).await?;
        // Lock rows whose sessions have all reached their absolute expiry; `create` re-creates a
        // lock row as needed.
        self.pool.run(&self.sql.subject_sweep, &now).await?;
        Ok(removed)
    }
}

// ---------------------------------------------------------------------------------------------
// RefreshStore

#[async_trait]
impl RefreshStore for SqlStore {
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool> {
        let params = RefreshParams::new(record)?;
        let mut tx = self.pool.begin().await?;
        let family = [
            Arg::Text(&record.family),
            Arg::Text(&record.subject),
            Arg::Bytes(record.id.as_bytes()),
            Arg::Int(to_millis(record.expires_at)),
        ];
        if !tx.insert(&self.sql.family_insert, &family).await?
            || !tx.insert(&self.sql.token_insert, &params.args()).await?
        {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate(&self, req: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        let presented = Arg::Bytes(req.presented.as_bytes());
        let mut tx = self.pool.begin().await?;
        // Lock the family first: every writer of a family does, so rotations serialize here.
        let family: Vec<(Text, Vec<u8>, Option<Vec<u8>>)> = tx
            .rows(&self.sql.family_lock_by_token, &[presented])
            .await?;
        let Some((Text(family), head, prev)) = family.into_iter().next() else {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        };
        let head = hash(&head)?;
        let pair: Vec<RefreshRow> = tx
            .rows(
                &self.sql.token_pair,
                &[presented, Arg::Bytes(head.as_bytes())],
            )
            .await?;
        let mut current = None;
        let mut head_record = None;
        for row in pair {
            let record = row.into_record()?;
            if record.id == *req.presented {
                current = Some(record.clone());
            }
            if record.id == head {
                head_record = Some(record);
            }
        }
        let Some(current) = current else {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        };
        let now = to_millis(req.now);
        if current.family_expires_at <= req.now {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        }
        match current.used_at {
            None => {
                if current.expires_at <= req.now {
                    tx.rollback().await?;
                    return Ok(RotateOutcome::Invalid);
                }
                // Spend it; under the family lock this cannot lose, but never trust that.
                let spent = tx
                    .run(&self.sql.token_spend, &[Arg::Int(now), presented])
                    .await?;
                if spent == 0 {
                    tx.rollback().await?;
                    return Ok(RotateOutcome::Invalid);
                }
            }
            Some(used_at) => {
                let is_predecessor = prev.as_deref() == Some(req.presented.as_bytes().as_slice());
                let head_unused = head_record
                    .as_ref()
                    .is_some_and(|h| h.used_at.is_none() && h.expires_at > req.now);
                let in_grace = !req.grace.is_zero()
                    && used_at + req.grace > req.now
                    && is_predecessor
                    && head_unused;
                if !in_grace {
                    let fam = [Arg::Text(&family)];
                    tx.run(&self.sql.family_tokens_delete, &fam).await?;
                    tx.run(&self.sql.family_delete, &fam).await?;
                    tx.commit().await?;
                    return Ok(RotateOutcome::Reused {
                        family,
                        subject: current.subject,
                    });
                }
                // Grace: the unused successor is replaced by a fresh head.
                tx.run(&self.sql.token_delete, &[Arg::Bytes(head.as_bytes())])
                    .await?;
            }
        }
        let next = current.successor(*req.next, req.now, req.idle);
        let params = RefreshParams::new(&next)?;
        if !tx.insert(&self.sql.token_insert, &params.args()).await? {
            tx.rollback().await?;
            return Err(StoreError::new(StoreErrorKind::Conflict));
        }
        let advance = [
            Arg::Bytes(next.id.as_bytes()),
            presented,
            Arg::Int(to_millis(next.expires_at)),
            Arg::Text(&family),
        ];
        tx.run(&self.sql.family_advance, &advance).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated { next })
    }

    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        let args = [Arg::Text(family), Arg::Int(to_millis(now))];
        Ok(count(self.pool.rows(&self.sql.family_live, &args).await?) > 0)
    }

    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let owned = [Arg::Text(family), Arg::Text(subject)];
        let deleted = tx.run(&self.sql.family_delete_owned, &owned).await? > 0;
        if deleted {
            tx.run(&self.sql.family_tokens_delete, &[Arg::Text(family)])
                .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        let subject = [Arg::Text(subject)];
        let mut tx = self.pool.begin().await?;
        let families = tx.run(&self.sql.families_delete_subject, &subject).await?;
        // Only tokens whose family row is gone: a family inserted concurrently keeps its head.
        tx.run(&self.sql.orphans_delete_subject, &subject).await?;
        tx.commit().await?;
        Ok(families)
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        let args = [Arg::Text(subject), Arg::Int(to_millis(now))];
        let rows: Vec<RefreshRow> = self.pool.rows(&self.sql.heads_list, &args).await?;
        rows.into_iter().map(RefreshRow::into_record).collect()
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let dead: Vec<(Text,)> = tx
            .rows(&self.sql.families_dead, &[Arg::Int(to_millis(now))])
            .await?;
        let mut removed = 0;
        let d = self.sql.dialect;
        for chunk in dead.chunks(CHUNK) {
            let args: Vec<Arg<'_>> = chunk.iter().map(|(f,)| Arg::Text(&f.0)).collect();
            let tokens = d.in_list(
                "DELETE FROM keycard_refresh_tokens WHERE family IN",
                chunk.len(),
            );
            removed += tx.run(&tokens, &args).await?;
            let families = d.in_list(
                "DELETE FROM keycard_refresh_families WHERE family IN",
                chunk.len(),
            );
            tx.run(&families, &args).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }
}

// ---------------------------------------------------------------------------------------------
// RevocationStore

#[async_trait]
impl RevocationStore for SqlStore {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        let (sql, args) = match revocation {
            Revocation::Jti { jti, until } => (
                &self.sql.deny_upsert,
                [Arg::Text(jti), Arg::Int(to_millis(*until))],
            ),
            Revocation::Epoch { subject, epoch } => (
                &self.sql.epoch_upsert,
                [Arg::Text(subject), Arg::Int(to_millis(*epoch))],
            ),
        };
        let Some(notify) = &self.sql.notify else {
            return self.pool.run(sql, &args).await.map(drop);
        };
        let payload = RevocationMessage::of(revocation).to_json();
        let mut tx = self.pool.begin().await?;
        tx.run(sql, &args).await?;
        tx.run(notify, &[Arg::Text(&payload)]).await?;
        tx.commit().await
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        let denied: Vec<(Text, i64)> = self
            .pool
            .rows(&self.sql.deny_live, &[Arg::Int(to_millis(now))])
            .await?;
        let epochs: Vec<(Text, i64)> = self.pool.rows(&self.sql.epochs_all, &[]).await?;
        let denied = denied.into_iter().map(|(jti, until)| Revocation::Jti {
            jti: jti.0,
            until: from_millis(until),
        });
        let epochs = epochs
            .into_iter()
            .map(|(subject, epoch)| Revocation::Epoch {
                subject: subject.0,
                epoch: from_millis(epoch),
            });
        Ok(denied.chain(epochs).collect())
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        let args = [
            Arg::Text(jti),
            Arg::Text(subject),
            Arg::Int(to_millis(issued_at)),
        ];
        Ok(count(self.pool.rows(&self.sql.is_revoked, &args).await?) > 0)
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => listen(pool).await.map(Some),
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.pool
            .run(&self.sql.deny_sweep, &[Arg::Int(to_millis(now))])
            .await
    }
}

/// Listens on [`CHANNEL`]. The feed yields an error and ends when the connection is lost or a
/// payload cannot be decoded; the consumer then reloads and subscribes again.
#[cfg(feature = "postgres")]
async fn listen(pool: &sqlx::PgPool) -> StoreResult<RevocationFeed> {
    use futures_util::StreamExt;

    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .map_err(db_error)?;
    listener.listen(CHANNEL).await.map_err(db_error)?;
    let feed = futures_util::stream::unfold(Some(listener), |listener| async move {
        let mut listener = listener?;
        let item = match listener.try_recv().await {
            Ok(Some(n)) => match serde_json::from_str::<RevocationMessage>(n.payload()) {
                Ok(payload) => return Some((Ok(payload.into_revocation()), Some(listener))),
                Err(e) => StoreError::corrupt(e),
            },
            Ok(None) => StoreError::unavailable("the revocation feed lost its connection"),
            Err(e) => db_error(e),
        };
        Some((Err(item), None))
    });
    Ok(feed.boxed())
}
