//! New credentials for a live session: rotation, step-up, the high-risk route, refresh.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::{
    StrategyHarness,
    client::{App, Cred, subject},
};

/// The credentials a 200 reply handed out.
fn issued(app: &App, reply: &super::client::Reply, what: &str) -> Cred {
    assert_eq!(reply.status, StatusCode::OK, "{what}");
    app.credentials(reply)
        .unwrap_or_else(|| panic!("{what} hands out a credential"))
}

/// After a privilege change, [`Auth::rotate`](crate::Auth::rotate) replaces the credential: the
/// new one carries the new roles (and keeps them across a refresh), the old one (and its refresh
/// token) is refused.
pub async fn rotation_after_privilege_change(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let old = app.login(&user, &["user"]).await;
    assert_eq!(app.status("/admin", &old).await, StatusCode::FORBIDDEN);

    let reply = app
        .post("/rotate", Some(&old), json!({ "roles": ["user", "admin"] }))
        .await;
    let new = issued(&app, &reply, "rotation");
    assert!(new.value != old.value, "rotation issues a new credential");
    assert_eq!(
        app.status("/me", &old).await,
        StatusCode::UNAUTHORIZED,
        "the credential from before the privilege change is refused"
    );
    assert_eq!(
        app.status("/admin", &new).await,
        StatusCode::OK,
        "the new roles"
    );
    let me = app.me(&new).await;
    assert_eq!(me["subject"], user.as_str());
    assert_eq!(me["roles"], json!(["user", "admin"]));
    if app.refreshes {
        let reply = app.refresh(&old).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "the old refresh token"
        );
        let refreshed = app.refreshed(&new).await;
        assert_eq!(app.me(&refreshed).await["roles"], json!(["user", "admin"]));
    }
}

/// [`Auth::step_up`](crate::Auth::step_up) replaces the credential with one whose
/// authentication time is the step-up's (kept across a refresh); the old one is refused.
pub async fn step_up_renews_the_authentication_time(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let cred = app.login(&user, &["user"]).await;
    let at_login = app.me(&cred).await["authenticated_at"]
        .as_i64()
        .unwrap_or_default();
    let cred = app.keep_alive(&cred, Duration::from_secs(120)).await;
    let now = app.now_ms();
    let reply = app.post("/step-up", Some(&cred), json!({})).await;
    let fresh = issued(&app, &reply, "step-up");

    let me = app.me(&fresh).await;
    assert_eq!(me["subject"], user.as_str());
    assert_eq!(me["roles"], json!(["user"]), "a step-up keeps the roles");
    let stepped = me["authenticated_at"].as_i64().unwrap_or_default();
    assert!(
        stepped >= now - 1000 && stepped <= now && stepped > at_login,
        "authenticated at the step-up ({stepped}; login {at_login}, step-up {now})"
    );
    assert_eq!(
        app.status("/me", &cred).await,
        StatusCode::UNAUTHORIZED,
        "the credential from before the step-up is refused"
    );
    if app.refreshes {
        let reply = app.refresh(&cred).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "the old refresh token"
        );
        let refreshed = app.refreshed(&fresh).await;
        let kept = app.me(&refreshed).await["authenticated_at"].as_i64();
        assert_eq!(
            kept,
            Some(stepped),
            "a refresh keeps the authentication time"
        );
    }
}

/// A [`HighRisk`](crate::HighRisk) route (five minutes) passes right after login, refuses the
/// same live session once the login is more than five minutes old (401
/// `insufficient_user_authentication`), and passes again after a step-up.
///
/// # Panics
/// When the harness says the application has no high-risk routes
/// ([`StrategyHarness::high_risk`]).
pub async fn high_risk_demands_a_recent_authentication(harness: &dyn StrategyHarness) {
    assert!(
        harness.high_risk(),
        "this harness declares no HighRisk routes; do not run this check against it"
    );
    let app = App::new(harness).await;
    let user = subject();
    let cred = app.login(&user, &[]).await;
    let fresh = app.get("/high-risk", Some(&cred)).await;
    assert_eq!(fresh.status, StatusCode::OK, "a fresh login passes");
    assert_eq!(fresh.text(), user);

    let cred = app.keep_alive(&cred, Duration::from_secs(5 * 60 + 1)).await;
    let stale = app.get("/high-risk", Some(&cred)).await;
    assert_eq!(
        stale.status,
        StatusCode::UNAUTHORIZED,
        "a login over 5 minutes old"
    );
    assert_eq!(stale.error(), "insufficient_user_authentication");
    app.me(&cred).await;

    let reply = app.post("/step-up", Some(&cred), json!({})).await;
    let stepped = issued(&app, &reply, "step-up");
    let after = app.get("/high-risk", Some(&stepped)).await;
    assert_eq!(after.status, StatusCode::OK, "after a step-up");
    assert_eq!(after.text(), user);
}

/// With refresh tokens: a refresh hands out a new access and refresh token in the same session;
/// once its successor has been used too, presenting the spent refresh token again is refused and
/// ends the session (its access tokens included), whatever grace window the strategy allows a
/// lost response (at most the immediate predecessor of an unused head); a made-up refresh token
/// is refused. Without: every refresh is `invalid_grant`.
pub async fn refresh_exchanges_tokens(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let cred = app.login(&user, &[]).await;
    let made_up = Cred {
        refresh: Some("A".repeat(43)),
        ..cred.clone()
    };
    let refused = app.refresh(&made_up).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "a made-up refresh token"
    );
    assert_eq!(refused.error(), "invalid_grant");
    if !app.refreshes {
        assert!(
            cred.refresh.is_none(),
            "no refresh token without refresh_tokens()"
        );
        return;
    }
    let session = app.me(&cred).await["session"].clone();
    let next = app.refreshed(&cred).await;
    assert!(next.value != cred.value, "a new access token");
    assert!(next.refresh != cred.refresh, "a new refresh token");
    let me = app.me(&next).await;
    assert_eq!(me["subject"], user.as_str());
    assert_eq!(me["session"], session, "the same session");
    // The client goes on with its new token, so the first is no grace-window retry.
    let next = app.refreshed(&next).await;

    let reused = app.refresh(&cred).await;
    assert_eq!(
        reused.status,
        StatusCode::UNAUTHORIZED,
        "a spent refresh token"
    );
    assert_eq!(reused.error(), "invalid_grant");
    let killed = app.refresh(&next).await;
    assert_eq!(
        killed.status,
        StatusCode::UNAUTHORIZED,
        "reuse ended the session: its newest refresh token is refused too"
    );
    assert_eq!(
        app.status("/me", &next).await,
        StatusCode::UNAUTHORIZED,
        "and so are its access tokens"
    );
}
