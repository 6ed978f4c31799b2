//! Idle and absolute expiry, through the injectable clock.

use std::time::Duration;

use http::StatusCode;

use super::{
    Lifetimes, StrategyHarness,
    client::{App, Cred, subject},
};

const SECOND: Duration = Duration::from_secs(1);

/// Asserts that `cred` is refused, by `Principal` and `Option<Principal>` alike.
async fn expired(app: &App, cred: &Cred, what: &str) {
    assert_eq!(
        app.status("/me", cred).await,
        StatusCode::UNAUTHORIZED,
        "{what}"
    );
    assert_eq!(
        app.status("/maybe", cred).await,
        StatusCode::UNAUTHORIZED,
        "{what}: a 401 for Option<Principal> too, not anonymous"
    );
}

/// Asserts that the refresh token of `cred` is refused with `invalid_grant`.
async fn refresh_refused(app: &App, cred: &Cred, what: &str) {
    let reply = app.refresh(cred).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(reply.error(), "invalid_grant", "{what}");
}

/// Idle expiry. Sessions: a credential used within 90 % of `idle` twice in a row outlives
/// `idle` (it slides), then is refused once unused for longer than `idle`. Tokens: the access
/// token is accepted until `access` and refused after `access + leeway` however used; a refresh
/// then renews it, a refresh token used within 90 % of `refresh_idle` renews the session, and one
/// unused for longer than `refresh_idle` is refused (with the access tokens of that time).
pub async fn idle_expiry(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let cred = app.login(&subject(), &[]).await;
    match app.lifetimes {
        Lifetimes::Session { idle, .. } => {
            let step = idle * 9 / 10;
            for _ in 0..2 {
                app.clock.advance(step);
                app.me(&cred).await;
            }
            app.clock.advance(idle + SECOND);
            expired(&app, &cred, "a credential unused for longer than idle").await;
        }
        Lifetimes::Tokens {
            access,
            leeway,
            refresh_idle,
            ..
        } => {
            app.clock.advance(access - 2 * SECOND);
            app.me(&cred).await;
            app.clock.advance(leeway + 4 * SECOND);
            expired(&app, &cred, "an access token past its lifetime and leeway").await;
            let renewed = app.refreshed(&cred).await;
            app.me(&renewed).await;
            app.clock.advance(refresh_idle * 9 / 10);
            let renewed = app.refreshed(&renewed).await;
            app.me(&renewed).await;
            app.clock.advance(refresh_idle + SECOND);
            refresh_refused(
                &app,
                &renewed,
                "a refresh token unused for longer than idle",
            )
            .await;
            expired(&app, &renewed, "the access token of that time").await;
        }
    }
}

/// Absolute expiry. A session kept alive as a client would (a request, or a refresh, every 90 %
/// of the idle lifetime) is refused once `absolute` (`refresh_absolute`) has passed since login,
/// although it was never idle for long; for tokens, the last access token dies at its own expiry.
pub async fn absolute_expiry(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let mut cred = app.login(&subject(), &[]).await;
    let (absolute, step) = match app.lifetimes {
        Lifetimes::Session { idle, absolute } => (absolute, idle * 9 / 10),
        Lifetimes::Tokens {
            refresh_idle,
            refresh_absolute,
            ..
        } => (refresh_absolute, refresh_idle * 9 / 10),
    };
    let mut elapsed = Duration::ZERO;
    while elapsed + step < absolute {
        app.clock.advance(step);
        elapsed += step;
        if app.refreshes {
            cred = app.refreshed(&cred).await;
        }
        app.me(&cred).await;
    }
    app.clock.advance(absolute - elapsed + SECOND);
    match app.lifetimes {
        Lifetimes::Session { .. } => {
            expired(&app, &cred, "a session past its absolute lifetime").await;
        }
        Lifetimes::Tokens { access, leeway, .. } => {
            refresh_refused(&app, &cred, "a refresh token past the absolute lifetime").await;
            app.clock.advance(access + leeway + 2 * SECOND);
            expired(&app, &cred, "the last access token, past its own lifetime").await;
        }
    }
}
