//! `keycard sessions list|revoke|revoke-all`: through the configured strategy, so that every
//! revocation is published on the store's revocation feed.

use serde_json::json;

use super::{CliResult, Failure, output::Output, stores};
use crate::{Keycard, KeycardConfig, clock::rfc3339, config::SessionCacheConfig};

/// The configured keycard, with the server-session read cache on: its revocations are published
/// to running instances (the cache itself is never consulted by these commands).
async fn open(config: &KeycardConfig) -> CliResult<Keycard> {
    let mut config = config.clone();
    if !config.strategy.uses_tokens() {
        config
            .session
            .cache
            .get_or_insert_with(SessionCacheConfig::default);
    }
    Keycard::from_config(&config).await.map_err(|e| {
        Failure::from_error(
            &format!(
                "cannot open the {} strategy (store: {})",
                config.strategy.as_str(),
                stores::describe(&config)
            ),
            &e,
        )
    })
}

fn failed(what: &str) -> impl Fn(crate::Error) -> Failure + '_ {
    move |e| Failure::from_error(what, &e)
}

pub(crate) async fn list(out: &Output, config: &KeycardConfig, subject: &str) -> CliResult {
    let keycard = open(config).await?;
    let sessions = keycard
        .strategy()
        .list(subject)
        .await
        .map_err(failed("cannot list the sessions"))?;
    if out.json {
        return out.json(&sessions);
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                rfc3339(s.created_at),
                rfc3339(s.last_seen_at),
                s.ip.clone().unwrap_or_else(|| "-".into()),
                s.user_agent.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.table(&["ID", "CREATED", "LAST SEEN", "IP", "USER AGENT"], &rows)
}

pub(crate) async fn revoke(
    out: &Output,
    config: &KeycardConfig,
    subject: &str,
    id: &str,
) -> CliResult {
    let keycard = open(config).await?;
    let revoked = keycard
        .strategy()
        .revoke(subject, id)
        .await
        .map_err(failed("cannot revoke the session"))?;
    if !revoked {
        return Err(Failure::not_found(format!(
            "no session `{id}` of subject `{subject}`"
        )));
    }
    if out.json {
        return out.json(&json!({ "subject": subject, "id": id, "revoked": true }));
    }
    out.print(&format!("revoked session {id} of {subject}"))
}

pub(crate) async fn revoke_all(out: &Output, config: &KeycardConfig, subject: &str) -> CliResult {
    let keycard = open(config).await?;
    let count = keycard
        .strategy()
        .logout_all(subject)
        .await
        .map_err(failed("cannot revoke the sessions"))?;
    if out.json {
        return out.json(&json!({ "subject": subject, "revoked": count }));
    }
    out.print(&format!("revoked {count} session(s) of {subject}"))
}
