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
//! | `KEYCARD_TRANSPORT` | `database`/`redis`: `cookie`, `bearer` (the login JSON carries `session_token`, no cookie) or `both` | `cookie` |
//! | `KEYCARD_SESSION_CACHE` | `on`: the server-session read cache | off |
//!
//! The file and the variables are read by [`KeycardConfig::from_env`], as the `keycard` operator
//! CLI reads them.
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

use keycard::{Keycard, KeycardConfig, StrategyKind};
use tracing_subscriber::EnvFilter;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";

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
    app::prometheus(); // before keycard records anything
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

/// The config file (if any) with the environment applied on top (shared with the `keycard`
/// CLI: [`KeycardConfig::from_env`]), and remarks for the start-up line (such as an ephemeral
/// signing key).
fn load_config() -> Result<(KeycardConfig, String), String> {
    let mut config = KeycardConfig::from_env().map_err(|e| e.message().to_owned())?;
    // DEMO.md: anonymous callers of database/redis keep preferences in an anonymous session.
    if !config.strategy.uses_tokens() && config.session.anonymous.is_none() {
        config.session.anonymous = Some(keycard::strategy::AnonymousSettings::default());
    }
    let notes = signing_key_notes(&config);
    Ok((config, notes))
}

/// `jwt`/`hybrid` without configured keys: an ephemeral Ed25519 key, said so on the start line.
#[cfg(feature = "jwt")]
fn signing_key_notes(config: &KeycardConfig) -> String {
    match &config.jwt {
        Some(jwt) if config.strategy.uses_tokens() && jwt.ephemeral_key && jwt.keys.is_empty() => {
            ", signing key: ephemeral Ed25519 generated at start, tokens end with the process"
                .into()
        }
        _ => String::new(),
    }
}

#[cfg(not(feature = "jwt"))]
fn signing_key_notes(_config: &KeycardConfig) -> String {
    String::new()
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
