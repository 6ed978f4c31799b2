//! The authenticated identity handed to handlers.

use std::{fmt, net::IpAddr, sync::Arc, time::SystemTime};

use serde_json::{Map, Value};

/// Who made the request: the answer keycard gives to each authenticated request.
///
/// Cheap to clone (one reference count). Extract it in a handler to require authentication:
///
/// ```
/// use keycard::Principal;
///
/// async fn me(user: Principal) -> String {
///     format!("{} ({})", user.subject(), user.roles().join(","))
/// }
/// ```
#[derive(Clone)]
pub struct Principal {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    subject: String,
    roles: Vec<String>,
    session: SessionRef,
    authenticated_at: SystemTime,
    expires_at: SystemTime,
    attributes: Map<String, Value>,
    /// The session data, when the strategy read it with the principal.
    data: DataLoad,
    /// An anonymous session: it holds data only and never authenticates a request.
    anonymous: bool,
}

/// Whether the session data came with the principal.
#[derive(Clone, Default)]
pub(crate) enum DataLoad {
    /// Not read: [`SessionDataStore::load`](crate::strategy::SessionDataStore::load) reads it on
    /// first use.
    #[default]
    Lazy,
    /// Read with the principal (the JSON object text, `None` for none).
    Loaded(Option<Arc<str>>),
}

/// Which session a [`Principal`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    /// The public handle of the session (server sessions) or the refresh family (JWT/hybrid).
    /// Never the secret credential.
    pub id: String,
    /// The JWT ID of the access token, when the credential was a JWT.
    pub jti: Option<String>,
    /// When the credential itself (access token or session) was issued.
    pub issued_at: SystemTime,
    /// The client IP recorded when the session was created or last re-authenticated (server
    /// sessions); `None` when unknown or not carried by the credential (JWT access tokens).
    pub client_ip: Option<IpAddr>,
}

impl Principal {
    /// Starts building a principal for `subject`, e.g. to log it in with
    /// [`Auth::login`](crate::Auth::login).
    pub fn builder(subject: impl Into<String>) -> PrincipalBuilder {
        PrincipalBuilder {
            subject: subject.into(),
            roles: Vec::new(),
            attributes: Map::new(),
        }
    }

    /// Assembles a principal; used by strategies (including your own implementations).
    pub fn new(
        spec: PrincipalSpec,
        session: SessionRef,
        authenticated_at: SystemTime,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                subject: spec.subject,
                roles: spec.roles,
                attributes: spec.attributes,
                session,
                authenticated_at,
                expires_at,
                data: DataLoad::Lazy,
                anonymous: false,
            }),
        }
    }

    /// The same principal with its session data as read from the store (`anonymous` marks a
    /// session that holds data only).
    pub(crate) fn with_data(mut self, data: DataLoad, anonymous: bool) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.data = data;
        inner.anonymous = anonymous;
        self
    }

    /// The session data, if it came with the principal.
    pub(crate) fn data(&self) -> &DataLoad {
        &self.inner.data
    }

    /// Whether this is an anonymous session (data only, never an identity).
    pub(crate) fn is_anonymous(&self) -> bool {
        self.inner.anonymous
    }

    /// The subject (user ID).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The roles granted to this session.
    pub fn roles(&self) -> &[String] {
        &self.inner.roles
    }

    /// Whether the principal has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.inner.roles.iter().any(|r| r == role)
    }

    /// The session (or refresh family) this request belongs to.
    pub fn session(&self) -> &SessionRef {
        &self.inner.session
    }

    /// When the user last proved who they are (login or step-up).
    pub fn authenticated_at(&self) -> SystemTime {
        self.inner.authenticated_at
    }

    /// When the credential stops being valid, whichever timeout comes first.
    pub fn expires_at(&self) -> SystemTime {
        self.inner.expires_at
    }

    /// Extra attributes (claims) attached at login.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.inner.attributes
    }

    /// A copy whose last authentication is treated as long ago: high-risk routes then demand a
    /// step-up.
    pub(crate) fn with_stale_authentication(&self) -> Self {
        Self {
            inner: Arc::new(Inner {
                subject: self.inner.subject.clone(),
                roles: self.inner.roles.clone(),
                session: self.inner.session.clone(),
                authenticated_at: std::time::UNIX_EPOCH,
                expires_at: self.inner.expires_at,
                attributes: self.inner.attributes.clone(),
                data: self.inner.data.clone(),
                anonymous: self.inner.anonymous,
            }),
        }
    }

    /// The subject, roles and attributes, to log the same identity in again.
    pub fn spec(&self) -> PrincipalSpec {
        PrincipalSpec {
            subject: self.inner.subject.clone(),
            roles: self.inner.roles.clone(),
            attributes: self.inner.attributes.clone(),
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.inner.subject)
            .field("roles", &self.inner.roles)
            .field("session", &self.inner.session.id)
            .field("authenticated_at", &self.inner.authenticated_at)
            .field("expires_at", &self.inner.expires_at)
            .finish_non_exhaustive()
    }
}

/// Who to log in: subject, roles and attributes, before a session exists.
#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalSpec {
    /// The subject (user ID).
    pub subject: String,
    /// Roles to grant.
    pub roles: Vec<String>,
    /// Extra attributes carried with the session (JWT: extra claims).
    pub attributes: Map<String, Value>,
}

/// Builder returned by [`Principal::builder`].
#[derive(Debug, Clone)]
pub struct PrincipalBuilder {
    subject: String,
    roles: Vec<String>,
    attributes: Map<String, Value>,
}

impl PrincipalBuilder {
    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Adds several roles.
    pub fn roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Finishes the spec.
    pub fn build(self) -> PrincipalSpec {
        PrincipalSpec {
            subject: self.subject,
            roles: self.roles,
            attributes: self.attributes,
        }
    }
}

impl From<PrincipalBuilder> for PrincipalSpec {
    fn from(b: PrincipalBuilder) -> Self {
        b.build()
    }
}
