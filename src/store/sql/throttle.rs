//! [`ThrottleStore`] over SQL: each attempt is one upsert of the counter's row
//! (`keycard_throttle`) that computes the state machine of [`crate::store::ThrottleStore`] in
//! SQL, so concurrent attempts are serialized by the row lock and none is lost.
//!
//! PostgreSQL and SQLite read the new row back with `RETURNING`. MySQL has no `RETURNING`, so
//! its upsert and the read-back share a transaction (the upsert's row lock is held until the
//! read); and since MySQL evaluates `ON DUPLICATE KEY UPDATE` assignments left to right, its
//! upsert computes the transition once into the `step` column, which the later assignments read.

use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    SqlStore,
    dialect::Dialect,
    exec::{Arg, is_serialization_failure},
};
use crate::{
    clock::to_millis,
    store::{Admission, Counter, StoreResult, ThrottleKey, ThrottleRule, ThrottleStore},
};

/// A bind parameter of the attempt upsert, by name (the statement uses some several times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Id,
    Now,
    Max,
    Window,
    Keep,
    Lockout,
    Growth,
    MaxLockout,
}

impl Param {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "now" => Self::Now,
            "max" => Self::Max,
            "window" => Self::Window,
            "keep" => Self::Keep,
            "lockout" => Self::Lockout,
            "growth" => Self::Growth,
            "maxlock" => Self::MaxLockout,
            _ => return None,
        })
    }
}

/// The statements of the throttle store.
pub(super) struct ThrottleSql {
    attempt: String,
    /// The order in which [`ThrottleSql::attempt`] binds its parameters.
    params: Vec<Param>,
    /// MySQL: the read-back after the upsert.
    read: Option<String>,
    refund: String,
    reset: String,
    sweep: String,
}

const T: &str = "keycard_throttle";

impl ThrottleSql {
    pub(super) fn new(d: Dialect) -> Self {
        let (least, div) = match d {
            Dialect::Sqlite => ("MIN", "/"),
            Dialect::Postgres => ("LEAST", "/"),
            Dialect::MySql => ("LEAST", "DIV"),
        };
        // 1: forgotten or new; 4: after the window or lockout; 0: locked; 2: counted; 3: locks.
        let decision = format!(
            "(CASE WHEN {T}.expires_at <= :now THEN 1 WHEN {T}.window_end <= :now THEN 4 \
             WHEN {T}.attempts > :max THEN 0 WHEN {T}.attempts < :max THEN 2 ELSE 3 END)"
        );
        let next = format!(
            "(CASE WHEN {T}.lockout_ms > 0 THEN {least}({T}.lockout_ms * :growth {div} 1000, :maxlock) \
             ELSE :lockout END)"
        );
        let step = if d == Dialect::MySql {
            format!("{T}.step")
        } else {
            decision.clone()
        };
        let columns = format!(
            "attempts = CASE {step} WHEN 0 THEN {T}.attempts WHEN 1 THEN 1 WHEN 4 THEN 1 \
               ELSE {T}.attempts + 1 END, \
             window_end = CASE {step} WHEN 1 THEN :now + :window WHEN 4 THEN :now + :window \
               WHEN 3 THEN :now + {next} ELSE {T}.window_end END, \
             expires_at = CASE {step} WHEN 1 THEN :now + :window + :keep \
               WHEN 4 THEN :now + :window + :keep WHEN 3 THEN :now + {next} + :keep \
               ELSE {T}.expires_at END, \
             lockout_ms = CASE {step} WHEN 1 THEN 0 WHEN 3 THEN {next} ELSE {T}.lockout_ms END"
        );
        let insert = format!(
            "INSERT INTO {T} (id, attempts, window_end, expires_at, lockout_ms) \
             VALUES (:id, 1, :now + :window, :now + :window + :keep, 0)"
        );
        let template = match d {
            Dialect::Sqlite | Dialect::Postgres => format!(
                "{insert} ON CONFLICT (id) DO UPDATE SET {columns} RETURNING attempts, window_end"
            ),
            Dialect::MySql => {
                format!("{insert} ON DUPLICATE KEY UPDATE step = {decision}, {columns}")
            }
        };
        let (sql, params) = bind_names(&template);
        let f = |sql: &str| d.finish(sql);
        Self {
            attempt: f(&sql),
            params,
            read: (d == Dialect::MySql).then(|| {
                f(&format!(
                    "SELECT attempts, window_end FROM {T} WHERE id = ?"
                ))
            }),
            refund: f(&format!(
                "UPDATE {T} SET attempts = attempts - 1 \
                 WHERE id = ? AND window_end = ? AND attempts > 0 AND attempts <= ?"
            )),
            reset: f(&format!("DELETE FROM {T} WHERE id = ?")),
            sweep: f(&format!("DELETE FROM {T} WHERE expires_at <= ?")),
        }
    }
}

/// `template` with each `:name` replaced by `?`, and the names in order.
fn bind_names(template: &str) -> (String, Vec<Param>) {
    let mut sql = String::with_capacity(template.len());
    let mut params = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(':') {
        sql.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let end = tail
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tail.len());
        match Param::named(&tail[..end]) {
            Some(p) => {
                params.push(p);
                sql.push('?');
                rest = &tail[end..];
            }
            None => {
                sql.push(':');
                rest = tail;
            }
        }
    }
    sql.push_str(rest);
    (sql, params)
}

impl SqlStore {
    async fn attempt_once(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        now: i64,
    ) -> StoreResult<(i64, i64)> {
        let sql = &self.sql.throttle;
        let args: Vec<Arg<'_>> = sql
            .params
            .iter()
            .map(|p| match p {
                Param::Id => Arg::Bytes(key.as_bytes()),
                Param::Now => Arg::Int(now),
                Param::Max => Arg::Int(rule.max()),
                Param::Window => Arg::Int(rule.window_ms()),
                Param::Keep => Arg::Int(rule.max_lockout_ms()),
                Param::Lockout => Arg::Int(rule.lockout_ms()),
                Param::Growth => Arg::Int(rule.growth_permille()),
                Param::MaxLockout => Arg::Int(rule.max_lockout_ms()),
            })
            .collect();
        let Some(read) = &sql.read else {
            return self.pool.write_row(&sql.attempt, &args).await;
        };
        let mut tx = self.pool.begin().await?;
        tx.run(&sql.attempt, &args).await?;
        let row: Vec<(i64, i64)> = tx.rows(read, &[Arg::Bytes(key.as_bytes())]).await?;
        tx.commit().await?;
        row.into_iter()
            .next()
            .ok_or_else(|| crate::store::StoreError::corrupt("the throttle row vanished"))
    }
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn attempt(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        now: SystemTime,
    ) -> StoreResult<Admission> {
        let now = to_millis(now);
        let mut tries = 0;
        let (attempts, window_end) = loop {
            match self.attempt_once(key, rule, now).await {
                // MySQL may abort one of two concurrent first inserts of a key as a deadlock;
                // the aborted one changed nothing.
                Err(e) if tries < 5 && is_serialization_failure(&e) => tries += 1,
                other => break other?,
            }
        };
        Ok(Counter::admission(attempts, window_end, rule, now))
    }

    async fn refund(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
    ) -> StoreResult<()> {
        let args = [
            Arg::Bytes(key.as_bytes()),
            Arg::Int(to_millis(window_end)),
            Arg::Int(rule.max()),
        ];
        self.pool
            .run(&self.sql.throttle.refund, &args)
            .await
            .map(drop)
    }

    async fn reset(&self, key: &ThrottleKey) -> StoreResult<()> {
        self.pool
            .run(&self.sql.throttle.reset, &[Arg::Bytes(key.as_bytes())])
            .await
            .map(drop)
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        self.pool
            .run(&self.sql.throttle.sweep, &[Arg::Int(to_millis(now))])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_placeholders_in_order() {
        let (sql, params) = bind_names("SELECT :now + :window, 'a:b', :now");
        assert_eq!(sql, "SELECT ? + ?, 'a:b', ?");
        assert_eq!(params, [Param::Now, Param::Window, Param::Now]);
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let s = ThrottleSql::new(d);
            assert_eq!(
                s.attempt.matches('?').count() + s.attempt.matches('$').count(),
                s.params.len(),
                "{d:?}"
            );
        }
    }
}
