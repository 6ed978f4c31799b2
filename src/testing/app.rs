//! [`router`]: the test application every suite check drives, and keycard's own HTTP tests too.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::Path,
    routing::{delete, get, post, put},
};
use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    Auth, HighRisk, Keycard, Login, Principal, Rejection, RequireRole, Role, SessionData,
    clock::to_millis, credential::Issued,
};

/// The test application: keycard's layer, extractors and [`Auth`] behind small JSON routes.
///
/// | route | answer |
/// |---|---|
/// | `POST /login` | logs in `subject` (default `alice`) with `roles` (default none) from an optional JSON body, which may also choose the session's [`Login`] options: `remember` (default `true`), `idle_ms` and `absolute_ms`; 200 with the issued credentials |
/// | `POST /refresh` | [`Auth::refresh`] with the body's `refresh_token` (or the refresh cookie); 200 with the issued credentials |
/// | `GET /me` | `{subject, roles, session, authenticated_at}` of the principal (`authenticated_at` in Unix milliseconds) |
/// | `GET /maybe` | the subject, or `anonymous` (`Option<Principal>`) |
/// | `GET`, `POST /public` | no authentication |
/// | `GET /admin` | the subject, for the `admin` role only ([`RequireRole`]) |
/// | `POST /rotate` | [`Auth::rotate`] to the body's `roles`; 200 with the issued credentials |
/// | `POST /promote` | [`Auth::rotate`] to the roles `user` and `admin`; 200 with the issued credentials |
/// | `POST /step-up` | [`Auth::step_up`]; 200 with the issued credentials |
/// | `GET`, `POST /high-risk` | the subject, behind [`HighRisk`] |
/// | `POST /logout`, `POST /logout-all`, `POST /logout-others` | 204 |
/// | `GET /sessions` | the caller's sessions as [`Auth::sessions`] lists them |
/// | `DELETE /sessions/{id}` | revokes one of them; 204 |
/// | `GET /token` | the double-submit CSRF token ([`Auth::csrf_token`]; empty without one) |
/// | `POST /act` | `done`, for any principal |
/// | `GET /data` | the session's data ([`SessionData::entries`]) |
/// | `PUT /data/{key}` | sets `key` to the JSON body; 200 with the data after the change |
/// | `DELETE /data/{key}` | removes `key`; 200 with the data after the change |
///
/// The issued credentials are JSON: `subject`, `session` (the public handle), and each of
/// `session_token`, `access_token` and `refresh_token` that the strategy issued, so that a client
/// of a token API reads its credential from the body.
pub fn router(keycard: &Keycard) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route(
            "/public",
            get(|| async { "hello" }).post(|| async { "posted" }),
        )
        .route("/admin", get(admin))
        .route("/rotate", post(rotate))
        .route("/promote", post(promote))
        .route("/step-up", post(step_up))
        .route("/high-risk", get(high_risk).post(high_risk))
        .route("/logout", post(logout))
        .route("/logout-all", post(logout_all))
        .route("/logout-others", post(logout_others))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", delete(revoke))
        .route("/token", get(csrf_token))
        .route("/act", post(act))
        .route("/data", get(data))
        .route("/data/{key}", put(set_data).delete(remove_data))
        .layer(keycard.layer())
}

/// The role `/admin` requires.
struct Admin;

impl Role for Admin {
    const NAME: &'static str = "admin";
}

/// The credentials of `issued`, as a login endpoint of a token API returns them.
fn issued_json(issued: &Issued) -> Json<Value> {
    let mut body = json!({
        "subject": issued.principal.subject(),
        "session": issued.principal.session().id,
    });
    if let Some(t) = &issued.session_token {
        body["session_token"] = json!(t.expose_secret());
    }
    if let Some(t) = &issued.access_token {
        body["access_token"] = json!(t.token);
    }
    if let Some(t) = &issued.refresh_token {
        body["refresh_token"] = json!(t.expose_secret());
    }
    Json(body)
}

fn roles_of(body: &Value) -> Vec<String> {
    body["roles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The [`Login`] options of a `/login` body.
fn login_options(body: &Value) -> Login {
    let millis = |field: &str| body[field].as_u64().map(Duration::from_millis);
    let mut options = Login::remember(body["remember"].as_bool().unwrap_or(true));
    if let Some(idle) = millis("idle_ms") {
        options = options.idle_timeout(idle);
    }
    if let Some(absolute) = millis("absolute_ms") {
        options = options.absolute_timeout(absolute);
    }
    options
}

async fn login(auth: Auth, body: Option<Json<Value>>) -> Result<Json<Value>, Rejection> {
    let body = body.map_or(Value::Null, |Json(b)| b);
    let subject = body["subject"].as_str().unwrap_or("alice").to_owned();
    let issued = auth
        .login_with(
            Principal::builder(subject).roles(roles_of(&body)),
            login_options(&body),
        )
        .await?;
    Ok(issued_json(&issued))
}

async fn refresh(auth: Auth, Json(body): Json<Value>) -> Result<Json<Value>, Rejection> {
    let issued = auth.refresh(body["refresh_token"].as_str()).await?;
    Ok(issued_json(&issued))
}

async fn me(user: Principal) -> Json<Value> {
    Json(json!({
        "subject": user.subject(),
        "roles": user.roles(),
        "session": user.session().id,
        "authenticated_at": to_millis(user.authenticated_at()),
    }))
}

async fn maybe(user: Option<Principal>) -> String {
    user.map_or_else(|| "anonymous".to_owned(), |u| u.subject().to_owned())
}

async fn admin(RequireRole(user, ..): RequireRole<Admin>) -> String {
    user.subject().to_owned()
}

async fn rotate(
    auth: Auth,
    user: Principal,
    Json(body): Json<Value>,
) -> Result<Json<Value>, Rejection> {
    let spec = Principal::builder(user.subject()).roles(roles_of(&body));
    Ok(issued_json(&auth.rotate(Some(spec.build())).await?))
}

async fn promote(auth: Auth, user: Principal) -> Result<Json<Value>, Rejection> {
    let spec = Principal::builder(user.subject()).roles(["user", "admin"]);
    Ok(issued_json(&auth.rotate(Some(spec.build())).await?))
}

async fn step_up(auth: Auth) -> Result<Json<Value>, Rejection> {
    Ok(issued_json(&auth.step_up().await?))
}

async fn high_risk(HighRisk(user, ..): HighRisk) -> String {
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

async fn logout_others(auth: Auth) -> Result<StatusCode, Rejection> {
    auth.logout_others().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sessions(auth: Auth) -> Result<Json<Value>, Rejection> {
    let listed = auth.sessions().await?;
    Ok(Json(serde_json::to_value(listed).unwrap_or(Value::Null)))
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

async fn data(data: SessionData) -> Result<Json<Value>, Rejection> {
    Ok(Json(Value::Object(data.entries().await?)))
}

async fn set_data(
    data: SessionData,
    Path(key): Path<String>,
    Json(value): Json<Value>,
) -> Result<Json<Value>, Rejection> {
    data.insert(&key, &value).await?;
    Ok(Json(Value::Object(data.entries().await?)))
}

async fn remove_data(data: SessionData, Path(key): Path<String>) -> Result<Json<Value>, Rejection> {
    data.remove(&key).await?;
    Ok(Json(Value::Object(data.entries().await?)))
}
