//! Session and family data in the sql store: one JSON object text per session row
//! (`keycard_sessions.data`) and per family row (`keycard_refresh_families.data`, so it goes
//! with the family). Each change is read, merged ([`DataPatch::apply`]) and written back in one
//! transaction, under the row's lock (`FOR UPDATE`; SQLite's writing transactions are exclusive).

use std::time::{Duration, SystemTime};

use super::{
    SqlStore,
    codec::Text,
    exec::{Arg, is_serialization_failure},
};
use crate::{
    clock::to_millis,
    store::{DataLimits, DataPatch, StoreResult},
    token::TokenHash,
};

/// How many times a transaction aborted by the database (deadlock, serialization) is retried.
const ATTEMPTS: u64 = 8;

impl SqlStore {
    pub(super) async fn update_session_data(
        &self,
        id: &TokenHash,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let key = Arg::Bytes(id.as_bytes());
        let sql = &self.sql.session;
        self.merge_retrying(&sql.data_lock, &sql.data_update, key, patch, limits, now)
            .await
    }

    pub(super) async fn load_family_data(
        &self,
        family: &str,
        now: SystemTime,
    ) -> StoreResult<Option<String>> {
        let args = [Arg::Text(family), Arg::Int(to_millis(now))];
        let rows: Vec<(Option<Text>,)> =
            self.pool.rows(&self.sql.refresh.family_data, &args).await?;
        Ok(rows.into_iter().next().and_then(|(d,)| d).map(|t| t.0))
    }

    pub(super) async fn save_family_data(
        &self,
        family: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let sql = &self.sql.refresh;
        let key = Arg::Text(family);
        self.merge_retrying(
            &sql.family_data_lock,
            &sql.family_data_update,
            key,
            patch,
            limits,
            now,
        )
        .await
    }

    /// [`SqlStore::merge`], again when the database aborted it to break a deadlock: nothing of
    /// an aborted transaction was written.
    async fn merge_retrying(
        &self,
        lock: &str,
        update: &str,
        key: Arg<'_>,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let mut attempt = 0;
        loop {
            match self.merge(lock, update, key, patch, limits, now).await {
                Err(e) if attempt < ATTEMPTS && is_serialization_failure(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(2 * attempt)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// One transaction: reads the live row's data under its lock (`lock`: key, now), merges
    /// `patch` and writes the result (`update`: data, key). `false` when no live row has `key`;
    /// an error (such as `TooLarge`) rolls back.
    async fn merge(
        &self,
        lock: &str,
        update: &str,
        key: Arg<'_>,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Option<Text>,)> = match tx.rows(lock, &[key, Arg::Int(to_millis(now))]).await
        {
            Ok(rows) => rows,
            Err(e) => {
                tx.rollback().await.ok();
                return Err(e);
            }
        };
        let Some((current,)) = rows.into_iter().next() else {
            tx.rollback().await?;
            return Ok(false);
        };
        let merged = match patch.apply(current.as_ref().map(|t| t.0.as_str()), limits) {
            Ok(merged) => merged,
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        };
        tx.run(update, &[Arg::OptText(merged.as_deref()), key])
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
