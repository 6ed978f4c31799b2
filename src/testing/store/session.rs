//! The [`SessionStore`] checks.

use std::sync::Arc;

use super::{created, limit, millis, now, secs, session, subject, token};
use crate::store::{CreateOutcome, LimitPolicy, SessionStore, StoreErrorKind};

/// A stored session (with and without optional fields, and with a lifetime chosen at login)
/// reads back unchanged, from `load` and from `list`; an unknown ID is `None`.
pub async fn session_round_trip(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let user = subject();
    let full = session(&user, t0, secs(3600));
    let mut bare = session(&user, t0 + millis(1), secs(3600));
    bare.user_agent = None;
    bare.ip = None;
    bare.roles.clear();
    bare.attributes.clear();
    let mut chosen = session(&user, t0 + millis(2), secs(600));
    chosen.idle_timeout = Some(millis(600_250));
    chosen.persistent = false;
    for record in [&full, &bare, &chosen] {
        assert_eq!(store.create(record, None).await.unwrap(), created());
        let loaded = store.load(&record.id, t0).await.unwrap();
        assert_eq!(
            loaded.as_ref(),
            Some(record),
            "a stored session reads back unchanged"
        );
    }
    assert_eq!(store.load(&token(), t0).await.unwrap(), None);
    let listed = store.list(&user, t0).await.unwrap();
    let lifetimes: Vec<_> = listed
        .iter()
        .map(|r| (r.id, r.idle_timeout, r.persistent))
        .collect();
    assert_eq!(
        lifetimes,
        [&full, &bare, &chosen].map(|r| (r.id, r.idle_timeout, r.persistent)),
        "listed sessions keep their lifetime choices"
    );
}

/// Creation is insert-if-absent: a colliding ID is [`CreateOutcome::Collision`] under any limit,
/// and the first record stays.
pub async fn session_create_never_overwrites(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let first = session(&subject(), t0, secs(3600));
    assert_eq!(store.create(&first, None).await.unwrap(), created());

    let mut intruder = session(&subject(), t0, secs(7200));
    intruder.id = first.id;
    assert_eq!(
        store.create(&intruder, None).await.unwrap(),
        CreateOutcome::Collision
    );
    for policy in [LimitPolicy::Reject, LimitPolicy::EvictOldest] {
        assert_eq!(
            store.create(&intruder, limit(1, policy)).await.unwrap(),
            CreateOutcome::Collision
        );
        // Also when the colliding record's own subject is at its limit.
        let mut same_subject = session(&first.subject, t0, secs(60));
        same_subject.id = first.id;
        assert_eq!(
            store.create(&same_subject, limit(1, policy)).await.unwrap(),
            CreateOutcome::Collision
        );
    }
    assert_eq!(
        store.load(&first.id, t0).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.list(&intruder.subject, t0).await.unwrap(), vec![]);
    assert_eq!(store.list(&first.subject, t0).await.unwrap(), vec![first]);
}

/// A session is served until just before `expires_at` and never from then on (by `load` and
/// `list`).
pub async fn session_load_honours_expiry(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let record = session(&subject(), t0, secs(60));
    store.create(&record, None).await.unwrap();
    let just_before = record.expires_at - millis(1);
    assert!(store.load(&record.id, just_before).await.unwrap().is_some());
    assert_eq!(
        store.load(&record.id, record.expires_at).await.unwrap(),
        None
    );
    assert_eq!(store.load(&record.id, t0 + secs(3600)).await.unwrap(), None);
    assert_eq!(
        store
            .list(&record.subject, record.expires_at)
            .await
            .unwrap(),
        vec![]
    );
}

/// `touch` slides `last_seen_at`/`expires_at` only, never past the absolute expiry, and cannot
/// revive an expired or unknown session.
pub async fn session_touch_slides_within_absolute_expiry(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let mut record = session(&subject(), t0, secs(600));
    record.absolute_expires_at = t0 + secs(1000);
    store.create(&record, None).await.unwrap();

    let seen = t0 + secs(300);
    assert!(
        store
            .touch(&record.id, seen, seen + secs(600))
            .await
            .unwrap()
    );
    let loaded = store.load(&record.id, seen).await.unwrap().unwrap();
    assert_eq!(loaded.last_seen_at, seen);
    assert_eq!(loaded.expires_at, seen + secs(600));
    assert_eq!(
        loaded.created_at, record.created_at,
        "touch changes nothing else"
    );
    assert_eq!(loaded.authenticated_at, record.authenticated_at);

    // Never past the absolute expiry, whatever the caller asks.
    let later = t0 + secs(800);
    assert!(
        store
            .touch(&record.id, later, later + secs(600))
            .await
            .unwrap()
    );
    let loaded = store.load(&record.id, later).await.unwrap().unwrap();
    assert_eq!(loaded.expires_at, record.absolute_expires_at);

    // An expired session cannot be revived.
    let dead = record.absolute_expires_at;
    assert!(
        !store
            .touch(&record.id, dead, dead + secs(600))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .load(&record.id, dead - millis(1))
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        later
    );
    assert!(!store.touch(&token(), t0, t0 + secs(60)).await.unwrap());
}

/// `rotate` replaces a live session by its successor; it does nothing for a missing or expired one,
/// and a colliding new ID is a [`StoreErrorKind::Conflict`] that leaves the old session in place.
pub async fn session_rotate_replaces_atomically(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let user = subject();
    let old = session(&user, t0, secs(600));
    store.create(&old, None).await.unwrap();

    let mut new = session(&user, t0, secs(600));
    new.last_seen_at = t0 + secs(10);
    new.authenticated_at = t0 + secs(10);
    assert!(store.rotate(&old.id, &new).await.unwrap());
    assert_eq!(store.load(&old.id, t0).await.unwrap(), None);
    assert_eq!(store.load(&new.id, t0).await.unwrap(), Some(new.clone()));
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![new.clone()]);

    // The old one is gone: rotating it again does nothing.
    let again = session(&user, t0, secs(600));
    assert!(!store.rotate(&old.id, &again).await.unwrap());
    assert_eq!(store.load(&again.id, t0).await.unwrap(), None);

    // Not live at the caller's "now" (`new.last_seen_at`): nothing is written.
    let mut late = session(&user, t0, secs(600));
    late.last_seen_at = new.expires_at;
    assert!(!store.rotate(&new.id, &late).await.unwrap());
    assert_eq!(store.load(&late.id, t0).await.unwrap(), None);
    assert!(store.load(&new.id, t0).await.unwrap().is_some());

    // A collision on the new ID is a conflict and leaves the old session in place.
    let other = session(&subject(), t0, secs(600));
    store.create(&other, None).await.unwrap();
    let mut colliding = session(&user, t0, secs(600));
    colliding.id = other.id;
    let err = store.rotate(&new.id, &colliding).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert_eq!(store.load(&new.id, t0).await.unwrap(), Some(new));
    assert_eq!(store.load(&other.id, t0).await.unwrap(), Some(other));
}

/// `delete` removes a session only for its own subject.
pub async fn session_delete_is_scoped_to_subject(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let record = session(&subject(), t0, secs(600));
    store.create(&record, None).await.unwrap();
    assert!(!store.delete(&subject(), &record.id).await.unwrap());
    assert!(store.load(&record.id, t0).await.unwrap().is_some());
    assert!(store.delete(&record.subject, &record.id).await.unwrap());
    assert_eq!(store.load(&record.id, t0).await.unwrap(), None);
    assert!(!store.delete(&record.subject, &record.id).await.unwrap());
}

/// `delete_all` removes every session of one subject, counts them, and spares other subjects.
pub async fn session_delete_all(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let (user, bystander) = (subject(), subject());
    for i in 0..3 {
        store
            .create(&session(&user, t0 + millis(i), secs(600)), None)
            .await
            .unwrap();
    }
    let kept = session(&bystander, t0, secs(600));
    store.create(&kept, None).await.unwrap();

    assert_eq!(store.delete_all(&user).await.unwrap(), 3);
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![]);
    assert_eq!(store.delete_all(&user).await.unwrap(), 0);
    assert_eq!(store.list(&bystander, t0).await.unwrap(), vec![kept]);
}

/// `list` returns the subject's live sessions, oldest first, and nothing of other subjects.
pub async fn session_list_live_oldest_first(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let user = subject();
    let newer = session(&user, t0 + millis(20), secs(600));
    let older = session(&user, t0 + millis(10), secs(600));
    // Expires in real time too (a server-side TTL): long enough that a loaded machine still
    // lists it at `t0`, well before the `at` below.
    let expired = session(&user, t0, millis(2000));
    for record in [&newer, &older, &expired] {
        store.create(record, None).await.unwrap();
    }
    store
        .create(&session(&subject(), t0, secs(600)), None)
        .await
        .unwrap();

    assert_eq!(
        store.list(&user, t0).await.unwrap(),
        vec![expired, older.clone(), newer.clone()],
        "oldest first, by creation time"
    );
    let at = t0 + secs(3);
    assert_eq!(store.list(&user, at).await.unwrap(), vec![older, newer]);
    assert_eq!(store.list(&subject(), t0).await.unwrap(), vec![]);
}

/// `sweep` removes expired sessions and keeps live ones.
pub async fn session_sweep_removes_only_expired(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let user = subject();
    // Expired an hour before the real current time, so any sweep may remove it.
    let expired = session(&user, t0 - secs(7200), secs(3600));
    let live = session(&user, t0, secs(3600));
    store.create(&expired, None).await.unwrap();
    store.create(&live, None).await.unwrap();

    store.sweep(t0).await.unwrap();
    assert!(
        !store.delete(&user, &expired.id).await.unwrap(),
        "the expired record is gone"
    );
    assert_eq!(store.load(&live.id, t0).await.unwrap(), Some(live));
    assert_eq!(
        store.delete_all(&user).await.unwrap(),
        1,
        "only the live record remained"
    );
}

/// A [`LimitPolicy::Reject`] limit refuses the session beyond it; expired sessions and other
/// subjects do not count; a limit of zero is one.
pub async fn session_limit_reject(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let user = subject();
    let a = session(&user, t0, secs(600));
    let b = session(&user, t0 + millis(1), secs(600));
    let c = session(&user, t0 + millis(2), secs(600));
    let two = limit(2, LimitPolicy::Reject);
    assert_eq!(store.create(&a, two).await.unwrap(), created());
    assert_eq!(store.create(&b, two).await.unwrap(), created());
    assert_eq!(
        store.create(&c, two).await.unwrap(),
        CreateOutcome::LimitReached
    );
    assert_eq!(store.load(&c.id, t0).await.unwrap(), None);
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![a, b]);

    // Expired sessions do not count; sessions of other subjects do not count.
    let other = subject();
    store
        .create(&session(&other, t0 - secs(7200), secs(60)), None)
        .await
        .unwrap();
    let fresh = session(&other, t0, secs(600));
    let one = limit(1, LimitPolicy::Reject);
    assert_eq!(store.create(&fresh, one).await.unwrap(), created());
    // A limit of zero is treated as one.
    let zero = limit(0, LimitPolicy::Reject);
    let third = subject();
    assert_eq!(
        store
            .create(&session(&third, t0, secs(600)), zero)
            .await
            .unwrap(),
        created()
    );
    assert_eq!(
        store
            .create(&session(&third, t0, secs(600)), zero)
            .await
            .unwrap(),
        CreateOutcome::LimitReached
    );
}

/// A [`LimitPolicy::EvictOldest`] limit evicts the oldest live sessions, as many as needed, and
/// reports them.
pub async fn session_limit_evict_oldest(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let user = subject();
    let a = session(&user, t0, secs(600));
    let b = session(&user, t0 + millis(1), secs(600));
    let c = session(&user, t0 + millis(2), secs(600));
    let two = limit(2, LimitPolicy::EvictOldest);
    store.create(&a, two).await.unwrap();
    store.create(&b, two).await.unwrap();
    assert_eq!(
        store.create(&c, two).await.unwrap(),
        CreateOutcome::Created {
            evicted: vec![a.id]
        }
    );
    assert_eq!(store.load(&a.id, t0).await.unwrap(), None);
    assert_eq!(
        store.list(&user, t0).await.unwrap(),
        vec![b.clone(), c.clone()]
    );

    // A lower limit evicts as many as needed, oldest first.
    let d = session(&user, t0 + millis(3), secs(600));
    assert_eq!(
        store
            .create(&d, limit(1, LimitPolicy::EvictOldest))
            .await
            .unwrap(),
        CreateOutcome::Created {
            evicted: vec![b.id, c.id]
        }
    );
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![d]);
}

async fn concurrent_creates(
    store: &Arc<dyn SessionStore>,
    user: &str,
    policy: LimitPolicy,
) -> Vec<CreateOutcome> {
    let t0 = now();
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let store = Arc::clone(store);
            let record = session(user, t0 + millis(i % 4), secs(600));
            tokio::spawn(async move { store.create(&record, limit(3, policy)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    outcomes
}

/// Twenty concurrent creations under an evict-oldest limit of 3 all succeed, evict exactly 17
/// sessions and leave 3.
pub async fn session_limit_concurrent_evict_oldest(store: Arc<dyn SessionStore>) {
    let user = subject();
    let outcomes = concurrent_creates(&store, &user, LimitPolicy::EvictOldest).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, CreateOutcome::Created { .. }))
    );
    let evicted: usize = outcomes
        .iter()
        .map(|o| match o {
            CreateOutcome::Created { evicted } => evicted.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        evicted, 17,
        "every creation beyond the limit evicted exactly one session"
    );
    assert_eq!(store.list(&user, now()).await.unwrap().len(), 3);
    assert_eq!(store.delete_all(&user).await.unwrap(), 3);
}

/// Twenty concurrent creations under a reject limit of 3 create exactly 3 sessions.
pub async fn session_limit_concurrent_reject(store: Arc<dyn SessionStore>) {
    let user = subject();
    let outcomes = concurrent_creates(&store, &user, LimitPolicy::Reject).await;
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, CreateOutcome::Created { .. }))
        .count();
    assert_eq!(created, 3);
    assert!(outcomes.iter().all(|o| matches!(
        o,
        CreateOutcome::Created { .. } | CreateOutcome::LimitReached
    )));
    assert_eq!(store.list(&user, now()).await.unwrap().len(), 3);
}
