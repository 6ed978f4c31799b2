//! [`RefreshStore`] over SQL: families of refresh tokens, rotated under the family's row lock.

use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    SqlStore,
    codec::{RefreshParams, RefreshRow, Text, count, hash},
    exec::Arg,
};
use crate::{
    clock::to_millis,
    store::{
        RefreshRecord, RefreshStore, RotateOutcome, RotateRequest, StoreError, StoreErrorKind,
        StoreResult,
    },
};

/// How many keys go into one `IN (…)` list.
const CHUNK: usize = 500;

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
        if !tx.insert(&self.sql.refresh.family_insert, &family).await?
            || !tx
                .insert(&self.sql.refresh.token_insert, &params.args())
                .await?
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
            .rows(&self.sql.refresh.family_lock_by_token, &[presented])
            .await?;
        let Some((Text(family), head, prev)) = family.into_iter().next() else {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        };
        let head = hash(&head)?;
        let pair: Vec<RefreshRow> = tx
            .rows(
                &self.sql.refresh.token_pair,
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
                    .run(&self.sql.refresh.token_spend, &[Arg::Int(now), presented])
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
                    tx.run(&self.sql.refresh.family_tokens_delete, &fam).await?;
                    tx.run(&self.sql.refresh.family_delete, &fam).await?;
                    tx.commit().await?;
                    return Ok(RotateOutcome::Reused {
                        family,
                        subject: current.subject,
                    });
                }
                // Grace: the unused successor is replaced by a fresh head.
                tx.run(
                    &self.sql.refresh.token_delete,
                    &[Arg::Bytes(head.as_bytes())],
                )
                .await?;
            }
        }
        let next = current.successor(*req.next, req.now, req.idle);
        let params = RefreshParams::new(&next)?;
        if !tx
            .insert(&self.sql.refresh.token_insert, &params.args())
            .await?
        {
            tx.rollback().await?;
            return Err(StoreError::new(StoreErrorKind::Conflict));
        }
        let advance = [
            Arg::Bytes(next.id.as_bytes()),
            presented,
            Arg::Int(to_millis(next.expires_at)),
            Arg::Text(&family),
        ];
        tx.run(&self.sql.refresh.family_advance, &advance).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated { next })
    }

    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        let args = [Arg::Text(family), Arg::Int(to_millis(now))];
        Ok(count(self.pool.rows(&self.sql.refresh.family_live, &args).await?) > 0)
    }

    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let owned = [Arg::Text(family), Arg::Text(subject)];
        let deleted = tx
            .run(&self.sql.refresh.family_delete_owned, &owned)
            .await?
            > 0;
        if deleted {
            tx.run(&self.sql.refresh.family_tokens_delete, &[Arg::Text(family)])
                .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        let subject = [Arg::Text(subject)];
        let mut tx = self.pool.begin().await?;
        let families = tx
            .run(&self.sql.refresh.families_delete_subject, &subject)
            .await?;
        // Only tokens whose family row is gone: a family inserted concurrently keeps its head.
        tx.run(&self.sql.refresh.orphans_delete_subject, &subject)
            .await?;
        tx.commit().await?;
        Ok(families)
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        let args = [Arg::Text(subject), Arg::Int(to_millis(now))];
        let rows: Vec<RefreshRow> = self.pool.rows(&self.sql.refresh.heads_list, &args).await?;
        rows.into_iter().map(RefreshRow::into_record).collect()
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let dead: Vec<(Text,)> = tx
            .rows(&self.sql.refresh.families_dead, &[Arg::Int(to_millis(now))])
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
