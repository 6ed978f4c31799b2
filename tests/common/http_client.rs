//! The one way the tests send a request to a router in process: [`send`] drives it with
//! `tower::ServiceExt::oneshot` and collects the response into a [`Resp`]; [`get_req`],
//! [`post_req`], [`request`] and [`with_cred`] build requests; [`Client`] drives the demo router
//! as one client at a fixed address on a manual clock.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use keycard::clock::ManualClock;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The session (or access-token) cookie name of the demo and of the test app.
pub const COOKIE: &str = "__Host-keycard";
/// The client address every request of a [`Client`] comes from.
pub const PEER: ([u8; 4], u16) = ([203, 0, 113, 7], 51000);

// ---------------------------------------------------------------------------------------------
// Sending

/// Sends `req` to `app` and collects the response.
pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let response = app.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// The status `app` answers `req` with.
pub async fn status(app: &Router, req: Request<Body>) -> StatusCode {
    send(app, req).await.status
}

/// `GET path`, with `cookie` (a `name=value` pair) if given.
pub fn get_req(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

/// `POST path` with a JSON body, with `cookie` (a `name=value` pair) if given.
pub fn post_req(path: &str, cookie: Option<&str>, body: Value) -> Request<Body> {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// `PUT path` with a JSON body, with `cookie` (a `name=value` pair) if given.
pub fn put_req(path: &str, cookie: Option<&str>, body: Value) -> Request<Body> {
    let mut b = Request::put(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// A request builder with `Host: localhost`.
pub fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
}

/// A request builder (`Host: localhost`) carrying `cred` in its proper transport.
pub fn with_cred(method: Method, path: &str, cred: Option<&Cred>) -> http::request::Builder {
    let b = request(method, path);
    match cred {
        None => b,
        Some(Cred::Cookie(v)) => b.header(header::COOKIE, format!("{COOKIE}={v}")),
        Some(Cred::Bearer { access, .. }) => {
            b.header(header::AUTHORIZATION, format!("Bearer {access}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

/// A collected response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON; panics when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// The body as JSON, or `null` when it is not JSON.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text; panics when it is not UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    /// A header's value; panics when it is not ASCII.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// Every `Set-Cookie` value; panics when one is not ASCII.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ASCII Set-Cookie"))
            .collect()
    }

    /// The `name=value` pair of the first `Set-Cookie`, as a client sends it back.
    pub fn cookie_pair(&self) -> Option<String> {
        let v = self.headers.get(header::SET_COOKIE)?.to_str().ok()?;
        Some(v.split(';').next()?.to_owned())
    }

    /// The value of the session cookie set by this response, if any (and not a removal).
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies().into_iter().find_map(|c| {
            let value = c.strip_prefix(COOKIE)?.strip_prefix('=')?;
            let value = value.split(';').next()?;
            (!value.is_empty()).then(|| value.to_owned())
        })
    }

    /// Whether the response removes the session cookie.
    pub fn clears_session_cookie(&self) -> bool {
        self.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{COOKIE}=;")) && c.contains("Max-Age=0"))
    }

    /// Whether the response hands out a credential: a session/access cookie with a value, or
    /// an access or refresh token in the body.
    pub fn issues_credential(&self) -> bool {
        if self.session_cookie().is_some() {
            return true;
        }
        if self.set_cookies().iter().any(|c| {
            c.starts_with("__Secure-keycard-refresh=")
                && !c.starts_with("__Secure-keycard-refresh=;")
        }) {
            return true;
        }
        serde_json::from_slice::<Value>(&self.body)
            .is_ok_and(|b| b.get("access_token").is_some() || b.get("refresh_token").is_some())
    }

    /// The `error` member of a JSON body.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|b| b.get("error").and_then(Value::as_str).map(str::to_owned))
    }
}

/// Asserts the exact status, with context, and that a refusal never hands out a credential.
#[track_caller]
pub fn expect(r: &Resp, status: StatusCode, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: expected {status}, got {} ({})",
        r.status,
        r.text()
    );
    if !status.is_success() && !status.is_redirection() {
        assert!(
            !r.issues_credential(),
            "{what}: a {status} refusal handed out a credential: {:?} {}",
            r.set_cookies(),
            r.text()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A client of the demo router: cheap to clone, Send + Sync, usable from spawned tasks

/// A credential held by a test client.
#[derive(Clone, Debug)]
pub enum Cred {
    Cookie(String),
    Bearer {
        access: String,
        refresh: Option<String>,
    },
}

impl Cred {
    pub fn access(&self) -> &str {
        match self {
            Cred::Cookie(v) => v,
            Cred::Bearer { access, .. } => access,
        }
    }

    pub fn refresh(&self) -> &str {
        match self {
            Cred::Bearer {
                refresh: Some(r), ..
            } => r,
            other => panic!("no refresh token in {other:?}"),
        }
    }
}

/// Sends requests to a router from [`PEER`], advancing the manual clock between requests.
#[derive(Clone)]
pub struct Client {
    pub router: Router,
    pub clock: ManualClock,
    /// Whether credentials travel in cookies (else as Bearer tokens).
    pub cookies: bool,
    /// When set, [`Client::alice`] and [`Client::admin`] log in with the `User-Agent`
    /// `<agent>-alice` / `<agent>-admin`; else without one.
    pub agent: Option<&'static str>,
}

impl Client {
    pub async fn send(&self, mut req: Request<Body>) -> Resp {
        // Time passes between requests, as it does for real clients: no two requests share an
        // instant (a frozen clock would make "issued before T" revocations ambiguous).
        self.clock.advance(Duration::from_millis(10));
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(PEER)));
        send(&self.router, req).await
    }

    pub async fn call(&self, method: Method, path: &str, cred: Option<&Cred>) -> Resp {
        self.send(with_cred(method, path, cred).body(Body::empty()).unwrap())
            .await
    }

    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        cred: Option<&Cred>,
        body: Value,
    ) -> Resp {
        self.send(
            with_cred(method, path, cred)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// A same-origin HTML form POST.
    pub async fn call_form(&self, path: &str, cred: Option<&Cred>, form: &str) -> Resp {
        self.send(
            with_cred(Method::POST, path, cred)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "same-origin")
                .header(header::ACCEPT, "text/html,application/xhtml+xml")
                .body(Body::from(form.to_owned()))
                .unwrap(),
        )
        .await
    }

    /// `POST /login` with a JSON username and password.
    pub async fn login_response(&self, user: &str, password: &str) -> Resp {
        self.call_json(
            Method::POST,
            "/login",
            None,
            json!({"username": user, "password": password}),
        )
        .await
    }

    /// `POST /login` with a JSON username and password, from `user_agent`.
    pub async fn login_response_as(&self, user: &str, password: &str, user_agent: &str) -> Resp {
        self.send(
            with_cred(Method::POST, "/login", None)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, user_agent)
                .body(Body::from(
                    json!({"username": user, "password": password}).to_string(),
                ))
                .unwrap(),
        )
        .await
    }

    /// The credential carried by a successful login/refresh/step-up response.
    pub fn cred_from(&self, r: &Resp) -> Cred {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        if self.cookies {
            Cred::Cookie(r.session_cookie().expect("a session cookie"))
        } else {
            let body = r.json();
            Cred::Bearer {
                access: body["access_token"]
                    .as_str()
                    .expect("access_token")
                    .to_owned(),
                refresh: body["refresh_token"].as_str().map(str::to_owned),
            }
        }
    }

    /// Logs `user` in (from `user_agent`, if given) and returns the credential.
    pub async fn login_as(&self, user: &str, password: &str, user_agent: Option<&str>) -> Cred {
        let r = match user_agent {
            Some(ua) => self.login_response_as(user, password, ua).await,
            None => self.login_response(user, password).await,
        };
        self.cred_from(&r)
    }

    pub async fn alice(&self) -> Cred {
        let ua = self.agent.map(|a| format!("{a}-alice"));
        self.login_as("alice", "wonderland", ua.as_deref()).await
    }

    pub async fn admin(&self) -> Cred {
        let ua = self.agent.map(|a| format!("{a}-admin"));
        self.login_as("admin", "correct horse battery staple", ua.as_deref())
            .await
    }

    /// The status of `GET /me` with `cred`.
    pub async fn me(&self, cred: &Cred) -> StatusCode {
        self.call(Method::GET, "/me", Some(cred)).await.status
    }

    /// `GET /me` with a raw `Authorization` value (any bytes a header may hold).
    pub async fn me_with_authorization(&self, value: &[u8]) -> Resp {
        self.send(
            request(Method::GET, "/me")
                .header(
                    header::AUTHORIZATION,
                    HeaderValue::from_bytes(value).expect("a header value"),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `GET /me` with a raw `Cookie` value.
    pub async fn me_with_cookie(&self, value: &str) -> Resp {
        self.send(
            request(Method::GET, "/me")
                .header(header::COOKIE, value)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `POST /refresh` with `{"refresh_token": token}`.
    pub async fn refresh(&self, token: &str) -> Resp {
        self.call_json(
            Method::POST,
            "/refresh",
            None,
            json!({ "refresh_token": token }),
        )
        .await
    }

    /// The caller's sessions as listed by `GET /sessions` (which must answer 200).
    pub async fn sessions_json(&self, cred: &Cred) -> Vec<Value> {
        let r = self.call(Method::GET, "/sessions", Some(cred)).await;
        expect(&r, StatusCode::OK, "GET /sessions");
        r.json().as_array().expect("array").clone()
    }

    /// The public handles of the caller's sessions, with whether each is the current one.
    pub async fn sessions(&self, cred: &Cred) -> Vec<(String, bool)> {
        self.sessions_json(cred)
            .await
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().expect("id").to_owned(),
                    s["current"] == true,
                )
            })
            .collect()
    }

    pub async fn current_session_id(&self, cred: &Cred) -> String {
        self.sessions(cred)
            .await
            .into_iter()
            .find_map(|(id, current)| current.then_some(id))
            .expect("the current session is listed")
    }
}
