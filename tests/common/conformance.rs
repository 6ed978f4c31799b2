//! The store conformance suite, as keycard's own store tests run it: the public suite in
//! [`keycard::testing::store`] (feature `test-suite`), one `#[tokio::test]` per check, plus the
//! checks that need test-only machinery (a raw pool on a SQL store's database).
//!
//! A backend's test file runs the suite with [`store_conformance!`], passing an expression
//! (evaluated inside each async test, so it may `.await`) that builds a fresh store handle:
//!
//! ```ignore
//! mod common;
//! common::conformance::store_conformance!(keycard::store::MemoryStore::new());
//! // or only part of the suite:
//! common::conformance::store_conformance!(sessions: my_store().await);
//! common::conformance::store_conformance!(refresh: my_store().await);
//! common::conformance::store_conformance!(revocations: my_store().await);
//! ```
//!
//! Without the `test-suite` feature the macro expands to nothing (the suite is not compiled in);
//! `cargo test --all-features`, the project's test command, runs it.

use std::sync::Arc;

use keycard::store::{CreateOutcome, SessionStore, StoreErrorKind};
#[cfg(feature = "test-suite")]
pub use keycard::testing::store::*;

use super::{now, secs, session, subject};

/// Expands to one `#[tokio::test]` per conformance check. See the [module docs](self).
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::common::conformance::store_conformance!(sessions: $make);
        $crate::common::conformance::store_conformance!(refresh: $make);
        $crate::common::conformance::store_conformance!(revocations: $make);
    };
    (sessions: $make:expr) => {
        $crate::common::conformance::conformance_tests!($make, SessionStore;
            session_round_trip,
            session_create_never_overwrites,
            session_load_honours_expiry,
            session_touch_slides_within_absolute_expiry,
            session_rotate_replaces_atomically,
            session_delete_is_scoped_to_subject,
            session_delete_all,
            session_list_live_oldest_first,
            session_sweep_removes_only_expired,
            session_limit_reject,
            session_limit_evict_oldest,
            session_limit_concurrent_evict_oldest,
            session_limit_concurrent_reject,
            session_data_round_trip,
            session_data_concurrent_writers_all_land,
            session_data_stale_base_is_only_compared,
            session_data_limits_refuse_whole_patch,
            session_data_goes_with_the_session,
            session_data_rotate_carries_data,
        );
    };
    (refresh: $make:expr) => {
        $crate::common::conformance::conformance_tests!($make, RefreshStore;
            refresh_insert_is_insert_if_absent,
            refresh_rotate_then_reuse_revokes_family,
            refresh_lifetime_passes_to_successors,
            refresh_expired_is_invalid,
            refresh_family_live,
            refresh_delete_family_is_scoped_to_subject,
            refresh_delete_all,
            refresh_list_live_heads_oldest_first,
            refresh_sweep_removes_dead_families,
            refresh_grace_window,
            refresh_rotate_conflict_changes_nothing,
            refresh_concurrent_rotation_has_one_winner,
            family_data_lives_with_the_family,
            refresh_concurrent_grace_retries_leave_one_head,
        );
    };
    (revocations: $make:expr) => {
        $crate::common::conformance::conformance_tests!($make, RevocationStore;
            revocation_jti_denylist,
            revocation_epoch_only_moves_forward,
            revocation_sweep_removes_past_entries,
            revocation_subscribe_delivers,
        );
    };
}
pub(crate) use store_conformance;

/// Implementation detail of [`store_conformance!`].
macro_rules! conformance_tests {
    ($make:expr, $store:ident; $($check:ident),+ $(,)?) => {
        $(
            #[cfg(feature = "test-suite")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn ::keycard::store::$store> =
                    ::std::sync::Arc::new($make);
                ::keycard::testing::store::$check(store).await;
            }
        )+
    };
}
pub(crate) use conformance_tests;

/// SQL stores only: a session row holding values keycard cannot decode fails `load` and `list`
/// with [`StoreErrorKind::Corrupt`]: never a session, never a panic. `raw` is a pool on the
/// store's database, for the damage. Every backend gets JSON that is not what keycard wrote; `damage` adds
/// `(column, SQL value)` pairs for what only some schemas can hold: an `id` that is not 32 bytes
/// (SQLite; PostgreSQL's schema checks the length, MySQL's pads it), a `subject` that is not
/// UTF-8 (SQLite and MySQL; PostgreSQL's text refuses it).
#[cfg(feature = "_sql")]
pub async fn sql_undecodable_sessions_are_errors<DB: sqlx::Database>(
    store: Arc<dyn SessionStore>,
    raw: &sqlx::Pool<DB>,
    damage: &[(&str, &str)],
) where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let exec = async |sql: String| {
        sqlx::query::<DB>(&sql).execute(raw).await.unwrap();
    };
    let t0 = now();
    let json = [
        ("roles", "'not json'"),
        ("attributes", "'[\"not\", \"a map\"]'"),
    ];
    for &(column, value) in json.iter().chain(damage) {
        let user = subject();
        let record = session(&user, t0, secs(3600));
        assert_eq!(
            store.create(&record, None).await.unwrap(),
            CreateOutcome::Created {
                evicted: Vec::new()
            }
        );
        exec(format!(
            "UPDATE keycard_sessions SET {column} = {value} WHERE subject = '{user}'"
        ))
        .await;
        if column == "subject" {
            let err = store.load(&record.id, t0).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{column}: {err:?}");
            exec(format!(
                "DELETE FROM keycard_sessions WHERE subject = {value}"
            ))
            .await;
            continue;
        }
        // The lookup binds the original id, which a damaged id no longer matches.
        if column != "id" {
            let err = store.load(&record.id, t0).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{column}: {err:?}");
        }
        let err = store.list(&user, t0).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{column}: {err:?}");
        store.delete_all(&user).await.unwrap();
    }
}
