//! [`RevocationStore`] on Redis: the denylist and the epochs in the `{rv}` slot, and the pub/sub
//! feed of [`RevocationMessage`]s.

use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::Value;

use super::{
    RedisStore,
    connection::store_err,
    scripts::{IS_REVOKED, LOAD_REVOCATIONS, REVOKE_EPOCH, REVOKE_JTI},
};
use crate::{
    clock::{from_millis, to_millis},
    store::{
        Revocation, RevocationFeed, RevocationStore, StoreError, StoreErrorKind, StoreResult,
        wire::RevocationMessage,
    },
};

/// `(denylist with scores, epochs)` as [`LOAD_REVOCATIONS`] returns them.
type RevocationSnapshot = (Vec<(String, f64)>, Vec<(String, i64)>);

impl RedisStore {
    async fn revoke_inner(&self, revocation: &Revocation) -> StoreResult<()> {
        let mut conn = self.writer();
        let keys = &self.inner.keys;
        let message = RevocationMessage::of(revocation).to_json();
        let (script, key, member, at) = match revocation {
            Revocation::Jti { jti, until } => (&REVOKE_JTI, keys.denylist(), jti, until),
            Revocation::Epoch { subject, epoch } => (&REVOKE_EPOCH, keys.epochs(), subject, epoch),
        };
        let _: i64 = script
            .key(&key)
            .arg(member)
            .arg(to_millis(*at))
            .arg(keys.channel())
            .arg(message)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        self.durability().wait(&mut conn, &key).await
    }

    async fn load_revocations(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        let mut conn = self.reader();
        let (denied, epochs): RevocationSnapshot = LOAD_REVOCATIONS
            .key(self.inner.keys.denylist())
            .key(self.inner.keys.epochs())
            .arg(to_millis(now))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        let mut out: Vec<Revocation> = denied
            .into_iter()
            .map(|(jti, until)| Revocation::Jti {
                jti,
                // Scores are whole milliseconds, well inside f64's exact range.
                until: from_millis(until.round() as i64),
            })
            .collect();
        out.extend(epochs.into_iter().map(|(subject, e)| Revocation::Epoch {
            subject,
            epoch: from_millis(e),
        }));
        Ok(out)
    }

    async fn is_revoked_inner(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        let mut conn = self.reader();
        let revoked: i64 = IS_REVOKED
            .key(self.inner.keys.denylist())
            .key(self.inner.keys.epochs())
            .arg(jti)
            .arg(subject)
            .arg(to_millis(issued_at))
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        Ok(revoked == 1)
    }

    async fn subscribe_inner(&self) -> StoreResult<Option<RevocationFeed>> {
        let channel = self.inner.keys.channel();
        let mut last_error = None;
        for client in &self.inner.pubsub {
            let attempt = async {
                let mut pubsub = client.get_async_pubsub().await.map_err(store_err)?;
                pubsub.subscribe(&channel).await.map_err(store_err)?;
                Ok::<_, StoreError>(pubsub)
            };
            match tokio::time::timeout(self.inner.options.connection_timeout, attempt).await {
                Ok(Ok(pubsub)) => return Ok(Some(self.feed(pubsub))),
                Ok(Err(e)) => last_error = Some(e),
                Err(_) => last_error = Some(StoreError::new(StoreErrorKind::Timeout)),
            }
        }
        Err(last_error.unwrap_or_else(|| StoreError::new(StoreErrorKind::Unavailable)))
    }

    /// Turns a subscribed connection into a feed that ends with an error when the connection
    /// closes, stops answering its heartbeat `PING`, or delivers an undecodable message (which may
    /// be a missed revocation): the consumer then reloads and re-subscribes.
    fn feed(&self, pubsub: redis::aio::PubSub) -> RevocationFeed {
        let (mut sink, messages) = pubsub.split();
        let (mut lost_tx, lost_rx) = tokio::sync::oneshot::channel::<StoreError>();
        let interval = self.inner.options.feed_heartbeat;
        let limit = self.inner.options.timeout;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // The consumer dropped the feed.
                    () = lost_tx.closed() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                let error = match tokio::time::timeout(limit, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => store_err(e),
                    Err(_) => StoreError::new(StoreErrorKind::Timeout),
                };
                let _ = lost_tx.send(error);
                return;
            }
        });
        futures_util::stream::unfold(Some((messages, lost_rx)), |state| async move {
            let (mut messages, mut lost) = state?;
            tokio::select! {
                biased;
                msg = messages.next() => match msg {
                    Some(msg) => match serde_json::from_slice::<RevocationMessage>(msg.get_payload_bytes()) {
                        Ok(p) => Some((Ok(p.into_revocation()), Some((messages, lost)))),
                        Err(e) => Some((Err(StoreError::corrupt(e)), None)),
                    },
                    None => Some((
                        Err(StoreError::unavailable("the revocation feed's connection closed")),
                        None,
                    )),
                },
                error = &mut lost => error.ok().map(|e| (Err(e), None)),
            }
        })
        .boxed()
    }

    async fn sweep_revocations(&self, now: SystemTime) -> StoreResult<u64> {
        let mut conn = self.writer();
        let removed: u64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(self.inner.keys.denylist())
            .arg("-inf")
            .arg(to_millis(now))
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        Ok(removed)
    }
}

#[async_trait]
impl RevocationStore for RedisStore {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        self.run(self.revoke_inner(revocation)).await
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        self.run(self.load_revocations(now)).await
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        self.run(self.is_revoked_inner(jti, subject, issued_at))
            .await
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        self.run(self.subscribe_inner()).await
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.run(self.sweep_revocations(now)).await
    }
}
