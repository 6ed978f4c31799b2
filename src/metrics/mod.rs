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
mod tests;
