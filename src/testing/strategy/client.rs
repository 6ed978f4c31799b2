//! The suite's client: one check's application (the [test app](crate::testing::router) on a
//! fresh keycard), and the requests, credentials and replies of the check.

use std::{fmt, future::poll_fn, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
};
use http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tower_service::Service;

use super::{Lifetimes, StrategyHarness};
use crate::{
    clock::{Clock, ManualClock, to_millis},
    token::random_id,
};

/// The credentials a login, rotation, step-up or refresh handed out, as a client keeps them.
/// `Debug` is redacted: the suite never prints a secret.
#[derive(Clone)]
pub(super) struct Cred {
    /// The primary credential.
    pub(super) value: String,
    /// The cookie it travels in (`None`: as `Authorization: Bearer`).
    pub(super) cookie: Option<String>,
    /// The refresh token, when the strategy issued one.
    pub(super) refresh: Option<String>,
}

impl fmt::Debug for Cred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cred")
            .field("cookie", &self.cookie.is_some())
            .finish_non_exhaustive()
    }
}

impl Cred {
    /// The same credential with its value replaced (to send a forged or tampered one).
    pub(super) fn with_value(&self, value: String) -> Self {
        Self {
            value,
            cookie: self.cookie.clone(),
            refresh: None,
        }
    }
}

/// A response, read to the end.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` code of a keycard error body (`""` when there is none).
    pub(super) fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// One check's application: a fresh keycard on its own manual clock, behind the suite's router.
pub(super) struct App {
    router: Router,
    pub(super) clock: ManualClock,
    pub(super) lifetimes: Lifetimes,
    cookie_name: String,
    refresh_cookie_name: Option<String>,
    read_cookie: bool,
    read_bearer: bool,
    /// Whether the strategy issues refresh tokens.
    pub(super) refreshes: bool,
}

impl App {
    /// Builds the harness's keycard on a new clock and checks that the lifetimes it reports fit
    /// the strategy (see [`Lifetimes`]).
    pub(super) async fn new(harness: &dyn StrategyHarness) -> Self {
        let clock = ManualClock::new();
        let keycard = harness.keycard(&clock).await;
        let refreshes = keycard.strategy().refresh_tokens().is_some();
        let lifetimes = harness.lifetimes();
        lifetimes.validate(refreshes);
        let transport = keycard.transport();
        Self {
            router: crate::testing::router(&keycard),
            clock,
            lifetimes,
            cookie_name: transport.cookie_name.clone(),
            refresh_cookie_name: transport.refresh_cookie_name.clone(),
            read_cookie: transport.read_cookie,
            read_bearer: transport.read_bearer,
            refreshes,
        }
    }

    /// Sends a request through the router (and so through the layer).
    pub(super) async fn send(&self, request: Request<Body>) -> Reply {
        let mut service = self.router.clone();
        poll_fn(|cx| <Router as Service<Request<Body>>>::poll_ready(&mut service, cx))
            .await
            .expect("a router is always ready");
        let response = service.call(request).await.expect("a router never fails");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .expect("the response body is readable");
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    fn request(
        method: &str,
        path: &str,
        cred: Option<&Cred>,
        body: Option<Value>,
    ) -> Request<Body> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(cred) = cred {
            builder = match &cred.cookie {
                Some(name) => builder.header(header::COOKIE, format!("{name}={}", cred.value)),
                None => builder.header(header::AUTHORIZATION, format!("Bearer {}", cred.value)),
            };
        }
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        builder.body(body).expect("a valid request")
    }

    /// `GET path`.
    pub(super) async fn get(&self, path: &str, cred: Option<&Cred>) -> Reply {
        self.send(Self::request("GET", path, cred, None)).await
    }

    /// `POST path` with a JSON body.
    pub(super) async fn post(&self, path: &str, cred: Option<&Cred>, body: Value) -> Reply {
        self.send(Self::request("POST", path, cred, Some(body)))
            .await
    }

    /// `PUT path` with a JSON body.
    pub(super) async fn put(&self, path: &str, cred: Option<&Cred>, body: Value) -> Reply {
        self.send(Self::request("PUT", path, cred, Some(body)))
            .await
    }

    /// `DELETE path`.
    pub(super) async fn delete(&self, path: &str, cred: Option<&Cred>) -> Reply {
        self.send(Self::request("DELETE", path, cred, None)).await
    }

    /// The status of `GET path`.
    pub(super) async fn status(&self, path: &str, cred: &Cred) -> StatusCode {
        self.get(path, Some(cred)).await.status
    }

    /// Logs `subject` in with `roles` (expecting 200) and returns the credentials.
    pub(super) async fn login(&self, subject: &str, roles: &[&str]) -> Cred {
        let reply = self.post_login(subject, roles).await;
        assert_eq!(reply.status, StatusCode::OK, "login of a new subject");
        self.credentials(&reply)
            .expect("a login hands out a credential")
    }

    /// `POST /login` for `subject` with `roles`, without a credential.
    pub(super) async fn post_login(&self, subject: &str, roles: &[&str]) -> Reply {
        self.post(
            "/login",
            None,
            json!({ "subject": subject, "roles": roles }),
        )
        .await
    }

    /// The credentials a response handed out: the session cookie when the transport reads one
    /// and the response set it, else the token from the JSON body (`access_token`, or
    /// `session_token` for a strategy that issues no access token) for `Authorization: Bearer`.
    pub(super) fn credentials(&self, reply: &Reply) -> Option<Cred> {
        let body = reply.json();
        let refresh = body["refresh_token"].as_str().map(str::to_owned);
        if self.read_cookie
            && let Some(value) = self.set_cookie(reply)
        {
            return Some(Cred {
                value,
                cookie: Some(self.cookie_name.clone()),
                refresh,
            });
        }
        if !self.read_bearer {
            return None;
        }
        let token = body["access_token"]
            .as_str()
            .or_else(|| body["session_token"].as_str())?;
        Some(Cred {
            value: token.to_owned(),
            cookie: None,
            refresh,
        })
    }

    /// The value of the session cookie a response sets (not a removal).
    fn set_cookie(&self, reply: &Reply) -> Option<String> {
        let prefix = format!("{}=", self.cookie_name);
        reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix(&prefix))
            .map(|v| v.split(';').next().unwrap_or_default())
            .find(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// The `Set-Cookie` lines of a response that set (not remove) the credential cookies: the
    /// session (or access-token) cookie and the refresh cookie.
    pub(super) fn credential_cookies(&self, reply: &Reply) -> Vec<String> {
        let mut names = Vec::new();
        if self.read_cookie {
            names.push(format!("{}=", self.cookie_name));
        }
        if let Some(refresh) = &self.refresh_cookie_name {
            names.push(format!("{refresh}="));
        }
        reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| names.iter().any(|n| v.starts_with(n.as_str())))
            .filter(|v| !v.contains("Max-Age=0"))
            .map(str::to_owned)
            .collect()
    }

    /// Whether a response removes the session cookie (`Max-Age=0`).
    pub(super) fn clears_cookie(&self, reply: &Reply) -> bool {
        let prefix = format!("{}=;", self.cookie_name);
        reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.starts_with(&prefix) && v.contains("Max-Age=0"))
    }

    /// `POST /refresh` with the credential's refresh token.
    pub(super) async fn refresh(&self, cred: &Cred) -> Reply {
        let token = cred
            .refresh
            .as_deref()
            .expect("a strategy with refresh tokens issued one");
        self.post("/refresh", None, json!({ "refresh_token": token }))
            .await
    }

    /// `POST /refresh` (expecting 200) and the new credentials.
    pub(super) async fn refreshed(&self, cred: &Cred) -> Cred {
        let reply = self.refresh(cred).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "a live refresh token refreshes"
        );
        self.credentials(&reply)
            .expect("a refresh hands out a credential")
    }

    /// `GET /me` (expecting 200) as JSON.
    pub(super) async fn me(&self, cred: &Cred) -> Value {
        let reply = self.get("/me", Some(cred)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GET /me with a live credential"
        );
        reply.json()
    }

    /// The current time in Unix milliseconds.
    pub(super) fn now_ms(&self) -> i64 {
        to_millis(self.clock.now())
    }

    /// Moves the clock forward by `by` while keeping `cred` alive as a client would: in steps
    /// shorter than the idle (or access-token) lifetime, with an authenticated request after
    /// each step, refreshing first when the strategy issues refresh tokens. Returns the live
    /// credential (a refreshed one for token strategies).
    pub(super) async fn keep_alive(&self, cred: &Cred, by: Duration) -> Cred {
        let step = self.lifetimes.keep_alive_step();
        let mut cred = cred.clone();
        let mut left = by;
        while !left.is_zero() {
            let now = step.min(left);
            self.clock.advance(now);
            left -= now;
            if self.refreshes {
                cred = self.refreshed(&cred).await;
            }
            self.me(&cred).await;
        }
        cred
    }
}

/// A subject no other check (or concurrent run) uses.
pub(super) fn subject() -> String {
    format!("suite-{}", random_id().expect("the OS random source"))
}
