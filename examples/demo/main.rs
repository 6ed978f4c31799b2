//! keycard's demo server: `cargo run --example demo`.
//!
//! The HTTP contract is `DEMO.md`. Configuration: a TOML file named by `KEYCARD_CONFIG`, then
//! the environment on top of it:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `KEYCARD_DEMO_ADDR` | listen address | `127.0.0.1:3000` |
//! | `KEYCARD_STRATEGY` | `database`, `redis`, `jwt` or `hybrid` | `database` |
//! | `DATABASE_URL` | `sqlite:`, `postgres:` or `mysql:` URL | `sqlite://keycard-demo.db` |
//! | `REDIS_URL` | one Redis node | `redis://127.0.0.1:6379` for the `redis` strategy |
//! | `REDIS_CLUSTER_URLS` | comma-separated Redis Cluster seed nodes | — |
//! | `KEYCARD_DEMO_HEADER_TIMEOUT` | time to read a request head, then the connection is closed | `10s` |
//! | `KEYCARD_DEMO_MAX_CONNECTIONS` | open connections at most (the oldest idle one is closed for a newcomer) | 1,024, at most the open-file limit less 128 |
//! | `KEYCARD_DEMO_REQUEST_TIMEOUT` | time to read the body and answer, then 408 | `30s` |
//! | `KEYCARD_DEMO_MAX_BODY` | request body bytes at most, then 413 | `65536` |
//!
//! `jwt` and `hybrid` keep their refresh families in the Redis store when one is named, else in
//! the SQL store (SQLite by default). Without configured keys the JWT strategy signs with an
//! ephemeral Ed25519 key generated at start: tokens do not survive a restart.
//!
//! It prints one line saying where it listens and with which strategy and store, then serves
//! until Ctrl-C (or SIGTERM). Bad configuration exits non-zero with one line naming the problem.

mod app;
mod serve;

use std::{error::Error as StdError, net::SocketAddr, process::ExitCode};

use keycard::{
    Keycard, KeycardConfig, StrategyKind,
    config::{DatabaseConfig, RedisConfig},
};
use tracing_subscriber::EnvFilter;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const DEFAULT_DATABASE_URL: &str = "sqlite://keycard-demo.db";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keycard demo: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let addr = std::env::var("KEYCARD_DEMO_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.into());
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("invalid KEYCARD_DEMO_ADDR `{addr}`: {e}"))?;
    let limits = serve::Limits::from_env()?;
    let (config, notes) = load_config()?;
    let keycard = Keycard::from_config(&config).await.map_err(|e| {
        format!(
            "cannot start the {} strategy (store: {}): {}",
            config.strategy.as_str(),
            describe_store(&config),
            one_line(&e)
        )
    })?;
    let users = app::Users::seeded().map_err(|e| format!("cannot hash the demo passwords: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| one_line(&e))?;
    println!(
        "keycard demo listening on http://{local} (strategy: {}, store: {}{})",
        config.strategy.as_str(),
        describe_store(&config),
        notes,
    );
    let router = app::app(keycard, users);
    serve::serve(listener, router, limits, shutdown()).await;
    Ok(())
}

/// The config file (if any) with the environment applied on top, and remarks for the start-up
/// line (such as an ephemeral signing key).
fn load_config() -> Result<(KeycardConfig, String), String> {
    let mut config = match std::env::var_os("KEYCARD_CONFIG") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read KEYCARD_CONFIG `{}`: {e}",
                    path.to_string_lossy()
                )
            })?;
            KeycardConfig::from_toml(&text).map_err(|e| {
                format!(
                    "KEYCARD_CONFIG `{}`: {}",
                    path.to_string_lossy(),
                    one_line(&e)
                )
            })?
        }
        None => KeycardConfig::new(StrategyKind::Database),
    };
    if let Some(name) = env("KEYCARD_STRATEGY") {
        config.strategy = serde_json::from_value(serde_json::Value::String(name.clone()))
            .map_err(|e| format!("invalid KEYCARD_STRATEGY `{name}`: {e}"))?;
    }
    if let Some(url) = env("DATABASE_URL") {
        match &mut config.database {
            Some(db) => db.url = url,
            None => config.database = Some(database(url)),
        }
    }
    if let Some(url) = env("REDIS_URL") {
        let redis = config.redis.get_or_insert_with(RedisConfig::default);
        redis.url = Some(url);
        redis.cluster_urls.clear();
    }
    if let Some(urls) = env("REDIS_CLUSTER_URLS") {
        let redis = config.redis.get_or_insert_with(RedisConfig::default);
        redis.cluster_urls = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if env("REDIS_URL").is_none() {
            redis.url = None;
        }
    }
    match config.strategy {
        StrategyKind::Redis => {
            if config.redis.is_none() {
                config.redis = Some(RedisConfig {
                    url: Some(DEFAULT_REDIS_URL.into()),
                    ..RedisConfig::default()
                });
            }
        }
        // `database`, and the refresh-family store of `jwt`/`hybrid` when no Redis is named.
        _ => {
            let tokens_in_redis = config.strategy.uses_tokens() && config.redis.is_some();
            if config.database.is_none() && !tokens_in_redis {
                config.database = Some(database(DEFAULT_DATABASE_URL.into()));
            }
        }
    }
    let notes = signing_key_notes(&mut config)?;
    Ok((config, notes))
}

/// `jwt`/`hybrid` without configured keys: an ephemeral Ed25519 key, said so on the start line.
#[cfg(feature = "jwt")]
fn signing_key_notes(config: &mut KeycardConfig) -> Result<String, String> {
    if !config.strategy.uses_tokens() {
        return Ok(String::new());
    }
    let jwt = config
        .jwt
        .get_or_insert_with(|| keycard::jwt::JwtConfig::new(DEMO_ISSUER, DEMO_AUDIENCE));
    if jwt.keys.is_empty() && jwt.jwks.is_none() {
        jwt.ephemeral_key = true;
    }
    Ok(if jwt.ephemeral_key && jwt.keys.is_empty() {
        ", signing key: ephemeral Ed25519 generated at start, tokens end with the process".into()
    } else {
        String::new()
    })
}

/// `iss` and `aud` of the demo's tokens when the config file sets no `[jwt]` section.
#[cfg(feature = "jwt")]
const DEMO_ISSUER: &str = "keycard-demo";
#[cfg(feature = "jwt")]
const DEMO_AUDIENCE: &str = "keycard-demo";

#[cfg(not(feature = "jwt"))]
fn signing_key_notes(_config: &mut KeycardConfig) -> Result<String, String> {
    Ok(String::new())
}

fn database(url: String) -> DatabaseConfig {
    // Round-trip through serde so the file format's defaults (pool size, migrations) apply.
    toml::from_str::<DatabaseConfig>(&format!("url = {}", toml_string(&url))).unwrap_or(
        DatabaseConfig {
            url,
            max_connections: 10,
            migrate: true,
        },
    )
}

fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Which store the strategy uses, with any password in a URL masked.
fn describe_store(config: &KeycardConfig) -> String {
    let redis = config
        .redis
        .as_ref()
        .map(|r| match (&r.url, r.cluster_urls.as_slice()) {
            (Some(url), _) => redact(url),
            (None, nodes) => format!(
                "redis cluster [{}]",
                nodes
                    .iter()
                    .map(|n| redact(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    let database = config.database.as_ref().map(|d| redact(&d.url));
    match config.strategy {
        StrategyKind::Redis => redis,
        StrategyKind::Database => database,
        _ => redis
            .or(database)
            .map(|s| format!("{s} (refresh families)")),
    }
    .unwrap_or_else(|| "memory".into())
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// An error and its sources on one line (the first line of each, skipping repeats).
fn one_line(error: &(dyn StdError + 'static)) -> String {
    let mut line = first_line(&error.to_string());
    let mut source = error.source();
    while let Some(e) = source {
        let text = first_line(&e.to_string());
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = e.source();
    }
    line
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

async fn shutdown() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    eprintln!("keycard demo: shutting down");
}
