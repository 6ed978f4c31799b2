//! The SQL dialects: the SQL text is the only thing that differs between backends.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Only the compiled-in backends are constructed.
pub(super) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    /// Rewrites the `?` placeholders of `sql` into this dialect's form (`$1`, `$2`… on
    /// PostgreSQL).
    pub(super) fn finish(self, sql: &str) -> String {
        if self != Self::Postgres {
            return sql.to_owned();
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Suffix making an `INSERT` insert-if-absent. MySQL has no such clause short of `INSERT
    /// IGNORE` (which also hides unrelated errors): its duplicate-key error is caught instead.
    pub(super) fn if_absent(self) -> &'static str {
        match self {
            Self::Sqlite | Self::Postgres => " ON CONFLICT DO NOTHING",
            Self::MySql => "",
        }
    }

    /// Suffix of a locking read. SQLite needs none: its writing transactions are exclusive.
    pub(super) fn lock(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres | Self::MySql => " FOR UPDATE",
        }
    }

    /// Equality under which `NULL` equals `NULL`.
    pub(super) fn null_safe_eq(self) -> &'static str {
        match self {
            Self::Sqlite => "IS",
            Self::Postgres => "IS NOT DISTINCT FROM",
            Self::MySql => "<=>",
        }
    }

    /// Two-argument minimum.
    pub(super) fn least(self) -> &'static str {
        match self {
            Self::Sqlite => "MIN",
            Self::Postgres | Self::MySql => "LEAST",
        }
    }

    /// `INSERT` of `(key, col)` that, on an existing key, keeps the larger `col`.
    pub(super) fn upsert_max(self, table: &str, key: &str, col: &str) -> String {
        let insert = format!("INSERT INTO {table} ({key}, {col}) VALUES (?, ?)");
        match self {
            Self::Sqlite => format!(
                "{insert} ON CONFLICT ({key}) DO UPDATE SET {col} = MAX({table}.{col}, excluded.{col})"
            ),
            Self::Postgres => format!(
                "{insert} ON CONFLICT ({key}) DO UPDATE SET {col} = GREATEST({table}.{col}, excluded.{col})"
            ),
            Self::MySql => {
                format!("{insert} ON DUPLICATE KEY UPDATE {col} = GREATEST({col}, VALUES({col}))")
            }
        }
    }

    /// `prefix (?, ?, …)` with `n` placeholders.
    pub(super) fn in_list(self, prefix: &str, n: usize) -> String {
        let marks = vec!["?"; n].join(", ");
        self.finish(&format!("{prefix} ({marks})"))
    }
}
