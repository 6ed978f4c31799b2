//! In-process stores: fast, exact, and gone when the process exits.
//!
//! [`MemoryStore`] implements [`SessionStore`], [`RefreshStore`] and [`RevocationStore`]. It suits
//! tests and single-process deployments; every instance of an app needs a shared store instead.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::SystemTime,
};

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::{
    CreateOutcome, DataLimits, DataPatch, LimitPolicy, RefreshRecord, RefreshStore, Revocation,
    RevocationFeed, RevocationStore, RotateOutcome, RotateRequest, SessionLimit, SessionRecord,
    SessionStore, StoreError, StoreResult,
};
use crate::token::TokenHash;

mod throttle;

/// An in-memory store for sessions, refresh families and revocations. Clones share state.
///
/// ```
/// use keycard::store::MemoryStore;
/// let store = MemoryStore::new();
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<State>>,
    feed: broadcast::Sender<Revocation>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<TokenHash, SessionRecord>,
    by_subject: HashMap<String, HashSet<TokenHash>>,
    refresh: HashMap<TokenHash, RefreshRecord>,
    families: HashMap<String, Family>,
    denied: HashMap<String, SystemTime>,
    epochs: HashMap<String, SystemTime>,
    throttle: HashMap<super::ThrottleKey, super::Counter>,
}

struct Family {
    subject: String,
    tokens: Vec<TokenHash>,
    head: Option<TokenHash>,
    data: Option<String>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("MemoryStore")
            .field("sessions", &state.sessions.len())
            .field("refresh_tokens", &state.refresh.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let (feed, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Mutex::new(State::default())),
            feed,
        }
    }
}

impl State {
    fn live_sessions(&self, subject: &str, now: SystemTime) -> Vec<&SessionRecord> {
        let mut live: Vec<&SessionRecord> = self
            .by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
            .filter(|r| r.expires_at > now)
            .collect();
        live.sort_by_key(|r| (r.created_at, *r.id.as_bytes()));
        live
    }

    fn remove_session(&mut self, id: &TokenHash) -> Option<SessionRecord> {
        let record = self.sessions.remove(id)?;
        if let Some(set) = self.by_subject.get_mut(&record.subject) {
            set.remove(id);
            if set.is_empty() {
                self.by_subject.remove(&record.subject);
            }
        }
        Some(record)
    }

    fn insert_session(&mut self, record: &SessionRecord) {
        self.sessions.insert(record.id, record.clone());
        self.by_subject
            .entry(record.subject.clone())
            .or_default()
            .insert(record.id);
    }

    fn remove_family(&mut self, family: &str) -> bool {
        match self.families.remove(family) {
            Some(f) => {
                for t in f.tokens {
                    self.refresh.remove(&t);
                }
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        record: &SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<CreateOutcome> {
        let mut state = self.inner.lock();
        if state.sessions.contains_key(&record.id) {
            return Ok(CreateOutcome::Collision);
        }
        let mut evicted = Vec::new();
        if let Some(limit) = limit {
            let live: Vec<TokenHash> = state
                .live_sessions(&record.subject, record.created_at)
                .iter()
                .map(|r| r.id)
                .collect();
            let max = usize::try_from(limit.max.max(1)).unwrap_or(usize::MAX);
            if live.len() >= max {
                match limit.policy {
                    LimitPolicy::Reject => return Ok(CreateOutcome::LimitReached),
                    LimitPolicy::EvictOldest => {
                        let excess = live.len() + 1 - max;
                        for id in live.into_iter().take(excess) {
                            state.remove_session(&id);
                            evicted.push(id);
                        }
                    }
                }
            }
        }
        state.insert_session(record);
        Ok(CreateOutcome::Created { evicted })
    }

    async fn load(&self, id: &TokenHash, now: SystemTime) -> StoreResult<Option<SessionRecord>> {
        let state = self.inner.lock();
        Ok(state
            .sessions
            .get(id)
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn touch(
        &self,
        id: &TokenHash,
        last_seen_at: SystemTime,
        expires_at: SystemTime,
    ) -> StoreResult<bool> {
        let mut state = self.inner.lock();
        match state.sessions.get_mut(id) {
            Some(r) if r.expires_at > last_seen_at => {
                r.last_seen_at = last_seen_at;
                r.expires_at = expires_at.min(r.absolute_expires_at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn rotate(&self, old: &TokenHash, new: &SessionRecord) -> StoreResult<bool> {
        let mut state = self.inner.lock();
        let live = state
            .sessions
            .get(old)
            .is_some_and(|r| r.expires_at > new.last_seen_at);
        if !live {
            return Ok(false);
        }
        if state.sessions.contains_key(&new.id) {
            return Err(StoreError::new(super::StoreErrorKind::Conflict));
        }
        state.remove_session(old);
        state.insert_session(new);
        Ok(true)
    }

    async fn delete(&self, subject: &str, id: &TokenHash) -> StoreResult<bool> {
        let mut state = self.inner.lock();
        if state.sessions.get(id).is_some_and(|r| r.subject == subject) {
            state.remove_session(id);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        let mut state = self.inner.lock();
        let ids = state.by_subject.remove(subject).unwrap_or_default();
        let mut n = 0;
        for id in ids {
            if state.sessions.remove(&id).is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<SessionRecord>> {
        let state = self.inner.lock();
        Ok(state
            .live_sessions(subject, now)
            .into_iter()
            .cloned()
            .collect())
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let mut state = self.inner.lock();
        let expired: Vec<TokenHash> = state
            .sessions
            .values()
            .filter(|r| r.expires_at <= now)
            .map(|r| r.id)
            .collect();
        for id in &expired {
            state.remove_session(id);
        }
        Ok(expired.len() as u64)
    }

    async fn update_data(
        &self,
        id: &TokenHash,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let mut state = self.inner.lock();
        let Some(record) = state.sessions.get_mut(id).filter(|r| r.expires_at > now) else {
            return Ok(false);
        };
        record.data = patch.apply(record.data.as_deref(), limits)?;
        Ok(true)
    }
}

#[async_trait]
impl RefreshStore for MemoryStore {
    async fn insert(&self, record: &RefreshRecord) -> StoreResult<bool> {
        let mut state = self.inner.lock();
        if state.refresh.contains_key(&record.id) || state.families.contains_key(&record.family) {
            return Ok(false);
        }
        state.refresh.insert(record.id, record.clone());
        state.families.insert(
            record.family.clone(),
            Family {
                subject: record.subject.clone(),
                tokens: vec![record.id],
                head: Some(record.id),
                data: None,
            },
        );
        Ok(true)
    }

    async fn rotate(&self, req: RotateRequest<'_>) -> StoreResult<RotateOutcome> {
        let mut state = self.inner.lock();
        let Some(current) = state.refresh.get(req.presented).cloned() else {
            return Ok(RotateOutcome::Invalid);
        };
        let Some(family) = state.families.get(&current.family) else {
            return Ok(RotateOutcome::Invalid);
        };
        if current.family_expires_at <= req.now {
            return Ok(RotateOutcome::Invalid);
        }
        let head = family.head;
        let mut replaced = None;
        match current.used_at {
            None => {
                if current.expires_at <= req.now {
                    return Ok(RotateOutcome::Invalid);
                }
            }
            Some(used_at) => {
                let tokens = &family.tokens;
                let is_predecessor =
                    tokens.len() >= 2 && tokens[tokens.len() - 2] == *req.presented;
                let head_unused = head
                    .and_then(|h| state.refresh.get(&h))
                    .is_some_and(|r| r.used_at.is_none() && r.expires_at > req.now);
                let in_grace = !req.grace.is_zero()
                    && used_at + req.grace > req.now
                    && is_predecessor
                    && head_unused;
                if !in_grace {
                    let subject = current.subject.clone();
                    let family = current.family.clone();
                    state.remove_family(&family);
                    return Ok(RotateOutcome::Reused { family, subject });
                }
                // Grace: the unused successor is replaced by a fresh head (below, once `next` is
                // known not to collide, so that a conflict changes nothing).
                replaced = head;
            }
        }
        if state.refresh.contains_key(req.next) && replaced != Some(*req.next) {
            return Err(StoreError::new(super::StoreErrorKind::Conflict));
        }
        if let Some(h) = replaced {
            state.refresh.remove(&h);
            if let Some(f) = state.families.get_mut(&current.family) {
                f.tokens.retain(|t| *t != h);
            }
        }
        let next = current.successor(*req.next, req.now, req.idle);
        if let Some(r) = state.refresh.get_mut(req.presented) {
            r.used_at.get_or_insert(req.now);
        }
        state.refresh.insert(next.id, next.clone());
        if let Some(f) = state.families.get_mut(&current.family) {
            f.tokens.push(next.id);
            f.head = Some(next.id);
        }
        Ok(RotateOutcome::Rotated { next })
    }

    async fn family_live(&self, family: &str, now: SystemTime) -> StoreResult<bool> {
        let state = self.inner.lock();
        Ok(state
            .families
            .get(family)
            .and_then(|f| f.head)
            .and_then(|h| state.refresh.get(&h))
            .is_some_and(|r| r.expires_at > now))
    }

    async fn delete_family(&self, subject: &str, family: &str) -> StoreResult<bool> {
        let mut state = self.inner.lock();
        if state
            .families
            .get(family)
            .is_some_and(|f| f.subject == subject)
        {
            Ok(state.remove_family(family))
        } else {
            Ok(false)
        }
    }

    async fn delete_all(&self, subject: &str) -> StoreResult<u64> {
        let mut state = self.inner.lock();
        let families: Vec<String> = state
            .families
            .iter()
            .filter(|(_, f)| f.subject == subject)
            .map(|(k, _)| k.clone())
            .collect();
        for f in &families {
            state.remove_family(f);
        }
        Ok(families.len() as u64)
    }

    async fn list(&self, subject: &str, now: SystemTime) -> StoreResult<Vec<RefreshRecord>> {
        let state = self.inner.lock();
        let mut heads: Vec<RefreshRecord> = state
            .families
            .values()
            .filter(|f| f.subject == subject)
            .filter_map(|f| f.head.and_then(|h| state.refresh.get(&h)))
            .filter(|r| r.used_at.is_none() && r.expires_at > now)
            .cloned()
            .collect();
        heads.sort_by(|a, b| {
            (a.family_created_at, &a.family).cmp(&(b.family_created_at, &b.family))
        });
        Ok(heads)
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let mut state = self.inner.lock();
        let dead: Vec<String> = state
            .families
            .iter()
            .filter(|(_, f)| f.is_dead(&state.refresh, now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut removed = 0u64;
        for fam in dead {
            if let Some(f) = state.families.get(&fam) {
                removed += f.tokens.len() as u64;
            }
            state.remove_family(&fam);
        }
        Ok(removed)
    }

    async fn family_data(&self, family: &str, now: SystemTime) -> StoreResult<Option<String>> {
        let state = self.inner.lock();
        Ok(state
            .families
            .get(family)
            .filter(|f| !f.is_dead(&state.refresh, now))
            .and_then(|f| f.data.clone()))
    }

    async fn update_family_data(
        &self,
        family: &str,
        patch: &DataPatch,
        limits: &DataLimits,
        now: SystemTime,
    ) -> StoreResult<bool> {
        let mut guard = self.inner.lock();
        let state = &mut *guard;
        let Some(f) = state
            .families
            .get_mut(family)
            .filter(|f| !f.is_dead(&state.refresh, now))
        else {
            return Ok(false);
        };
        f.data = patch.apply(f.data.as_deref(), limits)?;
        Ok(true)
    }
}

impl Family {
    /// A family is dead when its head is missing or expired.
    fn is_dead(&self, tokens: &HashMap<TokenHash, RefreshRecord>, now: SystemTime) -> bool {
        self.head
            .and_then(|h| tokens.get(&h))
            .is_none_or(|r| r.expires_at <= now)
    }
}

#[async_trait]
impl RevocationStore for MemoryStore {
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        {
            let mut state = self.inner.lock();
            match revocation {
                Revocation::Jti { jti, until } => {
                    let e = state.denied.entry(jti.clone()).or_insert(*until);
                    *e = (*e).max(*until);
                }
                Revocation::Epoch { subject, epoch } => {
                    let e = state.epochs.entry(subject.clone()).or_insert(*epoch);
                    *e = (*e).max(*epoch);
                }
            }
        }
        // No subscribers is not an error.
        let _ = self.feed.send(revocation.clone());
        Ok(())
    }

    async fn load(&self, now: SystemTime) -> StoreResult<Vec<Revocation>> {
        let state = self.inner.lock();
        let mut out: Vec<Revocation> = state
            .denied
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(jti, until)| Revocation::Jti {
                jti: jti.clone(),
                until: *until,
            })
            .collect();
        out.extend(state.epochs.iter().map(|(s, e)| Revocation::Epoch {
            subject: s.clone(),
            epoch: *e,
        }));
        Ok(out)
    }

    async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: SystemTime,
    ) -> StoreResult<bool> {
        let state = self.inner.lock();
        Ok(state.denied.contains_key(jti)
            || state.epochs.get(subject).is_some_and(|e| issued_at < *e))
    }

    async fn subscribe(&self) -> StoreResult<Option<RevocationFeed>> {
        let rx = self.feed.subscribe();
        let stream = tokio_stream_from(rx);
        Ok(Some(stream))
    }

    async fn sweep(&self, now: SystemTime) -> StoreResult<u64> {
        let mut state = self.inner.lock();
        let before = state.denied.len();
        state.denied.retain(|_, until| *until > now);
        Ok((before - state.denied.len()) as u64)
    }
}

/// Adapts a broadcast receiver into a feed; a lagged receiver ends the feed with an error so the
/// consumer reloads.
fn tokio_stream_from(rx: broadcast::Receiver<Revocation>) -> RevocationFeed {
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Ok(r) => Some((Ok(r), Some(rx))),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Some((Err(StoreError::unavailable("revocation feed lagged")), None))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .boxed()
}
