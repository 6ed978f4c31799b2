//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, and the names of the
//! `tracing` fields keycard records on request spans.
//!
//! keycard records into whatever recorder the application installs (for Prometheus,
//! `metrics-exporter-prometheus`); without one, each recording is a thread-local read and one
//! atomic load of the `metrics` crate's global, nothing else: keys are built at compile time (or
//! once, when the [`Keycard`](crate::Keycard) is built), never per request, and durations are
//! measured only around calls that wait on I/O.
//!
//! # When durations are measured
//! The histograms ([`RESOLUTION_DURATION`], [`STORE_CALL_DURATION`]) read the clock twice per
//! timed call, so keycard first asks whether anything would keep the measurement: it looks at
//! the recorder in scope when the call starts (the thread's local recorder set by
//! `metrics::with_local_recorder` or `metrics::set_default_local_recorder`, else the global one)
//! and times the call only when that recorder is not zero-sized. The `metrics` crate answers
//! every recording with its zero-sized `metrics::NoopRecorder` while no recorder is installed,
//! and has no other way to tell; every exporter holds state and is measured. Without a
//! recorder, a store call or a resolution therefore costs that one check (a thread-local read
//! and one atomic load) and no clock read. Server sessions time their store calls in place
//! (no wrapper, with or without a recorder); other stores are wrapped in a timing decorator. The check is made on every call, so a recorder installed after
//! the [`Keycard`](crate::Keycard) was built gets durations from then on. A zero-sized
//! recorder of your own (one that keeps all its state in statics) gets every counter and gauge
//! but no durations.
//!
//! Names and labels follow Prometheus conventions: `snake_case`, a `keycard_` prefix, `_total`
//! for counters, base units (`_seconds`). Every label has a fixed, small set of values; no label
//! ever carries a subject, session handle, token, IP address or any other per-user value.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | [`AUTHENTICATIONS`] | counter | `strategy`, `outcome` = `ok` `anonymous` `invalid` `expired` `revoked` `store_unavailable` `error` |
//! | [`RESOLUTION_DURATION`] | histogram | `strategy` |
//! | [`LOGINS`] | counter | `outcome` = `ok` `refused` `failed` `throttled` |
//! | [`REFRESHES`] | counter | `outcome` = `ok` `invalid` `store_unavailable` `error` |
//! | [`REFRESH_REUSE_DETECTED`] | counter | — |
//! | [`REVOCATIONS`] | counter | `kind` = `logout` `session` `all_sessions` `rotation` `eviction` `refresh_family` |
//! | [`CSRF_REFUSALS`] | counter | — |
//! | [`STORE_CALL_DURATION`] | histogram | `store` = `session` `refresh` `revocation`; `operation` = the store method (`load`, `create`, ...) |
//! | [`SESSION_CACHE_LOOKUPS`] | counter | `result` = `hit` `miss` |
//! | [`CACHE_ENTRIES`] | gauge | `cache` = `session` `token` |
//! | [`REVOCATION_FEED_CONNECTED`] | gauge | — |
//! | [`REVOCATION_FEED_LAST_EVENT`] | gauge | — |
//! | [`REVOCATION_LAG`] | histogram | — |
//!
//! The `strategy` label is the configured strategy (`database`, `redis`, `jwt`, `hybrid`) for a
//! keycard built by [`Keycard::from_config`](crate::Keycard::from_config), otherwise the
//! strategy's [`name`](crate::SessionStrategy::name) (`server`, `jwt`, or `custom` for a
//! strategy written outside keycard that does not name itself).
//!
//! A few values are derived in the query rather than exported: the cache hit ratio is
//! `rate(keycard_session_cache_lookups_total{result="hit"}[5m]) /
//! rate(keycard_session_cache_lookups_total[5m])`, and the age of the revocation feed's last
//! event is `time() - keycard_revocation_feed_last_event_timestamp_seconds`.
//!
//! # Example: Prometheus
//! Install the recorder before building the [`Keycard`](crate::Keycard), so that what keycard
//! records at start (the revocation feed's state) is kept:
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! keycard::metrics::describe(); // HELP and unit lines
//! // ... build the Keycard; serve `handle.render()` on GET /metrics
//! # Ok(()) }
//! ```
//!
//! # Tracing fields
//! When a request's principal is resolved, keycard records three fields on the current span
//! (the request span of `tower-http`'s `TraceLayer`, or your own):
//!
//! | field | value |
//! |---|---|
//! | [`FIELD_STRATEGY`] (`keycard.strategy`) | the `strategy` label above |
//! | [`FIELD_OUTCOME`] (`keycard.outcome`) | the `outcome` label of [`AUTHENTICATIONS`] |
//! | [`FIELD_SESSION`] (`keycard.session`) | the session's public handle: the `id` that [`Auth::sessions`](crate::Auth::sessions) lists (the hex SHA-256 of a server session's token, or a JWT refresh family's id); never a token. Absent when no session was resolved |
//!
//! `tracing` records only fields a span declared when it was created, so declare them (as
//! `tracing::field::Empty`); `tracing-opentelemetry` then exports them as span attributes:
//! ```
//! use tracing::field::Empty;
//!
//! let span = tracing::info_span!(
//!     "request",
//!     keycard.strategy = Empty,
//!     keycard.outcome = Empty,
//!     keycard.session = Empty,
//! );
//! # let _ = span;
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Key, Label, Metadata, Unit};

use crate::{error::ErrorKind, principal::Principal, strategy::AuthFuture};

/// Counter: principal resolutions, by `strategy` and `outcome`.
pub const AUTHENTICATIONS: &str = "keycard_authentications_total";
/// Histogram (seconds): resolutions that waited on I/O (a store round trip), by `strategy`.
/// Resolutions answered in process (a cache hit, a local token check) are not timed.
pub const RESOLUTION_DURATION: &str = "keycard_resolution_duration_seconds";
/// Counter: logins, by `outcome` (`ok`; `refused` at the session limit; `failed` and `throttled`
/// as reported by login throttling).
pub const LOGINS: &str = "keycard_logins_total";
/// Counter: refresh-token exchanges through [`Auth::refresh`](crate::Auth::refresh), by `outcome`.
pub const REFRESHES: &str = "keycard_refreshes_total";
/// Counter: spent refresh tokens presented again (each revoked its family).
pub const REFRESH_REUSE_DETECTED: &str = "keycard_refresh_reuse_detected_total";
/// Counter: revoking operations, by `kind`.
pub const REVOCATIONS: &str = "keycard_revocations_total";
/// Counter: requests refused by the CSRF check.
pub const CSRF_REFUSALS: &str = "keycard_csrf_refusals_total";
/// Histogram (seconds): store calls, by `store` (the trait) and `operation` (the method).
pub const STORE_CALL_DURATION: &str = "keycard_store_call_duration_seconds";
/// Counter: server-session read cache lookups, by `result` (`hit`, `miss`).
pub const SESSION_CACHE_LOOKUPS: &str = "keycard_session_cache_lookups_total";
/// Gauge: entries in an in-process cache, by `cache` (`session`: the server-session read cache;
/// `token`: the JWT verified-token cache).
pub const CACHE_ENTRIES: &str = "keycard_cache_entries";
/// Gauge: 1 while the revocation mirror is current (its push feed connected, or its last poll
/// succeeded), 0 while it is stale and every request asks the store.
pub const REVOCATION_FEED_CONNECTED: &str = "keycard_revocation_feed_connected";
/// Gauge: Unix time (seconds) of the last revocation the feed delivered.
pub const REVOCATION_FEED_LAST_EVENT: &str = "keycard_revocation_feed_last_event_timestamp_seconds";
/// Histogram (seconds): from a revocation's publication on one instance to its arrival in this
/// instance's mirror (Redis pub/sub, PostgreSQL `NOTIFY`), by the two instances' wall clocks.
pub const REVOCATION_LAG: &str = "keycard_revocation_lag_seconds";

/// Span field: the strategy.
pub const FIELD_STRATEGY: &str = "keycard.strategy";
/// Span field: the authentication outcome.
pub const FIELD_OUTCOME: &str = "keycard.outcome";
/// Span field: the session's public handle.
pub const FIELD_SESSION: &str = "keycard.session";

/// Registers every metric's description and unit with the installed recorder (the `# HELP`
/// lines of Prometheus' text format). Call it after installing the recorder; recording works
/// without it.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        AUTHENTICATIONS,
        "Principal resolutions by strategy and outcome"
    );
    describe_histogram!(
        RESOLUTION_DURATION,
        Unit::Seconds,
        "Resolutions that waited on a store"
    );
    describe_counter!(LOGINS, "Logins by outcome");
    describe_counter!(REFRESHES, "Refresh-token exchanges by outcome");
    describe_counter!(
        REFRESH_REUSE_DETECTED,
        "Spent refresh tokens presented again"
    );
    describe_counter!(REVOCATIONS, "Revoking operations by kind");
    describe_counter!(CSRF_REFUSALS, "Requests refused by the CSRF check");
    describe_histogram!(
        STORE_CALL_DURATION,
        Unit::Seconds,
        "Store calls by store and operation"
    );
    describe_counter!(SESSION_CACHE_LOOKUPS, "Session read cache lookups");
    describe_gauge!(CACHE_ENTRIES, "Entries in an in-process cache");
    describe_gauge!(
        REVOCATION_FEED_CONNECTED,
        "Whether the revocation mirror is current"
    );
    describe_gauge!(
        REVOCATION_FEED_LAST_EVENT,
        Unit::Seconds,
        "Unix time of the last revocation the feed delivered"
    );
    describe_histogram!(
        REVOCATION_LAG,
        Unit::Seconds,
        "Revocation publication to arrival on this instance"
    );
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// A `&'static Key` built at compile time: `key!(NAME, "label" => "value", ...)`.
macro_rules! key {
    ($name:expr $(, $k:literal => $v:expr)* $(,)?) => {{
        static LABELS: &[::metrics::Label] = &[$(::metrics::Label::from_static_parts($k, $v)),*];
        static KEY: ::metrics::Key = ::metrics::Key::from_static_parts($name, LABELS);
        &KEY
    }};
}
pub(crate) use key;

/// Whether a call starting now should be timed: the recorder in scope is not zero-sized (see
/// [When durations are measured](self#when-durations-are-measured)). A thread-local read and
/// one atomic load, like any recording.
#[inline]
pub(crate) fn timing() -> bool {
    metrics::with_recorder(|r| std::mem::size_of_val(r) != 0)
}

#[inline]
pub(crate) fn increment(key: &Key) {
    metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(1));
}

#[inline]
pub(crate) fn observe(key: &Key, value: Duration) {
    metrics::with_recorder(|r| {
        r.register_histogram(key, &METADATA)
            .record(value.as_secs_f64())
    });
}

#[inline]
fn set(key: &Key, value: f64) {
    metrics::with_recorder(|r| r.register_gauge(key, &METADATA).set(value));
}

/// The outcome of a principal resolution, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    Ok,
    Anonymous,
    Invalid,
    Expired,
    Revoked,
    StoreUnavailable,
    Error,
}

impl AuthOutcome {
    const ALL: [Self; 7] = [
        Self::Ok,
        Self::Anonymous,
        Self::Invalid,
        Self::Expired,
        Self::Revoked,
        Self::StoreUnavailable,
        Self::Error,
    ];

    pub(crate) fn of(outcome: &Result<Principal, ErrorKind>) -> Self {
        match outcome {
            Ok(_) => Self::Ok,
            Err(kind) => Self::of_error(*kind),
        }
    }

    fn of_error(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::MissingCredential => Self::Anonymous,
            ErrorKind::InvalidCredential
            | ErrorKind::MalformedRequest
            | ErrorKind::TooLarge
            | ErrorKind::InvalidGrant
            | ErrorKind::Forbidden => Self::Invalid,
            ErrorKind::Expired => Self::Expired,
            ErrorKind::Revoked => Self::Revoked,
            ErrorKind::StoreUnavailable => Self::StoreUnavailable,
            _ => Self::Error,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Anonymous => "anonymous",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::StoreUnavailable => "store_unavailable",
            Self::Error => "error",
        }
    }
}

/// The keys labelled with one keycard's strategy, built once when the keycard is built (the
/// strategy's name is known only then), so that recording never allocates.
pub(crate) struct StrategyMetrics {
    strategy: &'static str,
    authentications: [Key; AuthOutcome::ALL.len()],
    resolution: Key,
}

impl StrategyMetrics {
    pub(crate) fn new(strategy: &'static str) -> Self {
        let label = Label::from_static_parts("strategy", strategy);
        Self {
            strategy,
            authentications: AuthOutcome::ALL.map(|o| {
                Key::from_parts(
                    AUTHENTICATIONS,
                    vec![
                        label.clone(),
                        Label::from_static_parts("outcome", o.as_str()),
                    ],
                )
            }),
            resolution: Key::from_parts(RESOLUTION_DURATION, vec![label]),
        }
    }

    /// Awaits a resolution, timing it when it waits on I/O.
    pub(crate) async fn time(&self, future: AuthFuture<'_>) -> crate::Result<Principal> {
        if future.is_ready() || !timing() {
            return future.await;
        }
        let started = Instant::now();
        let outcome = future.await;
        observe(&self.resolution, started.elapsed());
        outcome
    }

    /// Counts a finished resolution and records it on the current span.
    pub(crate) fn resolved(&self, outcome: &Result<Principal, ErrorKind>) {
        let o = AuthOutcome::of(outcome);
        increment(&self.authentications[o as usize]);
        let span = tracing::Span::current();
        if span.is_disabled() {
            return;
        }
        span.record(FIELD_STRATEGY, self.strategy);
        span.record(FIELD_OUTCOME, o.as_str());
        if let Ok(principal) = outcome {
            span.record(FIELD_SESSION, principal.session().id.as_str());
        }
    }
}

/// Counts what a [`SecurityEvent`](crate::events::SecurityEvent) says happened, by its stable
/// name: login throttling's events (`login_failed`, `login_throttled`) are counted by the same
/// path as soon as they are emitted.
pub(crate) fn event(name: &'static str) {
    let key = match name {
        "login" => key!(LOGINS, "outcome" => "ok"),
        "login_refused" => key!(LOGINS, "outcome" => "refused"),
        "login_failed" => key!(LOGINS, "outcome" => "failed"),
        "login_throttled" => key!(LOGINS, "outcome" => "throttled"),
        "logout" => key!(REVOCATIONS, "kind" => "logout"),
        "session_revoked" => key!(REVOCATIONS, "kind" => "session"),
        "all_sessions_revoked" => key!(REVOCATIONS, "kind" => "all_sessions"),
        "session_rotated" => key!(REVOCATIONS, "kind" => "rotation"),
        "session_evicted" => key!(REVOCATIONS, "kind" => "eviction"),
        "refresh_reuse_detected" => {
            increment(key!(REVOCATIONS, "kind" => "refresh_family"));
            key!(REFRESH_REUSE_DETECTED)
        }
        "csrf_rejected" => key!(CSRF_REFUSALS),
        _ => return,
    };
    increment(key);
}

/// Counts a refresh-token exchange the strategy answered, and passes its outcome on.
pub(crate) fn refresh<T>(outcome: crate::Result<T>) -> crate::Result<T> {
    let key = match outcome.as_ref().map_err(|e| e.kind()) {
        Ok(_) => key!(REFRESHES, "outcome" => "ok"),
        Err(
            ErrorKind::InvalidGrant
            | ErrorKind::InvalidCredential
            | ErrorKind::Expired
            | ErrorKind::Revoked,
        ) => key!(REFRESHES, "outcome" => "invalid"),
        Err(ErrorKind::StoreUnavailable) => key!(REFRESHES, "outcome" => "store_unavailable"),
        Err(_) => key!(REFRESHES, "outcome" => "error"),
    };
    increment(key);
    outcome
}

/// Times one store call under `key` (a [`STORE_CALL_DURATION`] key of the call's store and
/// operation) when a recorder would keep it ([`timing`]).
pub(crate) async fn store_call<R>(key: &'static Key, call: impl Future<Output = R>) -> R {
    if !timing() {
        return call.await;
    }
    let started = Instant::now();
    let out = call.await;
    observe(key, started.elapsed());
    out
}

/// Counts a session read cache lookup.
#[inline]
pub(crate) fn session_cache_lookup(hit: bool) {
    increment(if hit {
        key!(SESSION_CACHE_LOOKUPS, "result" => "hit")
    } else {
        key!(SESSION_CACHE_LOOKUPS, "result" => "miss")
    });
}

/// Sets the number of entries of the session read cache.
pub(crate) fn session_cache_entries(len: usize) {
    set(key!(CACHE_ENTRIES, "cache" => "session"), len as f64);
}

/// Sets the number of entries of the JWT verified-token cache.
#[cfg(feature = "jwt")]
pub(crate) fn token_cache_entries(len: usize) {
    set(key!(CACHE_ENTRIES, "cache" => "token"), len as f64);
}

/// Sets whether the revocation mirror is current.
pub(crate) fn revocation_feed_connected(connected: bool) {
    set(
        key!(REVOCATION_FEED_CONNECTED),
        if connected { 1.0 } else { 0.0 },
    );
}

/// Records that the revocation feed delivered a revocation now.
pub(crate) fn revocation_feed_event() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    set(key!(REVOCATION_FEED_LAST_EVENT), now.as_secs_f64());
}

/// Records the lag of a revocation published at `published_ms` (Unix milliseconds, by the
/// publishing instance's clock) and received now; a clock behind the publisher's counts as 0.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) fn revocation_lag(published_ms: i64) {
    let now_ms = crate::clock::to_millis(SystemTime::now());
    let lag = u64::try_from(now_ms.saturating_sub(published_ms)).unwrap_or(0);
    observe(key!(REVOCATION_LAG), Duration::from_millis(lag));
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use axum::{Router, body::Body, routing::get, routing::post};
    use http::{Request, StatusCode, header};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use tower::ServiceExt;

    use super::*;
    use crate::{
        Auth, Keycard, Rejection,
        store::MemoryStore,
        strategy::{CacheSettings, ServerSessions, ServerSettings},
    };

    /// Every label value keycard may use: a closed set.
    const ALLOWED: &[&str] = &[
        "ok",
        "anonymous",
        "invalid",
        "expired",
        "revoked",
        "store_unavailable",
        "error",
        "refused",
        "failed",
        "throttled",
        "logout",
        "session",
        "all_sessions",
        "rotation",
        "eviction",
        "refresh_family",
        "refresh",
        "revocation",
        "hit",
        "miss",
        "token",
        "server",
        "jwt",
        "database",
        "redis",
        "hybrid",
        "custom",
        // store operations
        "create",
        "load",
        "touch",
        "rotate",
        "delete",
        "delete_all",
        "list",
        "sweep",
        "insert",
        "family_live",
        "delete_family",
        "is_revoked",
        "revoke",
        "subscribe",
    ];

    /// `name{label=value,...}` → value, for keycard's metrics.
    fn snapshot(s: &Snapshotter) -> HashMap<String, DebugValue> {
        s.snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name().starts_with("keycard_"))
            .map(|(k, _, _, v)| {
                let key = k.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (format!("{}{{{}}}", key.name(), labels.join(",")), v)
            })
            .collect()
    }

    fn counter(m: &HashMap<String, DebugValue>, key: &str) -> u64 {
        match m.get(key) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            other => panic!("{key}: {other:?}"),
        }
    }

    fn samples(m: &HashMap<String, DebugValue>, key: &str) -> usize {
        match m.get(key) {
            Some(DebugValue::Histogram(v)) => v.len(),
            None => 0,
            other => panic!("{key}: {other:?}"),
        }
    }

    async fn login(auth: Auth) -> Result<(), Rejection> {
        auth.login(Principal::builder("alice")).await?;
        Ok(())
    }

    async fn me(user: Principal) -> String {
        user.subject().to_owned()
    }

    async fn logout(auth: Auth) -> Result<(), Rejection> {
        auth.logout().await
    }

    async fn send(
        app: &Router,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Option<String>) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let cookie = res
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        (res.status(), cookie)
    }

    #[tokio::test]
    async fn requests_move_the_counters_and_no_label_names_a_user() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);

        let store = Arc::new(MemoryStore::new());
        let sessions = ServerSessions::new(store.clone(), ServerSettings::default())
            .with_cache(CacheSettings::default(), store);
        sessions.ready().await.unwrap();
        let keycard = Keycard::builder().strategy(sessions).build().unwrap();
        let app = Router::new()
            .route("/login", post(login))
            .route("/me", get(me))
            .route("/logout", post(logout))
            .layer(keycard.layer());

        // anonymous, invalid (a well-formed ID no store knows), ok twice (a miss, then a hit)
        assert_eq!(send(&app, "GET", "/me", &[]).await.0, 401);
        let unknown = format!("__Host-keycard={}", "A".repeat(43));
        assert_eq!(
            send(&app, "GET", "/me", &[("cookie", &unknown)]).await.0,
            401
        );
        let (status, cookie) = send(&app, "POST", "/login", &[]).await;
        assert_eq!(status, 200);
        let cookie = cookie.expect("session cookie");
        assert_eq!(
            send(&app, "GET", "/me", &[("cookie", &cookie)]).await.0,
            200
        );
        assert_eq!(
            send(&app, "GET", "/me", &[("cookie", &cookie)]).await.0,
            200
        );
        // a CSRF refusal, then a logout (a revocation)
        let cross = [
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(send(&app, "POST", "/logout", &cross).await.0, 403);
        assert_eq!(
            send(&app, "POST", "/logout", &[("cookie", &cookie)])
                .await
                .0,
            200
        );

        let m = snapshot(&snapshotter);
        let auth = |o: &str| {
            counter(
                &m,
                &format!("{AUTHENTICATIONS}{{outcome={o},strategy=server}}"),
            )
        };
        assert_eq!(auth("anonymous"), 1, "{m:#?}");
        assert_eq!(auth("invalid"), 1, "{m:#?}");
        // two GET /me and the logout's resolution
        assert_eq!(auth("ok"), 3, "{m:#?}");
        assert_eq!(counter(&m, &format!("{LOGINS}{{outcome=ok}}")), 1);
        assert_eq!(counter(&m, &format!("{REVOCATIONS}{{kind=logout}}")), 1);
        assert_eq!(counter(&m, &format!("{CSRF_REFUSALS}{{}}")), 1);
        assert_eq!(
            counter(&m, &format!("{SESSION_CACHE_LOOKUPS}{{result=hit}}")),
            2
        );
        assert!(counter(&m, &format!("{SESSION_CACHE_LOOKUPS}{{result=miss}}")) >= 1);
        assert!(
            samples(
                &m,
                &format!("{STORE_CALL_DURATION}{{operation=create,store=session}}")
            ) == 1
        );
        assert!(
            samples(
                &m,
                &format!("{STORE_CALL_DURATION}{{operation=load,store=session}}")
            ) >= 2
        );
        assert!(
            samples(
                &m,
                &format!("{STORE_CALL_DURATION}{{operation=revoke,store=revocation}}")
            ) >= 1
        );
        // the store round trips were timed, the cache hits were not
        assert!(samples(&m, &format!("{RESOLUTION_DURATION}{{strategy=server}}")) >= 2);
        assert!(matches!(
            m.get(&format!("{REVOCATION_FEED_CONNECTED}{{}}")),
            Some(DebugValue::Gauge(v)) if v.0 == 1.0
        ));
        assert!(matches!(
            m.get(&format!("{CACHE_ENTRIES}{{cache=session}}")),
            Some(DebugValue::Gauge(v)) if v.0 >= 1.0
        ));

        let token = cookie.split_once('=').unwrap().1;
        for key in m.keys() {
            let labels = &key[key.find('{').unwrap() + 1..key.len() - 1];
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (_, value) = pair.split_once('=').unwrap();
                assert!(ALLOWED.contains(&value), "unexpected label value in {key}");
            }
            assert!(!key.contains("alice") && !key.contains(token), "{key}");
        }
    }

    #[test]
    fn durations_are_measured_only_for_a_recorder_that_keeps_them() {
        // No recorder: `metrics` answers with its zero-sized no-op recorder.
        assert!(!timing());
        assert!(!metrics::with_local_recorder(
            &metrics::NoopRecorder,
            timing
        ));
        let recorder = DebuggingRecorder::new();
        assert!(metrics::with_local_recorder(&recorder, timing));
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        assert!(metrics::with_local_recorder(&prometheus, timing));
        assert!(!timing());
    }

    /// `/login` and `/me` behind server sessions on a memory store.
    fn memory_app() -> Router {
        let store = Arc::new(MemoryStore::new());
        let keycard = Keycard::builder()
            .strategy(ServerSessions::new(store, ServerSettings::default()))
            .build()
            .unwrap();
        Router::new()
            .route("/login", post(login))
            .route("/me", get(me))
            .layer(keycard.layer())
    }

    #[tokio::test]
    async fn a_recorder_installed_after_the_keycard_was_built_gets_durations() {
        let app = memory_app();
        // Built, logged in and read once with no recorder: nothing to keep, nothing timed.
        let (_, cookie) = send(&app, "POST", "/login", &[]).await;
        let cookie = cookie.unwrap();
        assert_eq!(
            send(&app, "GET", "/me", &[("cookie", &cookie)]).await.0,
            200
        );

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let guard = metrics::set_default_local_recorder(&recorder);
        assert_eq!(
            send(&app, "GET", "/me", &[("cookie", &cookie)]).await.0,
            200
        );
        drop(guard);
        let m = snapshot(&snapshotter);
        assert_eq!(
            samples(
                &m,
                &format!("{STORE_CALL_DURATION}{{operation=load,store=session}}")
            ),
            1,
            "{m:#?}"
        );
        assert_eq!(
            samples(&m, &format!("{RESOLUTION_DURATION}{{strategy=server}}")),
            1
        );
        assert_eq!(
            counter(
                &m,
                &format!("{AUTHENTICATIONS}{{outcome=ok,strategy=server}}")
            ),
            1
        );
        // Only what ran under the recorder was recorded: no create from the login before it.
        assert_eq!(
            samples(
                &m,
                &format!("{STORE_CALL_DURATION}{{operation=create,store=session}}")
            ),
            0
        );
    }

    /// Collects what a `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_request_span_gets_strategy_outcome_and_session_handle() {
        use tracing::{Instrument, field::Empty};
        use tracing_subscriber::fmt::format::FmtSpan;

        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let app = memory_app();
        let (_, cookie) = send(&app, "POST", "/login", &[]).await;
        let cookie = cookie.unwrap();
        let span = tracing::info_span!(
            "request",
            keycard.strategy = Empty,
            keycard.outcome = Empty,
            keycard.session = Empty,
        );
        let (status, _) = send(&app, "GET", "/me", &[("cookie", &cookie)])
            .instrument(span)
            .await;
        assert_eq!(status, 200);
        let text = String::from_utf8(out.0.lock().clone()).unwrap();
        let token = cookie.split_once('=').unwrap().1;
        let handle = crate::token::TokenHash::of_encoded(token).unwrap().handle();
        let line = text
            .lines()
            .find(|l| l.contains("request{"))
            .unwrap_or_else(|| panic!("no span line in {text}"));
        assert!(line.contains(r#"keycard.strategy="server""#), "{line}");
        assert!(line.contains(r#"keycard.outcome="ok""#), "{line}");
        assert!(
            line.contains(&format!(r#"keycard.session="{handle}""#)),
            "{line}"
        );
        assert!(!text.contains(token), "the token never reaches a span");
    }

    #[test]
    fn every_error_kind_maps_to_a_bounded_outcome() {
        use ErrorKind::*;
        let cases = [
            (MissingCredential, "anonymous"),
            (InvalidCredential, "invalid"),
            (MalformedRequest, "invalid"),
            (Expired, "expired"),
            (Revoked, "revoked"),
            (StoreUnavailable, "store_unavailable"),
            (Internal, "error"),
        ];
        for (kind, label) in cases {
            assert_eq!(AuthOutcome::of(&Err(kind)).as_str(), label);
        }
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let m = StrategyMetrics::new("jwt");
            for (kind, _) in cases {
                m.resolved(&Err(kind));
            }
            event("login_throttled");
            event("login_failed");
            event("refresh_reuse_detected");
            event("step_up");
            let _ = refresh::<()>(Err(crate::Error::new(InvalidGrant)));
            revocation_lag(crate::clock::to_millis(SystemTime::now()) - 40);
        });
        let m = snapshot(&snapshotter);
        for (_, label) in cases {
            let key = format!("{AUTHENTICATIONS}{{outcome={label},strategy=jwt}}");
            assert!(counter(&m, &key) >= 1, "{key}: {m:#?}");
        }
        assert_eq!(counter(&m, &format!("{LOGINS}{{outcome=throttled}}")), 1);
        assert_eq!(counter(&m, &format!("{LOGINS}{{outcome=failed}}")), 1);
        assert_eq!(counter(&m, &format!("{REFRESH_REUSE_DETECTED}{{}}")), 1);
        assert_eq!(
            counter(&m, &format!("{REVOCATIONS}{{kind=refresh_family}}")),
            1
        );
        assert_eq!(counter(&m, &format!("{REFRESHES}{{outcome=invalid}}")), 1);
        match m.get(&format!("{REVOCATION_LAG}{{}}")) {
            Some(DebugValue::Histogram(v)) => assert!(v[0].0 >= 0.04 && v[0].0 < 5.0, "{v:?}"),
            other => panic!("{other:?}"),
        }
    }
}
