//! [`SessionStore`] on Redis: the session keys and their subject's index (see the module docs of
//! [`super`] for the order of the steps and why every intermediate state is safe).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::{Cmd, Pipeline, Value};

use super::{
    RedisStore,
    connection::{Conn, store_err},
    data::{object_pairs, object_text},
    keys::parse_id,
    record::{decode_session, encode_session, expire_at},
    scripts::{
        INDEX_ADD, INDEX_REMOVE, INDEX_SWAP, INDEX_SWEEP, INDEX_TOUCH, SESSION_DELETE,
        SESSION_PUT_WITH_DATA, TOUCH,
    },
};
use crate::{
    clock::to_millis,
    store::{
        CreateOutcome, DataLimits, DataPatch, LimitPolicy, SessionLimit, SessionRecord,
        SessionStore, StoreError, StoreErrorKind, StoreResult,
    },
    token::TokenHash,
};

impl RedisStore {
    /// Deletes the session keys of `ids` (hex), then clears them from the subject's pending set.
    /// Runs in its own task so that a caller's timeout does not abandon it halfway. Returns, per
    /// ID, whether a key was deleted.
    async fn finish_removal(&self, sg: String, ids: Vec<String>) -> StoreResult<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.writer();
        let durability = self.durability();
        let keys: Vec<(String, String)> = ids
            .iter()
            .map(|h| {
                (
                    self.inner.keys.session_hex(h),
                    self.inner.keys.session_data_hex(h),
                )
            })
            .collect();
        let limit = self.inner.options.timeout;
        let task = tokio::spawn(tokio::time::timeout(limit, async move {
            let deleted = try_join_all(keys.iter().map(|(key, data_key)| {
                let mut c = conn.clone();
                async move {
                    let n: i64 = SESSION_DELETE
                        .key(key)
                        .key(data_key)
                        .invoke_async(&mut c)
                        .await
                        .map_err(store_err)?;
                    durability.wait(&mut c, key).await?;
                    Ok::<_, StoreError>(n > 0)
                }
            }))
            .await?;
            let mut c = conn.clone();
            let _: i64 = redis::cmd("ZREM")
                .arg(&sg)
                .arg(&ids)
                .query_async(&mut c)
                .await
                .map_err(store_err)?;
            Ok::<_, StoreError>(deleted)
        }));
        match task.await.map_err(StoreError::unavailable)? {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(StoreErrorKind::Timeout)),
        }
    }

    async fn create_inner(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        let mut conn = self.writer();
        let durability = self.durability();
        let keys = &self.inner.keys;
        let key = keys.session(&record.id);
        let data_key = keys.session_data(&record.id);
        if !put_new(&mut conn, &key, &data_key, record).await? {
            return Ok(CreateOutcome::Collision);
        }
        durability.wait(&mut conn, &key).await?;
        let (si, se, sg) = keys.session_index(&record.subject);
        let (max, policy) = match limit {
            None => (0, "none"),
            Some(l) => (
                l.max.max(1),
                match l.policy {
                    LimitPolicy::Reject => "reject",
                    LimitPolicy::EvictOldest => "evict",
                },
            ),
        };
        let indexed: StoreResult<(i64, Vec<String>, Vec<String>)> = INDEX_ADD
            .key(&si)
            .key(&se)
            .key(&sg)
            .arg(record.id.handle())
            .arg(to_millis(record.created_at))
            .arg(to_millis(record.expires_at))
            .arg(max)
            .arg(policy)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        let (status, evicted, pending) = match indexed {
            Ok(v) => v,
            Err(e) => {
                // Not indexed, so it must not stay loadable; nobody holds the token yet.
                let _: Result<i64, _> = redis::cmd("DEL")
                    .arg(&key)
                    .arg(&data_key)
                    .query_async(&mut conn)
                    .await;
                return Err(e);
            }
        };
        if status == 0 {
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .arg(&data_key)
                .query_async(&mut conn)
                .await
                .map_err(store_err)?;
            self.finish_removal(sg, pending).await?;
            return Ok(CreateOutcome::LimitReached);
        }
        durability.wait(&mut conn, &si).await?;
        self.finish_removal(sg, pending).await?;
        let evicted = evicted
            .iter()
            .map(|h| parse_id(h))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(CreateOutcome::Created { evicted })
    }

    async fn load_inner(
        &self,
        id: &TokenHash,
        now: SystemTime,
    ) -> StoreResult<Option<SessionRecord>> {
        let mut conn = self.reader();
        let keys = &self.inner.keys;
        let key = keys.session_arg(id);
        let data_key = keys.session_data_arg(id);
        // One round trip for the session and its data hash (same slot, so one node on a cluster).
        // Sized up front: the keys are written into the commands' buffers without regrowing them.
        let mut get = Cmd::with_capacity(2, 3 + key.len());
        get.arg("GET").arg(key);
        let mut hgetall = Cmd::with_capacity(2, 7 + data_key.len());
        hgetall.arg("HGETALL").arg(data_key);
        let mut pipe = Pipeline::with_capacity(2);
        pipe.add_command(get).add_command(hgetall);
        let (raw, data): (Option<Vec<u8>>, Vec<(String, String)>) =
            pipe.query_async(&mut conn).await.map_err(store_err)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mut record = decode_session(*id, &raw)?;
        if record.expires_at <= now {
            return Ok(None);
        }
        record.data = object_text(data)?;
        Ok(Some(record))
    }

    async fn touch_inner(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let key = self.inner.keys.session(id);
        let Some(current) = get_live(&mut conn, &key, id, last_seen_at).await? else {
            return Ok(false);
        };
        let expires = expires_at.min(current.absolute_expires_at);
        let (si, se, _) = self.inner.keys.session_index(&current.subject);
        // Raise the index bound first: it must never be below the session's real expiry.
        let indexed: i64 = INDEX_TOUCH
            .key(&se)
            .key(&si)
            .arg(id.handle())
            .arg(to_millis(expires))
            .arg(to_millis(last_seen_at))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        if indexed == 0 {
            return Ok(false);
        }
        durability.wait(&mut conn, &se).await?;
        let touched: i64 = TOUCH
            .key(&key)
            .key(self.inner.keys.session_data(id))
            .arg(to_millis(last_seen_at))
            .arg(to_millis(expires))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        durability.wait(&mut conn, &key).await?;
        Ok(touched == 1)
    }

    async fn rotate_inner(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        let mut conn = self.writer();
        let durability = self.durability();
        let keys = &self.inner.keys;
        let old_key = keys.session(old);
        let Some(current) = get_live(&mut conn, &old_key, old, new.last_seen_at).await? else {
            return Ok(false);
        };
        let new_key = keys.session(&new.id);
        let new_data_key = keys.session_data(&new.id);
        if !put_new(&mut conn, &new_key, &new_data_key, new).await? {
            return Err(StoreError::new(StoreErrorKind::Conflict));
        }
        durability.wait(&mut conn, &new_key).await?;
        let same_subject = current.subject == new.subject;
        let (si, se, sg) = keys.session_index(&current.subject);
        let swapped: StoreResult<(i64, Vec<String>)> = INDEX_SWAP
            .key(&si)
            .key(&se)
            .key(&sg)
            .arg(old.handle())
            .arg(if same_subject {
                new.id.handle()
            } else {
                String::new()
            })
            .arg(to_millis(new.created_at))
            .arg(to_millis(new.expires_at))
            .arg(to_millis(new.last_seen_at))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err);
        let (status, pending) = match swapped {
            Ok(v) => v,
            Err(e) => {
                let _: Result<i64, _> = redis::cmd("DEL")
                    .arg(&new_key)
                    .arg(&new_data_key)
                    .query_async(&mut conn)
                    .await;
                return Err(e);
            }
        };
        if status == 0 {
            let _: i64 = redis::cmd("DEL")
                .arg(&new_key)
                .arg(&new_data_key)
                .query_async(&mut conn)
                .await
                .map_err(store_err)?;
            self.finish_removal(sg, pending).await?;
            return Ok(false);
        }
        durability.wait(&mut conn, &si).await?;
        if !same_subject {
            self.index_moved(&mut conn, new).await?;
        }
        self.finish_removal(sg, pending).await?;
        Ok(true)
    }

    /// Indexes `new` under its own subject after a rotation that moved it from another subject's
    /// index (no session limit applies to a rotation).
    async fn index_moved(&self, conn: &mut Conn, new: &SessionRecord) -> StoreResult<()> {
        let (nsi, nse, nsg) = self.inner.keys.session_index(&new.subject);
        let (_, _, pending): (i64, Vec<String>, Vec<String>) = INDEX_ADD
            .key(&nsi)
            .key(&nse)
            .key(&nsg)
            .arg(new.id.handle())
            .arg(to_millis(new.created_at))
            .arg(to_millis(new.expires_at))
            .arg(0)
            .arg("none")
            .invoke_async(conn)
            .await
            .map_err(store_err)?;
        self.durability().wait(conn, &nsi).await?;
        self.finish_removal(nsg, pending).await?;
        Ok(())
    }

    async fn remove_inner(&self, subject: &str, id: Option<&TokenHash>) -> StoreResult<u64> {
        let mut conn = self.writer();
        let durability = self.durability();
        let (si, se, sg) = self.inner.keys.session_index(subject);
        let target = id.map(TokenHash::handle);
        let (retired, pending): (Vec<String>, Vec<String>) = INDEX_REMOVE
            .key(&si)
            .key(&se)
            .key(&sg)
            .arg(target.as_deref().unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        durability.wait(&mut conn, &sg).await?;
        let deleted = self.finish_removal(sg, pending.clone()).await?;
        // Count what this call took out of the index. Other operations drain pending IDs too, so
        // a key deleted by them is still ours to count. The one exception: the ID this call was
        // asked to delete was already pending (an earlier attempt failed midway); then it counts
        // if this call's deletion removed the key.
        let count = match target {
            None => retired.len(),
            Some(hex) => {
                let finished_here = pending.iter().zip(&deleted).any(|(h, d)| *h == hex && *d);
                usize::from(retired.contains(&hex) || finished_here)
            }
        };
        Ok(count as u64)
    }

    async fn list_inner(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        let mut conn = self.reader();
        let (si, _, _) = self.inner.keys.session_index(subject);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&si)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let keys = &self.inner.keys;
        let records = try_join_all(ids.iter().map(|hex| {
            let mut c = conn.clone();
            let key = keys.session_hex(hex);
            async move {
                let id = parse_id(hex)?;
                let raw: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .map_err(store_err)?;
                raw.map(|raw| decode_session(id, &raw)).transpose()
            }
        }))
        .await?;
        let mut live: Vec<SessionRecord> = records
            .into_iter()
            .flatten()
            .filter(|r| r.expires_at > now && r.subject == subject)
            .collect();
        live.sort_by_key(|r| (r.created_at, *r.id.as_bytes()));
        Ok(live)
    }

    async fn sweep_sessions(&self, now: SystemTime) -> StoreResult<u64> {
        let pattern = format!("{}:{{u:*}}:s[eg]", self.inner.keys.glob_prefix());
        let mut tags: Vec<String> = self
            .reader()
            .scan(&pattern)
            .await?
            .into_iter()
            .filter_map(|k| {
                k.strip_suffix(":se")
                    .or(k.strip_suffix(":sg"))
                    .map(str::to_owned)
            })
            .collect();
        tags.dedup();
        let mut removed = 0u64;
        for tag in tags {
            let mut conn = self.writer();
            let (si, se, sg) = (
                format!("{tag}:si"),
                format!("{tag}:se"),
                format!("{tag}:sg"),
            );
            let (count, pending): (u64, Vec<String>) = INDEX_SWEEP
                .key(&si)
                .key(&se)
                .key(&sg)
                .arg(to_millis(now))
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            self.finish_removal(sg, pending).await?;
            removed += count;
        }
        Ok(removed)
    }
}

/// Writes `record` under `key` unless the key exists (`SET NX PXAT`), and its data (if any) into
/// the hash `data_key` with the same expiry, in one step; returns whether it did.
async fn put_new(
    conn: &mut Conn,
    key: &str,
    data_key: &str,
    record: &SessionRecord,
) -> StoreResult<bool> {
    let value = encode_session(record)?;
    let pairs = record
        .data
        .as_deref()
        .map(object_pairs)
        .transpose()?
        .unwrap_or_default();
    if !pairs.is_empty() {
        let mut invocation = SESSION_PUT_WITH_DATA.key(key);
        invocation
            .key(data_key)
            .arg(value)
            .arg(expire_at(record.expires_at));
        for (field, json) in &pairs {
            invocation.arg(field).arg(json);
        }
        let put: i64 = invocation.invoke_async(conn).await.map_err(store_err)?;
        return Ok(put == 1);
    }
    let set: Value = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("NX")
        .arg("PXAT")
        .arg(expire_at(record.expires_at))
        .query_async(conn)
        .await
        .map_err(store_err)?;
    Ok(set != Value::Nil)
}

/// The session `id` stored under `key`, if it is still live at `at`.
async fn get_live(
    conn: &mut Conn,
    key: &str,
    id: &TokenHash,
    at: SystemTime,
) -> StoreResult<Option<SessionRecord>> {
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(store_err)?;
    let Some(raw) = raw else {
        return Ok(None);
    };
    let current = decode_session(*id, &raw)?;
    Ok((current.expires_at > at).then_some(current))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        self.run(self.create_inner(record, limit)).await
    }

    fn call_timeout(&self) -> Option<Duration> {
        Some(self.inner.options.timeout)
    }

    async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>> {
        self.run(self.load_inner(id, now)).await
    }

    async fn touch(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool> {
        self.run(self.touch_inner(id, last_seen_at, expires_at))
            .await
    }

    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        self.run(self.rotate_inner(old, new)).await
    }

    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
        self.run(self.remove_inner(subject, Some(id)))
            .await
            .map(|n| n > 0)
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        self.run(self.remove_inner(subject, None)).await
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        self.run(self.list_inner(subject, now)).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.sweep_sessions(now)).await
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
