//! `keycard migrate` and `keycard sweep`, and how a store is named in output (passwords masked).

use std::{sync::Arc, time::SystemTime};

use serde::Serialize;
use serde_json::json;

use super::{CliResult, Failure, output::Output};
use crate::{
    KeycardConfig, StrategyKind,
    config::redact_url,
    keycard::from_config::{redis_store, sql_store},
    store::{
        RefreshStore, RevocationStore, SessionStore,
        sql::{SqlOptions, SqlStore},
    },
};

/// The store the strategy uses, passwords masked: what error messages and output name.
pub(crate) fn describe(config: &KeycardConfig) -> String {
    let redis = config.redis.as_ref().map(describe_redis);
    let database = config.database.as_ref().map(|d| redact_url(&d.url));
    match config.strategy {
        StrategyKind::Redis => redis,
        StrategyKind::Database => database,
        _ => redis.or(database),
    }
    .unwrap_or_else(|| "memory".into())
}

fn describe_redis(r: &crate::config::RedisConfig) -> String {
    match (&r.url, r.cluster_urls.as_slice()) {
        (Some(url), _) => redact_url(url),
        (None, nodes) => format!(
            "redis cluster [{}]",
            nodes
                .iter()
                .map(|n| redact_url(n))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(crate) async fn migrate(out: &Output, config: &KeycardConfig) -> CliResult {
    let Some(db) = &config.database else {
        let message = "no SQL database configured: nothing to migrate (Redis needs no migrations)";
        if out.json {
            return out.json(&json!({ "store": describe(config), "migrated": false }));
        }
        return out.print(message);
    };
    let name = redact_url(&db.url);
    let options = SqlOptions {
        max_connections: 1,
        run_migrations: false,
        ..SqlOptions::default()
    };
    let store = SqlStore::connect(&db.url, options)
        .await
        .map_err(|e| Failure::from_error(&format!("cannot connect to {name}"), &e))?;
    store
        .migrate()
        .await
        .map_err(|e| Failure::from_error(&format!("cannot migrate {name}"), &e))?;
    store.close().await;
    if out.json {
        return out.json(&json!({ "store": name, "migrated": true }));
    }
    out.print(&format!("{name}: migrations applied"))
}

/// What one sweep removed from one store.
#[derive(Debug, Serialize)]
struct Swept {
    store: String,
    sessions: u64,
    refresh_tokens: u64,
    revocations: u64,
}

async fn sweep_one<S>(name: String, store: Arc<S>) -> CliResult<Swept>
where
    S: SessionStore + RefreshStore + RevocationStore,
{
    let now = SystemTime::now();
    let failed = |e: crate::store::StoreError| {
        let e = crate::Error::from(e);
        Failure::from_error(&format!("cannot sweep {name}"), &e)
    };
    let sessions = SessionStore::sweep(&*store, now).await.map_err(failed)?;
    let refresh_tokens = RefreshStore::sweep(&*store, now).await.map_err(failed)?;
    let revocations = RevocationStore::sweep(&*store, now).await.map_err(failed)?;
    Ok(Swept {
        store: name,
        sessions,
        refresh_tokens,
        revocations,
    })
}

pub(crate) async fn sweep(out: &Output, config: &KeycardConfig) -> CliResult {
    let mut swept = Vec::new();
    if let Some(db) = &config.database {
        let name = redact_url(&db.url);
        let store = sql_store(config)
            .await
            .map_err(|e| Failure::from_error(&format!("cannot connect to {name}"), &e))?;
        swept.push(sweep_one(name, Arc::new(store)).await?);
    }
    if let Some(redis) = &config.redis {
        let name = describe_redis(redis);
        let store = redis_store(config)
            .await
            .map_err(|e| Failure::from_error(&format!("cannot connect to {name}"), &e))?;
        swept.push(sweep_one(name, Arc::new(store)).await?);
    }
    if out.json {
        return out.json(&swept);
    }
    let rows: Vec<Vec<String>> = swept
        .iter()
        .map(|s| {
            vec![
                s.store.clone(),
                s.sessions.to_string(),
                s.refresh_tokens.to_string(),
                s.revocations.to_string(),
            ]
        })
        .collect();
    out.table(
        &["STORE", "SESSIONS", "REFRESH TOKENS", "REVOCATIONS"],
        &rows,
    )
}
