//! [`SessionLayer`], [`SessionService`] and [`ResponseFuture`]: the tower middleware.
//!
//! The service reads the credential (no I/O), applies the CSRF check to unsafe methods, puts a
//! request context into the extensions for the extractors, and on the way out writes pending
//! cookie changes with `Cache-Control: no-store`. It never fails: every outcome is a response.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use keycard::{Keycard, Principal, store::MemoryStore, strategy::{ServerSessions, server::ServerSettings}};
//!
//! async fn me(user: Principal) -> String { user.subject().to_owned() }
//!
//! let keycard = Keycard::builder()
//!     .strategy(ServerSessions::new(Arc::new(MemoryStore::new()), ServerSettings::default()))
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new().route("/me", get(me)).layer(keycard.layer());
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, Request, header};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    error::{Error, ErrorKind},
    events::SecurityEvent,
    keycard::Shared,
    principal::Principal,
    strategy::{CredentialSource, Issued},
    transport::{self, Found},
};

/// Layer that installs keycard on a router. Built by [`Keycard::layer`](crate::Keycard::layer).
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("strategy", &self.shared.strategy.kind())
            .finish()
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The middleware service created by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SessionService<S> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("strategy", &self.shared.strategy.kind())
            .finish()
    }
}

/// Cookie changes queued by handlers (through [`Auth`](crate::Auth)) for the response.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    set_session: Option<(String, Option<std::time::Duration>)>,
    clear_session: bool,
    set_refresh: Option<(String, Option<std::time::Duration>)>,
    clear_refresh: bool,
    credential_issued: bool,
}

/// Per-request state shared between the service and the extractors.
pub(crate) struct RequestContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) found: Found,
    /// The peer address, when the server provides `ConnectInfo`.
    client_ip: Option<std::net::IpAddr>,
    /// The outcome, once resolved. Extractors of one request run one after another, so a plain
    /// lock suffices (no async once-cell and its semaphore on the hot path, and cheaper than a
    /// `OnceLock`'s initialisation); were two resolutions ever to race, both would ask the
    /// strategy and the first answer is kept.
    resolved: Mutex<Option<Result<Principal, ErrorKind>>>,
    pending: Mutex<Pending>,
    /// Whether `pending` was ever written: most requests leave it alone, and the response then
    /// skips it.
    touched: AtomicBool,
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("has_credential", &self.found.credential.is_some())
            .field("resolved", &self.resolved.lock().is_some())
            .finish()
    }
}

impl RequestContext {
    /// Whether the request carried a credential at all (valid or not).
    pub(crate) fn has_credential(&self) -> bool {
        self.found.credential.is_some()
    }

    /// Resolves the principal once per request.
    pub(crate) async fn resolve(&self) -> Result<Principal, ErrorKind> {
        if let Some(done) = &*self.resolved.lock() {
            return done.clone();
        }
        let outcome = match self.authenticate().await {
            Ok(principal) => self.apply_client_policy(principal).await,
            Err(kind) => Err(kind),
        };
        self.resolved.lock().get_or_insert(outcome).clone()
    }

    /// Applies the [`ClientPolicy`](crate::policy::ClientPolicy), if any.
    async fn apply_client_policy(&self, principal: Principal) -> Result<Principal, ErrorKind> {
        use crate::policy::IpChangeAction;
        let Some(policy) = &self.shared.client_policy else {
            return Ok(principal);
        };
        let (Some(from), Some(to)) = (principal.session().client_ip, self.client_ip) else {
            return Ok(principal);
        };
        if !policy.changed(from, to) {
            return Ok(principal);
        }
        self.shared.events.emit(SecurityEvent::ClientIpChanged {
            subject: principal.subject().to_owned(),
            session: principal.session().id.clone(),
            from: Some(from.to_string()),
            to: Some(to),
        });
        match policy.action() {
            IpChangeAction::Allow => Ok(principal),
            IpChangeAction::StepUp => Ok(principal.with_stale_authentication()),
            IpChangeAction::Terminate => {
                self.shared
                    .strategy
                    .logout(&principal)
                    .await
                    .map_err(|e| e.kind())?;
                Err(ErrorKind::Revoked)
            }
        }
    }

    async fn authenticate(&self) -> Result<Principal, ErrorKind> {
        match &self.found.credential {
            None => Err(ErrorKind::MissingCredential),
            Some(Err(kind)) => Err(*kind),
            Some(Ok(located)) => self
                .shared
                .strategy
                .authenticate(located.credential())
                .await
                .map_err(|e| {
                    if !located.is_well_formed() {
                        // The deferred syntax check (see `transport::locate_bearer`).
                        return ErrorKind::MalformedRequest;
                    }
                    if e.status().is_server_error() {
                        tracing::error!(error = ?e, "keycard could not authenticate a request");
                    } else {
                        tracing::debug!(kind = ?e.kind(), "keycard refused a credential");
                    }
                    e.kind()
                }),
        }
    }

    /// Queues the cookies for freshly issued credentials.
    pub(crate) fn issue(&self, issued: &Issued) {
        let t = &self.shared.transport;
        let mut p = self.pending.lock();
        self.touched.store(true, Ordering::Release);
        p.credential_issued = true;
        if let Some(token) = &issued.session_token {
            p.set_session = Some((token.expose_secret().to_owned(), issued.session_max_age));
            p.clear_session = false;
        } else if let Some(access) = &issued.access_token
            && t.read_cookie
        {
            p.set_session = Some((access.token.clone(), Some(access.expires_in)));
            p.clear_session = false;
        }
        if let Some(refresh) = &issued.refresh_token
            && t.refresh_cookie_name.is_some()
        {
            p.set_refresh = Some((refresh.expose_secret().to_owned(), issued.refresh_max_age));
            p.clear_refresh = false;
        }
    }

    /// Queues removal of the credential cookies.
    pub(crate) fn clear(&self) {
        let mut p = self.pending.lock();
        self.touched.store(true, Ordering::Release);
        p.set_session = None;
        p.set_refresh = None;
        p.clear_session = self.shared.transport.read_cookie;
        p.clear_refresh = self.shared.transport.refresh_cookie_name.is_some();
    }

    fn apply(&self, response: &mut Response) {
        if !self.touched.load(Ordering::Acquire) {
            return;
        }
        let p = std::mem::take(&mut *self.pending.lock());
        let t = &self.shared.transport;
        let headers = response.headers_mut();
        let mut touched = p.credential_issued;
        let mut push = |v: Option<HeaderValue>| {
            if let Some(v) = v {
                headers.append(header::SET_COOKIE, v);
            }
        };
        if let Some((value, age)) = &p.set_session {
            push(transport::set_cookie(t, &t.cookie_name, value, "/", *age));
            touched = true;
        } else if p.clear_session {
            push(transport::removal_cookie(t, &t.cookie_name, "/"));
            touched = true;
        }
        if let Some(name) = &t.refresh_cookie_name {
            if let Some((value, age)) = &p.set_refresh {
                push(transport::set_cookie(
                    t,
                    name,
                    value,
                    &t.refresh_cookie_path,
                    *age,
                ));
                touched = true;
            } else if p.clear_refresh {
                push(transport::removal_cookie(t, name, &t.refresh_cookie_path));
                touched = true;
            }
        }
        if touched {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let found = match transport::read(&shared.transport, req.headers()) {
            Ok(found) => found,
            Err(e) => return ResponseFuture::reject(shared.reject(e)),
        };
        let bearer = matches!(
            found.credential,
            Some(Ok(ref l)) if l.source == CredentialSource::Bearer
        );
        let csrf = shared
            .csrf
            .check(req.method(), req.headers())
            .and_then(|()| match &found.credential {
                Some(Ok(l)) if l.source == CredentialSource::Cookie => {
                    shared
                        .csrf
                        .check_token(req.method(), req.headers(), || l.value())
                }
                _ => Ok(()),
            });
        if !bearer && let Err(refusal) = csrf {
            shared.events.emit(SecurityEvent::CsrfRejected {
                origin: refusal.origin,
                fetch_site: refusal.fetch_site,
            });
            return ResponseFuture::reject(shared.reject(Error::new(ErrorKind::CsrfRejected)));
        }
        // Only the client policy reads the peer address.
        let client_ip = shared
            .client_policy
            .as_ref()
            .and_then(|_| {
                req.extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            })
            .map(|c| c.0.ip());
        let ctx = Arc::new(RequestContext {
            shared: shared.clone(),
            found,
            client_ip,
            resolved: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            touched: AtomicBool::new(false),
        });
        req.extensions_mut().insert(ctx.clone());
        ResponseFuture {
            state: State::Inner {
                future: self.inner.call(req),
                ctx: Some(ctx),
            },
        }
    }
}

pin_project! {
    /// Response future of [`SessionService`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            future: F,
            ctx: Option<Arc<RequestContext>>,
        },
        Reject {
            response: Option<Response>,
        },
    }
}

impl<F> ResponseFuture<F> {
    fn reject(response: Response) -> Self {
        Self {
            state: State::Reject {
                response: Some(response),
            },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, ctx } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                if let Some(ctx) = ctx.take() {
                    ctx.apply(&mut response);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Reject { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Error::new(ErrorKind::Internal).into_response()))),
        }
    }
}
