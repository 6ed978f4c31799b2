//! Store outages: fail closed, then recover without a restart.

use std::time::Duration;

use http::StatusCode;

use super::{
    StrategyHarness,
    client::{App, Cred, Reply, subject},
};

/// Asserts that `reply` is a 503 naming a temporary outage.
#[track_caller]
fn unavailable(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what} while the store is down"
    );
    assert_eq!(reply.error(), "temporarily_unavailable", "{what}");
}

/// With the store down, every request that needs it fails closed with 503 (never 200, never
/// anonymous, never a 401 that would log the user out): authentication of a session
/// credential, `Option<Principal>`, login, listing, the high-risk route and refresh. A locally
/// verified access token (strategies with refresh tokens) may still be served to its own
/// subject, or refused with 503. Once the store is back, the same keycard serves the same
/// credential again, and new logins, within ten seconds.
pub async fn store_down_is_503(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let cred = app.login(&user, &[]).await;
    app.me(&cred).await;

    harness.fail_store().await;
    let me = app.get("/me", Some(&cred)).await;
    let maybe = app.get("/maybe", Some(&cred)).await;
    if app.refreshes {
        for (reply, what) in [(&me, "Principal"), (&maybe, "Option<Principal>")] {
            match reply.status {
                StatusCode::OK => assert!(
                    reply.text().contains(user.as_str()),
                    "{what}: a locally verified token is served as its own subject only"
                ),
                _ => unavailable(reply, what),
            }
        }
    } else {
        unavailable(&me, "Principal");
        unavailable(&maybe, "Option<Principal>");
    }
    unavailable(&app.post_login(&subject(), &[]).await, "login");
    unavailable(&app.get("/sessions", Some(&cred)).await, "listing sessions");
    if harness.high_risk() {
        unavailable(
            &app.get("/high-risk", Some(&cred)).await,
            "a high-risk route",
        );
    }
    if app.refreshes {
        unavailable(&app.refresh(&cred).await, "refresh");
    }
    harness.recover_store().await;
    recovers(&app, &cred).await;
}

/// Waits (up to ten seconds) until `cred` is served again and a new login works; meanwhile only
/// 200 or 503 are acceptable.
async fn recovers(app: &App, cred: &Cred) {
    for _ in 0..100 {
        let me = app.get("/me", Some(cred)).await.status;
        assert!(
            me == StatusCode::OK || me == StatusCode::SERVICE_UNAVAILABLE,
            "only 200 or 503 while the store comes back, got {me}"
        );
        if me == StatusCode::OK {
            let login = app.post_login(&subject(), &[]).await.status;
            assert!(
                login == StatusCode::OK || login == StatusCode::SERVICE_UNAVAILABLE,
                "only 200 or 503 while the store comes back, got {login}"
            );
            if login == StatusCode::OK {
                let listed = app.get("/sessions", Some(cred)).await;
                if listed.status == StatusCode::OK {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the keycard did not recover within 10 s of the store coming back");
}
