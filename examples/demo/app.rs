//! The demo application: routes, handlers, the seeded user table and the HTML page.
//!
//! [`app`] builds the whole router from a [`Keycard`] and a [`Users`] table, so the binary
//! (`main.rs`) and the end-to-end tests (`tests/demo_e2e.rs`) drive exactly the same code. The
//! HTTP contract is `DEMO.md`; `POST /step-up` is an extension documented on the page.

// Shared with the tests through `#[path]`; not every item is used by every includer.
#![allow(dead_code)]

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::SaltString,
};
use axum::{
    Form, Json, Router,
    body::Bytes,
    extract::{FromRequest, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{delete, get, post, put},
};
use keycard::{
    Auth, FiveMinutes, HighRisk, Keycard, Login, Principal, PrincipalSpec, Rejection, RequireRole,
    Role, SessionData, StrategyKind,
    strategy::{CredentialSource, Issued},
    throttle::Throttle,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// The seeded demo accounts: `(username, password, roles)`.
pub const SEED: &[(&str, &str, &[&str])] = &[
    ("alice", "wonderland", &["user"]),
    ("admin", "correct horse battery staple", &["user", "admin"]),
];

/// The user table: argon2id password hashes (PHC strings) and roles. Passwords are never stored.
pub struct Users {
    users: HashMap<String, User>,
    /// Verified when the username is unknown, so that a miss costs as much as a hit and response
    /// times do not reveal which usernames exist.
    dummy: String,
}

struct User {
    hash: String,
    roles: Vec<String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.users.keys().collect();
        names.sort();
        f.debug_struct("Users")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Users {
    /// The seeded users, hashed with argon2id at its recommended default cost (19 MiB, t=2).
    pub fn seeded() -> Result<Self, argon2::password_hash::Error> {
        Self::seeded_with(Params::default())
    }

    /// The seeded users hashed with argon2id at `params` (tests use a light cost to stay fast).
    pub fn seeded_with(params: Params) -> Result<Self, argon2::password_hash::Error> {
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let hash = |password: &str| -> Result<String, argon2::password_hash::Error> {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
            let salt = SaltString::encode_b64(&salt)?;
            Ok(hasher
                .hash_password(password.as_bytes(), &salt)?
                .to_string())
        };
        let mut users = HashMap::new();
        for (name, password, roles) in SEED {
            users.insert(
                (*name).to_owned(),
                User {
                    hash: hash(password)?,
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                },
            );
        }
        // A random password nobody knows, hashed with the same parameters as the real ones.
        let mut unknown = [0u8; 32];
        getrandom::fill(&mut unknown).map_err(|_| argon2::password_hash::Error::Crypto)?;
        let dummy = hash(&format!("{unknown:?}"))?;
        Ok(Self { users, dummy })
    }

    /// Checks a password. Always runs one argon2 verification, even for an unknown user.
    /// Blocking (argon2 is deliberately slow): call it off the async runtime.
    pub fn verify(&self, username: &str, password: &str) -> Option<PrincipalSpec> {
        let user = self.users.get(username);
        let hash = user.map_or(self.dummy.as_str(), |u| u.hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        // Verification takes the algorithm and cost from the PHC string itself.
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        match (ok, user) {
            (true, Some(u)) => Some(
                Principal::builder(username)
                    .roles(u.roles.iter().cloned())
                    .build(),
            ),
            _ => None,
        }
    }

    /// The stored PHC string of `username` (a hash, never the password), for inspection.
    pub fn password_hash(&self, username: &str) -> Option<&str> {
        self.users.get(username).map(|u| u.hash.as_str())
    }

    /// [`Users::verify`] on the blocking thread pool.
    pub async fn authenticate(
        self: &Arc<Self>,
        username: &str,
        password: &str,
    ) -> Option<PrincipalSpec> {
        let users = self.clone();
        let (username, password) = (username.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || users.verify(&username, &password))
            .await
            .ok()
            .flatten()
    }
}

#[derive(Clone)]
struct AppState {
    keycard: Keycard,
    users: Arc<Users>,
}

impl AppState {
    fn kind(&self) -> StrategyKind {
        strategy_kind(&self.keycard)
    }
}

/// The strategy the demo reports: the one named in config, or for a keycard built in code, what
/// its strategy's credentials say (tokens for `jwt`, a session cookie for `database`).
pub fn strategy_kind(keycard: &Keycard) -> StrategyKind {
    keycard
        .configured_strategy()
        .unwrap_or_else(|| match keycard.strategy().credential_source() {
            CredentialSource::Bearer => StrategyKind::Jwt,
            _ => StrategyKind::Database,
        })
}

/// The demo router, with keycard's layer installed. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so sessions record client IPs.
pub fn app(keycard: Keycard, users: Users) -> Router {
    prometheus();
    let layer = keycard.layer();
    let state = AppState {
        keycard,
        users: Arc::new(users),
    };
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/admin", get(admin))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .route("/logout-all", post(logout_all))
        .route("/logout-others", post(logout_others))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", delete(revoke))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/account/email", post(account_email))
        .route("/step-up", post(step_up))
        .route("/prefs", get(prefs))
        .route("/prefs/{name}", put(set_pref).delete(remove_pref))
        .route("/metrics", get(|| async { metrics_text() }))
        .with_state(state)
        .layer(layer)
}

// ---------------------------------------------------------------------------------------------
// Request bodies

/// A body accepted as JSON or as an HTML form (`application/x-www-form-urlencoded`), chosen by
/// `Content-Type`. The flag says whether it came from a form, which then gets redirects instead
/// of JSON. Unparseable bodies are 400 (415 for an unsupported content type), never 5xx.
struct Input<T> {
    value: T,
    form: bool,
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn bad_request(status: StatusCode, description: String) -> Response {
    (
        status,
        Json(json!({"error": "invalid_request", "error_description": description})),
    )
        .into_response()
}

impl<S, T> FromRequest<S> for Input<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if is_form(req.headers()) {
            let Form(value) = Form::<T>::from_request(req, state)
                .await
                .map_err(|e| bad_request(StatusCode::BAD_REQUEST, e.body_text()))?;
            Ok(Self { value, form: true })
        } else {
            let Json(value) = Json::<T>::from_request(req, state).await.map_err(|e| {
                let status = if e.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                } else {
                    StatusCode::BAD_REQUEST
                };
                bad_request(status, e.body_text())
            })?;
            Ok(Self { value, form: false })
        }
    }
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    /// A persistent cookie when true, else a browser-session cookie.
    #[serde(default)]
    remember: bool,
}

#[derive(Deserialize)]
struct PrefValue {
    value: Value,
}

#[derive(Deserialize)]
struct Password {
    password: String,
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct EmailChange {
    email: String,
}

// ---------------------------------------------------------------------------------------------
// Responses

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_root() -> Response {
    Redirect::to("/").into_response()
}

fn invalid_credentials(headers: &HeaderMap, kind: StrategyKind, cookie_login: bool) -> Response {
    let response = if wants_html(headers) {
        let body = page_anonymous(kind, cookie_login, Some("Wrong username or password."));
        (StatusCode::UNAUTHORIZED, html_page(body)).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_credentials"})),
        )
            .into_response()
    };
    no_store(response)
}

/// `{"subject","roles"}`, plus the tokens for `jwt`/`hybrid`. Always `Cache-Control: no-store`.
fn issued_json(issued: &Issued) -> Response {
    issued_json_with(issued, false)
}

/// [`issued_json`], plus for `bearer_sessions` (`KEYCARD_TRANSPORT=bearer` or `both` on
/// `database`/`redis`) the session token as `session_token` with `"token_type":"Bearer"`.
fn issued_json_with(issued: &Issued, bearer_sessions: bool) -> Response {
    let p = &issued.principal;
    let mut body = json!({"subject": p.subject(), "roles": p.roles()});
    if let Some(access) = &issued.access_token {
        body["access_token"] = json!(access.token);
        body["token_type"] = json!("Bearer");
        body["expires_in"] = json!(access.expires_in.as_secs());
    }
    if let Some(refresh) = &issued.refresh_token {
        body["refresh_token"] = json!(refresh.expose_secret());
    }
    if let Some(session) = issued.session_token.as_ref().filter(|_| bearer_sessions) {
        body["session_token"] = json!(session.expose_secret());
        body["token_type"] = json!("Bearer");
    }
    no_store(Json(body).into_response())
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn login(
    State(state): State<AppState>,
    auth: Auth,
    throttle: Throttle,
    headers: HeaderMap,
    input: Input<Credentials>,
) -> Response {
    let Input { value: creds, form } = input;
    let cookie_login = state.keycard.transport().read_cookie;
    // Over the limit (5 failures per username per minute, by default), 429 with `Retry-After`
    // before the password is even checked; 503 when the throttle's store is down. Known and
    // unknown usernames take the same path.
    let guard = match throttle.check(&creds.username).await {
        Ok(guard) => guard,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(spec) = state
        .users
        .authenticate(&creds.username, &creds.password)
        .await
    else {
        guard.failure().await;
        return invalid_credentials(&headers, state.kind(), cookie_login);
    };
    guard.success().await;
    match auth.login_with(spec, Login::remember(creds.remember)).await {
        Ok(_) if form => no_store(see_root()),
        Ok(issued) => issued_json_with(&issued, state.keycard.transport().read_bearer),
        Err(rejection) => rejection.into_response(),
    }
}

/// `GET /prefs`: the session's preferences (its [`SessionData`]).
async fn prefs(data: SessionData) -> Result<Json<Value>, Rejection> {
    Ok(Json(Value::Object(data.entries().await?)))
}

/// `PUT /prefs/{name}` with `{"value": ...}`: saved after the handler, key by key, so
/// concurrent changes of different preferences all land; 400/413 over the limits.
async fn set_pref(
    data: SessionData,
    Path(name): Path<String>,
    input: Input<PrefValue>,
) -> Result<Json<Value>, Rejection> {
    data.insert(&name, &input.value.value).await?;
    prefs(data).await
}

/// `DELETE /prefs/{name}`.
async fn remove_pref(
    data: SessionData,
    Path(name): Path<String>,
) -> Result<Json<Value>, Rejection> {
    data.remove(&name).await?;
    prefs(data).await
}

async fn me(State(state): State<AppState>, user: Principal) -> Response {
    Json(json!({
        "subject": user.subject(),
        "roles": user.roles(),
        "session_id": user.session().id,
        "strategy": state.kind().as_str(),
    }))
    .into_response()
}

struct Admin;

impl Role for Admin {
    const NAME: &'static str = "admin";
}

async fn admin(_: RequireRole<Admin>) -> Json<Value> {
    Json(json!({"ok": true}))
}

async fn refresh(auth: Auth, body: Bytes) -> Response {
    let body: RefreshBody = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return bad_request(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    match auth.refresh(body.refresh_token.as_deref()).await {
        Ok(issued) => issued_json(&issued),
        Err(rejection) => rejection.into_response(),
    }
}

async fn logout(auth: Auth, headers: HeaderMap) -> Response {
    finish_logout(auth.logout().await, is_form(&headers))
}

async fn logout_all(auth: Auth, headers: HeaderMap) -> Response {
    finish_logout(auth.logout_all().await.map(drop), is_form(&headers))
}

/// Ends every other session of the caller (after a password change, say); the caller's own
/// session keeps working.
async fn logout_others(auth: Auth, headers: HeaderMap) -> Response {
    finish_logout(auth.logout_others().await.map(drop), is_form(&headers))
}

/// JSON clients get 204 (or the rejection); a browser form goes back to the page either way,
/// since a form user whose session is already gone is logged out too.
fn finish_logout(outcome: Result<(), Rejection>, form: bool) -> Response {
    match outcome {
        Ok(()) if form => see_root(),
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) if form && r.status() == StatusCode::UNAUTHORIZED => see_root(),
        Err(r) => r.into_response(),
    }
}

async fn sessions(auth: Auth) -> Response {
    match auth.sessions().await {
        Ok(list) => no_store(Json(list).into_response()),
        Err(r) => r.into_response(),
    }
}

async fn revoke(auth: Auth, Path(id): Path<String>) -> Response {
    match auth.revoke(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r.into_response(),
    }
}

async fn jwks(State(state): State<AppState>) -> Response {
    let kind = state.kind();
    if !kind.uses_tokens() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": "not_found",
                "error_description": "server-session strategies publish no keys",
            })),
        )
            .into_response();
    }
    match jwks_document(&state.keycard) {
        Some(doc) => (
            [(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            )],
            Json(doc),
        )
            .into_response(),
        None => (
            StatusCode::NOT_IMPLEMENTED,
            Json(json!({
                "error": "not_implemented",
                "error_description": "this keycard build does not expose its public keys",
            })),
        )
            .into_response(),
    }
}

/// The public verification keys of the JWT strategy (`Keycard::jwt`), when there is one.
#[cfg(feature = "jwt")]
fn jwks_document(keycard: &Keycard) -> Option<Value> {
    serde_json::to_value(keycard.jwt()?.jwks()).ok()
}

/// Without the `jwt` feature there are no token strategies and no keys to publish.
#[cfg(not(feature = "jwt"))]
fn jwks_document(_: &Keycard) -> Option<Value> {
    None
}

async fn account_email(
    HighRisk(user, _): HighRisk<FiveMinutes>,
    input: Input<EmailChange>,
) -> Response {
    let email = input.value.email.trim();
    let plausible = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !plausible {
        return bad_request(StatusCode::BAD_REQUEST, "not an email address".into());
    }
    tracing::info!(subject = user.subject(), "email changed (demo: not stored)");
    if input.form {
        return see_root();
    }
    Json(json!({"ok": true})).into_response()
}

/// Extension to DEMO.md: re-checks the caller's password and records a fresh authentication
/// (the credentials are rotated), which satisfies the 5-minute bound of `/account/email`.
async fn step_up(
    State(state): State<AppState>,
    auth: Auth,
    user: Principal,
    throttle: Throttle,
    headers: HeaderMap,
    input: Input<Password>,
) -> Response {
    let cookie_login = state.keycard.transport().read_cookie;
    let guard = match throttle.check(user.subject()).await {
        Ok(guard) => guard,
        Err(rejection) => return rejection.into_response(),
    };
    if state
        .users
        .authenticate(user.subject(), &input.value.password)
        .await
        .is_none()
    {
        guard.failure().await;
        return invalid_credentials(&headers, state.kind(), cookie_login);
    }
    guard.success().await;
    match auth.step_up().await {
        Ok(_) if input.form => no_store(see_root()),
        Ok(issued) => issued_json(&issued),
        Err(r) => r.into_response(),
    }
}

async fn index(State(state): State<AppState>, auth: Auth) -> Response {
    let cookie_login = state.keycard.transport().read_cookie;
    let user = match auth.principal().await {
        Ok(user) => user,
        // An expired, revoked or garbled credential: show the login form.
        Err(r) if r.status().is_client_error() => None,
        Err(r) => return r.into_response(),
    };
    let Some(user) = user else {
        return html_page(page_anonymous(state.kind(), cookie_login, None)).into_response();
    };
    let sessions = match auth.sessions().await {
        Ok(list) => list,
        Err(r) => return r.into_response(),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Signed in as <strong>{}</strong> with roles <code>{}</code> \
         (strategy <code>{}</code>).</p>",
        escape(user.subject()),
        escape(&user.roles().join(", ")),
        state.kind().as_str(),
    );
    body.push_str(
        "<form method=\"post\" action=\"/logout\"><button>Log out</button></form>\
         <form method=\"post\" action=\"/logout-all\"><button>Log out everywhere</button></form>",
    );
    body.push_str(
        "<h2>Sessions</h2><table><tr><th>id</th><th>created</th><th>last seen</th>\
         <th>user agent</th><th>ip</th><th></th></tr>",
    );
    for s in &sessions {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.info.id),
            humantime::format_rfc3339_seconds(s.info.created_at),
            humantime::format_rfc3339_seconds(s.info.last_seen_at),
            escape(s.info.user_agent.as_deref().unwrap_or("")),
            escape(s.info.ip.as_deref().unwrap_or("")),
            if s.current { "this session" } else { "" },
        );
    }
    body.push_str("</table><p>Revoke another session with <code>DELETE /sessions/{id}</code>.</p>");
    body.push_str(
        "<h2>High-risk action</h2>\
         <p><code>POST /account/email</code> needs a sign-in no older than 5 minutes. \
         Confirm your password to refresh it (<code>POST /step-up</code>, a demo extension).</p>\
         <form method=\"post\" action=\"/step-up\">\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label> \
         <button>Confirm</button></form>\
         <form method=\"post\" action=\"/account/email\">\
         <label>New email <input type=\"email\" name=\"email\" required></label> \
         <button>Change email</button></form>",
    );
    no_store(html_page(body).into_response())
}

// ---------------------------------------------------------------------------------------------
// HTML

fn page_anonymous(kind: StrategyKind, cookie_login: bool, error: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(error) = error {
        let _ = write!(body, "<p class=\"error\">{}</p>", escape(error));
    }
    body.push_str(
        "<form method=\"post\" action=\"/login\">\
         <label>Username <input name=\"username\" autocomplete=\"username\" required></label> \
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label> \
         <button>Sign in</button></form>\
         <p>Try <code>alice</code> / <code>wonderland</code> or \
         <code>admin</code> / <code>correct horse battery staple</code>.</p>",
    );
    if !cookie_login {
        let _ = write!(
            body,
            "<p>Strategy <code>{}</code> sends access tokens as <code>Authorization: Bearer</code>; \
             the browser page stays anonymous unless <code>cookie.access_token_cookie = true</code>. \
             Use the JSON API: <code>POST /login</code> returns the tokens.</p>",
            kind.as_str()
        );
    }
    body
}

fn html_page(body: String) -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>keycard demo</title><style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}\
             table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .5em}}\
             form{{margin:.5em 0}}.error{{color:#b00}}</style></head>\
             <body><h1>keycard demo</h1>{body}</body></html>"
        )),
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// GET /metrics

/// The process's Prometheus recorder, installed by the first call (`main` calls it before
/// building the keycard, so that what keycard records at start is kept; routers built later,
/// e.g. several in one test process, share it); histograms get buckets from 0.5 ms to 2.5 s.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        const BUCKETS: &[f64] = &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed already; this one then stays empty.
        if metrics::set_global_recorder(recorder).is_ok() {
            keycard::metrics::describe();
        }
        handle
    })
}

/// `GET /metrics`: Prometheus' text format of every metric recorded in this process.
fn metrics_text() -> String {
    let handle = prometheus();
    handle.run_upkeep();
    handle.render()
}
