//! The server-session strategy conformance suite, driven through the real layer and the test app
//! ([`super::test_app`]).
//!
//! `http_suite!(module_name, store_expr)` expands to a module with one `#[tokio::test]` per case;
//! the expression (which may use `.await`) must evaluate to an `Arc<dyn SessionStore>` (a fresh
//! or shared real store: every case uses its own random subjects).

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    routing::get,
};
use keycard::{
    Keycard, Principal,
    clock::{Clock, ManualClock},
    store::{LimitPolicy, SessionLimit, SessionStore},
    strategy::{ServerSessions, ServerSettings},
};
use serde_json::json;

use super::{
    http_client::{get_req, post_req, put_req, send, status},
    test_app::{login, router},
};

pub struct Fixture {
    pub app: Router,
    pub clock: ManualClock,
    pub store: Arc<dyn SessionStore>,
    pub user: String,
}

pub fn settings() -> ServerSettings {
    ServerSettings {
        idle_timeout: Duration::from_secs(30 * 60),
        absolute_timeout: Duration::from_secs(12 * 3600),
        renewal_interval: Duration::from_secs(3 * 60),
        limit: None,
        store_timeout: Duration::from_millis(500),
        anonymous: Some(keycard::strategy::AnonymousSettings::default()),
    }
}

pub fn fixture(store: Arc<dyn SessionStore>, settings: ServerSettings) -> Fixture {
    let clock = ManualClock::new();
    let strategy = ServerSessions::new(store.clone(), settings).with_clock(Arc::new(clock.clone()));
    let keycard = Keycard::builder()
        .strategy(strategy)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("keycard");
    Fixture {
        app: router(&keycard),
        clock,
        store,
        user: format!("user-{}", crate::common::random_id().unwrap()),
    }
}

/// After a store outage ends, `/me` with `cookie` answers 200 again within 5 s without a
/// restart, and meanwhile only 200 or 503 (never an anonymous answer).
pub async fn recovers_without_restart(app: &Router, cookie: &str) {
    for _ in 0..50 {
        let s = status(app, get_req("/me", Some(cookie))).await;
        assert!(s == 200 || s == 503, "only 200 or 503, got {s}");
        if s == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("does not recover without a restart");
}

// ---------------------------------------------------------------- the cases

pub async fn login_sets_secure_cookie(f: Fixture) {
    let resp = send(&f.app, post_req("/login", None, json!({"subject": f.user}))).await;
    assert_eq!(resp.status, 200);
    let cookies: Vec<_> = resp.headers.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies.len(), 1);
    let c = cookies[0].to_str().unwrap();
    assert!(c.starts_with("__Host-keycard="), "{c}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    assert!(!c.to_ascii_lowercase().contains("domain"), "{c}");
    assert_eq!(resp.headers[header::CACHE_CONTROL], "no-store");
    let value = c.split(';').next().unwrap().split_once('=').unwrap().1;
    assert_eq!(value.len(), 43, "256-bit token, base64url");
    let me = send(
        &f.app,
        get_req("/me", Some(&format!("__Host-keycard={value}"))),
    )
    .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["subject"], f.user.as_str());
}

pub async fn store_keeps_only_the_hash(f: Fixture) {
    let pair = login(&f.app, &f.user, &[], None).await;
    let token = pair.split_once('=').unwrap().1;
    let listed = f.store.list(&f.user, f.clock.now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    let id = listed[0].id;
    assert_ne!(id.handle(), token);
    assert!(!id.handle().contains(token));
    assert_eq!(keycard::token::TokenHash::of_encoded(token), Some(id));
}

pub async fn missing_and_bad_credentials_are_401(f: Fixture) {
    let resp = send(&f.app, get_req("/me", None)).await;
    assert_eq!(resp.status, 401);
    assert!(resp.headers.contains_key(header::WWW_AUTHENTICATE));
    for bad in [
        "__Host-keycard=",
        "__Host-keycard=abc",
        "__Host-keycard=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "__Host-keycard=\"quoted\"",
        "__Host-keycard=%41%41",
    ] {
        assert_eq!(
            status(&f.app, get_req("/me", Some(bad))).await,
            401,
            "{bad}"
        );
        // An invalid credential is a 401 even where the principal is optional.
        assert_eq!(
            status(&f.app, get_req("/maybe", Some(bad))).await,
            401,
            "{bad}"
        );
    }
    let pair = login(&f.app, &f.user, &[], None).await;
    let mut tampered = pair.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(status(&f.app, get_req("/me", Some(&tampered))).await, 401);
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 200);
}

pub async fn anonymous_optional_and_public(f: Fixture) {
    let resp = send(&f.app, get_req("/maybe", None)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(&resp.body[..], b"anonymous");
    assert_eq!(status(&f.app, get_req("/public", None)).await, 200);
}

pub async fn duplicate_and_oversized_cookies(f: Fixture) {
    let pair = login(&f.app, &f.user, &[], None).await;
    let dup = format!("{pair}; {pair}");
    assert_eq!(status(&f.app, get_req("/me", Some(&dup))).await, 401);
    let other = login(&f.app, &f.user, &[], None).await;
    let dup2 = format!("{pair}; {other}");
    assert_eq!(status(&f.app, get_req("/me", Some(&dup2))).await, 401);
    let mut req = get_req("/me", Some(&pair));
    req.headers_mut()
        .append(header::COOKIE, other.parse().unwrap());
    assert_eq!(status(&f.app, req).await, 401);
    let big = format!("__Host-keycard={}", "A".repeat(5000));
    assert_eq!(status(&f.app, get_req("/me", Some(&big))).await, 431);
    let many = (0..400)
        .map(|i| format!("c{i}=v"))
        .collect::<Vec<_>>()
        .join("; ");
    assert_eq!(
        status(&f.app, get_req("/me", Some(&format!("{many}; {pair}")))).await,
        431
    );
    // Names are matched byte for byte.
    let lower = pair.replacen("__Host-keycard", "__host-keycard", 1);
    assert_eq!(status(&f.app, get_req("/me", Some(&lower))).await, 401);
    let encoded = pair.replacen("__Host-keycard", "__Host%2Dkeycard", 1);
    assert_eq!(status(&f.app, get_req("/me", Some(&encoded))).await, 401);
}

pub async fn fixation_client_chosen_id_never_adopted(f: Fixture) {
    // A syntactically valid token the client made up is not adopted by login.
    let chosen = "__Host-keycard=Zm9yZ2VkLXNlc3Npb24taWQtY2hvc2VuLWJ5LWNsaWVudA";
    let issued = login(&f.app, &f.user, &[], Some(chosen)).await;
    assert_ne!(issued, chosen);
    assert_eq!(status(&f.app, get_req("/me", Some(chosen))).await, 401);
    // Logging in again over a live session issues a fresh ID and kills the old one.
    let again = login(&f.app, &f.user, &[], Some(&issued)).await;
    assert_ne!(again, issued);
    assert_eq!(status(&f.app, get_req("/me", Some(&issued))).await, 401);
    assert_eq!(status(&f.app, get_req("/me", Some(&again))).await, 200);
}

pub async fn logout_clears_and_replay_fails(f: Fixture) {
    let pair = login(&f.app, &f.user, &[], None).await;
    let resp = send(&f.app, post_req("/logout", Some(&pair), json!({}))).await;
    assert_eq!(resp.status, 204);
    let c = resp.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(c.starts_with("__Host-keycard=;"), "{c}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=0"] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    assert_eq!(resp.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 401);
    assert_eq!(
        status(&f.app, post_req("/logout", Some(&pair), json!({}))).await,
        401
    );
}

pub async fn logout_all_and_listing(f: Fixture) {
    let a = login(&f.app, &f.user, &[], None).await;
    let b = login(&f.app, &f.user, &[], None).await;
    let other_user = format!("{}-other", f.user);
    let c = login(&f.app, &other_user, &[], None).await;
    let resp = send(&f.app, get_req("/sessions", Some(&a))).await;
    assert_eq!(resp.status, 200);
    let list = resp.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    for s in list {
        for k in [
            "id",
            "created_at",
            "last_seen_at",
            "user_agent",
            "ip",
            "current",
        ] {
            assert!(s.get(k).is_some(), "{s} lacks {k}");
        }
        let id = s["id"].as_str().unwrap();
        assert!(
            !a.contains(id) && !b.contains(id),
            "handles are not the secret"
        );
        assert!(s["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(
        status(&f.app, post_req("/logout-all", Some(&a), json!({}))).await,
        204
    );
    assert_eq!(status(&f.app, get_req("/me", Some(&a))).await, 401);
    assert_eq!(status(&f.app, get_req("/me", Some(&b))).await, 401);
    assert_eq!(status(&f.app, get_req("/me", Some(&c))).await, 200);
}

pub async fn revoke_one_session(f: Fixture) {
    let a = login(&f.app, &f.user, &[], None).await;
    let b = login(&f.app, &f.user, &[], None).await;
    let other = login(&f.app, &format!("{}-x", f.user), &[], None).await;
    let other_id = send(&f.app, get_req("/me", Some(&other))).await.json()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_id = send(&f.app, get_req("/me", Some(&b))).await.json()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let del = |id: &str, c: &str| {
        Request::delete(format!("/sessions/{id}"))
            .header(header::COOKIE, c)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(status(&f.app, del(&other_id, &a)).await, 404);
    assert_eq!(status(&f.app, get_req("/me", Some(&other))).await, 200);
    assert_eq!(status(&f.app, del("not-a-handle", &a)).await, 404);
    assert_eq!(status(&f.app, del(&b_id, &a)).await, 204);
    assert_eq!(status(&f.app, get_req("/me", Some(&b))).await, 401);
    assert_eq!(status(&f.app, get_req("/me", Some(&a))).await, 200);
}

pub async fn roles_guard(f: Fixture) {
    let user = login(&f.app, &f.user, &["user"], None).await;
    let admin = login(
        &f.app,
        &format!("{}-admin", f.user),
        &["user", "admin"],
        None,
    )
    .await;
    assert_eq!(status(&f.app, get_req("/admin", None)).await, 401);
    assert_eq!(status(&f.app, get_req("/admin", Some(&user))).await, 403);
    assert_eq!(status(&f.app, get_req("/admin", Some(&admin))).await, 200);
}

pub async fn rotation_after_privilege_change(f: Fixture) {
    let old = login(&f.app, &f.user, &["user"], None).await;
    let resp = send(&f.app, post_req("/promote", Some(&old), json!({}))).await;
    // The test app answers a rotation with the issued credential (`keycard::testing::router`).
    assert_eq!(resp.status, 200);
    let new = resp.cookie_pair().expect("rotation sets a new cookie");
    assert_ne!(new, old);
    assert_eq!(status(&f.app, get_req("/me", Some(&old))).await, 401);
    assert_eq!(status(&f.app, get_req("/admin", Some(&new))).await, 200);
}

pub async fn idle_timeout(f: Fixture) {
    let pair = login(&f.app, &f.user, &[], None).await;
    f.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 200);
    // That request renewed the session (29 min ≥ the 3-minute renewal interval).
    f.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 200);
    f.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 401);
}

pub async fn absolute_timeout(f: Fixture) {
    let pair = login(&f.app, &f.user, &[], None).await;
    for _ in 0..((12 * 60) / 20 - 1) {
        f.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 200);
    }
    f.clock.advance(Duration::from_secs(21 * 60));
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 401);
}

pub async fn renewal_is_throttled(f: Fixture) {
    let pair = login(&f.app, &f.user, &[], None).await;
    let seen = |f: &Fixture| {
        let store = f.store.clone();
        let user = f.user.clone();
        let now = f.clock.now();
        async move { store.list(&user, now).await.unwrap()[0].last_seen_at }
    };
    let t0 = seen(&f).await;
    f.clock.advance(Duration::from_secs(60));
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 200);
    assert_eq!(seen(&f).await, t0, "no write within the renewal interval");
    f.clock.advance(Duration::from_secs(150));
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 200);
    let t1 = seen(&f).await;
    assert!(t1 > t0, "renewed after the interval");
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(status(&f.app, get_req("/me", Some(&pair))).await, 200);
    assert_eq!(seen(&f).await, t1);
}

pub async fn session_limit_reject(store: Arc<dyn SessionStore>) {
    let mut s = settings();
    s.limit = Some(SessionLimit {
        max: 2,
        policy: LimitPolicy::Reject,
    });
    let f = fixture(store, s);
    login(&f.app, &f.user, &[], None).await;
    login(&f.app, &f.user, &[], None).await;
    let resp = send(&f.app, post_req("/login", None, json!({"subject": f.user}))).await;
    assert_eq!(resp.status, 403);
}

pub async fn session_limit_evicts_oldest_under_concurrency(store: Arc<dyn SessionStore>) {
    let mut s = settings();
    s.limit = Some(SessionLimit {
        max: 3,
        policy: LimitPolicy::EvictOldest,
    });
    let f = fixture(store, s);
    let first = login(&f.app, &f.user, &[], None).await;
    // The first session is strictly the oldest.
    f.clock.advance(Duration::from_millis(5));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let app = f.app.clone();
        let user = f.user.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, post_req("/login", None, json!({"subject": user})))
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let live = f.store.list(&f.user, f.clock.now()).await.unwrap();
    assert_eq!(live.len(), 3, "the limit holds under concurrent logins");
    assert_eq!(status(&f.app, get_req("/me", Some(&first))).await, 401);
}

pub async fn csrf_blocks_cross_site_unsafe_methods(f: Fixture) {
    let pair = login(&f.app, &f.user, &[], None).await;
    let mut req = post_req("/logout", Some(&pair), json!({}));
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(status(&f.app, req).await, 403);
    let mut req = post_req("/logout", Some(&pair), json!({}));
    req.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    req.headers_mut()
        .insert(header::HOST, "app.example".parse().unwrap());
    assert_eq!(status(&f.app, req).await, 403);
    let mut req = post_req("/login", None, json!({"subject": "mallory"}));
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(status(&f.app, req).await, 403, "login CSRF");
    assert_eq!(
        status(&f.app, get_req("/me", Some(&pair))).await,
        200,
        "session survived"
    );
    let mut req = post_req("/logout", Some(&pair), json!({}));
    req.headers_mut()
        .insert("sec-fetch-site", "same-origin".parse().unwrap());
    assert_eq!(status(&f.app, req).await, 204);
}

pub async fn missing_layer_is_500_naming_it() {
    let app: Router = Router::new().route(
        "/me",
        get(|u: Principal| async move { u.subject().to_owned() }),
    );
    let resp = send(&app, get_req("/me", None)).await;
    assert_eq!(resp.status, 500);
    let body = resp.json();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("SessionLayer"),
        "{body}"
    );
}

/// Anonymous sessions: reading data without a credential creates nothing; writing creates an
/// anonymous session (a cookie that is no principal: `/me` is 401, `/maybe` anonymous) whose
/// data moves into the session a login creates, under a fresh ID; the anonymous ID then stops
/// working.
pub async fn anonymous_data_moves_into_login(f: Fixture) {
    let read = send(&f.app, get_req("/data", None)).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), json!({}));
    assert!(read.cookie_pair().is_none(), "a read starts no session");

    let write = send(&f.app, put_req("/data/cart", None, json!([1, 2]))).await;
    assert_eq!(write.status, 200);
    let anonymous = write
        .cookie_pair()
        .expect("a write starts an anonymous session");
    assert_eq!(status(&f.app, get_req("/me", Some(&anonymous))).await, 401);
    let maybe = send(&f.app, get_req("/maybe", Some(&anonymous))).await;
    assert_eq!(maybe.text(), "anonymous");
    let more = send(
        &f.app,
        put_req("/data/theme", Some(&anonymous), json!("dark")),
    )
    .await;
    assert_eq!(more.status, 200);
    assert!(
        more.cookie_pair().is_none(),
        "the anonymous session is reused"
    );
    assert_eq!(
        send(&f.app, get_req("/data", Some(&anonymous)))
            .await
            .json(),
        json!({"cart": [1, 2], "theme": "dark"})
    );

    let session = login(&f.app, &f.user, &[], Some(&anonymous)).await;
    assert_ne!(session, anonymous, "a fresh ID at login");
    assert_eq!(
        send(&f.app, get_req("/data", Some(&session))).await.json(),
        json!({"cart": [1, 2], "theme": "dark"}),
        "the data moved into the new session"
    );
    assert_eq!(status(&f.app, get_req("/me", Some(&session))).await, 200);
    let old = send(&f.app, get_req("/data", Some(&anonymous))).await;
    assert_eq!(old.status, 401, "the anonymous ID stops working");
}

/// Expands to one test per case for the store built by `$make` (an async expression).
macro_rules! http_suite {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            use $crate::common::http_suite as suite;

            async fn fixture() -> suite::Fixture {
                suite::fixture(store().await, suite::settings())
            }

            #[allow(dead_code)]
            async fn store() -> std::sync::Arc<dyn keycard::store::SessionStore> {
                $make
            }

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        suite::$name(fixture().await).await;
                    }
                };
            }

            case!(login_sets_secure_cookie);
            case!(store_keeps_only_the_hash);
            case!(missing_and_bad_credentials_are_401);
            case!(anonymous_optional_and_public);
            case!(duplicate_and_oversized_cookies);
            case!(fixation_client_chosen_id_never_adopted);
            case!(logout_clears_and_replay_fails);
            case!(logout_all_and_listing);
            case!(revoke_one_session);
            case!(roles_guard);
            case!(rotation_after_privilege_change);
            case!(idle_timeout);
            case!(absolute_timeout);
            case!(renewal_is_throttled);
            case!(csrf_blocks_cross_site_unsafe_methods);
            case!(anonymous_data_moves_into_login);

            #[tokio::test]
            async fn session_limit_reject() {
                suite::session_limit_reject(store().await).await;
            }

            #[tokio::test]
            async fn session_limit_evicts_oldest_under_concurrency() {
                suite::session_limit_evicts_oldest_under_concurrency(store().await).await;
            }
        }
    };
}
pub(crate) use http_suite;
