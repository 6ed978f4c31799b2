//! [`RefreshStore`] over SQL: families of refresh tokens, rotated under the family's row lock.

use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    SqlStore,
    codec::{RefreshParams, RefreshRow, Text, count, hash},
    exec::{Arg, Tx},
};
use crate::{
    clock::to_millis,
    store::{
        DataLimits, DataPatch, RefreshRecord, RefreshStore, RotateOutcome, RotateRequest,
        StoreError, StoreErrorKind, StoreResult,
    },
    token::TokenHash,
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
        let mut tx = self.pool.begin().await?;
        let Some(family) = self.lock_family(&mut tx, req.presented).await? else {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        };
        let (current, head) = self.token_pair(&mut tx, req, &family.head).await?;
        let Some(current) = current else {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        };
        if current.family_expires_at <= req.now {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        }
        match self
            .spend(&mut tx, req, &family, &current, head.as_ref())
            .await?
        {
            Spend::Spent => self.advance(tx, req, &family.name, &current).await,
            Spend::Invalid => {
                tx.rollback().await?;
                Ok(RotateOutcome::Invalid)
            }
            Spend::Reused => {
                tx.commit().await?;
                Ok(RotateOutcome::Reused {
                    family: family.name,
                    subject: current.subject,
                })
            }
        }
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

    async fn family_data(&self, family: &str, now: SystemTime) -> StoreResult<Option<String>> {
        self.load_family_data(family, now).await
    }

    async fn update_family_data(
        &self,
        family: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        self.save_family_data(family, patch, limits, now).await
    }
}

/// The presented token's family, read under its row lock: its name, its head, and the token
/// the head replaced (`prev`).
struct LockedFamily {
    name: String,
    head: TokenHash,
    prev: Option<Vec<u8>>,
}

/// What the presented token's state allows, decided under the family lock.
enum Spend {
    /// The presented token is now spent (or, within the grace window, the unused head it
    /// produced is deleted): its successor becomes the head.
    Spent,
    /// The token cannot be exchanged; nothing was written.
    Invalid,
    /// A spent token was presented outside the grace window: the family and its tokens are
    /// deleted.
    Reused,
}

/// The steps of [`RefreshStore::rotate`], each on the rotation's transaction.
impl SqlStore {
    /// Locks the family of the presented token first: every writer of a family does, so
    /// rotations serialize here. `None` when no family holds the token.
    async fn lock_family(
        &self,
        tx: &mut Tx,
        presented: &TokenHash,
    ) -> StoreResult<Option<LockedFamily>> {
        let family: Vec<(Text, Vec<u8>, Option<Vec<u8>>)> = tx
            .rows(
                &self.sql.refresh.family_lock_by_token,
                &[Arg::Bytes(presented.as_bytes())],
            )
            .await?;
        let Some((Text(name), head, prev)) = family.into_iter().next() else {
            return Ok(None);
        };
        let head = hash(&head)?;
        Ok(Some(LockedFamily { name, head, prev }))
    }

    /// The records of the presented token and of the family's head (the same token when the
    /// head is presented), each `None` when its row is missing.
    async fn token_pair(
        &self,
        tx: &mut Tx,
        req: RotateRequest<'_>,
        head: &TokenHash,
    ) -> StoreResult<(Option<RefreshRecord>, Option<RefreshRecord>)> {
        let pair: Vec<RefreshRow> = tx
            .rows(
                &self.sql.refresh.token_pair,
                &[
                    Arg::Bytes(req.presented.as_bytes()),
                    Arg::Bytes(head.as_bytes()),
                ],
            )
            .await?;
        let mut current = None;
        let mut head_record = None;
        for row in pair {
            let record = row.into_record()?;
            if record.id == *req.presented {
                current = Some(record.clone());
            }
            if record.id == *head {
                head_record = Some(record);
            }
        }
        Ok((current, head_record))
    }

    /// Spends the presented token (`current`, of a live family). A token already spent is let
    /// through only within the grace window, as the predecessor of an unused head, which is
    /// then deleted; otherwise its family is deleted as reused.
    async fn spend(
        &self,
        tx: &mut Tx,
        req: RotateRequest<'_>,
        family: &LockedFamily,
        current: &RefreshRecord,
        head: Option<&RefreshRecord>,
    ) -> StoreResult<Spend> {
        let presented = Arg::Bytes(req.presented.as_bytes());
        let Some(used_at) = current.used_at else {
            if current.expires_at <= req.now {
                return Ok(Spend::Invalid);
            }
            // Spend it; under the family lock this cannot lose, but never trust that.
            let spent = tx
                .run(
                    &self.sql.refresh.token_spend,
                    &[Arg::Int(to_millis(req.now)), presented],
                )
                .await?;
            return Ok(if spent == 0 {
                Spend::Invalid
            } else {
                Spend::Spent
            });
        };
        let is_predecessor = family.prev.as_deref() == Some(req.presented.as_bytes().as_slice());
        let head_unused = head.is_some_and(|h| h.used_at.is_none() && h.expires_at > req.now);
        let in_grace =
            !req.grace.is_zero() && used_at + req.grace > req.now && is_predecessor && head_unused;
        if !in_grace {
            let fam = [Arg::Text(&family.name)];
            tx.run(&self.sql.refresh.family_tokens_delete, &fam).await?;
            tx.run(&self.sql.refresh.family_delete, &fam).await?;
            return Ok(Spend::Reused);
        }
        // Grace: the unused successor is replaced by a fresh head.
        tx.run(
            &self.sql.refresh.token_delete,
            &[Arg::Bytes(family.head.as_bytes())],
        )
        .await?;
        Ok(Spend::Spent)
    }

    /// Inserts the successor of the spent `current` as the family's head and commits.
    async fn advance(
        &self,
        mut tx: Tx,
        req: RotateRequest<'_>,
        family: &str,
        current: &RefreshRecord,
    ) -> StoreResult<RotateOutcome> {
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
            Arg::Bytes(req.presented.as_bytes()),
            Arg::Int(to_millis(next.expires_at)),
            Arg::Text(family),
        ];
        tx.run(&self.sql.refresh.family_advance, &advance).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated { next })
    }
}
