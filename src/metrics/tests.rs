//! The metrics tests: what each recording records, and what it costs without a recorder.

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
