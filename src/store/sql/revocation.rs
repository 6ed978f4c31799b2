//! [`RevocationStore`] over SQL, and PostgreSQL's `LISTEN` feed of revocations.

use std::time::SystemTime;

use async_trait::async_trait;

#[cfg(feature = "postgres")]
use super::exec::{Pool, db_error};
use super::{
    SqlStore,
    codec::{Text, count},
    exec::Arg,
};
#[cfg(feature = "postgres")]
use crate::store::StoreError;
use crate::{
    clock::{from_millis, to_millis},
    store::{Revocation, RevocationFeed, RevocationStore, StoreResult, wire::RevocationMessage},
};

/// The PostgreSQL channel carrying revocations.
#[cfg(feature = "postgres")]
const CHANNEL: &str = "keycard_revocations";

#[async_trait]
impl RevocationStore for SqlStore {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        let (sql, args) = match revocation {
            Revocation::Jti { jti, until } => (
                &self.sql.revocation.deny_upsert,
                [Arg::Text(jti), Arg::Int(to_millis(*until))],
            ),
            Revocation::Epoch { subject, epoch } => (
                &self.sql.revocation.epoch_upsert,
                [Arg::Text(subject), Arg::Int(to_millis(*epoch))],
            ),
        };
        let Some(notify) = &self.sql.revocation.notify else {
            return self.pool.run(sql, &args).await.map(drop);
        };
        let payload = RevocationMessage::of(revocation).to_json();
        let mut tx = self.pool.begin().await?;
        tx.run(sql, &args).await?;
        tx.run(notify, &[Arg::Text(&payload)]).await?;
        tx.commit().await
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        let denied: Vec<(Text, i64)> = self
            .pool
            .rows(&self.sql.revocation.deny_live, &[Arg::Int(to_millis(now))])
            .await?;
        let epochs: Vec<(Text, i64)> = self.pool.rows(&self.sql.revocation.epochs_all, &[]).await?;
        let denied = denied.into_iter().map(|(jti, until)| Revocation::Jti {
            jti: jti.0,
            until: from_millis(until),
        });
        let epochs = epochs
            .into_iter()
            .map(|(subject, epoch)| Revocation::Epoch {
                subject: subject.0,
                epoch: from_millis(epoch),
            });
        Ok(denied.chain(epochs).collect())
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        let args = [
            Arg::Text(jti),
            Arg::Text(subject),
            Arg::Int(to_millis(issued_at)),
        ];
        Ok(count(
            self.pool
                .rows(&self.sql.revocation.is_revoked, &args)
                .await?,
        ) > 0)
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => listen(pool).await.map(Some),
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.pool
            .run(&self.sql.revocation.deny_sweep, &[Arg::Int(to_millis(now))])
            .await
    }
}

/// Listens on [`CHANNEL`]. The feed yields an error and ends when the connection is lost or a
/// payload cannot be decoded; the consumer then reloads and subscribes again.
#[cfg(feature = "postgres")]
async fn listen(pool: &sqlx::PgPool) -> StoreResult<RevocationFeed> {
    use futures_util::StreamExt;

    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .map_err(db_error)?;
    listener.listen(CHANNEL).await.map_err(db_error)?;
    let feed = futures_util::stream::unfold(Some(listener), |listener| async move {
        let mut listener = listener?;
        let item = match listener.try_recv().await {
            Ok(Some(n)) => match serde_json::from_str::<RevocationMessage>(n.payload()) {
                Ok(payload) => return Some((Ok(payload.into_revocation()), Some(listener))),
                Err(e) => StoreError::corrupt(e),
            },
            Ok(None) => StoreError::unavailable("the revocation feed lost its connection"),
            Err(e) => db_error(e),
        };
        Some((Err(item), None))
    });
    Ok(feed.boxed())
}
