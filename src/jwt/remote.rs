//! Verifier-only mode: keys from a remote JWKS, fetched over HTTP and cached.
//!
//! - The set is fetched at start, then every `refresh_interval` (default 5 min).
//! - A token with an unknown `kid` triggers one refetch, at most once per `refetch_cooldown`
//!   (default 30 s, at least 10 s), so a flood of made-up `kid`s cannot turn into a flood of
//!   requests to the key server. Requests arriving while a fetch is in flight wait for it.
//! - Keys that cannot be used (unknown `kty` or `alg`, symmetric or private keys, RSA outside
//!   2048–4096 bits, malformed members, duplicate `kid`) are skipped and logged; the others are
//!   kept. A response with no usable key, a non-200 status, a body over 256 KiB or a timeout is a
//!   failed fetch and keeps the previous set.
//! - Cached keys are served for up to `max_stale` (default 1 h) after the last successful fetch;
//!   beyond that every verification fails closed with
//!   [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) (503).
//!
//! The `jku`, `x5u`, `jwk` and `x5c` headers of a token are never used to find keys: only this
//! configured URL is.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{
    config::RemoteJwksConfig,
    jws::{KeyQuery, Lookup},
    keys::{JwtKey, KeyRing},
};
use crate::{
    clock::{Clock, to_millis},
    error::{Error, ErrorKind, Result},
};

/// Largest accepted JWKS response body.
const MAX_BODY: usize = 256 * 1024;
/// Most keys read from one JWKS.
const MAX_KEYS: usize = 100;

pub(crate) struct RemoteSettings {
    pub(crate) url: reqwest::Url,
    pub(crate) refresh_interval: Duration,
    pub(crate) refetch_cooldown: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) timeout: Duration,
}

pub(crate) struct RemoteJwks {
    settings: RemoteSettings,
    client: reqwest::Client,
    pub(crate) ring: KeyRing,
    /// Unix ms of the last successful fetch; `i64::MIN` before the first.
    fetched_at: AtomicI64,
    /// Unix ms of the last refetch triggered by an unknown `kid`.
    last_refetch: AtomicI64,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Monotonic time of the last successful fetch, for the refresh schedule.
    last_success: parking_lot::Mutex<Option<tokio::time::Instant>>,
    clock: Arc<dyn Clock>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn unavailable(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::with_message(ErrorKind::StoreUnavailable, message)
}

impl RemoteJwks {
    /// Starts verifier-only mode as `config` asks: the client, and the refresh task on `runtime`,
    /// which ends when `shutdown` fires or is dropped.
    ///
    /// # Errors
    /// A config error naming the offending `jwt.jwks` field.
    pub(crate) fn start(
        config: &RemoteJwksConfig,
        clock: Arc<dyn Clock>,
        runtime: &tokio::runtime::Handle,
        shutdown: oneshot::Receiver<()>,
    ) -> Result<Arc<Self>> {
        let url = config.validate()?;
        let jwks = Arc::new(Self::new(
            RemoteSettings {
                url,
                refresh_interval: config.refresh_interval,
                refetch_cooldown: config.refetch_cooldown,
                max_stale: config.max_stale,
                timeout: config.timeout,
            },
            clock,
        )?);
        runtime.spawn(refresher(Arc::downgrade(&jwks), shutdown));
        Ok(jwks)
    }

    pub(crate) fn new(settings: RemoteSettings, clock: Arc<dyn Clock>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::config("jwt.jwks.url", "cannot build an HTTP client").with_source(e)
            })?;
        Ok(Self {
            settings,
            client,
            ring: KeyRing::new([], None)?,
            fetched_at: AtomicI64::new(i64::MIN),
            last_refetch: AtomicI64::new(i64::MIN),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_success: parking_lot::Mutex::new(None),
            clock,
        })
    }

    /// Finds the key for `kid`, failing closed when the set is older than `max_stale`.
    #[inline]
    pub(crate) fn lookup(&self, query: KeyQuery<'_>, now_ms: i64) -> Lookup {
        let fetched = self.fetched_at.load(Ordering::Acquire);
        if fetched == i64::MIN {
            return Lookup::Unavailable(unavailable("the remote JWKS has not been fetched yet"));
        }
        if now_ms.saturating_sub(fetched) > ms(self.settings.max_stale) {
            return Lookup::Unavailable(unavailable(
                "the remote JWKS is older than its max-stale bound",
            ));
        }
        match query.find(&self.ring.snapshot()) {
            Some(key) => Lookup::Found(key.clone()),
            None => Lookup::Unknown,
        }
    }

    /// After an unknown `kid`: refetches if the cool-down allows (or waits for a fetch already in
    /// flight). Returns whether the set may have changed.
    pub(crate) async fn refetch_for_unknown_kid(&self) -> bool {
        let now = to_millis(self.clock.now());
        let last = self.last_refetch.load(Ordering::Acquire);
        let due =
            last == i64::MIN || now.saturating_sub(last) >= ms(self.settings.refetch_cooldown);
        if due
            && self
                .last_refetch
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = %e, "keycard: JWKS refetch for an unknown kid failed");
            }
            return true;
        }
        // Not our turn: if a fetch is in flight, wait for it and look again.
        if self.fetch_lock.try_lock().is_err() {
            let _done = self.fetch_lock.lock().await;
            return true;
        }
        false
    }

    /// Fetches the set and replaces the keys. Returns how many keys are usable.
    pub(crate) async fn fetch(&self) -> Result<usize> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<usize> {
        let keys = self.download().await?;
        let n = keys.len();
        self.ring.replace(keys)?;
        self.fetched_at
            .store(to_millis(self.clock.now()), Ordering::Release);
        *self.last_success.lock() = Some(tokio::time::Instant::now());
        tracing::debug!(keys = n, "keycard: fetched the remote JWKS");
        Ok(n)
    }

    async fn download(&self) -> Result<Vec<JwtKey>> {
        let url = self.settings.url.clone();
        let failed = |what: &'static str| move |e: reqwest::Error| unavailable(what).with_source(e);
        let mut response = self
            .client
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(failed("cannot fetch the remote JWKS"))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(unavailable(format!(
                "the remote JWKS answered {}",
                response.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(failed("cannot read the remote JWKS"))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(unavailable("the remote JWKS is larger than 256 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let set: Set = serde_json::from_slice(&body)
            .map_err(|e| unavailable("the remote JWKS is not a JWK Set").with_source(e))?;
        let mut keys: Vec<JwtKey> = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate().take(MAX_KEYS) {
            match JwtKey::from_remote_jwk(jwk) {
                Ok(key) if keys.iter().any(|k| k.kid() == key.kid()) => {
                    tracing::warn!(
                        index = i,
                        kid = key.kid(),
                        "keycard: skipping a JWKS key with a duplicate kid"
                    );
                }
                Ok(key) => keys.push(key),
                Err(why) => {
                    let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                    tracing::warn!(index = i, kid, reason = %why, "keycard: skipping an unusable JWKS key");
                }
            }
        }
        if keys.is_empty() {
            return Err(unavailable("the remote JWKS has no usable key"));
        }
        Ok(keys)
    }

    /// Resolves once the set has been fetched (fetching it if need be).
    pub(crate) async fn ready(&self) -> Result<()> {
        if self.fetched_at.load(Ordering::Acquire) == i64::MIN {
            let _guard = self.fetch_lock.lock().await;
            if self.fetched_at.load(Ordering::Acquire) == i64::MIN {
                self.fetch_locked().await?;
            }
        }
        Ok(())
    }
}

/// Refreshes the set every `refresh_interval` until the strategy is dropped; after a failure,
/// retries every `refetch_cooldown`.
pub(crate) async fn refresher(remote: Weak<RemoteJwks>, mut shutdown: oneshot::Receiver<()>) {
    let mut failed = false;
    loop {
        let wait = {
            let Some(r) = remote.upgrade() else { return };
            match *r.last_success.lock() {
                _ if failed => r.settings.refetch_cooldown,
                None => Duration::ZERO,
                Some(at) => r.settings.refresh_interval.saturating_sub(at.elapsed()),
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(r) = remote.upgrade() else { return };
        let due = r
            .last_success
            .lock()
            .is_none_or(|at| failed || at.elapsed() >= r.settings.refresh_interval);
        if !due {
            // Someone else (an unknown-kid refetch) fetched in the meantime.
            continue;
        }
        // The first round shares `ready`'s fetch if one is under way.
        let outcome = if r.last_success.lock().is_none() {
            r.ready().await.map(|()| 0)
        } else {
            r.fetch().await
        };
        failed = match outcome {
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "keycard: refreshing the remote JWKS failed; serving cached keys");
                true
            }
        };
    }
}
