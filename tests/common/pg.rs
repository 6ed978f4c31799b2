//! PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`): its address,
//! and databases created for one test and dropped after it.

use std::{net::SocketAddr, time::Duration};

pub fn admin_url() -> String {
    super::pg_url()
}

/// `scheme://user@host:port` and the query string of a URL.
fn split(url: &str) -> (String, String, String) {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (url.to_owned(), String::new()),
    };
    let (head, hostport) = match base.rsplit_once('@') {
        Some((h, rest)) => (
            format!("{h}@"),
            rest.split('/')
                .next()
                .unwrap_or("127.0.0.1:5432")
                .to_owned(),
        ),
        None => {
            let rest = base
                .trim_start_matches("postgres://")
                .trim_start_matches("postgresql://");
            (
                "postgres://".to_owned(),
                rest.split('/')
                    .next()
                    .unwrap_or("127.0.0.1:5432")
                    .to_owned(),
            )
        }
    };
    (head, hostport, query)
}

/// The PostgreSQL server's address.
pub fn upstream() -> SocketAddr {
    super::fault_proxy::upstream_of(&admin_url())
}

/// A database created for one test, dropped (with `psql`) when this is dropped.
pub struct TempPg {
    pub name: String,
}

impl TempPg {
    /// Creates `keycard_<tag>_<random>`.
    pub async fn create(tag: &str) -> Self {
        use sqlx::Connection;
        // One CREATE DATABASE at a time (they copy the same template).
        static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = CREATING.lock().await;
        let name = format!(
            "keycard_{tag}_{}",
            crate::common::random_id()
                .expect("random id")
                .to_ascii_lowercase()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect::<String>()
        );
        let mut conn = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect(&admin_url()),
        )
        .await
        .expect("PostgreSQL connect in time")
        .unwrap_or_else(|e| panic!("PostgreSQL at DATABASE_URL: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        Self { name }
    }

    /// The URL of this database, at `addr` (the server itself, or a proxy in front of it).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let (head, _, query) = split(&admin_url());
        format!("{head}{addr}/{}{query}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via(upstream())
    }
}

impl Drop for TempPg {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(admin_url())
            .args(["-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
