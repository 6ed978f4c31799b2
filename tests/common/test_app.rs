//! The one test application: keycard's layer, extractors and `Auth` behind small JSON routes. The
//! HTTP suite, the client-policy, double-submit CSRF and no-secrets-in-logs tests all drive it;
//! only the [`Keycard`] they build differs.
//!
//! | route | answer |
//! |---|---|
//! | `POST /login` | logs in `subject` (default `alice`) with `roles` (default none) from an optional JSON body; 200 with [`issued_json`] |
//! | `POST /refresh` | `Auth::refresh` with the body's `refresh_token` (or the refresh cookie); 200 with [`issued_json`] |
//! | `GET /me` | `{subject, roles, session}` of the principal |
//! | `GET /maybe` | the subject, or `anonymous` |
//! | `GET`/`POST /public` | no authentication |
//! | `GET /admin` | the subject, for the `admin` role only |
//! | `POST /promote` | rotates the session with roles `user` and `admin`; 200 with [`issued_json`] |
//! | `POST /step-up` | `Auth::step_up`; 200 with [`issued_json`] |
//! | `POST /risky` | the subject, behind `HighRisk` |
//! | `POST /logout`, `POST /logout-all` | 204 |
//! | `GET /sessions` | the caller's sessions as keycard lists them |
//! | `DELETE /sessions/{id}` | revokes one of them; 204 |
//! | `GET /token` | the double-submit CSRF token (empty without one) |
//! | `POST /act` | `done`, for any principal |

use axum::{
    Json, Router,
    extract::Path,
    http::StatusCode,
    routing::{delete, get, post},
};
use keycard::{Auth, HighRisk, Keycard, Principal, Rejection, RequireRole, Role, strategy::Issued};
use serde_json::{Value, json};

use super::http_client::{post_req, send};

/// The `admin` role.
pub struct Admin;
impl Role for Admin {
    const NAME: &'static str = "admin";
}

/// What a credential-issuing route answers: the subject and session handle, and the access and
/// refresh tokens when the strategy issues them.
pub fn issued_json(issued: &Issued) -> Json<Value> {
    let mut body = json!({
        "subject": issued.principal.subject(),
        "session": issued.principal.session().id,
    });
    if let Some(a) = &issued.access_token {
        body["access_token"] = json!(a.token);
    }
    if let Some(r) = &issued.refresh_token {
        body["refresh_token"] = json!(r.expose_secret());
    }
    Json(body)
}

/// The test app on `keycard`.
pub fn router(keycard: &Keycard) -> Router {
    async fn login(auth: Auth, body: Option<Json<Value>>) -> Result<Json<Value>, Rejection> {
        let body = body.map_or(Value::Null, |Json(b)| b);
        let subject = body["subject"].as_str().unwrap_or("alice").to_owned();
        let roles: Vec<String> = body["roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let issued = auth.login(Principal::builder(subject).roles(roles)).await?;
        Ok(issued_json(&issued))
    }
    async fn refresh(auth: Auth, Json(body): Json<Value>) -> Result<Json<Value>, Rejection> {
        let issued = auth.refresh(body["refresh_token"].as_str()).await?;
        Ok(issued_json(&issued))
    }
    async fn me(user: Principal) -> Json<Value> {
        Json(
            json!({ "subject": user.subject(), "roles": user.roles(), "session": user.session().id }),
        )
    }
    async fn maybe(user: Option<Principal>) -> String {
        user.map_or_else(|| "anonymous".into(), |u| u.subject().to_owned())
    }
    async fn admin(RequireRole(user, ..): RequireRole<Admin>) -> String {
        user.subject().to_owned()
    }
    async fn promote(auth: Auth, user: Principal) -> Result<Json<Value>, Rejection> {
        let spec = Principal::builder(user.subject())
            .roles(["user", "admin"])
            .build();
        Ok(issued_json(&auth.rotate(Some(spec)).await?))
    }
    async fn step_up(auth: Auth) -> Result<Json<Value>, Rejection> {
        Ok(issued_json(&auth.step_up().await?))
    }
    async fn risky(HighRisk(user, _): HighRisk) -> String {
        user.subject().to_owned()
    }
    async fn logout(auth: Auth) -> Result<StatusCode, Rejection> {
        auth.logout().await?;
        Ok(StatusCode::NO_CONTENT)
    }
    async fn logout_all(auth: Auth) -> Result<StatusCode, Rejection> {
        auth.logout_all().await?;
        Ok(StatusCode::NO_CONTENT)
    }
    async fn sessions(auth: Auth) -> Result<Json<Value>, Rejection> {
        Ok(Json(serde_json::to_value(auth.sessions().await?).unwrap()))
    }
    async fn revoke(auth: Auth, Path(id): Path<String>) -> Result<StatusCode, Rejection> {
        auth.revoke(&id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    async fn csrf_token(auth: Auth) -> String {
        auth.csrf_token().unwrap_or_default()
    }
    async fn act(_: Principal) -> &'static str {
        "done"
    }
    Router::new()
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/public", get(|| async { "hello" }))
        .route("/public", post(|| async { "posted" }))
        .route("/admin", get(admin))
        .route("/promote", post(promote))
        .route("/step-up", post(step_up))
        .route("/risky", post(risky))
        .route("/logout", post(logout))
        .route("/logout-all", post(logout_all))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", delete(revoke))
        .route("/token", get(csrf_token))
        .route("/act", post(act))
        .layer(keycard.layer())
}

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
