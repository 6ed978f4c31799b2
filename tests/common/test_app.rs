//! The one test application is keycard's own ([`keycard::testing::router`], feature
//! `test-suite`): the strategy suite drives it, and so do the HTTP suite, the client-policy,
//! double-submit CSRF and no-secrets-in-logs tests; only the [`keycard::Keycard`] they build
//! differs. Here: the request helpers that speak to it.

use axum::{Router, http::StatusCode};
pub use keycard::testing::router;
use serde_json::json;

use super::http_client::{post_req, send};

/// Logs `subject` in with `roles` through `POST /login` (presenting `cookie`, if given), which
/// must answer 200, and returns the `name=value` cookie pair it sets.
pub async fn login(app: &Router, subject: &str, roles: &[&str], cookie: Option<&str>) -> String {
    let resp = send(
        app,
        post_req(
            "/login",
            cookie,
            json!({"subject": subject, "roles": roles}),
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "login failed");
    resp.cookie_pair().expect("login sets a cookie")
}
