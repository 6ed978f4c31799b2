//! The store conformance suite: one set of checks every backend must pass.
//!
//! Each check is an async function taking the store as `Arc<dyn SessionStore>`,
//! `Arc<dyn RefreshStore>` or `Arc<dyn RevocationStore>`. A backend's test file runs them all with
//! [`store_conformance!`], passing an expression (evaluated inside each async test, so it may
//! `.await`) that builds a fresh store handle:
//!
//! ```ignore
//! mod common;
//! common::conformance::store_conformance!(keycard::store::MemoryStore::new());
//! // or only part of the suite:
//! common::conformance::store_conformance!(sessions: my_store().await);
//! common::conformance::store_conformance!(refresh: my_store().await);
//! common::conformance::store_conformance!(revocations: my_store().await);
//! ```
//!
//! Every check makes its own random subjects, IDs and families and asserts only on those, so the
//! checks can run in parallel against one shared database (no table is ever truncated). Sweeps are
//! only ever asked to remove what expired before the real current time, so they cannot remove
//! another check's live records; the counts they return are therefore not asserted exactly
//! (a parallel sweep may have removed some of this check's expired records first).

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use keycard::{
    store::{
        CreateOutcome, LimitPolicy, RefreshStore, Revocation, RevocationStore, RotateOutcome,
        RotateRequest, SessionLimit, SessionStore, StoreErrorKind,
    },
    token::{TokenHash, random_id},
};

use super::{millis, now, refresh, secs, session, subject, token};

/// Expands to one `#[tokio::test]` per conformance check. See the [module docs](self).
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::common::conformance::store_conformance!(sessions: $make);
        $crate::common::conformance::store_conformance!(refresh: $make);
        $crate::common::conformance::store_conformance!(revocations: $make);
    };
    (sessions: $make:expr) => {
        $crate::common::conformance::conformance_tests!($make, SessionStore;
            session_round_trip,
            session_create_never_overwrites,
            session_load_honours_expiry,
            session_touch_slides_within_absolute_expiry,
            session_rotate_replaces_atomically,
            session_delete_is_scoped_to_subject,
            session_delete_all,
            session_list_live_oldest_first,
            session_sweep_removes_only_expired,
            session_limit_reject,
            session_limit_evict_oldest,
            session_limit_concurrent_evict_oldest,
            session_limit_concurrent_reject,
        );
    };
    (refresh: $make:expr) => {
        $crate::common::conformance::conformance_tests!($make, RefreshStore;
            refresh_insert_is_insert_if_absent,
            refresh_rotate_then_reuse_revokes_family,
            refresh_expired_is_invalid,
            refresh_family_live,
            refresh_delete_family_is_scoped_to_subject,
            refresh_delete_all,
            refresh_list_live_heads_oldest_first,
            refresh_sweep_removes_dead_families,
            refresh_grace_window,
            refresh_rotate_conflict_changes_nothing,
            refresh_concurrent_rotation_has_one_winner,
        );
    };
    (revocations: $make:expr) => {
        $crate::common::conformance::conformance_tests!($make, RevocationStore;
            revocation_jti_denylist,
            revocation_epoch_only_moves_forward,
            revocation_sweep_removes_past_entries,
            revocation_subscribe_delivers,
        );
    };
}
pub(crate) use store_conformance;

/// Implementation detail of [`store_conformance!`].
macro_rules! conformance_tests {
    ($make:expr, $store:ident; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn ::keycard::store::$store> =
                    ::std::sync::Arc::new($make);
                $crate::common::conformance::$check(store).await;
            }
        )+
    };
}
pub(crate) use conformance_tests;

fn limit(max: u32, policy: LimitPolicy) -> Option<SessionLimit> {
    Some(SessionLimit { max, policy })
}

fn created() -> CreateOutcome {
    CreateOutcome::Created {
        evicted: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// SessionStore

pub async fn session_round_trip(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let user = subject();
    let full = session(&user, t0, secs(3600));
    let mut bare = session(&user, t0 + millis(1), secs(3600));
    bare.user_agent = None;
    bare.ip = None;
    bare.roles.clear();
    bare.attributes.clear();
    for record in [&full, &bare] {
        assert_eq!(store.create(record, None).await.unwrap(), created());
        let loaded = store.load(&record.id, t0).await.unwrap();
        assert_eq!(
            loaded.as_ref(),
            Some(record),
            "a stored session reads back unchanged"
        );
    }
    assert_eq!(store.load(&token(), t0).await.unwrap(), None);
}

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

// ---------------------------------------------------------------------------------------------
// RefreshStore

/// A rotation at `now` with an idle lifetime of one hour and no grace window.
fn rotation<'a>(
    presented: &'a TokenHash,
    next: &'a TokenHash,
    now: SystemTime,
) -> RotateRequest<'a> {
    RotateRequest {
        presented,
        next,
        now,
        idle: secs(3600),
        grace: Duration::ZERO,
    }
}

/// [`rotation`] with a five-second grace window.
fn graced<'a>(presented: &'a TokenHash, next: &'a TokenHash, now: SystemTime) -> RotateRequest<'a> {
    RotateRequest {
        grace: secs(5),
        ..rotation(presented, next, now)
    }
}

pub async fn refresh_insert_is_insert_if_absent(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let first = refresh(&user, t0, secs(3600), secs(86_400));
    assert!(store.insert(&first).await.unwrap());
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![first.clone()]);

    let mut same_id = refresh(&subject(), t0, secs(60), secs(120));
    same_id.id = first.id;
    assert!(!store.insert(&same_id).await.unwrap());
    let mut same_family = refresh(&subject(), t0, secs(60), secs(120));
    same_family.family = first.family.clone();
    assert!(!store.insert(&same_family).await.unwrap());

    assert_eq!(store.list(&user, t0).await.unwrap(), vec![first]);
    assert_eq!(store.list(&same_id.subject, t0).await.unwrap(), vec![]);
    assert_eq!(store.list(&same_family.subject, t0).await.unwrap(), vec![]);
}

pub async fn refresh_rotate_then_reuse_revokes_family(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let first = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&first).await.unwrap();

    let (second, at) = (token(), t0 + secs(60));
    let outcome = store
        .rotate(rotation(&first.id, &second, at))
        .await
        .unwrap();
    let expected = first.successor(second, at, secs(3600));
    assert_eq!(
        outcome,
        RotateOutcome::Rotated {
            next: expected.clone()
        }
    );
    assert!(store.family_live(&first.family, at).await.unwrap());
    assert_eq!(store.list(&user, at).await.unwrap(), vec![expected]);

    // Presenting the spent token again revokes the whole family.
    let outcome = store
        .rotate(rotation(&first.id, &token(), at + secs(1)))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RotateOutcome::Reused {
            family: first.family.clone(),
            subject: user.clone()
        }
    );
    assert!(!store.family_live(&first.family, at).await.unwrap());
    assert_eq!(store.list(&user, at).await.unwrap(), vec![]);
    let outcome = store
        .rotate(rotation(&second, &token(), at + secs(2)))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RotateOutcome::Invalid,
        "the successor died with its family"
    );
    assert_eq!(
        store
            .rotate(rotation(&token(), &token(), at))
            .await
            .unwrap(),
        RotateOutcome::Invalid,
        "unknown tokens are invalid"
    );
}

pub async fn refresh_expired_is_invalid(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    // Idle expiry of the head.
    let head = refresh(&user, t0, secs(60), secs(86_400));
    store.insert(&head).await.unwrap();
    let outcome = store
        .rotate(rotation(&head.id, &token(), head.expires_at))
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid);
    // Nothing changed: before its expiry the token still rotates.
    let next = token();
    let outcome = store
        .rotate(rotation(&head.id, &next, t0 + secs(30)))
        .await
        .unwrap();
    assert!(matches!(outcome, RotateOutcome::Rotated { .. }));

    // Absolute expiry of the family, even for a token whose own expiry is later.
    let mut capped = refresh(&user, t0, secs(3600), secs(120));
    capped.expires_at = t0 + secs(3600);
    store.insert(&capped).await.unwrap();
    let outcome = store
        .rotate(rotation(&capped.id, &token(), capped.family_expires_at))
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid);
    assert!(store.family_live(&capped.family, t0).await.unwrap());
}

pub async fn refresh_family_live(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let record = refresh(&subject(), t0, secs(60), secs(86_400));
    store.insert(&record).await.unwrap();
    assert!(store.family_live(&record.family, t0).await.unwrap());
    assert!(
        store
            .family_live(&record.family, record.expires_at - millis(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .family_live(&record.family, record.expires_at)
            .await
            .unwrap()
    );
    assert!(!store.family_live(&random_id().unwrap(), t0).await.unwrap());
}

pub async fn refresh_delete_family_is_scoped_to_subject(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let record = refresh(&user, t0, secs(600), secs(86_400));
    store.insert(&record).await.unwrap();
    assert!(
        !store
            .delete_family(&subject(), &record.family)
            .await
            .unwrap()
    );
    assert!(store.family_live(&record.family, t0).await.unwrap());
    assert!(store.delete_family(&user, &record.family).await.unwrap());
    assert!(!store.family_live(&record.family, t0).await.unwrap());
    assert!(!store.delete_family(&user, &record.family).await.unwrap());
    let outcome = store
        .rotate(rotation(&record.id, &token(), t0))
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid);
}

pub async fn refresh_delete_all(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let (user, bystander) = (subject(), subject());
    let a = refresh(&user, t0, secs(600), secs(86_400));
    let b = refresh(&user, t0, secs(600), secs(86_400));
    let kept = refresh(&bystander, t0, secs(600), secs(86_400));
    for r in [&a, &b, &kept] {
        store.insert(r).await.unwrap();
    }
    // A rotated family still counts once.
    store.rotate(rotation(&a.id, &token(), t0)).await.unwrap();

    assert_eq!(store.delete_all(&user).await.unwrap(), 2);
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![]);
    assert!(!store.family_live(&a.family, t0).await.unwrap());
    assert!(!store.family_live(&b.family, t0).await.unwrap());
    assert_eq!(store.list(&bystander, t0).await.unwrap(), vec![kept]);
}

pub async fn refresh_list_live_heads_oldest_first(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let newer = refresh(&user, t0 + millis(20), secs(600), secs(86_400));
    let older = refresh(&user, t0 + millis(10), secs(600), secs(86_400));
    let short = refresh(&user, t0, secs(1), secs(86_400));
    for r in [&newer, &older, &short] {
        store.insert(r).await.unwrap();
    }
    store
        .insert(&refresh(&subject(), t0, secs(600), secs(86_400)))
        .await
        .unwrap();

    // After a rotation the family's new head is listed, at its family's place.
    let next = token();
    let at = t0 + secs(5);
    let RotateOutcome::Rotated { next: head } =
        store.rotate(rotation(&older.id, &next, at)).await.unwrap()
    else {
        panic!("the head rotates");
    };
    assert_eq!(
        store.list(&user, at).await.unwrap(),
        vec![head.clone(), newer.clone()]
    );
    assert_eq!(
        store.list(&user, t0).await.unwrap(),
        vec![short, head, newer]
    );
}

pub async fn refresh_sweep_removes_dead_families(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    // A family whose head expired an hour ago (after one rotation), and a live one.
    let past = t0 - secs(7200);
    let dead = refresh(&user, past, secs(3600), secs(86_400));
    store.insert(&dead).await.unwrap();
    let dead_next = token();
    store
        .rotate(rotation(&dead.id, &dead_next, past))
        .await
        .unwrap();
    let live = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&live).await.unwrap();

    store.sweep(t0).await.unwrap();
    assert!(
        !store.delete_family(&user, &dead.family).await.unwrap(),
        "the dead family is gone"
    );
    for id in [&dead.id, &dead_next] {
        let outcome = store.rotate(rotation(id, &token(), past)).await.unwrap();
        assert_eq!(outcome, RotateOutcome::Invalid, "and so are its tokens");
    }
    assert!(store.family_live(&live.family, t0).await.unwrap());
    assert_eq!(
        store.delete_all(&user).await.unwrap(),
        1,
        "only the live family remained"
    );
}

pub async fn refresh_grace_window(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let first = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&first).await.unwrap();

    let (t1, t2, t3) = (token(), token(), token());
    let rotated = |o: RotateOutcome| match o {
        RotateOutcome::Rotated { next } => next,
        other => panic!("expected Rotated, got {other:?}"),
    };
    rotated(store.rotate(graced(&first.id, &t1, t0)).await.unwrap());
    // The immediate predecessor of the unused head, within the grace window: the head is
    // replaced by a fresh one.
    let head = rotated(
        store
            .rotate(graced(&first.id, &t2, t0 + secs(2)))
            .await
            .unwrap(),
    );
    assert_eq!(head, first.successor(t2, t0 + secs(2), secs(3600)));
    assert_eq!(store.list(&user, t0 + secs(2)).await.unwrap(), vec![head]);
    assert_eq!(
        store
            .rotate(graced(&t1, &token(), t0 + secs(3)))
            .await
            .unwrap(),
        RotateOutcome::Invalid,
        "the replaced head is gone"
    );
    // The window runs from the first use, not from the latest grace exchange.
    rotated(
        store
            .rotate(graced(&first.id, &t3, t0 + secs(4)))
            .await
            .unwrap(),
    );
    let outcome = store
        .rotate(graced(&first.id, &token(), t0 + secs(5)))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RotateOutcome::Reused { .. }),
        "{outcome:?}"
    );
    assert!(!store.family_live(&first.family, t0).await.unwrap());

    // Only the immediate predecessor: once its successor has itself been used, no grace.
    let second = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&second).await.unwrap();
    let (u1, u2) = (token(), token());
    rotated(store.rotate(graced(&second.id, &u1, t0)).await.unwrap());
    rotated(store.rotate(graced(&u1, &u2, t0 + secs(1))).await.unwrap());
    let outcome = store
        .rotate(graced(&second.id, &token(), t0 + secs(2)))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RotateOutcome::Reused { .. }),
        "{outcome:?}"
    );

    // No grace once the head has expired.
    let third = refresh(&user, t0, secs(10), secs(86_400));
    store.insert(&third).await.unwrap();
    let w1 = token();
    let short = RotateRequest {
        idle: secs(10),
        ..graced(&third.id, &w1, t0)
    };
    rotated(store.rotate(short).await.unwrap());
    let spent_again = token();
    let late = RotateRequest {
        idle: secs(10),
        ..graced(&third.id, &spent_again, t0 + secs(10))
    };
    let outcome = store.rotate(late).await.unwrap();
    assert!(
        matches!(outcome, RotateOutcome::Reused { .. }),
        "{outcome:?}"
    );

    // With a zero window, any second use is reuse.
    let fourth = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&fourth).await.unwrap();
    rotated(
        store
            .rotate(rotation(&fourth.id, &token(), t0))
            .await
            .unwrap(),
    );
    let outcome = store
        .rotate(rotation(&fourth.id, &token(), t0))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RotateOutcome::Reused { .. }),
        "{outcome:?}"
    );
}

pub async fn refresh_rotate_conflict_changes_nothing(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let taken = refresh(&subject(), t0, secs(3600), secs(86_400));
    store.insert(&taken).await.unwrap();
    let first = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&first).await.unwrap();

    // Rotating the head onto an existing ID.
    let err = store
        .rotate(graced(&first.id, &taken.id, t0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![first.clone()]);

    // The same within the grace window, where the current head would be replaced.
    let second = token();
    let RotateOutcome::Rotated { next: head } =
        store.rotate(graced(&first.id, &second, t0)).await.unwrap()
    else {
        panic!("the head rotates");
    };
    let err = store
        .rotate(graced(&first.id, &taken.id, t0 + secs(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![head]);
    assert!(store.family_live(&first.family, t0).await.unwrap());
    assert_eq!(store.list(&taken.subject, t0).await.unwrap(), vec![taken]);
}

pub async fn refresh_concurrent_rotation_has_one_winner(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let record = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&record).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            let (presented, next) = (record.id, token());
            tokio::spawn(async move {
                store
                    .rotate(rotation(&presented, &next, t0 + secs(1)))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let winners = outcomes
        .iter()
        .filter(|o| matches!(o, RotateOutcome::Rotated { .. }))
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    // The first loser sees a spent token and revokes the family; later ones may find it gone.
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, RotateOutcome::Reused { .. }))
    );
    assert!(outcomes.iter().all(|o| matches!(
        o,
        RotateOutcome::Rotated { .. } | RotateOutcome::Reused { .. } | RotateOutcome::Invalid
    )));
    assert!(!store.family_live(&record.family, t0).await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// RevocationStore

fn contains(all: &[Revocation], wanted: &Revocation) -> bool {
    all.iter().any(|r| r == wanted)
}

pub async fn revocation_jti_denylist(store: Arc<dyn RevocationStore>) {
    let t0 = now();
    let jti = random_id().unwrap();
    let until = t0 + secs(3600);
    store
        .revoke(&Revocation::Jti {
            jti: jti.clone(),
            until,
        })
        .await
        .unwrap();
    assert!(store.is_revoked(&jti, &subject(), t0).await.unwrap());
    assert!(
        !store
            .is_revoked(&random_id().unwrap(), &subject(), t0)
            .await
            .unwrap()
    );
    let entry = Revocation::Jti {
        jti: jti.clone(),
        until,
    };
    assert!(contains(&store.load(t0).await.unwrap(), &entry));
    assert!(
        !contains(&store.load(until).await.unwrap(), &entry),
        "only entries in force"
    );

    // Revoking again never shortens an entry.
    let later = t0 + secs(7200);
    for u in [later, t0 + secs(60)] {
        store
            .revoke(&Revocation::Jti {
                jti: jti.clone(),
                until: u,
            })
            .await
            .unwrap();
    }
    let extended = Revocation::Jti { jti, until: later };
    assert!(contains(&store.load(until).await.unwrap(), &extended));
}

pub async fn revocation_epoch_only_moves_forward(store: Arc<dyn RevocationStore>) {
    let t0 = now();
    let user = subject();
    let jti = random_id().unwrap();
    let epoch = t0 + secs(10);
    let revoke = |epoch| {
        let store = Arc::clone(&store);
        let subject = user.clone();
        async move {
            store
                .revoke(&Revocation::Epoch { subject, epoch })
                .await
                .unwrap()
        }
    };
    revoke(epoch).await;
    assert!(
        store
            .is_revoked(&jti, &user, epoch - millis(1))
            .await
            .unwrap()
    );
    assert!(
        !store.is_revoked(&jti, &user, epoch).await.unwrap(),
        "issued at the epoch: valid"
    );
    assert!(
        !store.is_revoked(&jti, &subject(), t0).await.unwrap(),
        "other subjects unaffected"
    );

    revoke(t0).await;
    assert!(
        store
            .is_revoked(&jti, &user, epoch - millis(1))
            .await
            .unwrap(),
        "never backwards"
    );
    let current = Revocation::Epoch {
        subject: user.clone(),
        epoch,
    };
    assert!(contains(
        &store.load(t0 + secs(86_400)).await.unwrap(),
        &current
    ));

    let later = t0 + secs(20);
    revoke(later).await;
    assert!(
        store
            .is_revoked(&jti, &user, later - millis(1))
            .await
            .unwrap()
    );
    let loaded = store.load(t0).await.unwrap();
    assert!(contains(
        &loaded,
        &Revocation::Epoch {
            subject: user.clone(),
            epoch: later
        }
    ));
    assert!(!contains(&loaded, &current));
}

pub async fn revocation_sweep_removes_past_entries(store: Arc<dyn RevocationStore>) {
    let t0 = now();
    let (past, future) = (random_id().unwrap(), random_id().unwrap());
    let user = subject();
    for (jti, until) in [(&past, t0 - secs(3600)), (&future, t0 + secs(3600))] {
        let jti = jti.clone();
        store.revoke(&Revocation::Jti { jti, until }).await.unwrap();
    }
    store.sweep(t0).await.unwrap();
    assert!(!store.is_revoked(&past, &user, t0).await.unwrap());
    assert!(store.is_revoked(&future, &user, t0).await.unwrap());
}

pub async fn revocation_subscribe_delivers(store: Arc<dyn RevocationStore>) {
    let Some(mut feed) = store.subscribe().await.unwrap() else {
        return; // No push channel: consumers poll `load`.
    };
    let t0 = now();
    let jti = Revocation::Jti {
        jti: random_id().unwrap(),
        until: t0 + secs(60),
    };
    let epoch = Revocation::Epoch {
        subject: subject(),
        epoch: t0,
    };
    store.revoke(&jti).await.unwrap();
    store.revoke(&epoch).await.unwrap();
    let mut pending = vec![jti, epoch];
    let deadline = tokio::time::Instant::now() + secs(10);
    while !pending.is_empty() {
        use futures_util::StreamExt;
        let item = tokio::time::timeout_at(deadline, feed.next())
            .await
            .expect("revocations arrive within 10 s")
            .expect("the feed stays open")
            .unwrap();
        // Other tests may share the channel: skip their revocations.
        pending.retain(|r| *r != item);
    }
}

/// SQL stores only: a session row holding values keycard cannot decode fails `load` and `list`
/// with [`StoreErrorKind::Corrupt`]: never a session, never a panic. `raw` is a pool on the
/// store's database, for the damage. Every backend gets JSON that is not what keycard wrote; `damage` adds
/// `(column, SQL value)` pairs for what only some schemas can hold: an `id` that is not 32 bytes
/// (SQLite; PostgreSQL's schema checks the length, MySQL's pads it), a `subject` that is not
/// UTF-8 (SQLite and MySQL; PostgreSQL's text refuses it).
pub async fn sql_undecodable_sessions_are_errors<DB: sqlx::Database>(
    store: Arc<dyn SessionStore>,
    raw: &sqlx::Pool<DB>,
    damage: &[(&str, &str)],
) where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let exec = async |sql: String| {
        sqlx::query::<DB>(&sql).execute(raw).await.unwrap();
    };
    let t0 = now();
    let json = [
        ("roles", "'not json'"),
        ("attributes", "'[\"not\", \"a map\"]'"),
    ];
    for &(column, value) in json.iter().chain(damage) {
        let user = subject();
        let record = session(&user, t0, secs(3600));
        assert_eq!(store.create(&record, None).await.unwrap(), created());
        exec(format!(
            "UPDATE keycard_sessions SET {column} = {value} WHERE subject = '{user}'"
        ))
        .await;
        if column == "subject" {
            let err = store.load(&record.id, t0).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{column}: {err:?}");
            exec(format!(
                "DELETE FROM keycard_sessions WHERE subject = {value}"
            ))
            .await;
            continue;
        }
        // The lookup binds the original id, which a damaged id no longer matches.
        if column != "id" {
            let err = store.load(&record.id, t0).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{column}: {err:?}");
        }
        let err = store.list(&user, t0).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{column}: {err:?}");
        store.delete_all(&user).await.unwrap();
    }
}
