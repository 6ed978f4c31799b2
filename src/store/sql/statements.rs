//! Every statement the store runs, as SQL text in the connected backend's dialect, and the
//! column lists the rows are read and written in.

use super::dialect::Dialect;

pub(super) const SESSION_COLUMNS: &str = "id, subject, roles, attributes, created_at, \
     last_seen_at, authenticated_at, expires_at, absolute_expires_at, user_agent, ip, data, \
     idle_timeout_ms, persistent";
pub(super) const REFRESH_COLUMNS: &str = "id, family, subject, roles, attributes, issued_at, \
     expires_at, family_created_at, family_expires_at, authenticated_at, used_at, user_agent, ip, \
     idle_timeout_ms, persistent";

/// One `?` placeholder per column of `columns`.
fn marks(columns: &str) -> String {
    vec!["?"; columns.split(',').count()].join(", ")
}

/// Every statement, in the dialect of the connected backend; built once per store.
pub(super) struct Statements {
    pub(super) dialect: Dialect,
    pub(super) session: SessionSql,
    pub(super) refresh: RefreshSql,
    pub(super) revocation: RevocationSql,
    pub(super) throttle: super::throttle::ThrottleSql,
}

impl Statements {
    pub(super) fn new(d: Dialect) -> Self {
        Self {
            dialect: d,
            session: SessionSql::new(d),
            refresh: RefreshSql::new(d),
            revocation: RevocationSql::new(d),
            throttle: super::throttle::ThrottleSql::new(d),
        }
    }
}

/// The statements of the session store (`keycard_sessions`, and the per-subject lock rows of
/// `keycard_subjects`).
pub(super) struct SessionSql {
    pub(super) insert: String,
    pub(super) exists: String,
    pub(super) load: String,
    pub(super) touch: String,
    pub(super) delete_live: String,
    pub(super) delete: String,
    pub(super) delete_all: String,
    pub(super) list: String,
    pub(super) live_ids: String,
    pub(super) delete_id: String,
    pub(super) sweep: String,
    pub(super) subject_upsert: String,
    pub(super) subject_sweep: String,
    pub(super) data: DataSql,
}

impl SessionSql {
    fn new(d: Dialect) -> Self {
        let lock = d.lock();
        let absent = d.if_absent();
        let least = d.least();
        let f = |sql: &str| d.finish(sql);
        Self {
            insert: f(&format!(
                "INSERT INTO keycard_sessions ({SESSION_COLUMNS}) VALUES ({}){absent}",
                marks(SESSION_COLUMNS)
            )),
            exists: f("SELECT COUNT(*) FROM keycard_sessions WHERE id = ?"),
            load: f(&format!(
                "SELECT {SESSION_COLUMNS} FROM keycard_sessions WHERE id = ?"
            )),
            touch: f(&format!(
                "UPDATE keycard_sessions SET last_seen_at = ?, \
                 expires_at = {least}(?, absolute_expires_at) WHERE id = ? AND expires_at > ?"
            )),
            delete_live: f("DELETE FROM keycard_sessions WHERE id = ? AND expires_at > ?"),
            delete: f("DELETE FROM keycard_sessions WHERE id = ? AND subject = ?"),
            delete_all: f("DELETE FROM keycard_sessions WHERE subject = ?"),
            list: f(&format!(
                "SELECT {SESSION_COLUMNS} FROM keycard_sessions \
                 WHERE subject = ? AND expires_at > ? ORDER BY created_at, id"
            )),
            live_ids: f(&format!(
                "SELECT id FROM keycard_sessions WHERE subject = ? AND expires_at > ? \
                 ORDER BY created_at, id{lock}"
            )),
            delete_id: f("DELETE FROM keycard_sessions WHERE id = ?"),
            sweep: f("DELETE FROM keycard_sessions WHERE expires_at <= ?"),
            subject_upsert: f(&d.upsert_max("keycard_subjects", "subject", "expires_at")),
            subject_sweep: f("DELETE FROM keycard_subjects WHERE expires_at <= ?"),
            data: DataSql::new(d, "keycard_sessions", "id", "expires_at"),
        }
    }
}

/// The statements of the refresh-token store (`keycard_refresh_families` and
/// `keycard_refresh_tokens`).
pub(super) struct RefreshSql {
    pub(super) family_insert: String,
    pub(super) token_insert: String,
    pub(super) family_lock_by_token: String,
    pub(super) token_pair: String,
    pub(super) token_spend: String,
    pub(super) token_delete: String,
    pub(super) family_advance: String,
    pub(super) family_delete: String,
    pub(super) family_tokens_delete: String,
    pub(super) family_delete_owned: String,
    pub(super) families_delete_subject: String,
    pub(super) orphans_delete_subject: String,
    pub(super) family_live: String,
    pub(super) heads_list: String,
    pub(super) families_dead: String,
    pub(super) family_data: DataSql,
}

impl RefreshSql {
    fn new(d: Dialect) -> Self {
        let lock = d.lock();
        let absent = d.if_absent();
        let f = |sql: &str| d.finish(sql);
        let head_columns = REFRESH_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            family_insert: f(&format!(
                "INSERT INTO keycard_refresh_families (family, subject, head, prev, head_expires_at) \
                 VALUES (?, ?, ?, NULL, ?){absent}"
            )),
            token_insert: f(&format!(
                "INSERT INTO keycard_refresh_tokens ({REFRESH_COLUMNS}) VALUES ({}){absent}",
                marks(REFRESH_COLUMNS)
            )),
            family_lock_by_token: f(&format!(
                "SELECT family, head, prev FROM keycard_refresh_families WHERE family = \
                 (SELECT family FROM keycard_refresh_tokens WHERE id = ?){lock}"
            )),
            token_pair: f(&format!(
                "SELECT {REFRESH_COLUMNS} FROM keycard_refresh_tokens WHERE id IN (?, ?){lock}"
            )),
            token_spend: f(
                "UPDATE keycard_refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL",
            ),
            token_delete: f("DELETE FROM keycard_refresh_tokens WHERE id = ?"),
            family_advance: f(
                "UPDATE keycard_refresh_families SET head = ?, prev = ?, head_expires_at = ? \
                 WHERE family = ?",
            ),
            family_delete: f("DELETE FROM keycard_refresh_families WHERE family = ?"),
            family_tokens_delete: f("DELETE FROM keycard_refresh_tokens WHERE family = ?"),
            family_delete_owned: f(
                "DELETE FROM keycard_refresh_families WHERE family = ? AND subject = ?",
            ),
            families_delete_subject: f("DELETE FROM keycard_refresh_families WHERE subject = ?"),
            orphans_delete_subject: f(
                "DELETE FROM keycard_refresh_tokens WHERE subject = ? AND NOT EXISTS \
                 (SELECT family FROM keycard_refresh_families f \
                  WHERE f.family = keycard_refresh_tokens.family)",
            ),
            family_live: f("SELECT COUNT(*) FROM keycard_refresh_families \
                 WHERE family = ? AND head_expires_at > ?"),
            heads_list: f(&format!(
                "SELECT {head_columns} FROM keycard_refresh_families f \
                 JOIN keycard_refresh_tokens t ON t.id = f.head \
                 WHERE f.subject = ? AND t.used_at IS NULL AND t.expires_at > ? \
                 ORDER BY t.family_created_at, t.family"
            )),
            family_data: DataSql::new(d, "keycard_refresh_families", "family", "head_expires_at"),
            families_dead: f(&format!(
                "SELECT family FROM keycard_refresh_families WHERE head_expires_at <= ?{lock}"
            )),
        }
    }
}

/// The statements that read and change the data of one row of `table` (see `data.rs`): its key
/// column, and the expiry column that says whether the row is live.
pub(super) struct DataSql {
    /// `key, now` → the live row's data.
    pub(super) read: String,
    /// The same under the row's lock.
    pub(super) lock: String,
    /// `data, key, now, expected` → changes the live row whose data is still `expected` (a
    /// compare-and-set; `NULL` equals `NULL`).
    pub(super) swap: String,
    /// `data, key`.
    pub(super) update: String,
}

impl DataSql {
    fn new(d: Dialect, table: &str, key: &str, live: &str) -> Self {
        let read = format!("SELECT data FROM {table} WHERE {key} = ? AND {live} > ?");
        Self {
            lock: d.finish(&format!("{read}{}", d.lock())),
            read: d.finish(&read),
            swap: d.finish(&format!(
                "UPDATE {table} SET data = ? WHERE {key} = ? AND {live} > ? AND data {} ?",
                d.null_safe_eq()
            )),
            update: d.finish(&format!("UPDATE {table} SET data = ? WHERE {key} = ?")),
        }
    }
}

/// The statements of the revocation store (`keycard_denylist` and `keycard_epochs`, and
/// PostgreSQL's `NOTIFY`).
pub(super) struct RevocationSql {
    pub(super) deny_upsert: String,
    pub(super) epoch_upsert: String,
    /// `Some` on PostgreSQL only: the `NOTIFY` sent with each revocation.
    pub(super) notify: Option<String>,
    pub(super) deny_live: String,
    pub(super) epochs_all: String,
    pub(super) is_revoked: String,
    pub(super) deny_sweep: String,
}

impl RevocationSql {
    fn new(d: Dialect) -> Self {
        let f = |sql: &str| d.finish(sql);
        Self {
            deny_upsert: f(&d.upsert_max("keycard_denylist", "jti", "expires_at")),
            epoch_upsert: f(&d.upsert_max("keycard_epochs", "subject", "epoch")),
            notify: (d == Dialect::Postgres)
                .then(|| f("SELECT pg_notify('keycard_revocations', ?)")),
            deny_live: f("SELECT jti, expires_at FROM keycard_denylist WHERE expires_at > ?"),
            epochs_all: f("SELECT subject, epoch FROM keycard_epochs"),
            is_revoked: f(
                "SELECT (SELECT COUNT(*) FROM keycard_denylist WHERE jti = ?) + \
                 (SELECT COUNT(*) FROM keycard_epochs WHERE subject = ? AND epoch > ?)",
            ),
            deny_sweep: f("DELETE FROM keycard_denylist WHERE expires_at <= ?"),
        }
    }
}
