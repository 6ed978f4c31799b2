//! [`ThrottleStore`] over SQL: each attempt is one upsert of the counter's row
//! (`keycard_throttle`) that computes the state machine of [`crate::store::ThrottleStore`] in
//! SQL, so concurrent attempts are serialized by the row lock and none is lost; a failure and a
//! refund are one conditional `UPDATE` each.
//!
//! The upsert records what it did in the `step` column. PostgreSQL and SQLite read it back with
//! `RETURNING`. MySQL has no `RETURNING`, so its upsert and the read-back share a transaction
//! (the upsert's row lock is held until the read); and since MySQL evaluates the assignments of
//! `ON DUPLICATE KEY UPDATE` left to right, it assigns `step` first and the others read it,
//! while PostgreSQL and SQLite (which evaluate every assignment on the old row) repeat the
//! step's expression. The failure `UPDATE` orders its assignments so that each reads only
//! columns assigned after it, which both evaluation orders agree on.

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
    WindowEnd,
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
            "wend" => Self::WindowEnd,
            _ => return None,
        })
    }
}

/// A statement with named parameters, in the connected backend's dialect.
struct Named {
    sql: String,
    params: Vec<Param>,
}

impl Named {
    fn new(d: Dialect, template: &str) -> Self {
        let (sql, params) = bind_names(template);
        Self {
            sql: d.finish(&sql),
            params,
        }
    }

    /// The bind parameters, in order.
    fn args<'a>(
        &self,
        key: &'a ThrottleKey,
        rule: &ThrottleRule,
        now: i64,
        wend: i64,
    ) -> Vec<Arg<'a>> {
        self.params
            .iter()
            .map(|p| match p {
                Param::Id => Arg::Bytes(key.as_bytes()),
                Param::Now => Arg::Int(now),
                Param::Max => Arg::Int(rule.max()),
                Param::Window => Arg::Int(rule.window_ms()),
                Param::Keep | Param::MaxLockout => Arg::Int(rule.max_lockout_ms()),
                Param::Lockout => Arg::Int(rule.lockout_ms()),
                Param::Growth => Arg::Int(rule.growth_permille()),
                Param::WindowEnd => Arg::Int(wend),
            })
            .collect()
    }
}

/// The statements of the throttle store.
pub(super) struct ThrottleSql {
    attempt: Named,
    /// MySQL: the read-back after the upsert.
    read: Option<String>,
    failed: Named,
    succeeded: Named,
    refund: String,
    reset: String,
    sweep: String,
}

const T: &str = "keycard_throttle";

impl ThrottleSql {
    pub(super) fn new(d: Dialect) -> Self {
        use crate::store::throttle_step::{COUNTED, FRESH, FULL, LOCKED, RENEWED};
        let (least, greatest, div) = match d {
            Dialect::Sqlite => ("MIN", "MAX", "/"),
            Dialect::Postgres => ("LEAST", "GREATEST", "/"),
            Dialect::MySql => ("LEAST", "GREATEST", "DIV"),
        };
        let decision = format!(
            "(CASE WHEN {T}.expires_at <= :now THEN {FRESH} WHEN {T}.window_end <= :now THEN {RENEWED} \
             WHEN {T}.failures >= :max THEN {LOCKED} WHEN {T}.attempts < :max THEN {COUNTED} \
             ELSE {FULL} END)"
        );
        let step = if d == Dialect::MySql {
            format!("{T}.step")
        } else {
            decision.clone()
        };
        let columns = format!(
            "step = {decision}, \
             attempts = CASE {step} WHEN {FRESH} THEN 1 WHEN {RENEWED} THEN 1 \
               WHEN {COUNTED} THEN {T}.attempts + 1 ELSE {T}.attempts END, \
             failures = CASE {step} WHEN {FRESH} THEN 0 WHEN {RENEWED} THEN 0 ELSE {T}.failures END, \
             window_end = CASE {step} WHEN {FRESH} THEN :now + :window \
               WHEN {RENEWED} THEN :now + :window ELSE {T}.window_end END, \
             expires_at = CASE {step} WHEN {FRESH} THEN :now + :window + :keep \
               WHEN {RENEWED} THEN :now + :window + :keep ELSE {T}.expires_at END, \
             lockout_ms = CASE {step} WHEN {FRESH} THEN 0 ELSE {T}.lockout_ms END"
        );
        let insert = format!(
            "INSERT INTO {T} (id, attempts, failures, window_end, expires_at, lockout_ms, step) \
             VALUES (:id, 1, 0, :now + :window, :now + :window + :keep, 0, {FRESH})"
        );
        let attempt = match d {
            Dialect::Sqlite | Dialect::Postgres => format!(
                "{insert} ON CONFLICT (id) DO UPDATE SET {columns} RETURNING step, window_end"
            ),
            Dialect::MySql => format!("{insert} ON DUPLICATE KEY UPDATE {columns}"),
        };
        let next = format!(
            "(CASE WHEN {T}.lockout_ms > 0 THEN {least}({T}.lockout_ms * :growth {div} 1000, :maxlock) \
             ELSE :lockout END)"
        );
        let locks = format!("{T}.failures + 1 >= :max");
        let failed = format!(
            "UPDATE {T} SET \
             window_end = CASE WHEN {locks} THEN :now + {next} ELSE {T}.window_end END, \
             expires_at = CASE WHEN {locks} THEN :now + {next} + :keep ELSE {T}.expires_at END, \
             lockout_ms = CASE WHEN {locks} THEN {next} ELSE {T}.lockout_ms END, \
             failures = {T}.failures + 1 \
             WHERE {T}.id = :id AND {T}.window_end = :wend AND {T}.failures < :max"
        );
        let succeeded = format!(
            "UPDATE {T} SET \
             attempts = {greatest}({T}.attempts - {T}.failures \
               - CASE WHEN {T}.window_end = :wend THEN 1 ELSE 0 END, 0), \
             window_end = CASE WHEN {T}.failures >= :max THEN :now ELSE {T}.window_end END, \
             failures = 0, lockout_ms = 0 \
             WHERE {T}.id = :id"
        );
        let f = |sql: &str| d.finish(sql);
        Self {
            attempt: Named::new(d, &attempt),
            read: (d == Dialect::MySql)
                .then(|| f(&format!("SELECT step, window_end FROM {T} WHERE id = ?"))),
            failed: Named::new(d, &failed),
            succeeded: Named::new(d, &succeeded),
            refund: f(&format!(
                "UPDATE {T} SET attempts = attempts - 1 \
                 WHERE id = ? AND window_end = ? AND attempts > 0"
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
    /// One attempt: `(step, window_end)` after it.
    async fn attempt_once(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        now: i64,
    ) -> StoreResult<(i64, i64)> {
        let sql = &self.sql.throttle;
        let args = sql.attempt.args(key, rule, now, 0);
        let Some(read) = &sql.read else {
            return self.pool.write_row(&sql.attempt.sql, &args).await;
        };
        let mut tx = self.pool.begin().await?;
        tx.run(&sql.attempt.sql, &args).await?;
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
        let (step, window_end) = loop {
            match self.attempt_once(key, rule, now).await {
                // MySQL may abort one of two concurrent first inserts of a key as a deadlock;
                // the aborted one changed nothing.
                Err(e) if tries < 5 && is_serialization_failure(&e) => tries += 1,
                other => break other?,
            }
        };
        Ok(Counter::admission(step, window_end, now))
    }

    async fn failed(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        let failed = &self.sql.throttle.failed;
        let args = failed.args(key, rule, to_millis(now), to_millis(window_end));
        self.pool.run(&failed.sql, &args).await.map(drop)
    }

    async fn succeeded(
        &self,
        key: &ThrottleKey,
        rule: &ThrottleRule,
        window_end: SystemTime,
        now: SystemTime,
    ) -> StoreResult<()> {
        let succeeded = &self.sql.throttle.succeeded;
        let args = succeeded.args(key, rule, to_millis(now), to_millis(window_end));
        self.pool.run(&succeeded.sql, &args).await.map(drop)
    }

    async fn refund(&self, key: &ThrottleKey, window_end: SystemTime) -> StoreResult<()> {
        let args = [Arg::Bytes(key.as_bytes()), Arg::Int(to_millis(window_end))];
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
            for named in [&s.attempt, &s.failed, &s.succeeded] {
                assert_eq!(
                    named.sql.matches('?').count() + named.sql.matches('$').count(),
                    named.params.len(),
                    "{d:?}"
                );
            }
        }
    }
}
