//! Connecting: pool options, one connect function per backend (each behind its cargo
//! feature), keycard's migrations, and the errors a failed connection reports.

use std::str::FromStr;

use sqlx::Database;

use super::{SqlOptions, exec::Pool};
use crate::error::{Error, ErrorKind};

/// The configuration field named in connection errors.
pub(super) const URL_FIELD: &str = "database.url";

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
pub(super) async fn sqlite(url: &str, options: &SqlOptions) -> Result<Pool, Error> {
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
pub(super) async fn sqlite(_: &str, _: &SqlOptions) -> Result<Pool, Error> {
    Err(missing_feature("sqlite"))
}

#[cfg(feature = "postgres")]
pub(super) async fn postgres(url: &str, options: &SqlOptions) -> Result<Pool, Error> {
    let connect = sqlx::postgres::PgConnectOptions::from_str(url).map_err(bad_url)?;
    let pool = pool_options(options)
        .connect_with(connect)
        .await
        .map_err(unreachable_db)?;
    Ok(Pool::Postgres(pool))
}

#[cfg(not(feature = "postgres"))]
pub(super) async fn postgres(_: &str, _: &SqlOptions) -> Result<Pool, Error> {
    Err(missing_feature("postgres"))
}

#[cfg(feature = "mysql")]
pub(super) async fn mysql(url: &str, options: &SqlOptions) -> Result<Pool, Error> {
    use sqlx::Executor;
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
pub(super) async fn mysql(_: &str, _: &SqlOptions) -> Result<Pool, Error> {
    Err(missing_feature("mysql"))
}

/// Applies keycard's pending migrations to `pool` (see [`SqlStore::migrate`]).
///
/// [`SqlStore::migrate`]: super::SqlStore::migrate
pub(super) async fn migrate(pool: &Pool) -> Result<(), Error> {
    // On a connection of our own, with `run_direct`: `Migrator::run(&pool)` bounds the pool by
    // `Acquire<'a>`, which makes every caller's future `Send` for one lifetime only, and that
    // refused `tokio::spawn` around `SqlStore::connect` and `Keycard::from_config`.
    macro_rules! run {
        ($path:literal, $conn:expr) => {{
            let mut migrator = sqlx::migrate!($path);
            migrator.set_ignore_missing(true);
            migrator.run_direct($conn).await
        }};
    }
    let result = match pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(p) => match p.acquire().await {
            Ok(mut conn) => run!("./migrations/sqlite", &mut *conn),
            Err(e) => Err(e.into()),
        },
        #[cfg(feature = "postgres")]
        Pool::Postgres(p) => match p.acquire().await {
            Ok(mut conn) => run!("./migrations/postgres", &mut *conn),
            Err(e) => Err(e.into()),
        },
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
