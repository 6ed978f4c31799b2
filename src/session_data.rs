//! [`SessionData`]: per-session data in handlers, for every strategy.
//!
//! Values are serde values under string keys (or typed [`DataKey`]s). The data is read with the
//! principal when the strategy makes that round trip anyway (server sessions without a cache
//! hit), and lazily otherwise. Changes are kept in the request and written once, after the
//! handler, only when something changed, as a per-key patch: two concurrent requests of one
//! session that change different keys both take effect. A save over the
//! [`DataLimits`](crate::store::DataLimits) answers 413 and saves nothing.
//!
//! With [`AnonymousSettings`](crate::strategy::AnonymousSettings) on, a caller without a
//! credential who writes data gets an anonymous session (a cookie that never yields a
//! [`Principal`]); at [`Auth::login`](crate::Auth::login) the data moves into the new session,
//! under a fresh ID, and the anonymous ID stops working. Reads never create one.
//!
//! # Example
//! ```
//! use axum::{Json, Router, extract::Path, routing::{get, put}};
//! use keycard::{DataKey, Rejection, SessionData};
//!
//! const THEME: DataKey<String> = DataKey::new("theme");
//!
//! async fn theme(data: SessionData) -> Result<String, Rejection> {
//!     Ok(data.get_key(&THEME).await?.unwrap_or_else(|| "light".into()))
//! }
//! async fn set_theme(data: SessionData, Path(theme): Path<String>) -> Result<(), Rejection> {
//!     data.insert_key(&THEME, &theme).await
//! }
//! async fn all(data: SessionData) -> Result<Json<serde_json::Map<String, serde_json::Value>>, Rejection> {
//!     Ok(Json(data.entries().await?))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/theme", get(theme))
//!     .route("/theme/{t}", put(set_theme))
//!     .route("/data", get(all));
//! ```

use std::{collections::BTreeMap, marker::PhantomData, sync::Arc};

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, value::RawValue};

use crate::{
    context::RequestContext,
    credential::ClientMeta,
    error::{Error, ErrorKind},
    extract::{Rejection, context},
    principal::{DataLoad, Principal},
    store::{DataLimits, DataPatch},
};

/// The handle on the current session's data. Extracting it never fails on credentials; its
/// methods answer 401 when the strategy needs a credential the request lacks.
#[derive(Debug, Clone)]
pub struct SessionData {
    ctx: Arc<RequestContext>,
    meta: ClientMeta,
}

/// A typed key: the name and the value type in one constant.
#[derive(Debug)]
pub struct DataKey<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> DataKey<T> {
    /// The key named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    /// The key's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// Whose data the request reads and writes.
#[derive(Debug, Default)]
enum Owner {
    /// Not asked yet.
    #[default]
    Unknown,
    /// No credential: data only through a new anonymous session.
    Nobody,
    /// A session (possibly anonymous).
    Session(Principal),
}

/// The request's view of the session data: what was read, and what changed.
#[derive(Debug, Default)]
pub(crate) struct DataState {
    owner: Owner,
    loaded: Option<BTreeMap<Box<str>, Box<RawValue>>>,
    /// The text `loaded` was parsed from, when it was read from the strategy (not with the
    /// principal): the saved patch's [`DataPatch::base`].
    read: Option<Option<Arc<str>>>,
    patch: DataPatch,
    meta: Option<ClientMeta>,
}

impl<S: Send + Sync> FromRequestParts<S> for SessionData {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            ctx: context(parts)?.clone(),
            meta: crate::auth::client_meta(parts),
        })
    }
}

impl SessionData {
    fn reject(&self, error: Error) -> Rejection {
        Rejection::new(error, Some(&self.ctx))
    }

    fn limits(&self) -> &DataLimits {
        &self.ctx.shared.data_limits
    }

    /// The value of `key`, `None` when absent.
    ///
    /// # Errors
    /// 401 when the strategy needs a credential (JWT) and there is none or it is invalid; 503
    /// when the store is down; 400 (`invalid_data`) when the stored value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Rejection> {
        self.ctx.data_load().await.map_err(|e| self.reject(e))?;
        let state = self.ctx.data.lock();
        let raw = match state.patch.get(key) {
            Some(change) => change,
            None => state.loaded.as_ref().and_then(|m| m.get(key)).map(|v| &**v),
        };
        raw.map(|v| serde_json::from_str(v.get()))
            .transpose()
            .map_err(|e| {
                self.reject(Error::with_message(
                    ErrorKind::InvalidData,
                    format!("session data `{key}` is not of the requested type: {e}"),
                ))
            })
    }

    /// Sets `key` to `value`, saved after the handler.
    ///
    /// # Errors
    /// 400 (`invalid_data`) for a key over the limit or a value that is not JSON; 413 for a
    /// value over the limit; 401 when there is no session to hold it (and no anonymous one may
    /// start).
    pub async fn insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), Rejection> {
        self.check_key(key)?;
        let raw = serde_json::value::to_raw_value(value).map_err(|e| {
            self.reject(Error::with_message(
                ErrorKind::InvalidData,
                format!("session data `{key}` cannot be stored as JSON: {e}"),
            ))
        })?;
        if raw.get().len() > self.limits().max_value_bytes {
            return Err(self.reject(Error::with_message(
                ErrorKind::PayloadTooLarge,
                format!(
                    "session data `{key}` is over {} bytes",
                    self.limits().max_value_bytes
                ),
            )));
        }
        self.writable().await?;
        let mut state = self.ctx.data.lock();
        state.patch.set(key, raw);
        state.meta.get_or_insert_with(|| self.meta.clone());
        Ok(())
    }

    /// Removes `key`, saved after the handler.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub async fn remove(&self, key: &str) -> Result<(), Rejection> {
        self.check_key(key)?;
        self.writable().await?;
        self.ctx.data.lock().patch.remove(key);
        Ok(())
    }

    /// Every key and value, with this request's changes applied.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn entries(&self) -> Result<Map<String, Value>, Rejection> {
        self.ctx.data_load().await.map_err(|e| self.reject(e))?;
        let state = self.ctx.data.lock();
        let mut out = Map::new();
        let decode = |v: &RawValue| serde_json::from_str::<Value>(v.get()).unwrap_or(Value::Null);
        for (k, v) in state.loaded.iter().flatten() {
            out.insert(k.to_string(), decode(v));
        }
        for (k, change) in state.patch.changes() {
            match change {
                Some(v) => out.insert(k.to_owned(), serde_json::from_str(v).unwrap_or(Value::Null)),
                None => out.remove(k),
            };
        }
        Ok(out)
    }

    /// [`get`](Self::get) with a typed key.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_key<T: DeserializeOwned>(
        &self,
        key: &DataKey<T>,
    ) -> Result<Option<T>, Rejection> {
        self.get(key.name).await
    }

    /// [`insert`](Self::insert) with a typed key.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub async fn insert_key<T: Serialize>(
        &self,
        key: &DataKey<T>,
        value: &T,
    ) -> Result<(), Rejection> {
        self.insert(key.name, value).await
    }

    fn check_key(&self, key: &str) -> Result<(), Rejection> {
        let max = self.limits().max_key_bytes;
        if key.is_empty() || key.len() > max {
            return Err(self.reject(Error::with_message(
                ErrorKind::InvalidData,
                format!("a session data key must be 1 to {max} bytes"),
            )));
        }
        Ok(())
    }

    /// Whether this request may write: it has a session, or an anonymous one may start.
    async fn writable(&self) -> Result<(), Rejection> {
        self.ctx.data_owner().await.map_err(|e| self.reject(e))?;
        let nobody = matches!(self.ctx.data.lock().owner, Owner::Nobody);
        match nobody && !self.ctx.anonymous_allowed() {
            true => Err(self.reject(Error::new(ErrorKind::MissingCredential))),
            false => Ok(()),
        }
    }
}

impl RequestContext {
    /// Finds whose data this request handles (once).
    async fn data_owner(&self) -> Result<(), Error> {
        if !matches!(self.data.lock().owner, Owner::Unknown) {
            return Ok(());
        }
        let owner = match self.resolve_session().await {
            Ok(principal) => Owner::Session(principal),
            Err(ErrorKind::MissingCredential) => Owner::Nobody,
            Err(kind) => return Err(Error::new(kind)),
        };
        let mut state = self.data.lock();
        if matches!(state.owner, Owner::Unknown) {
            state.owner = owner;
        }
        Ok(())
    }

    /// Whether a caller without a credential may use session data: only where an anonymous
    /// session could hold it.
    fn anonymous_allowed(&self) -> bool {
        self.shared
            .strategy
            .session_data()
            .is_some_and(|d| d.anonymous())
    }

    /// Reads the stored data (once): from the principal when it came with it, else from the
    /// strategy. Without a credential, the data is empty where anonymous sessions may start and
    /// a 401 elsewhere.
    async fn data_load(&self) -> Result<(), Error> {
        self.data_owner().await?;
        let principal = {
            let state = self.data.lock();
            if state.loaded.is_some() {
                return Ok(());
            }
            match &state.owner {
                Owner::Session(p) => Some(p.clone()),
                _ if !self.anonymous_allowed() => {
                    return Err(Error::new(ErrorKind::MissingCredential));
                }
                _ => None,
            }
        };
        let (text, read): (Option<Arc<str>>, bool) = match principal {
            None => (None, false),
            Some(p) => match p.data() {
                DataLoad::Loaded(text) => (text.clone(), false),
                DataLoad::Lazy => {
                    let store = self.shared.strategy.session_data().ok_or_else(no_data)?;
                    (store.load(&p).await?.map(Arc::from), true)
                }
            },
        };
        let map = parse(text.as_deref())?;
        let mut state = self.data.lock();
        if state.loaded.is_none() {
            state.loaded = Some(map);
            if read {
                state.read = Some(text);
            }
        }
        Ok(())
    }

    /// Whether handlers changed the data.
    pub(crate) fn data_changed(&self) -> bool {
        !self.data.lock().patch.is_empty()
    }

    /// Writes the changes (after the handler): into the session, or into a new anonymous
    /// session whose cookie the response then sets.
    pub(crate) async fn save_data(&self) -> Result<(), Error> {
        let (owner, patch, meta) = {
            let mut state = self.data.lock();
            let owner = match &state.owner {
                Owner::Session(p) => Some(p.clone()),
                _ => None,
            };
            let mut patch = std::mem::take(&mut state.patch);
            // What this request knows the stored data to be: a compare-and-set's first guess.
            let base = match owner.as_ref().map(Principal::data) {
                Some(DataLoad::Loaded(text)) => Some(text.clone()),
                Some(DataLoad::Lazy) => state.read.take(),
                None => None,
            };
            if let Some(base) = base {
                patch = patch.with_base(base);
            }
            (owner, patch, state.meta.take())
        };
        if patch.is_empty() {
            return Ok(());
        }
        let store = self.shared.strategy.session_data().ok_or_else(no_data)?;
        let limits = &self.shared.data_limits;
        match owner {
            Some(principal) => store.save(&principal, &patch, limits).await,
            None => match store
                .start_anonymous(&patch, limits, &meta.unwrap_or_default())
                .await?
            {
                Some(issued) => {
                    self.issue(&issued);
                    Ok(())
                }
                None => Err(Error::new(ErrorKind::MissingCredential)),
            },
        }
    }

    /// After a login or reissue: the data now belongs to `principal`. Data of an anonymous
    /// session moves with it (the anonymous session ends); a logged-in session's data stays
    /// behind (a login starts a session of its own).
    pub(crate) async fn data_moved(
        &self,
        principal: &Principal,
        rotated: bool,
    ) -> Result<(), Error> {
        // Only a request that carried a credential had a session to move from.
        let previous = match self.has_credential() {
            true => match self.resolve_session().await {
                Ok(p) if p.is_anonymous() || rotated => Some(p),
                _ => None,
            },
            false => None,
        };
        let carry = match &previous {
            Some(p) if p.is_anonymous() => {
                self.data_load().await?;
                true
            }
            _ => false,
        };
        {
            let mut state = self.data.lock();
            if carry {
                let loaded = state.loaded.take().unwrap_or_default();
                let mut patch = DataPatch::new();
                for (k, v) in loaded {
                    patch.set(k.into_string(), v);
                }
                for (k, change) in state.patch.changes() {
                    match change.map(|v| RawValue::from_string(v.to_owned())) {
                        Some(Ok(v)) => patch.set(k, v),
                        _ => patch.remove(k),
                    }
                }
                state.patch = patch;
            } else if !rotated {
                state.loaded = Some(BTreeMap::new());
                state.patch = DataPatch::new();
            }
            state.owner = Owner::Session(principal.clone());
            state.read = None;
        }
        if let (true, Some(anonymous)) = (carry, previous)
            && let Some(store) = self.shared.strategy.session_data()
        {
            store.discard_anonymous(&anonymous).await?;
        }
        Ok(())
    }

    /// After a logout: nothing is left to save.
    pub(crate) fn data_ended(&self) {
        let mut state = self.data.lock();
        state.patch = DataPatch::new();
        state.loaded = Some(BTreeMap::new());
        state.read = None;
        state.owner = Owner::Nobody;
    }
}

fn parse(text: Option<&str>) -> Result<BTreeMap<Box<str>, Box<RawValue>>, Error> {
    match text {
        None => Ok(BTreeMap::new()),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            Error::with_message(
                ErrorKind::StoreUnavailable,
                "stored session data is not a JSON object",
            )
            .with_source(e)
        }),
    }
}

fn no_data() -> Error {
    Error::with_message(
        ErrorKind::Internal,
        "the strategy keeps no session data (SessionStrategy::session_data)",
    )
}
