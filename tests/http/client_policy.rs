//! The client-address policy: a session used from another address is reported, sent to step-up
//! or terminated, as configured; a region resolver compares regions instead of addresses.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode, header},
};
use keycard::{
    Keycard,
    events::{EventHook, SecurityEvent},
    policy::{ClientPolicy, IpChangeAction},
    store::MemoryStore,
    strategy::{ServerSessions, ServerSettings},
};

use crate::common::{http_client::send, test_app};

const HOME: &str = "203.0.113.7:40000";
const AWAY: &str = "198.51.100.9:40000";

struct App {
    router: Router,
    events: Arc<Mutex<Vec<SecurityEvent>>>,
}

fn app(policy: ClientPolicy) -> App {
    let events: Arc<Mutex<Vec<SecurityEvent>>> = Arc::default();
    let sink = events.clone();
    let strategy = ServerSessions::new(Arc::new(MemoryStore::new()), ServerSettings::default())
        .with_events(keycard::events::Events::new(None));
    let keycard = Keycard::builder()
        .strategy(strategy)
        .client_policy(policy)
        .event_hook(EventHook::new(move |e| {
            let sink = sink.clone();
            async move { sink.lock().unwrap().push(e) }
        }))
        .build()
        .unwrap();
    // `POST /login` without a body logs in `alice`; `/risky` is behind `HighRisk`.
    let router = test_app::router(&keycard);
    App { router, events }
}

async fn call(
    app: &App,
    method: &str,
    path: &str,
    from: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(from.parse::<SocketAddr>().unwrap()));
    let resp = send(&app.router, req).await;
    let cookie = resp.cookie_pair().filter(|v| !v.ends_with('='));
    (resp.status, cookie)
}

async fn changes(app: &App) -> usize {
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.name() == "client_ip_changed")
        .count()
}

#[tokio::test]
async fn allow_reports_and_serves() {
    let app = app(ClientPolicy::new(IpChangeAction::Allow));
    let (_, cookie) = call(&app, "POST", "/login", HOME, None).await;
    let cookie = cookie.unwrap();
    assert_eq!(call(&app, "GET", "/me", HOME, Some(&cookie)).await.0, 200);
    assert_eq!(changes(&app).await, 0);
    assert_eq!(call(&app, "GET", "/me", AWAY, Some(&cookie)).await.0, 200);
    assert_eq!(changes(&app).await, 1);
}

#[tokio::test]
async fn step_up_is_demanded_on_high_risk_routes_until_done() {
    let app = app(ClientPolicy::new(IpChangeAction::StepUp));
    let cookie = call(&app, "POST", "/login", HOME, None).await.1.unwrap();
    assert_eq!(
        call(&app, "POST", "/high-risk", HOME, Some(&cookie))
            .await
            .0,
        200
    );
    assert_eq!(call(&app, "GET", "/me", AWAY, Some(&cookie)).await.0, 200);
    assert_eq!(
        call(&app, "POST", "/high-risk", AWAY, Some(&cookie))
            .await
            .0,
        401
    );
    // Step-up from the new address records it; high-risk routes work again from there.
    let (status, new) = call(&app, "POST", "/step-up", AWAY, Some(&cookie)).await;
    // The test app answers a step-up with the issued credential (`keycard::testing::router`).
    assert_eq!(status, 200);
    let new = new.expect("step-up rotates the session");
    assert_eq!(
        call(&app, "POST", "/high-risk", AWAY, Some(&new)).await.0,
        200
    );
    assert!(changes(&app).await >= 2);
}

#[tokio::test]
async fn terminate_revokes_the_session() {
    let app = app(ClientPolicy::new(IpChangeAction::Terminate));
    let cookie = call(&app, "POST", "/login", HOME, None).await.1.unwrap();
    assert_eq!(call(&app, "GET", "/me", AWAY, Some(&cookie)).await.0, 401);
    // Revoked for good, even from the original address.
    assert_eq!(call(&app, "GET", "/me", HOME, Some(&cookie)).await.0, 401);
    assert_eq!(changes(&app).await, 1);
}

#[tokio::test]
async fn regions_are_compared_when_a_resolver_is_set() {
    let by_prefix = |ip: std::net::IpAddr| Some(ip.to_string()[..3].to_owned());
    let app = app(ClientPolicy::new(IpChangeAction::Terminate).with_region(by_prefix));
    let cookie = call(&app, "POST", "/login", HOME, None).await.1.unwrap();
    // Same "region" (203.*), other address: fine.
    assert_eq!(
        call(&app, "GET", "/me", "203.0.113.99:1", Some(&cookie))
            .await
            .0,
        200
    );
    // Another region: terminated.
    assert_eq!(call(&app, "GET", "/me", AWAY, Some(&cookie)).await.0, 401);
}
