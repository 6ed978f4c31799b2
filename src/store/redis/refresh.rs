//! [`RefreshStore`] on Redis: one hash per family, a pointer per token (see the module docs of
//! [`super`]).

use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::Value;

use super::{
    RedisStore,
    connection::{Conn, store_err},
    keys::parse_id,
    record::{
        corrupt, decode_refresh, encode_family, encode_pointer, encode_token, expire_at, millis_of,
        parse_pointer,
    },
    scripts::{
        FAMILY_DELETE, FAMILY_HEAD, FAMILY_INDEX_ADD, FAMILY_INSERT, FAMILY_ROTATE, FAMILY_SWEEP,
    },
};
use crate::{
    clock::{from_millis, to_millis},
    store::{
        DataLimits, DataPatch, RefreshRecord, RefreshStore, RotateOutcome, RotateRequest,
        StoreError, StoreErrorKind, StoreResult,
    },
};

impl RedisStore {
    /// Deletes pointers of deleted tokens. Best effort: a lingering pointer leads to a missing
    /// family, which is `Invalid`, and expires with the family's lifetime.
    async fn drop_pointers(&self, conn: &Conn, ids: &[String]) {
        let keys = &self.inner.keys;
        let _ = try_join_all(ids.iter().map(|hex| {
            let mut c = conn.clone();
            let key = keys.pointer_hex(hex);
            async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut c).await }
        }))
        .await;
    }

    /// Removes `family` from the subject's family index (`rf` and `rx`, one pipeline).
    async fn unindex_family(
        &self,
        conn: &mut Conn,
        subject: &str,
        family: &str,
    ) -> StoreResult<()> {
        let (rf, rx) = self.inner.keys.family_index(subject);
        redis::pipe()
            .cmd("ZREM")
            .arg(&rf)
            .arg(family)
            .ignore()
            .cmd("ZREM")
            .arg(&rx)
            .arg(family)
            .ignore()
            .query_async::<()>(conn)
            .await
            .map_err(store_err)
    }

    async fn insert_inner(&self, record: &RefreshRecord) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let keys = &self.inner.keys;
        let pointer = keys.pointer(&record.id);
        let x = to_millis(record.family_expires_at);
        let set: Value = redis::cmd("SET")
            .arg(&pointer)
            .arg(encode_pointer(x, &record.family))
            .arg("NX")
            .arg("PXAT")
            .arg(expire_at(record.family_expires_at))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        if set == Value::Nil {
            return Ok(false);
        }
        let family_key = keys.family(&record.family);
        let inserted: StoreResult<i64> = FAMILY_INSERT
            .key(&family_key)
            .arg(&record.subject)
            .arg(&record.family)
            .arg(encode_family(record)?)
            .arg(x)
            .arg(record.id.handle())
            .arg(encode_token(record))
            .arg(
                record
                    .idle_timeout
                    .map(millis_of)
                    .map_or_else(String::new, |ms| ms.to_string()),
            )
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        match inserted {
            Ok(1) => {}
            Ok(_) => {
                let _: i64 = redis::cmd("DEL")
                    .arg(&pointer)
                    .query_async(&mut conn)
                    .await
                    .map_err(store_err)?;
                return Ok(false);
            }
            Err(e) => {
                let _: Result<i64, _> =
                    redis::cmd("DEL").arg(&pointer).query_async(&mut conn).await;
                return Err(e);
            }
        }
        durability.wait(&mut conn, &family_key).await?;
        let (rf, rx) = keys.family_index(&record.subject);
        let _: i64 = FAMILY_INDEX_ADD
            .key(&rf)
            .key(&rx)
            .arg(&record.family)
            .arg(to_millis(record.family_created_at))
            .arg(x)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        durability.wait(&mut conn, &rf).await?;
        Ok(true)
    }

    async fn rotate_refresh(&self, req: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        let mut conn = self.writer();
        let keys = &self.inner.keys;
        let raw: Option<String> = redis::cmd("GET")
            .arg(keys.pointer(req.presented))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let Some(raw) = raw else {
            return Ok(RotateOutcome::Invalid);
        };
        let (x, family) = parse_pointer(&raw)?;
        let now_ms = to_millis(req.now);
        if x <= now_ms {
            return Ok(RotateOutcome::Invalid);
        }
        // Reserve the next token's pointer: the global collision check.
        let next_pointer = keys.pointer(req.next);
        let set: Value = redis::cmd("SET")
            .arg(&next_pointer)
            .arg(&raw)
            .arg("NX")
            .arg("PXAT")
            .arg(x.max(1))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let collides = set == Value::Nil;
        let family_key = keys.family(family);
        let reply: StoreResult<Vec<String>> = FAMILY_ROTATE
            .key(&family_key)
            .arg(req.presented.handle())
            .arg(req.next.handle())
            .arg(now_ms)
            .arg(millis_of(req.idle))
            .arg(millis_of(req.grace))
            .arg(if collides { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        let release_next = async |conn: &mut Conn| {
            if !collides {
                let _: Result<i64, _> =
                    redis::cmd("DEL").arg(&next_pointer).query_async(conn).await;
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                release_next(&mut conn).await;
                return Err(e);
            }
        };
        match reply.first().map(String::as_str) {
            Some("rotated") => {
                self.rotated(&mut conn, &family_key, &reply, req, now_ms)
                    .await
            }
            Some("reused") => {
                release_next(&mut conn).await;
                self.reused(&mut conn, &family_key, &reply).await
            }
            Some("conflict") => Err(StoreError::new(StoreErrorKind::Conflict)),
            Some("invalid") => {
                release_next(&mut conn).await;
                Ok(RotateOutcome::Invalid)
            }
            _ => {
                release_next(&mut conn).await;
                Err(corrupt("unexpected rotation reply"))
            }
        }
    }

    /// Finishes a rotation the script made (`reply` is `{'rotated', subject, family, data,
    /// presented_token, removed_head}`): drops the pointer of the token it removed from the family
    /// and returns the new head.
    async fn rotated(
        &self,
        conn: &mut Conn,
        family_key: &str,
        reply: &[String],
        req: RotateRequest<'_>,
        now_ms: i64,
    ) -> StoreResult<RotateOutcome> {
        self.durability().wait(conn, family_key).await?;
        let [_, subject, family, data, token, removed] = reply else {
            return Err(corrupt("unexpected rotation reply"));
        };
        let current = decode_refresh(*req.presented, subject.clone(), family.clone(), data, token)?;
        if !removed.is_empty() {
            self.drop_pointers(conn, std::slice::from_ref(removed))
                .await;
        }
        let next = current.successor(*req.next, from_millis(now_ms), req.idle);
        Ok(RotateOutcome::Rotated { next })
    }

    /// Finishes a rotation that presented a spent token, after which the script deleted the family
    /// (`reply` is `{'reused', subject, family, ids...}`): drops its pointers and its index entry.
    async fn reused(
        &self,
        conn: &mut Conn,
        family_key: &str,
        reply: &[String],
    ) -> StoreResult<RotateOutcome> {
        self.durability().wait(conn, family_key).await?;
        let [_, subject, family, ids @ ..] = reply else {
            return Err(corrupt("unexpected rotation reply"));
        };
        self.drop_pointers(conn, ids).await;
        self.unindex_family(conn, subject, family).await?;
        Ok(RotateOutcome::Reused {
            family: family.clone(),
            subject: subject.clone(),
        })
    }

    async fn head(&self, conn: &mut Conn, family: &str) -> StoreResult<Option<RefreshRecord>> {
        let reply: Vec<String> = FAMILY_HEAD
            .key(self.inner.keys.family(family))
            .invoke_async(conn)
            .await
            .map_err(store_err)?;
        let [subject, family, data, head, token] = reply.as_slice() else {
            return Ok(None);
        };
        decode_refresh(
            parse_id(head)?,
            subject.clone(),
            family.clone(),
            data,
            token,
        )
        .map(Some)
    }

    async fn family_live_inner(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        let mut conn = self.reader();
        Ok(self
            .head(&mut conn, family)
            .await?
            .is_some_and(|h| h.expires_at > now))
    }

    /// Deletes `family` if it belongs to `subject`, then its index entry and pointers.
    async fn delete_family_inner(&self, subject: &str, family: &str) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let family_key = self.inner.keys.family(family);
        let ids: Option<Vec<String>> = FAMILY_DELETE
            .key(&family_key)
            .arg(subject)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        let deleted = ids.is_some();
        if let Some(ids) = ids {
            durability.wait(&mut conn, &family_key).await?;
            self.drop_pointers(&conn, &ids).await;
        }
        // Remove the index entry only once the family is gone, so a failure leaves it findable.
        self.unindex_family(&mut conn, subject, family).await?;
        Ok(deleted)
    }

    /// The IDs of `subject`'s families, from its family index.
    async fn families_of(&self, conn: &mut Conn, subject: &str) -> StoreResult<Vec<String>> {
        let (rf, _) = self.inner.keys.family_index(subject);
        redis::cmd("ZRANGE")
            .arg(&rf)
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await
            .map_err(store_err)
    }

    async fn delete_all_families(&self, subject: &str) -> StoreResult<u64> {
        let families = self.families_of(&mut self.writer(), subject).await?;
        let deleted = try_join_all(
            families
                .iter()
                .map(|f| self.delete_family_inner(subject, f)),
        )
        .await?;
        Ok(deleted.into_iter().filter(|d| *d).count() as u64)
    }

    async fn list_families(
        &self,
        subject: &str,
        now: SystemTime,
    ) -> StoreResult<Vec<RefreshRecord>> {
        let mut conn = self.reader();
        let families = self.families_of(&mut conn, subject).await?;
        let heads = try_join_all(families.iter().map(|f| {
            let mut c = conn.clone();
            async move { self.head(&mut c, f).await }
        }))
        .await?;
        let mut heads: Vec<RefreshRecord> = heads
            .into_iter()
            .flatten()
            .filter(|r| r.subject == subject && r.used_at.is_none() && r.expires_at > now)
            .collect();
        heads.sort_by(|a, b| {
            (a.family_created_at, &a.family).cmp(&(b.family_created_at, &b.family))
        });
        Ok(heads)
    }

    async fn sweep_families(&self, now: SystemTime) -> StoreResult<u64> {
        let pattern = format!("{}:{{f:*}}", self.inner.keys.glob_prefix());
        let mut removed = 0u64;
        for key in self.reader().scan(&pattern).await? {
            let mut conn = self.writer();
            let reply: Option<Vec<String>> = FAMILY_SWEEP
                .key(&key)
                .arg(to_millis(now))
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            let Some(reply) = reply else { continue };
            let [subject, family, ids @ ..] = reply.as_slice() else {
                return Err(corrupt("unexpected sweep reply"));
            };
            removed += ids.len() as u64;
            self.drop_pointers(&conn, ids).await;
            self.unindex_family(&mut conn, subject, family).await?;
        }
        Ok(removed)
    }
}

#[async_trait]
impl RefreshStore for RedisStore {
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool> {
        self.run(self.insert_inner(record)).await
    }

    async fn rotate(&self, request: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        self.run(self.rotate_refresh(request)).await
    }

    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        self.run(self.family_live_inner(family, now)).await
    }

    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        self.run(self.delete_family_inner(subject, family)).await
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.run(self.delete_all_families(subject)).await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        self.run(self.list_families(subject, now)).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.sweep_families(now)).await
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
