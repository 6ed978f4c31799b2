//! A small execution layer: the store logic is written once against `Pool` and `Tx`, which
//! dispatch to the compiled-in backend.

use sqlx::{Database, Executor, FromRow};

use super::dialect::Dialect;
use crate::store::{StoreError, StoreErrorKind, StoreResult};

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

/// A bind parameter.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
    Bool(bool),
}

/// Row types decodable from every compiled-in backend.
pub(super) trait SqlRow: FromSqliteRow + FromPgRow + FromMySqlRow + Send + Unpin {}
impl<T: FromSqliteRow + FromPgRow + FromMySqlRow + Send + Unpin> SqlRow for T {}

macro_rules! row_bound {
    ($name:ident, $feature:literal, $row:ty) => {
        #[cfg(feature = $feature)]
        pub(super) trait $name: for<'r> FromRow<'r, $row> {}
        #[cfg(feature = $feature)]
        impl<T: for<'r> FromRow<'r, $row>> $name for T {}
        #[cfg(not(feature = $feature))]
        pub(super) trait $name {}
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
                        Arg::Bool(v) => query.bind(v),
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
pub(super) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
}

/// A transaction. Dropped without [`Tx::commit`], it rolls back.
pub(super) enum Tx {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    #[cfg(feature = "mysql")]
    MySql(sqlx::Transaction<'static, sqlx::MySql>),
}

impl Pool {
    pub(super) fn dialect(&self) -> Dialect {
        match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "mysql")]
            Pool::MySql(_) => Dialect::MySql,
        }
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

    pub(super) async fn run(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        self.write(sql, args).await.map_err(db_error)
    }

    pub(super) async fn insert(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<bool> {
        inserted(self.write(sql, args).await)
    }

    /// A single-statement write that returns one row (`RETURNING`), on a connection that
    /// answered a ping; like [`Pool::run`], never repeated.
    pub(super) async fn write_row<T: SqlRow>(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<T> {
        let attempts = self.attempts();
        let found: Result<Option<T>, sqlx::Error> = dispatch!(self, Pool, p => {
            match checked(p, attempts).await {
                Ok(mut conn) => row(&mut *conn, sql, args).await,
                Err(e) => Err(e),
            }
        });
        found
            .map_err(db_error)?
            .ok_or_else(|| StoreError::corrupt("the statement returned no row"))
    }

    /// A single-statement write that may be applied twice with no other effect than once (a
    /// compare-and-set): like a read, repeated on the next connection when its own was broken,
    /// without the ping of [`Pool::run`].
    pub(super) async fn run_repeatable(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        self.retrying(move || async move { dispatch!(self, Pool, p => run(p, sql, args).await) })
            .await
    }

    pub(super) async fn rows<T: SqlRow>(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<T>> {
        self.retrying(move || async move { dispatch!(self, Pool, p => rows(p, sql, args).await) })
            .await
    }

    /// The hot path's lookup: one round trip on a healthy pool; on a broken connection, the
    /// read (which has no effect) is repeated on the next one.
    pub(super) async fn row<T: SqlRow>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        self.retrying(move || async move { dispatch!(self, Pool, p => row(p, sql, args).await) })
            .await
    }

    /// Closes the pool: waits for checked-out connections to return, then closes them all.
    pub(super) async fn close(&self) {
        dispatch!(self, Pool, p => p.close().await)
    }

    /// Starts a writing transaction (`BEGIN IMMEDIATE` on SQLite). A `BEGIN` that found its
    /// connection broken changed nothing, so it is repeated on the next connection.
    pub(super) async fn begin(&self) -> StoreResult<Tx> {
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

impl Tx {
    pub(super) async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        dispatch!(self, Tx, t => run(&mut **t, sql, args).await).map_err(db_error)
    }

    pub(super) async fn rows<T: SqlRow>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        dispatch!(self, Tx, t => rows(&mut **t, sql, args).await).map_err(db_error)
    }

    pub(super) async fn insert(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<bool> {
        inserted(dispatch!(self, Tx, t => run(&mut **t, sql, args).await))
    }

    pub(super) async fn commit(self) -> StoreResult<()> {
        dispatch!(self, Tx, t => t.commit().await).map_err(db_error)
    }

    /// Rolls back now rather than when the connection is next used, releasing locks at once.
    pub(super) async fn rollback(self) -> StoreResult<()> {
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
pub(super) fn is_serialization_failure(e: &StoreError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<sqlx::Error>())
        .and_then(|s| match s {
            sqlx::Error::Database(db) => db.code(),
            _ => None,
        })
        .is_some_and(|code| code == "40001" || code == "40P01")
}

pub(super) fn db_error(e: sqlx::Error) -> StoreError {
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
