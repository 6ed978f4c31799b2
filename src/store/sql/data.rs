//! Session and family data in the sql store: one JSON object text per session row
//! (`keycard_sessions.data`) and per family row (`keycard_refresh_families.data`, so it goes
//! with the family). Each change is read, merged ([`DataPatch::apply`]) and written back with a
//! compare-and-set (two round trips; one when the request already read the data, see
//! [`DataPatch::base`]), which holds if no other request changed the row in between; under contention, after a few lost races, in one transaction under the row's lock
//! (`FOR UPDATE`; SQLite's writing transactions are exclusive), which always makes progress.

use std::time::{Duration, SystemTime};

use super::{
    SqlStore,
    codec::Text,
    exec::{Arg, is_serialization_failure},
    statements::DataSql,
};
use crate::{
    clock::to_millis,
    store::{DataLimits, DataPatch, StoreResult},
    token::TokenHash,
};

/// How many times a transaction aborted by the database (deadlock, serialization) is retried.
const ATTEMPTS: u64 = 8;

/// How many compare-and-sets are tried before the locked transaction.
const SWAPS: u32 = 3;

impl SqlStore {
    pub(super) async fn update_session_data(
        &self,
        id: &TokenHash,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let key = Arg::Bytes(id.as_bytes());
        self.merge(&self.sql.session.data, key, patch, limits, now)
            .await
    }

    pub(super) async fn load_family_data(
        &self,
        family: &str,
        now: SystemTime,
    ) -> StoreResult<Option<String>> {
        let args = [Arg::Text(family), Arg::Int(to_millis(now))];
        let rows: Vec<(Option<Text>,)> = self
            .pool
            .rows(&self.sql.refresh.family_data.read, &args)
            .await?;
        Ok(rows.into_iter().next().and_then(|(d,)| d).map(|t| t.0))
    }

    pub(super) async fn save_family_data(
        &self,
        family: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let key = Arg::Text(family);
        self.merge(&self.sql.refresh.family_data, key, patch, limits, now)
            .await
    }

    /// Applies `patch` to the data of the live row `key`: `false` when there is none.
    async fn merge(
        &self,
        sql: &DataSql,
        key: Arg<'_>,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let live = Arg::Int(to_millis(now));
        // First against the data as the request read it, if it did: one round trip when nobody
        // changed it since. That text may be stale, so it is only ever compared against.
        // (A limit exceeded against it is checked again against the stored data below.)
        if let Some(base) = patch.base()
            && let Ok(merged) = patch.apply(base, limits)
            && self.swap(sql, key, live, merged.as_deref(), base).await?
        {
            return Ok(true);
        }
        for _ in 0..SWAPS {
            let rows: Vec<(Option<Text>,)> = self.pool.rows(&sql.read, &[key, live]).await?;
            let Some((current,)) = rows.into_iter().next() else {
                return Ok(false);
            };
            let current = current.map(|t| t.0);
            let merged = patch.apply(current.as_deref(), limits)?;
            if merged == current {
                return Ok(true);
            }
            if self
                .swap(sql, key, live, merged.as_deref(), current.as_deref())
                .await?
            {
                return Ok(true);
            }
            // Another request changed the row (or it ended) in between: read it again.
        }
        self.merge_locked_retrying(sql, key, patch, limits, now)
            .await
    }

    /// Writes `merged` to the live row `key` if its data is still `expected`.
    async fn swap(
        &self,
        sql: &DataSql,
        key: Arg<'_>,
        live: Arg<'_>,
        merged: Option<&str>,
        expected: Option<&str>,
    ) -> StoreResult<bool> {
        let args = [Arg::OptText(merged), key, live, Arg::OptText(expected)];
        Ok(self.pool.run_repeatable(&sql.swap, &args).await? == 1)
    }

    /// [`SqlStore::merge_locked`], again when the database aborted it to break a deadlock:
    /// nothing of an aborted transaction was written.
    async fn merge_locked_retrying(
        &self,
        sql: &DataSql,
        key: Arg<'_>,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let mut attempt = 0;
        loop {
            match self.merge_locked(sql, key, patch, limits, now).await {
                Err(e) if attempt < ATTEMPTS && is_serialization_failure(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(2 * attempt)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// One transaction: reads the live row's data under its lock, merges `patch` and writes the
    /// result. `false` when no live row has `key`; an error (such as `TooLarge`) rolls back.
    async fn merge_locked(
        &self,
        sql: &DataSql,
        key: Arg<'_>,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Option<Text>,)> =
            match tx.rows(&sql.lock, &[key, Arg::Int(to_millis(now))]).await {
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
        tx.run(&sql.update, &[Arg::OptText(merged.as_deref()), key])
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
