//! `keycard check-config`: validates the effective configuration without serving anything, and
//! prints it with every secret redacted.

use std::sync::Arc;

use serde_json::json;

use super::{CliResult, Failure, output::Output, stores};
use crate::{
    Keycard, KeycardConfig, StrategyKind,
    config::redact_url,
    error::{Error, Result},
    keycard::from_config::transport_settings,
    store::MemoryStore,
    strategy::ServerSessions,
};

const REDACTED: &str = "[redacted]";

/// Every check `Keycard::from_config` makes before it connects to a store.
async fn validate(config: &KeycardConfig) -> Result<()> {
    let session = config.session.settings()?;
    if config
        .session
        .cache
        .as_ref()
        .is_some_and(|c| c.poll_interval.is_zero())
    {
        return Err(Error::config(
            "session.cache.poll_interval",
            "must be positive",
        ));
    }
    // Transport and CSRF settings, checked by the builder around a placeholder strategy.
    Keycard::builder()
        .strategy(ServerSessions::new(Arc::new(MemoryStore::new()), session))
        .transport(transport_settings(config)?)
        .csrf(config.csrf.clone())
        .build()?;
    match config.strategy {
        StrategyKind::Database if config.database.is_none() => {
            return Err(Error::config("database.url", "required for this strategy"));
        }
        StrategyKind::Redis => match config.redis.as_ref().map(|r| (&r.url, &r.cluster_urls)) {
            Some((Some(_), nodes)) if !nodes.is_empty() => {
                return Err(Error::config(
                    "redis.cluster_urls",
                    "set either redis.url or redis.cluster_urls, not both",
                ));
            }
            Some((None, nodes)) if nodes.is_empty() => {
                return Err(Error::config("redis.url", "required for this strategy"));
            }
            None => return Err(Error::config("redis.url", "required for this strategy")),
            _ => {}
        },
        StrategyKind::Jwt | StrategyKind::Hybrid => validate_tokens(config).await?,
        _ => {}
    }
    Ok(())
}

/// The JWT settings and keys, loaded into a strategy over an in-memory store.
async fn validate_tokens(config: &KeycardConfig) -> Result<()> {
    let jwt = config
        .jwt
        .as_ref()
        .ok_or_else(|| Error::config("jwt", "the jwt section is required for this strategy"))?;
    if config.session.max_sessions.is_some() {
        return Err(Error::config(
            "session.max_sessions",
            "applies to the database and redis strategies only",
        ));
    }
    let store = Arc::new(MemoryStore::new());
    crate::jwt::JwtStrategy::builder(jwt.clone())
        .refresh_store(store.clone())
        .revocation_store(store)
        .build()
        .map(drop)
}

/// `config` with every password and key replaced by `[redacted]`.
fn redacted(config: &KeycardConfig) -> KeycardConfig {
    let mut c = config.clone();
    if let Some(db) = &mut c.database {
        db.url = redact_url(&db.url);
    }
    if let Some(redis) = &mut c.redis {
        redis.url = redis.url.as_deref().map(redact_url);
        for url in &mut redis.cluster_urls {
            *url = redact_url(url);
        }
    }
    if let Some(keys) = &mut c.csrf.double_submit_secret {
        *keys =
            crate::csrf::SecretKeys::new(keys.iter().map(|_| crate::csrf::Secret(REDACTED.into())));
    }
    if let Some(jwt) = &mut c.jwt {
        for key in &mut jwt.keys {
            if key.pem.is_some() {
                key.pem = Some(REDACTED.into());
            }
            if key.secret.is_some() {
                key.secret = Some(REDACTED.into());
            }
            if key.jwk.is_some() {
                key.jwk = Some(REDACTED.into());
            }
        }
        if let Some(remote) = &mut jwt.jwks {
            remote.url = redact_url(&remote.url);
        }
    }
    c
}

pub(crate) async fn check(out: &Output, config: &KeycardConfig, connect: bool) -> CliResult {
    validate(config)
        .await
        .map_err(|e| Failure::from_error("invalid configuration", &e))?;
    let store = stores::describe(config);
    if connect {
        Keycard::from_config(config)
            .await
            .map_err(|e| Failure::from_error(&format!("cannot connect to {store}"), &e))?;
    }
    let shown = redacted(config);
    if out.json {
        return out.json(&json!({
            "valid": true,
            "strategy": config.strategy.as_str(),
            "store": store,
            "connected": connect,
            "config": shown,
        }));
    }
    let text = toml::to_string(&shown)
        .map_err(|e| Failure::other(format!("cannot print the configuration: {e}")))?;
    out.print(&format!(
        "# valid configuration (strategy: {}, store: {store}{}); secrets redacted\n{}",
        config.strategy.as_str(),
        if connect { ", reachable" } else { "" },
        text.trim_end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let config = KeycardConfig::from_toml(
            r#"
            strategy = "jwt"
            [database]
            url = "postgres://kc:hunter2@db/kc"
            [redis]
            cluster_urls = ["redis://:pw1@a:1"]
            [csrf]
            double_submit_secret = "0123456789abcdef0123456789abcdef-s3cret"
            [jwt]
            issuer = "i"
            audience = "a"
            [[jwt.keys]]
            kid = "h"
            alg = "HS256"
            secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0="
            signing = true
            "#,
        )
        .unwrap();
        let shown = redacted(&config);
        let text = format!(
            "{}{}",
            toml::to_string(&shown).unwrap(),
            serde_json::to_string(&shown).unwrap()
        );
        for secret in ["hunter2", "pw1", "s3cret", "c2VjcmV0"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("postgres://kc:[redacted]@db/kc"), "{text}");
    }
}
