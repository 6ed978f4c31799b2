//! The lifetime an application chooses at login ([`Login`](crate::Login)): the cookie's
//! ("remember me") and shorter timeouts for one session.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::{
    Lifetimes, StrategyHarness,
    client::{App, Cred, Reply, subject},
};

const SECOND: Duration = Duration::from_secs(1);

/// Asserts that every credential cookie `reply` sets is persistent (`persistent`) or a
/// browser-session cookie.
#[track_caller]
fn assert_cookie_lifetime(app: &App, reply: &Reply, persistent: bool, what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}");
    for line in app.credential_cookies(reply) {
        let lower = line.to_ascii_lowercase();
        let lasting = lower.contains("; max-age=") || lower.contains("; expires=");
        assert_eq!(
            lasting,
            persistent,
            "{what}: a {} cookie, not `{}`",
            if persistent {
                "persistent"
            } else {
                "browser-session"
            },
            line.split('=').next().unwrap_or_default()
        );
    }
}

/// `POST /login` of a new subject with the [`Login`](crate::Login) options of `options` (the test
/// app's `remember`, `idle_ms`, `absolute_ms`).
async fn login_with(app: &App, options: serde_json::Value) -> Reply {
    let mut body = json!({ "subject": subject() });
    if let (Some(body), Some(options)) = (body.as_object_mut(), options.as_object()) {
        body.extend(options.clone());
    }
    app.post("/login", None, body).await
}

fn issued(app: &App, reply: &Reply, what: &str) -> Cred {
    assert_eq!(reply.status, StatusCode::OK, "{what}");
    app.credentials(reply)
        .unwrap_or_else(|| panic!("{what} hands out a credential"))
}

/// "Remember me": a login with `remember: true` sets persistent credential cookies (`Max-Age`),
/// one with `remember: false` browser-session cookies (neither `Max-Age` nor `Expires`), and the
/// choice holds for the life of the session: a rotation, a step-up and (for tokens) a refresh
/// re-send the cookies with the lifetime chosen at login. Vacuous for a strategy that sets no
/// credential cookie.
pub async fn remember_me_holds_for_the_session(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let reply = login_with(&app, json!({ "remember": true })).await;
    assert_cookie_lifetime(&app, &reply, true, "a remembered login");

    for remember in [false, true] {
        let reply = login_with(&app, json!({ "remember": remember })).await;
        assert_cookie_lifetime(&app, &reply, remember, "the login");
        let cred = issued(&app, &reply, "the login");
        let reply = app
            .post("/rotate", Some(&cred), json!({ "roles": ["user"] }))
            .await;
        assert_cookie_lifetime(&app, &reply, remember, "a rotation");
        let cred = issued(&app, &reply, "a rotation");
        let reply = app.post("/step-up", Some(&cred), json!({})).await;
        assert_cookie_lifetime(&app, &reply, remember, "a step-up");
        let cred = issued(&app, &reply, "a step-up");
        if app.refreshes {
            let reply = app.refresh(&cred).await;
            assert_cookie_lifetime(&app, &reply, remember, "a refresh");
        }
    }
}

/// The configured idle timeout of the session (for tokens, of the refresh token).
fn configured_idle(lifetimes: Lifetimes) -> Duration {
    match lifetimes {
        Lifetimes::Session { idle, .. } => idle,
        Lifetimes::Tokens { refresh_idle, .. } => refresh_idle,
    }
}

/// Asserts that the session of `cred` was ended by its idle timeout: the credential is refused,
/// or for tokens the refresh token is.
async fn idled_out(app: &App, cred: &Cred, what: &str) {
    if app.refreshes {
        let reply = app.refresh(cred).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(reply.error(), "invalid_grant", "{what}");
    } else {
        assert_eq!(
            app.status("/me", cred).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
}

/// A login may shorten its session's idle timeout: with half the configured one, the session
/// (for tokens, the refresh token and each successor) ends once unused for longer than that
/// half, where a default session would live on. A longer timeout than the configured one is
/// capped at it, and a zero one is refused (400 `invalid_data`).
pub async fn login_may_shorten_the_idle_timeout(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let idle = configured_idle(app.lifetimes);
    let own = idle / 2;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);

    let reply = login_with(&app, json!({ "idle_ms": ms(own) })).await;
    let mut cred = issued(&app, &reply, "a login with a shorter idle timeout");
    let default = app.login(&subject(), &[]).await;
    app.clock.advance(own * 9 / 10);
    if app.refreshes {
        cred = app.refreshed(&cred).await;
    } else {
        app.me(&cred).await;
    }
    app.clock.advance(own + SECOND);
    idled_out(
        &app,
        &cred,
        "a session unused for longer than its own idle timeout",
    )
    .await;
    if app.refreshes {
        app.refreshed(&default).await;
    } else {
        app.me(&default).await;
    }

    let reply = login_with(&app, json!({ "idle_ms": ms(idle * 10) })).await;
    let capped = issued(&app, &reply, "a login with a longer idle timeout");
    app.clock.advance(idle + SECOND);
    idled_out(
        &app,
        &capped,
        "an idle timeout longer than the configured one is capped at it",
    )
    .await;

    let reply = login_with(&app, json!({ "idle_ms": 0 })).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "a zero idle timeout");
    assert_eq!(reply.error(), "invalid_data");
}

/// A login may shorten its session's absolute lifetime: with twice the idle timeout, a session
/// kept alive as a client would ends once that much time has passed since login, and a step-up
/// at login does not lengthen it to the configured lifetime. A zero lifetime is refused.
pub async fn login_may_shorten_the_absolute_timeout(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let own = configured_idle(app.lifetimes) * 2;
    let ms = u64::try_from(own.as_millis()).unwrap_or(u64::MAX);
    let reply = login_with(&app, json!({ "absolute_ms": ms })).await;
    let cred = issued(&app, &reply, "a login with a shorter absolute timeout");
    let reply = app.post("/step-up", Some(&cred), json!({})).await;
    let cred = issued(&app, &reply, "a step-up");
    let cred = app.keep_alive(&cred, own - SECOND).await;
    app.clock.advance(2 * SECOND);
    idled_out(&app, &cred, "a session past its own absolute lifetime").await;

    let reply = login_with(&app, json!({ "absolute_ms": 0 })).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "a zero absolute timeout"
    );
    assert_eq!(reply.error(), "invalid_data");
}
