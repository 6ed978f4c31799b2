//! Per-request state: the configuration every request shares, the lazily resolved principal,
//! and the cookie changes handlers queue for the response.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum_core::response::Response;
use http::{HeaderValue, header};
use parking_lot::Mutex;

use crate::{
    clock::Clock,
    credential::Issued,
    csrf::CsrfConfig,
    error::{Challenge, Error, ErrorKind},
    events::{Events, SecurityEvent},
    principal::Principal,
    strategy::SessionStrategy,
    transport::{self, Found, TransportSettings},
};

/// State shared by the layer, the services and the extractors.
pub(crate) struct Shared {
    pub(crate) strategy: Arc<dyn SessionStrategy>,
    pub(crate) transport: TransportSettings,
    pub(crate) csrf: CsrfConfig,
    pub(crate) events: Events,
    pub(crate) challenge: Challenge,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) client_policy: Option<crate::policy::ClientPolicy>,
    pub(crate) data_limits: crate::store::DataLimits,
    pub(crate) throttle: crate::throttle::LoginThrottle,
    pub(crate) metrics: crate::metrics::StrategyMetrics,
}

impl Shared {
    pub(crate) fn reject(&self, error: Error) -> Response {
        error.into_response_with(self.challenge)
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
    /// The session data this request read and changed.
    pub(crate) data: Mutex<crate::session_data::DataState>,
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
    /// The context of a request whose credentials the transport found.
    pub(crate) fn new(
        shared: Arc<Shared>,
        found: Found,
        client_ip: Option<std::net::IpAddr>,
    ) -> Self {
        Self {
            shared,
            found,
            client_ip,
            resolved: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            touched: AtomicBool::new(false),
            data: Mutex::default(),
        }
    }

    /// The peer address, when the server provides `ConnectInfo`.
    pub(crate) fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.client_ip
    }

    /// Whether the request carried a credential at all (valid or not).
    pub(crate) fn has_credential(&self) -> bool {
        self.found.credential.is_some()
    }

    /// Resolves the principal once per request. An anonymous session is no principal:
    /// [`ErrorKind::MissingCredential`].
    pub(crate) async fn resolve(&self) -> Result<Principal, ErrorKind> {
        match self.resolve_session().await {
            Ok(p) if p.is_anonymous() => Err(ErrorKind::MissingCredential),
            outcome => outcome,
        }
    }

    /// The principal, `None` when the request carries no credential or an anonymous session.
    pub(crate) async fn principal(&self) -> Result<Option<Principal>, ErrorKind> {
        if !self.has_credential() {
            return Ok(None);
        }
        match self.resolve_session().await {
            Ok(p) if p.is_anonymous() => Ok(None),
            outcome => outcome.map(Some),
        }
    }

    /// Resolves the request's session once per request, anonymous sessions included.
    pub(crate) async fn resolve_session(&self) -> Result<Principal, ErrorKind> {
        if let Some(done) = &*self.resolved.lock() {
            return done.clone();
        }
        let outcome = match self.authenticate().await {
            Ok(principal) => self.apply_client_policy(principal).await,
            Err(kind) => Err(kind),
        };
        self.shared.metrics.resolved(&outcome);
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
                .metrics
                .time(self.shared.strategy.authenticate(located.credential()))
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
            // The token travels in the handler's answer only under Bearer transport, and under
            // `both` to a client that authenticated this request with Bearer.
            let bearer_client = matches!(
                &self.found.credential,
                Some(Ok(l)) if l.source == crate::credential::CredentialSource::Bearer
            );
            if t.read_cookie && !bearer_client {
                p.set_session = Some((token.expose_secret().to_owned(), issued.session_max_age));
                p.clear_session = false;
            }
        } else if let Some(access) = &issued.access_token
            && t.read_cookie
        {
            p.set_session = Some((access.token.clone(), issued.session_max_age));
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

    /// Writes the queued cookie changes (and `Cache-Control: no-store`) into `response`.
    pub(crate) fn apply(&self, response: &mut Response) {
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
