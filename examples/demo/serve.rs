//! The demo's HTTP server: hyper's HTTP/1.1 connection driver with bounds on what one client can
//! hold, so that idle or half-open connections cannot lock out other clients.
//!
//! `axum::serve` reads request heads without a deadline and accepts connections until the process
//! runs out of file descriptors; a few hundred clients that open a connection and send nothing
//! then keep everyone else out. This server drives each connection itself:
//!
//! - **Header-read timeout** (`KEYCARD_DEMO_HEADER_TIMEOUT`, default 10 s): a connection must
//!   deliver a complete request head within this time of the server starting to read it (on
//!   accept, and after each response on a kept-alive connection), else it is closed. hyper arms
//!   the timer on its first read attempt, not on the first byte, so a connection that sends
//!   nothing at all is closed too (the demo's limits test covers both cases).
//! - **Connection cap** (`KEYCARD_DEMO_MAX_CONNECTIONS`, default the smaller of 1,024 and the
//!   open-file limit less 128, which stay free for the stores and for accepting): at the cap, a
//!   new connection closes the oldest open connection that is between requests (idle, or still
//!   sending its head). Only when every connection is in the middle of a request does the server
//!   stop accepting; newcomers then wait in the kernel's backlog until one finishes. A cap above
//!   the open-file limit less 128 is refused at start.
//! - **Request timeout** (`KEYCARD_DEMO_REQUEST_TIMEOUT`, default 30 s): reading the body and
//!   running the handler; past it the answer is 408, so a client trickling a body cannot hold a
//!   connection that the cap will not reclaim.
//! - **Body limit** (`KEYCARD_DEMO_MAX_BODY`, bytes, default 65,536): a larger declared
//!   `Content-Length` is refused with 413 before the handler runs; a chunked body is cut off at
//!   the limit.
//! - **`Host`** (RFC 9112 §3.2): an HTTP/1.1 request without one, or any request with more than
//!   one or with a value that is not a `host[:port]`, gets 400 and the connection is closed.
//!
//! Accept errors never end the loop: connection errors are skipped, and running out of file
//! descriptors or memory closes the oldest idle connection and backs off for 20 ms.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderValue, Request, Response, StatusCode, Version, header, uri::Authority},
    response::IntoResponse,
};
use http_body_util::BodyExt as _;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
};
use tower::ServiceExt as _;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

/// Open-file descriptors kept free beyond the connection cap: standard streams, the listener,
/// the runtime, SQLite files and store connection pools.
const FD_RESERVE: u64 = 128;
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// The pause after an accept error other than a failed connection (such as `EMFILE`).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What one client can hold; see the module docs for each bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to read a complete request head (`KEYCARD_DEMO_HEADER_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// Time to read the body and answer (`KEYCARD_DEMO_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Open connections at most (`KEYCARD_DEMO_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// Request body bytes at most (`KEYCARD_DEMO_MAX_BODY`).
    pub max_body: usize,
}

impl Limits {
    /// The limits from the environment, with the defaults of the module docs; a bad value is an
    /// error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        let fd_limit = open_file_limit();
        let room = fd_limit.map(|soft| soft.saturating_sub(FD_RESERVE));
        let max_connections = match var("KEYCARD_DEMO_MAX_CONNECTIONS") {
            Some(text) => {
                let n: u32 = text.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("invalid KEYCARD_DEMO_MAX_CONNECTIONS `{text}`: not a positive integer")
                })?;
                if let (Some(soft), Some(room)) = (fd_limit, room)
                    && u64::from(n) > room
                {
                    return Err(format!(
                        "KEYCARD_DEMO_MAX_CONNECTIONS {n} leaves too few file descriptors: the \
                         open-file limit is {soft} and {FD_RESERVE} of them stay free, so at most \
                         {room} (or raise `ulimit -n`)"
                    ));
                }
                n
            }
            None => {
                let n = room.map_or(DEFAULT_MAX_CONNECTIONS, |r| r.min(DEFAULT_MAX_CONNECTIONS));
                if n < 16 {
                    return Err(format!(
                        "the open-file limit {} is too low to serve: raise `ulimit -n`",
                        fd_limit.unwrap_or_default()
                    ));
                }
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        Ok(Self {
            header_read_timeout: duration("KEYCARD_DEMO_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT)?,
            request_timeout: duration("KEYCARD_DEMO_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)?,
            max_connections,
            max_body: match var("KEYCARD_DEMO_MAX_BODY") {
                Some(text) => text
                    .parse()
                    .map_err(|e| format!("invalid KEYCARD_DEMO_MAX_BODY `{text}` (bytes): {e}"))?,
                None => DEFAULT_MAX_BODY,
            },
        })
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A positive duration such as `2s` or `500ms`.
fn duration(name: &str, default: Duration) -> Result<Duration, String> {
    let Some(text) = var(name) else {
        return Ok(default);
    };
    humantime::parse_duration(&text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid {name} `{text}`: not a positive duration such as `10s`"))
}

/// The soft limit on open files, when the platform has one.
fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _hard)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting, lets each connection finish its current request and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let router = router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(limits.max_body));
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let open = Arc::new(Registry::default());
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; closing the oldest idle connection");
                    open.evict_oldest_idle();
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // At the cap: make room by closing the oldest connection between requests. When
                // every connection is mid-request, wait for one to finish; newcomers queue in
                // the kernel's backlog meanwhile.
                open.evict_oldest_idle();
                tokio::select! {
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        tokio::spawn(connection(
            stream,
            remote,
            router.clone(),
            limits,
            Arc::clone(&open),
            permit,
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it is closed.
    let _ = permits.acquire_many(limits.max_connections).await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: hyper's HTTP/1.1 driver with the header-read timeout, closed early when the
/// accept loop evicts it, and shut down gracefully (current request answered) on shutdown.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: Limits,
    open: Arc<Registry>,
    permit: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<bool>,
) {
    let (id, busy, evict) = open.add();
    let service = service_fn(move |request| handle(request, remote, router.clone(), busy.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut graceful = false;
    loop {
        if !graceful && *stopping.borrow_and_update() {
            graceful = true;
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %remote, "connection closed");
                }
                break;
            }
            () = evict.notified() => {
                tracing::debug!(%remote, "connection evicted at the connection cap");
                break;
            }
            changed = stopping.changed(), if !graceful => {
                if changed.is_err() {
                    graceful = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    open.remove(id);
    drop(permit);
}

/// One request: the `Host` check, the client address for `ConnectInfo`, then the router. The
/// connection counts as busy until the response body is dropped (fully written or abandoned).
async fn handle(
    mut request: Request<Incoming>,
    remote: SocketAddr,
    router: Router,
    busy: Arc<AtomicUsize>,
) -> Result<Response<Body>, Infallible> {
    let guard = Busy::enter(busy);
    if let Some(problem) = host_problem(&request) {
        let mut response = (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": problem})),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    request.extensions_mut().insert(ConnectInfo(remote));
    let response = router.oneshot(request).await?;
    Ok(response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _busy_until_sent = &guard;
            frame
        }))
    }))
}

/// Why the request's `Host` header fields break RFC 9112 §3.2, if they do.
fn host_problem<B>(request: &Request<B>) -> Option<&'static str> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if request.version() == Version::HTTP_11 => {
            Some("an HTTP/1.1 request needs a Host header")
        }
        (None, _) => None,
        (Some(_), Some(_)) => Some("more than one Host header"),
        (Some(host), None) => {
            let valid = host
                .to_str()
                .ok()
                .and_then(|h| h.parse::<Authority>().ok())
                .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'));
            (!valid).then_some("the Host header is not a host[:port]")
        }
    }
}

/// Counts a request in flight on its connection while alive.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections in accept order, each with its count of requests in flight and the
/// signal that closes it.
#[derive(Default)]
struct Registry(Mutex<Open>);

#[derive(Default)]
struct Open {
    next_id: u64,
    conns: BTreeMap<u64, Tracked>,
}

struct Tracked {
    busy: Arc<AtomicUsize>,
    evict: Arc<Notify>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self) -> (u64, Arc<AtomicUsize>, Arc<Notify>) {
        let busy = Arc::new(AtomicUsize::new(0));
        let evict = Arc::new(Notify::new());
        let mut open = self.lock();
        let id = open.next_id;
        open.next_id += 1;
        open.conns.insert(
            id,
            Tracked {
                busy: Arc::clone(&busy),
                evict: Arc::clone(&evict),
            },
        );
        (id, busy, evict)
    }

    fn remove(&self, id: u64) {
        self.lock().conns.remove(&id);
    }

    /// Signals the oldest connection with no request in flight to close; false when every open
    /// connection is mid-request.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.lock();
        let Some(id) = open
            .conns
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(&id, _)| id)
        else {
            return false;
        };
        if let Some(conn) = open.conns.remove(&id) {
            conn.evict.notify_one();
        }
        true
    }
}
