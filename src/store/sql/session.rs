//! [`SessionStore`] over SQL.

use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    SqlStore,
    codec::{SessionParams, SessionRow, count, hash},
    exec::{Arg, is_serialization_failure},
};
use crate::{
    clock::to_millis,
    store::{
        CreateOutcome, DataLimits, DataPatch, LimitPolicy, SessionLimit, SessionRecord,
        SessionStore, StoreError, StoreErrorKind, StoreResult,
    },
    token::TokenHash,
};

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
        if count(tx.rows(&self.sql.session.exists, &[id]).await?) > 0 {
            tx.rollback().await?;
            return Ok(CreateOutcome::Collision);
        }
        // Serialize creations for this subject on its lock row. The upsert inserts or updates the
        // row and so holds its lock until commit, even if a sweep deleted it meanwhile.
        let until = Arg::Int(to_millis(record.absolute_expires_at));
        tx.run(&self.sql.session.subject_upsert, &[subject, until])
            .await?;
        let live: Vec<(Vec<u8>,)> = tx
            .rows(
                &self.sql.session.live_ids,
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
                tx.run(&self.sql.session.delete_id, &[Arg::Bytes(old.as_bytes())])
                    .await?;
                evicted.push(old);
            }
        }
        if !tx.insert(&self.sql.session.insert, &params.args()).await? {
            tx.rollback().await?;
            return Ok(CreateOutcome::Collision);
        }
        tx.commit().await?;
        Ok(CreateOutcome::Created { evicted })
    }
}

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
                    .insert(&self.sql.session.insert, &params.args())
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
            .row::<SessionRow>(&self.sql.session.load, &args)
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
        Ok(self.pool.run(&self.sql.session.touch, &args).await? > 0)
    }

    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        let params = SessionParams::new(new)?;
        let mut tx = self.pool.begin().await?;
        let args = [
            Arg::Bytes(old.as_bytes()),
            Arg::Int(to_millis(new.last_seen_at)),
        ];
        if tx.run(&self.sql.session.delete_live, &args).await? == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if !tx.insert(&self.sql.session.insert, &params.args()).await? {
            tx.rollback().await?;
            return Err(StoreError::new(StoreErrorKind::Conflict));
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
        let args = [Arg::Bytes(id.as_bytes()), Arg::Text(subject)];
        Ok(self.pool.run(&self.sql.session.delete, &args).await? > 0)
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.pool
            .run(&self.sql.session.delete_all, &[Arg::Text(subject)])
            .await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        let args = [Arg::Text(subject), Arg::Int(to_millis(now))];
        let rows: Vec<SessionRow> = self.pool.rows(&self.sql.session.list, &args).await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let now = [Arg::Int(to_millis(now))];
        let removed = self.pool.run(&self.sql.session.sweep, &now).await?;
        // Lock rows whose sessions have all reached their absolute expiry; `create` re-creates a
        // lock row as needed.
        self.pool.run(&self.sql.session.subject_sweep, &now).await?;
        Ok(removed)
    }

    async fn update_data(
        &self,
        id: &TokenHash,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        self.update_session_data(id, patch, limits, now).await
    }
}
