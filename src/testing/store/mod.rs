//! The store conformance suite: the checks every [`SessionStore`], [`RefreshStore`] and
//! [`RevocationStore`] must pass.
//!
//! [`session_store`], [`refresh_store`] and [`revocation_store`] run every check of one trait
//! against the store they are given; each check is also public on its own, so that a backend's
//! test file can give every check a test of its own (and a fresh store), as keycard's do.
//!
//! ```no_run
//! use std::sync::Arc;
//! use keycard::testing::store;
//! # use keycard::store::MemoryStore as MyStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The whole suite of one trait:
//! store::session_store(Arc::new(MyStore::new())).await;
//! // Or one check:
//! store::session_rotate_replaces_atomically(Arc::new(MyStore::new())).await;
//! # }
//! ```
//!
//! # Sharing one database
//! Every check makes its own random subjects, IDs and families and asserts only on those, so the
//! checks can run in parallel against one shared database (no table is ever truncated). Sweeps are
//! only ever asked to remove what expired before the real current time, so they cannot remove
//! another check's live records; the counts they return are therefore not asserted exactly
//! (a parallel sweep may have removed some of this check's expired records first).
//!
//! # Runtime
//! The checks need a Tokio runtime with the `time` driver; the concurrency checks spawn tasks,
//! which run truly in parallel only on a multi-threaded runtime (keycard's own tests use four
//! worker threads). A failed check panics, as a test assertion does.

use std::sync::Arc;

use crate::store::{
    CreateOutcome, LimitPolicy, RefreshStore, RevocationStore, SessionLimit, SessionStore,
};
use fixtures::{millis, now, refresh, secs, session, subject, token};

mod data;
pub mod fixtures;
mod refresh;
mod revocation;
mod session;

pub use data::{
    family_data_lives_with_the_family, session_data_concurrent_writers_all_land,
    session_data_goes_with_the_session, session_data_limits_refuse_whole_patch,
    session_data_rotate_carries_data, session_data_round_trip,
    session_data_stale_base_is_only_compared,
};
pub use refresh::{
    refresh_concurrent_grace_retries_leave_one_head, refresh_concurrent_rotation_has_one_winner,
    refresh_delete_all, refresh_delete_family_is_scoped_to_subject, refresh_expired_is_invalid,
    refresh_family_live, refresh_grace_window, refresh_insert_is_insert_if_absent,
    refresh_lifetime_passes_to_successors, refresh_list_live_heads_oldest_first,
    refresh_rotate_conflict_changes_nothing, refresh_rotate_then_reuse_revokes_family,
    refresh_sweep_removes_dead_families,
};
pub use revocation::{
    revocation_epoch_only_moves_forward, revocation_jti_denylist, revocation_subscribe_delivers,
    revocation_sweep_removes_past_entries,
};
pub use session::{
    session_create_never_overwrites, session_delete_all, session_delete_is_scoped_to_subject,
    session_limit_concurrent_evict_oldest, session_limit_concurrent_reject,
    session_limit_evict_oldest, session_limit_reject, session_list_live_oldest_first,
    session_load_honours_expiry, session_rotate_replaces_atomically, session_round_trip,
    session_sweep_removes_only_expired, session_touch_slides_within_absolute_expiry,
};

/// Runs every [`SessionStore`] check against `store`, one after another.
pub async fn session_store(store: Arc<dyn SessionStore>) {
    session_round_trip(store.clone()).await;
    session_create_never_overwrites(store.clone()).await;
    session_load_honours_expiry(store.clone()).await;
    session_touch_slides_within_absolute_expiry(store.clone()).await;
    session_rotate_replaces_atomically(store.clone()).await;
    session_delete_is_scoped_to_subject(store.clone()).await;
    session_delete_all(store.clone()).await;
    session_list_live_oldest_first(store.clone()).await;
    session_sweep_removes_only_expired(store.clone()).await;
    session_limit_reject(store.clone()).await;
    session_limit_evict_oldest(store.clone()).await;
    session_limit_concurrent_evict_oldest(store.clone()).await;
    session_limit_concurrent_reject(store.clone()).await;
    session_data_round_trip(store.clone()).await;
    session_data_concurrent_writers_all_land(store.clone()).await;
    session_data_stale_base_is_only_compared(store.clone()).await;
    session_data_limits_refuse_whole_patch(store.clone()).await;
    session_data_goes_with_the_session(store.clone()).await;
    session_data_rotate_carries_data(store).await;
}

/// Runs every [`RefreshStore`] check against `store`, one after another.
pub async fn refresh_store(store: Arc<dyn RefreshStore>) {
    refresh_insert_is_insert_if_absent(store.clone()).await;
    refresh_rotate_then_reuse_revokes_family(store.clone()).await;
    refresh_lifetime_passes_to_successors(store.clone()).await;
    refresh_expired_is_invalid(store.clone()).await;
    refresh_family_live(store.clone()).await;
    refresh_delete_family_is_scoped_to_subject(store.clone()).await;
    refresh_delete_all(store.clone()).await;
    refresh_list_live_heads_oldest_first(store.clone()).await;
    refresh_sweep_removes_dead_families(store.clone()).await;
    refresh_grace_window(store.clone()).await;
    refresh_rotate_conflict_changes_nothing(store.clone()).await;
    refresh_concurrent_rotation_has_one_winner(store.clone()).await;
    family_data_lives_with_the_family(store.clone()).await;
    refresh_concurrent_grace_retries_leave_one_head(store).await;
}

/// Runs every [`RevocationStore`] check against `store`, one after another.
pub async fn revocation_store(store: Arc<dyn RevocationStore>) {
    revocation_jti_denylist(store.clone()).await;
    revocation_epoch_only_moves_forward(store.clone()).await;
    revocation_sweep_removes_past_entries(store.clone()).await;
    revocation_subscribe_delivers(store).await;
}

fn limit(max: u32, policy: LimitPolicy) -> Option<SessionLimit> {
    Some(SessionLimit { max, policy })
}

fn created() -> CreateOutcome {
    CreateOutcome::Created {
        evicted: Vec::new(),
    }
}
