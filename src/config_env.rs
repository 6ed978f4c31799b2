//! [`KeycardConfig::from_env`]: a config file named by `KEYCARD_CONFIG`, with the environment on
//! top, exactly as the demo server and the `keycard` operator CLI read it.

use std::path::Path;

use crate::{
    config::{DatabaseConfig, KeycardConfig, RedisConfig, SessionCacheConfig, StrategyKind},
    error::{Error, ErrorKind, Result},
};

/// The SQL store used when neither the file nor the environment names one.
const DEFAULT_DATABASE_URL: &str = "sqlite://keycard-demo.db";
/// The Redis node of the `redis` strategy when neither the file nor the environment names one.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// `iss` and `aud` of the tokens when the config sets no `[jwt]` section.
#[cfg(feature = "jwt")]
const DEFAULT_ISSUER: &str = "keycard-demo";

impl KeycardConfig {
    /// The config the demo server and the `keycard` CLI run with: the TOML file named by
    /// `KEYCARD_CONFIG` (or the `database` strategy's defaults without one), then these
    /// environment variables on top of it (empty ones count as unset):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `KEYCARD_CONFIG` | path of a TOML config file ([`KeycardConfig::from_toml`]) |
    /// | `KEYCARD_STRATEGY` | `database`, `redis`, `jwt` or `hybrid` |
    /// | `DATABASE_URL` | `sqlite:`, `postgres:` or `mysql:` URL: `database.url` |
    /// | `REDIS_URL` | one Redis node: `redis.url` (clears `redis.cluster_urls`) |
    /// | `REDIS_CLUSTER_URLS` | comma-separated Redis Cluster seed nodes: `redis.cluster_urls` |
    /// | `KEYCARD_TRANSPORT` | `database`/`redis`: `cookie`, `bearer` or `both` (`transport`) |
    /// | `KEYCARD_SESSION_CACHE` | `on` turns on the server-session read cache (`[session.cache]` at its defaults unless the file sets it), `off` turns it off |
    ///
    /// Defaults fill what neither names: the `redis` strategy uses `redis://127.0.0.1:6379`; the
    /// `database` strategy, and `jwt`/`hybrid` without a Redis store, use SQLite at
    /// `sqlite://keycard-demo.db`. `jwt`/`hybrid` without a `[jwt]` section use issuer and
    /// audience `keycard-demo`; without configured keys (or a remote JWKS) they get
    /// [`ephemeral_key`](crate::jwt::JwtConfig::ephemeral_key) set: a key generated at start that
    /// dies with the process.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the file or variable at fault: an
    /// unreadable or invalid file, an unknown strategy, a `KEYCARD_SESSION_CACHE` other than
    /// `on`/`off`.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`KeycardConfig::from_env`] with the variables looked up by `var` instead of in the
    /// process environment.
    ///
    /// ```
    /// use keycard::{KeycardConfig, StrategyKind};
    ///
    /// let config = KeycardConfig::from_vars(|name| match name {
    ///     "KEYCARD_STRATEGY" => Some("redis".into()),
    ///     "KEYCARD_SESSION_CACHE" => Some("on".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.strategy, StrategyKind::Redis);
    /// assert!(config.session.cache.is_some());
    /// # Ok::<(), keycard::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`KeycardConfig::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut config = match var("KEYCARD_CONFIG") {
            Some(path) => from_file(Path::new(&path))?,
            None => KeycardConfig::new(StrategyKind::Database),
        };
        if let Some(name) = var("KEYCARD_STRATEGY") {
            config.strategy = serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|e| env_error(format!("invalid KEYCARD_STRATEGY `{name}`: {e}")))?;
        }
        if let Some(name) = var("KEYCARD_TRANSPORT") {
            config.transport = Some(
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|e| env_error(format!("invalid KEYCARD_TRANSPORT `{name}`: {e}")))?,
            );
        }
        if let Some(url) = var("DATABASE_URL") {
            match &mut config.database {
                Some(db) => db.url = url,
                None => config.database = Some(database(url)),
            }
        }
        if let Some(url) = var("REDIS_URL") {
            let redis = config.redis.get_or_insert_with(RedisConfig::default);
            redis.url = Some(url);
            redis.cluster_urls.clear();
        }
        if let Some(urls) = var("REDIS_CLUSTER_URLS") {
            let redis = config.redis.get_or_insert_with(RedisConfig::default);
            redis.cluster_urls = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if var("REDIS_URL").is_none() {
                redis.url = None;
            }
        }
        if let Some(cache) = var("KEYCARD_SESSION_CACHE") {
            match cache.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => {
                    config
                        .session
                        .cache
                        .get_or_insert_with(SessionCacheConfig::default);
                }
                "off" | "false" | "0" => config.session.cache = None,
                _ => {
                    return Err(env_error(format!(
                        "invalid KEYCARD_SESSION_CACHE `{cache}`: expected `on` or `off`"
                    )));
                }
            }
        }
        apply_defaults(&mut config);
        Ok(config)
    }
}

fn from_file(path: &Path) -> Result<KeycardConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        env_error(format!(
            "cannot read KEYCARD_CONFIG `{}`: {e}",
            path.display()
        ))
        .with_source(e)
    })?;
    KeycardConfig::from_toml(&text).map_err(|e| {
        env_error(format!(
            "KEYCARD_CONFIG `{}`: {}",
            path.display(),
            e.message()
        ))
        .with_source(e)
    })
}

fn env_error(message: String) -> Error {
    Error::with_message(ErrorKind::Config, message)
}

fn apply_defaults(config: &mut KeycardConfig) {
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
    #[cfg(feature = "jwt")]
    if config.strategy.uses_tokens() {
        let jwt = config
            .jwt
            .get_or_insert_with(|| crate::jwt::JwtConfig::new(DEFAULT_ISSUER, DEFAULT_ISSUER));
        if jwt.keys.is_empty() && jwt.jwks.is_none() {
            jwt.ephemeral_key = true;
        }
    }
}

/// A `[database]` section holding only `url`, the file format's defaults for the rest.
fn database(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        max_connections: crate::config::default_max_connections(),
        migrate: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_without_file_or_variables() {
        let c = KeycardConfig::from_vars(|_| None).unwrap();
        assert_eq!(c.strategy, StrategyKind::Database);
        assert_eq!(c.database.unwrap().url, DEFAULT_DATABASE_URL);
        assert!(c.redis.is_none() && c.session.cache.is_none());
        let c = KeycardConfig::from_vars(vars(&[("KEYCARD_STRATEGY", "redis")])).unwrap();
        assert_eq!(c.redis.unwrap().url.as_deref(), Some(DEFAULT_REDIS_URL));
        assert!(c.database.is_none());
    }

    #[test]
    fn environment_overrides_and_names_bad_values() {
        let c = KeycardConfig::from_vars(vars(&[
            ("KEYCARD_STRATEGY", "redis"),
            ("REDIS_CLUSTER_URLS", "redis://a:1, redis://b:2,"),
            ("KEYCARD_SESSION_CACHE", "on"),
            ("DATABASE_URL", " "),
        ]))
        .unwrap();
        let redis = c.redis.unwrap();
        assert_eq!(redis.cluster_urls, ["redis://a:1", "redis://b:2"]);
        assert_eq!(redis.url, None);
        assert_eq!(c.session.cache, Some(SessionCacheConfig::default()));
        assert!(c.database.is_none(), "an empty variable counts as unset");

        let e = KeycardConfig::from_vars(vars(&[("KEYCARD_STRATEGY", "magic")])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("KEYCARD_STRATEGY") && e.message().contains("magic"));
        let e = KeycardConfig::from_vars(vars(&[("KEYCARD_SESSION_CACHE", "maybe")])).unwrap_err();
        assert!(
            e.message().contains("KEYCARD_SESSION_CACHE"),
            "{}",
            e.message()
        );
        let e = KeycardConfig::from_vars(vars(&[("KEYCARD_CONFIG", "/nonexistent/k.toml")]))
            .unwrap_err();
        assert!(e.message().contains("KEYCARD_CONFIG"), "{}", e.message());
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn token_strategies_get_an_ephemeral_key_without_keys() {
        let c = KeycardConfig::from_vars(vars(&[("KEYCARD_STRATEGY", "jwt")])).unwrap();
        let jwt = c.jwt.unwrap();
        assert!(jwt.ephemeral_key);
        assert_eq!(jwt.issuer, "keycard-demo");
        assert_eq!(c.database.unwrap().url, DEFAULT_DATABASE_URL);
    }
}
