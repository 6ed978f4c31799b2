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
//! use keycard::{Keycard, Principal, store::MemoryStore, strategy::{ServerSessions, ServerSettings}};
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
    sync::Arc,
    task::{Context, Poll},
};

use axum_core::response::{IntoResponse, Response};
use http::Request;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    context::{RequestContext, Shared},
    credential::CredentialSource,
    error::{Error, ErrorKind},
    events::SecurityEvent,
    transport,
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
            .field("strategy", &self.shared.strategy)
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
            .field("strategy", &self.shared.strategy)
            .finish()
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
        let ctx = Arc::new(RequestContext::new(shared.clone(), found, client_ip));
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
        Saving {
            future: futures_util::future::BoxFuture<'static, Response>,
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
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, ctx } => {
                    let mut response = std::task::ready!(future.poll(cx))?;
                    let Some(ctx) = ctx.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    if !ctx.data_changed() || response.status().is_server_error() {
                        ctx.apply(&mut response);
                        return Poll::Ready(Ok(response));
                    }
                    // Session data changed: one write after the handler, then the cookies.
                    let future = Box::pin(async move {
                        if let Err(e) = ctx.save_data().await {
                            response = ctx.shared.reject(e);
                        }
                        ctx.apply(&mut response);
                        response
                    });
                    this.state.set(State::Saving { future });
                }
                StateProj::Saving { future } => {
                    return future.as_mut().poll(cx).map(Ok);
                }
                StateProj::Reject { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .unwrap_or_else(|| Error::new(ErrorKind::Internal).into_response())));
                }
            }
        }
    }
}
