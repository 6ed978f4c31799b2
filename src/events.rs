//! Security events: what happened to whose session, delivered to a hook and to `tracing`.
//!
//! Events never carry a secret: sessions are named by their public handle, tokens by `jti`.
//!
//! ```
//! use keycard::events::{EventHook, SecurityEvent};
//!
//! let hook = EventHook::new(|event: SecurityEvent| async move {
//!     // forward to an audit log, a SIEM, ...
//!     let _ = event;
//! });
//! # let _ = hook;
//! ```

use std::{fmt, future::Future, net::IpAddr, sync::Arc};

use futures_util::future::BoxFuture;

/// Something security-relevant that keycard did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityEvent {
    /// A subject logged in; `session` is the new session's public handle (or refresh family).
    Login {
        /// The subject.
        subject: String,
        /// Public handle of the new session.
        session: String,
        /// Client IP, when known.
        ip: Option<IpAddr>,
    },
    /// A login was refused because of the session limit.
    LoginRefused {
        /// The subject.
        subject: String,
    },
    /// A session ended by logout.
    Logout {
        /// The subject.
        subject: String,
        /// The session's public handle.
        session: String,
    },
    /// One session was revoked by its owner from another session.
    SessionRevoked {
        /// The subject.
        subject: String,
        /// The revoked session's public handle.
        session: String,
    },
    /// Every session of a subject was revoked.
    AllSessionsRevoked {
        /// The subject.
        subject: String,
        /// How many sessions (or families) were removed.
        count: u64,
    },
    /// A session ID was rotated (privilege change or step-up).
    SessionRotated {
        /// The subject.
        subject: String,
        /// The old handle.
        old: String,
        /// The new handle.
        new: String,
    },
    /// Sessions were evicted to honour the concurrent-session limit.
    SessionEvicted {
        /// The subject.
        subject: String,
        /// The evicted session's handle.
        session: String,
    },
    /// A refresh token was exchanged.
    RefreshRotated {
        /// The subject.
        subject: String,
        /// The family.
        family: String,
    },
    /// A spent refresh token was presented again; its family has been revoked.
    RefreshReuseDetected {
        /// The subject.
        subject: String,
        /// The revoked family.
        family: String,
    },
    /// A cross-site request was refused.
    CsrfRejected {
        /// The request's `Origin`, if any.
        origin: Option<String>,
        /// The request's `Sec-Fetch-Site`, if any.
        fetch_site: Option<String>,
    },
    /// A session is used from a different client IP than it was created from.
    ClientIpChanged {
        /// The subject.
        subject: String,
        /// The session's public handle.
        session: String,
        /// IP recorded at login.
        from: Option<String>,
        /// IP of this request.
        to: Option<IpAddr>,
    },
    /// The user re-authenticated (step-up).
    StepUp {
        /// The subject.
        subject: String,
    },
    /// A credential check was refused by the login throttle (429); the password was not
    /// checked.
    LoginThrottled {
        /// The throttle key of the identifier (hex of its keyed hash), or `None` when
        /// configured to omit it (`throttle.event_identifier = "omitted"`). Never the identifier.
        identifier: Option<String>,
        /// The client address, when known.
        ip: Option<IpAddr>,
        /// Which counter refused: `"identifier"` or `"address"`.
        scope: &'static str,
        /// Seconds until the lockout ends.
        retry_after_secs: u64,
    },
}

impl SecurityEvent {
    /// A stable name for the event, e.g. `"refresh_reuse_detected"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Login { .. } => "login",
            Self::LoginRefused { .. } => "login_refused",
            Self::Logout { .. } => "logout",
            Self::SessionRevoked { .. } => "session_revoked",
            Self::AllSessionsRevoked { .. } => "all_sessions_revoked",
            Self::SessionRotated { .. } => "session_rotated",
            Self::SessionEvicted { .. } => "session_evicted",
            Self::RefreshRotated { .. } => "refresh_rotated",
            Self::RefreshReuseDetected { .. } => "refresh_reuse_detected",
            Self::CsrfRejected { .. } => "csrf_rejected",
            Self::ClientIpChanged { .. } => "client_ip_changed",
            Self::StepUp { .. } => "step_up",
            Self::LoginThrottled { .. } => "login_throttled",
        }
    }
}

type HookFn = dyn Fn(SecurityEvent) -> BoxFuture<'static, ()> + Send + Sync;

/// An async hook that receives every [`SecurityEvent`]. Delivery is spawned on the runtime, so a
/// slow hook never delays a request.
#[derive(Clone)]
pub struct EventHook {
    f: Arc<HookFn>,
}

impl EventHook {
    /// Wraps an async function.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(SecurityEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            f: Arc::new(move |e| Box::pin(f(e))),
        }
    }
}

impl fmt::Debug for EventHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventHook")
    }
}

/// Where strategies send events: always `tracing` (target `keycard::events`), plus the hook.
#[derive(Debug, Clone, Default)]
pub struct Events {
    hook: Option<EventHook>,
}

impl Events {
    /// Events go to `tracing` and to `hook`.
    pub fn new(hook: Option<EventHook>) -> Self {
        Self { hook }
    }

    /// Emits an event.
    pub fn emit(&self, event: SecurityEvent) {
        crate::metrics::event(event.name());
        let warn = matches!(
            event,
            SecurityEvent::RefreshReuseDetected { .. }
                | SecurityEvent::CsrfRejected { .. }
                | SecurityEvent::ClientIpChanged { .. }
                | SecurityEvent::LoginThrottled { .. }
        );
        if warn {
            tracing::warn!(target: "keycard::events", event = event.name(), details = ?event, "security event");
        } else {
            tracing::info!(target: "keycard::events", event = event.name(), details = ?event, "security event");
        }
        if let Some(hook) = &self.hook {
            let fut = (hook.f)(event);
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(fut);
                }
                Err(_) => tracing::warn!("security event hook dropped: no tokio runtime"),
            }
        }
    }
}
