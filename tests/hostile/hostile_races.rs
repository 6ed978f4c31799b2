//! Races through the REAL demo router (in process, `oneshot`, multi-threaded runtime): every
//! invariant must hold whatever the interleaving, and no request may answer 5xx.
//!
//! - 50 concurrent refreshes of one refresh token with no grace window: exactly one 200; the
//!   other 49 are 401 `invalid_grant`, and since a spent token was presented again, the family
//!   dies (the winner's new refresh and access tokens included, RFC 9700 §4.14.2). Under the
//!   default grace window they are retries: all 200, exactly one live head afterwards.
//! - Concurrent logins at the session limit (`session.max_sessions` in the demo's
//!   `KeycardConfig`): with `reject`, exactly `max` logins succeed and the rest are 403; with
//!   `evict_oldest`, all succeed and exactly `max` sessions stay live.
//! - Log-out-everywhere racing logins: every session whose login completed before the revocation
//!   started is dead afterwards; every login started after it completed is live; logins that
//!   overlap it may go either way (they are concurrent with it).
//! - A session revoked while a request holding it is in flight. **The guarantee**: authorization
//!   is decided once per request, when the handler extracts the principal (`HighRisk` also checks
//!   the store then). A request that passed that check before the revocation committed runs to
//!   completion; every request extracted after it is refused; and an in-flight request can never
//!   *resurrect* the revoked session: operations that issue credentials from it (step-up
//!   rotation) re-check the store and fail with 401, issuing nothing.
//!
//! The in-flight request is held open with a request body that reports when the handler starts
//! reading it (every extractor before the body has run by then) and completes only when released.
//! SQLite backends always run; PostgreSQL variants need the `postgres` feature.

#![cfg(all(feature = "jwt", feature = "sqlite"))]

use crate::common::{
    demo::{TempDb, database_config, from_config},
    hostile_support::*,
    http_client::*,
};

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use http::{Method, StatusCode, header};
use keycard::{KeycardConfig, StrategyKind, store::LimitPolicy};
use serde_json::json;
use tokio::{sync::Barrier, task::JoinSet};

fn histogram(statuses: &[StatusCode]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for s in statuses {
        *m.entry(s.as_u16()).or_default() += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// 50 concurrent refreshes with one token

async fn fifty_concurrent_refreshes(h: Harness) {
    const N: usize = 50;
    let cred = h.alice().await;
    let token = cred.refresh().to_owned();
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = JoinSet::new();
    for _ in 0..N {
        let (c, token, barrier) = (h.client.clone(), token.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            c.refresh(&token).await
        });
    }
    let mut winners = Vec::new();
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("task");
        statuses.push(r.status);
        match r.status {
            StatusCode::OK => winners.push(h.cred_from(&r)),
            StatusCode::UNAUTHORIZED => {
                assert_eq!(
                    r.error_code().as_deref(),
                    Some("invalid_grant"),
                    "{}",
                    r.text()
                );
                assert!(!r.issues_credential());
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one winner: {:?}",
        histogram(&statuses)
    );
    // The losers presented a spent token: reuse, so the whole family is revoked.
    let winner = &winners[0];
    let r = h.refresh(winner.refresh()).await;
    expect(
        &r,
        StatusCode::UNAUTHORIZED,
        "the winner's rotated token after reuse",
    );
    assert_eq!(
        h.me(winner).await,
        StatusCode::UNAUTHORIZED,
        "the winner's access token"
    );
    assert_eq!(
        h.me(&cred).await,
        StatusCode::UNAUTHORIZED,
        "the original access token"
    );
}

/// Reuse detection without a grace window: every second use of a refresh token is reuse.
fn no_grace(config: &mut KeycardConfig) {
    config.jwt.as_mut().expect("jwt config").refresh.grace = std::time::Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_one_winner_sqlite() {
    fifty_concurrent_refreshes(jwt(no_grace).await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_one_winner_postgres() {
    fifty_concurrent_refreshes(pg::direct(StrategyKind::Jwt, no_grace).await).await;
}

/// Under the default grace window (30 s) the fifty concurrent refreshes are retries of a lost
/// response: each is answered 200 with a new head replacing the previous one, so exactly one of
/// the fifty refresh tokens is live afterwards (the others are 401 `invalid_grant` without
/// revoking anything), and the family lives on.
async fn fifty_concurrent_refreshes_under_grace(h: Harness) {
    const N: usize = 50;
    let cred = h.alice().await;
    let token = cred.refresh().to_owned();
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = JoinSet::new();
    for _ in 0..N {
        let (c, token, barrier) = (h.client.clone(), token.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            c.refresh(&token).await
        });
    }
    let mut issued = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("task");
        expect(&r, StatusCode::OK, "a retry within the grace window");
        issued.push(h.cred_from(&r));
    }
    let mut live = 0;
    for c in &issued {
        let r = h.refresh(c.refresh()).await;
        match r.status {
            StatusCode::OK => live += 1,
            StatusCode::UNAUTHORIZED => {
                assert_eq!(r.error_code().as_deref(), Some("invalid_grant"));
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(live, 1, "exactly one live head");
    assert_eq!(h.me(&cred).await, StatusCode::OK, "the family lives on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_under_grace_one_live_head_sqlite() {
    fifty_concurrent_refreshes_under_grace(jwt_demo().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_under_grace_one_live_head_postgres() {
    fifty_concurrent_refreshes_under_grace(pg::direct(StrategyKind::Jwt, |_| {}).await).await;
}

// ---------------------------------------------------------------------------------------------
// Concurrent logins at the session limit

const MAX: u32 = 3;
const LOGINS: usize = 12;

fn limit(policy: LimitPolicy) -> impl FnOnce(&mut KeycardConfig) {
    move |c: &mut KeycardConfig| {
        c.session.max_sessions = Some(MAX);
        c.session.on_limit = policy;
    }
}

/// `LOGINS` concurrent logins of one subject; returns the successful credentials.
async fn concurrent_logins(h: &Harness) -> (Vec<Cred>, Vec<StatusCode>) {
    let barrier = Arc::new(Barrier::new(LOGINS));
    let mut tasks = JoinSet::new();
    for _ in 0..LOGINS {
        let (c, barrier) = (h.client.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            c.login_response("alice", "wonderland").await
        });
    }
    let mut creds = Vec::new();
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("task");
        statuses.push(r.status);
        match r.status {
            StatusCode::OK => creds.push(h.cred_from(&r)),
            StatusCode::FORBIDDEN => {
                assert_eq!(
                    r.error_code().as_deref(),
                    Some("session_limit"),
                    "{}",
                    r.text()
                );
                assert!(!r.issues_credential());
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    (creds, statuses)
}

async fn live(h: &Harness, creds: &[Cred]) -> usize {
    let mut n = 0;
    for c in creds {
        match h.me(c).await {
            StatusCode::OK => n += 1,
            StatusCode::UNAUTHORIZED => {}
            other => panic!("unexpected {other} on /me"),
        }
    }
    n
}

async fn limit_holds_with_reject(h: Harness) {
    let (creds, statuses) = concurrent_logins(&h).await;
    assert_eq!(
        creds.len(),
        MAX as usize,
        "exactly MAX logins: {:?}",
        histogram(&statuses)
    );
    assert_eq!(live(&h, &creds).await, MAX as usize);
    assert_eq!(h.sessions(&creds[0]).await.len(), MAX as usize);
    // One more, sequentially: still refused.
    let r = h.login_response("alice", "wonderland").await;
    expect(&r, StatusCode::FORBIDDEN, "login beyond the limit");
}

async fn limit_holds_with_evict_oldest(h: Harness) {
    let (creds, statuses) = concurrent_logins(&h).await;
    assert_eq!(
        creds.len(),
        LOGINS,
        "evict_oldest admits every login: {:?}",
        histogram(&statuses)
    );
    assert_eq!(
        live(&h, &creds).await,
        MAX as usize,
        "exactly MAX sessions stay live"
    );
    let survivor = {
        let mut found = None;
        for c in &creds {
            if h.me(c).await == StatusCode::OK {
                found = Some(c.clone());
                break;
            }
        }
        found.expect("a live session")
    };
    assert_eq!(h.sessions(&survivor).await.len(), MAX as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_at_the_limit_reject_sqlite() {
    limit_holds_with_reject(database(limit(LimitPolicy::Reject)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_at_the_limit_evict_oldest_sqlite() {
    limit_holds_with_evict_oldest(database(limit(LimitPolicy::EvictOldest)).await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_at_the_limit_reject_postgres() {
    limit_holds_with_reject(pg::direct(StrategyKind::Database, limit(LimitPolicy::Reject)).await)
        .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_at_the_limit_evict_oldest_postgres() {
    limit_holds_with_evict_oldest(
        pg::direct(StrategyKind::Database, limit(LimitPolicy::EvictOldest)).await,
    )
    .await;
}

/// `session.max_sessions` configured for the jwt strategy must either hold (at most MAX live
/// refresh families) or be refused at start-up: never silently ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_at_the_limit_jwt() {
    let db = TempDb::new();
    let clock = keycard::clock::ManualClock::new();
    let mut config = database_config(StrategyKind::Jwt, &db.url());
    config.jwt = Some(fixture_jwt());
    limit(LimitPolicy::Reject)(&mut config);
    match from_config(&config, &clock).await {
        Err(e) => {
            assert_eq!(e.kind(), keycard::ErrorKind::Config, "{e:?}");
            assert!(
                e.message().contains("session.max_sessions"),
                "{}",
                e.message()
            );
        }
        Ok(_) => {
            drop(db);
            limit_holds_with_reject(jwt(limit(LimitPolicy::Reject)).await).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Log-out-everywhere racing logins

struct Stamped {
    start: u64,
    end: u64,
    cred: Cred,
}

async fn stamped_login(c: &Client, seq: &AtomicU64) -> Stamped {
    let start = seq.fetch_add(1, Ordering::SeqCst);
    let r = c.login_response("alice", "wonderland").await;
    let end = seq.fetch_add(1, Ordering::SeqCst);
    Stamped {
        start,
        end,
        cred: c.cred_from(&r),
    }
}

async fn revoke_all_racing_logins(h: Harness) {
    let seq = Arc::new(AtomicU64::new(0));
    let revoker = h.alice().await;
    let mut logins = Vec::new();
    // Before: completed before the revocation starts.
    for _ in 0..4 {
        logins.push(stamped_login(&h.client, &seq).await);
    }
    // During: racing the revocation.
    let barrier = Arc::new(Barrier::new(13));
    let mut tasks = JoinSet::new();
    for _ in 0..12 {
        let (c, seq, barrier) = (h.client.clone(), seq.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            stamped_login(&c, &seq).await
        });
    }
    barrier.wait().await;
    let revoke_start = seq.fetch_add(1, Ordering::SeqCst);
    let r = h.call(Method::POST, "/logout-all", Some(&revoker)).await;
    let revoke_end = seq.fetch_add(1, Ordering::SeqCst);
    expect(&r, StatusCode::NO_CONTENT, "logout-all");
    while let Some(s) = tasks.join_next().await {
        logins.push(s.expect("login task"));
    }
    // After: started once the revocation completed.
    for _ in 0..4 {
        logins.push(stamped_login(&h.client, &seq).await);
    }

    assert_eq!(
        h.me(&revoker).await,
        StatusCode::UNAUTHORIZED,
        "the revoker's own session"
    );
    let (mut before, mut after, mut overlapping) = (0, 0, 0);
    for s in &logins {
        let status = h.me(&s.cred).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "unexpected {status}"
        );
        if s.end < revoke_start {
            before += 1;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "a session created before the revoke survived"
            );
            if let Cred::Bearer {
                refresh: Some(rt), ..
            } = &s.cred
            {
                expect(
                    &h.refresh(rt).await,
                    StatusCode::UNAUTHORIZED,
                    "its refresh token",
                );
            }
        } else if s.start > revoke_end {
            after += 1;
            assert_eq!(status, StatusCode::OK, "a login after the revoke must work");
        } else {
            overlapping += 1;
        }
    }
    assert!(
        before >= 4 && after >= 4,
        "before {before}, after {after}, overlapping {overlapping}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_racing_logins_database() {
    revoke_all_racing_logins(database_demo().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_racing_logins_jwt() {
    revoke_all_racing_logins(jwt_demo().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_racing_logins_database_postgres() {
    revoke_all_racing_logins(pg::direct(StrategyKind::Database, |_| {}).await).await;
}

// ---------------------------------------------------------------------------------------------
// A session revoked while a request holding it is in flight

/// Starts `method path` with `cred` and a held-open JSON body; returns once the handler has
/// extracted everything before the body (the principal included).
async fn in_flight(
    h: &Harness,
    path: &str,
    cred: &Cred,
) -> (
    tokio::task::JoinHandle<Resp>,
    tokio::sync::oneshot::Sender<axum::body::Bytes>,
) {
    let (body, gate) = gated_body();
    let req = with_cred(Method::POST, path, Some(cred))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let c = h.client.clone();
    let task = tokio::spawn(async move { c.send(req).await });
    tokio::time::timeout(std::time::Duration::from_secs(10), gate.started)
        .await
        .expect("the handler reads the body")
        .expect("started");
    (task, gate.release)
}

async fn revoke(h: &Harness, by: &Cred, victim: &Cred) {
    let id = h.current_session_id(victim).await;
    let r = h
        .call(Method::DELETE, &format!("/sessions/{id}"), Some(by))
        .await;
    expect(&r, StatusCode::NO_CONTENT, "revoke the in-flight session");
}

/// A request authorized before the revocation completes; the next one is refused.
async fn revoked_while_in_flight_completes_then_refuses(h: Harness) {
    let victim = h.alice().await;
    let other = h.alice().await;
    let (task, release) = in_flight(&h, "/account/email", &victim).await;
    revoke(&h, &other, &victim).await;
    let _ = release.send(json!({"email": "alice@example.com"}).to_string().into());
    let r = task.await.expect("request task");
    expect(
        &r,
        StatusCode::OK,
        "the in-flight request authorized before the revocation",
    );
    assert_eq!(
        h.me(&victim).await,
        StatusCode::UNAUTHORIZED,
        "every later request"
    );
    let r = h
        .call_json(
            Method::POST,
            "/account/email",
            Some(&victim),
            json!({"email": "a@b.c"}),
        )
        .await;
    expect(
        &r,
        StatusCode::UNAUTHORIZED,
        "the same route, after the revocation",
    );
}

/// An in-flight step-up (which rotates the credentials) cannot resurrect a revoked session.
async fn revoked_while_in_flight_cannot_be_resurrected(h: Harness) {
    let victim = h.alice().await;
    let other = h.alice().await;
    let (task, release) = in_flight(&h, "/step-up", &victim).await;
    revoke(&h, &other, &victim).await;
    let _ = release.send(json!({"password": "wonderland"}).to_string().into());
    let r = task.await.expect("request task");
    expect(
        &r,
        StatusCode::UNAUTHORIZED,
        "step-up of a session revoked in flight",
    );
    assert_eq!(h.me(&victim).await, StatusCode::UNAUTHORIZED);
    let sessions = h.sessions(&other).await;
    assert_eq!(
        sessions.len(),
        1,
        "no session was resurrected: {sessions:?}"
    );
}

/// Log-out-everywhere while a step-up is in flight: nothing survives.
async fn logout_all_while_step_up_in_flight(h: Harness) {
    let victim = h.alice().await;
    let other = h.alice().await;
    let (task, release) = in_flight(&h, "/step-up", &victim).await;
    let r = h.call(Method::POST, "/logout-all", Some(&other)).await;
    expect(&r, StatusCode::NO_CONTENT, "logout-all");
    let _ = release.send(json!({"password": "wonderland"}).to_string().into());
    let r = task.await.expect("request task");
    expect(
        &r,
        StatusCode::UNAUTHORIZED,
        "step-up in flight during logout-all",
    );
    assert_eq!(h.me(&victim).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me(&other).await, StatusCode::UNAUTHORIZED);
    let fresh = h.alice().await;
    assert_eq!(
        h.sessions(&fresh).await.len(),
        1,
        "only the fresh login is live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_in_flight_completes_then_refuses_database() {
    revoked_while_in_flight_completes_then_refuses(database_demo().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_in_flight_completes_then_refuses_jwt() {
    revoked_while_in_flight_completes_then_refuses(jwt_demo().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_in_flight_cannot_be_resurrected_database() {
    revoked_while_in_flight_cannot_be_resurrected(database_demo().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_in_flight_cannot_be_resurrected_jwt() {
    revoked_while_in_flight_cannot_be_resurrected(jwt_demo().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_while_step_up_in_flight_database() {
    logout_all_while_step_up_in_flight(database_demo().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_while_step_up_in_flight_jwt() {
    logout_all_while_step_up_in_flight(jwt_demo().await).await;
}
