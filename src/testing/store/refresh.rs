//! The [`RefreshStore`] checks.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{millis, now, refresh, secs, subject, token};
use crate::{
    store::{RefreshRecord, RefreshStore, RotateOutcome, RotateRequest, StoreErrorKind},
    token::{TokenHash, random_id},
};

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

/// `insert` refuses a colliding token ID or family ID and leaves the first family alone.
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

/// Rotation yields the [`RefreshRecord::successor`]; presenting the spent token again revokes the
/// whole family; unknown tokens are invalid.
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

/// A family's lifetime choices (its own shorter idle timeout, a browser-session cookie) read
/// back and pass to every successor, whose idle expiry uses the family's timeout.
pub async fn refresh_lifetime_passes_to_successors(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let mut first = refresh(&user, t0, secs(90), secs(86_400));
    first.idle_timeout = Some(millis(90_250));
    first.persistent = false;
    assert!(store.insert(&first).await.unwrap());
    assert_eq!(store.list(&user, t0).await.unwrap(), vec![first.clone()]);

    let (second, at) = (token(), t0 + secs(60));
    let next = rotated(
        store
            .rotate(rotation(&first.id, &second, at))
            .await
            .unwrap(),
    );
    assert_eq!(next, first.successor(second, at, secs(3600)));
    assert_eq!(next.idle_timeout, Some(millis(90_250)));
    assert!(!next.persistent);
    assert_eq!(
        next.expires_at,
        at + millis(90_250),
        "the family's own idle timeout, not the request's hour"
    );
    assert_eq!(store.list(&user, at).await.unwrap(), vec![next]);
}

/// A token past its idle expiry, or past its family's absolute expiry, is invalid and changes
/// nothing.
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

/// `family_live` is true until the head's expiry and false from then on, and for unknown families.
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

/// `delete_family` removes a family only for its own subject, and its tokens die with it.
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

/// `delete_all` removes every family of one subject (a rotated family counts once) and spares other
/// subjects.
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

/// `list` returns the live family heads, oldest family first, with a rotated family's new head at
/// its family's place.
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

/// `sweep` removes families whose head expired, with all their tokens, and keeps live families.
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

/// The grace window: the immediate predecessor of an unused head may be exchanged again within the
/// window (from the first use), never once its successor was used, after the head expired, or with
/// a zero window.
pub async fn refresh_grace_window(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    grace_replaces_the_unused_head(&store, &user, t0).await;
    grace_covers_only_the_immediate_predecessor(&store, &user, t0).await;
    grace_ends_with_the_head_or_a_zero_window(&store, &user, t0).await;
}

fn rotated(outcome: RotateOutcome) -> RefreshRecord {
    match outcome {
        RotateOutcome::Rotated { next } => next,
        other => panic!("expected Rotated, got {other:?}"),
    }
}

#[track_caller]
fn assert_reused(outcome: &RotateOutcome) {
    assert!(
        matches!(outcome, RotateOutcome::Reused { .. }),
        "{outcome:?}"
    );
}

/// Part of [`refresh_grace_window`]: within the window the predecessor replaces the unused head,
/// and the window runs from the first use.
async fn grace_replaces_the_unused_head(store: &Arc<dyn RefreshStore>, user: &str, t0: SystemTime) {
    let first = refresh(user, t0, secs(3600), secs(86_400));
    store.insert(&first).await.unwrap();

    let (t1, t2, t3) = (token(), token(), token());
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
    assert_eq!(store.list(user, t0 + secs(2)).await.unwrap(), vec![head]);
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
    assert_reused(&outcome);
    assert!(!store.family_live(&first.family, t0).await.unwrap());
}

/// Part of [`refresh_grace_window`]: once the successor has itself been used, no grace.
async fn grace_covers_only_the_immediate_predecessor(
    store: &Arc<dyn RefreshStore>,
    user: &str,
    t0: SystemTime,
) {
    let second = refresh(user, t0, secs(3600), secs(86_400));
    store.insert(&second).await.unwrap();
    let (u1, u2) = (token(), token());
    rotated(store.rotate(graced(&second.id, &u1, t0)).await.unwrap());
    rotated(store.rotate(graced(&u1, &u2, t0 + secs(1))).await.unwrap());
    let outcome = store
        .rotate(graced(&second.id, &token(), t0 + secs(2)))
        .await
        .unwrap();
    assert_reused(&outcome);
}

/// Part of [`refresh_grace_window`]: no grace once the head has expired, nor with a zero window.
async fn grace_ends_with_the_head_or_a_zero_window(
    store: &Arc<dyn RefreshStore>,
    user: &str,
    t0: SystemTime,
) {
    // No grace once the head has expired.
    let third = refresh(user, t0, secs(10), secs(86_400));
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
    assert_reused(&outcome);

    // With a zero window, any second use is reuse.
    let fourth = refresh(user, t0, secs(3600), secs(86_400));
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
    assert_reused(&outcome);
}

/// A rotation onto an existing token ID is a [`StoreErrorKind::Conflict`] that changes nothing,
/// also within the grace window.
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

/// Of twenty concurrent rotations of one token exactly one wins; the losers see reuse (or the
/// revoked family), and the family ends.
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

/// Retries of one spent token within the grace window (a client that lost the response, or
/// twenty of them at once): every retry is exchanged, each new head replacing the previous
/// unused one, so exactly one of the issued tokens is live afterwards; the others are invalid
/// (not reuse) and the family stays live.
pub async fn refresh_concurrent_grace_retries_leave_one_head(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let user = subject();
    let record = refresh(&user, t0, secs(3600), secs(86_400));
    store.insert(&record).await.unwrap();
    let first = token();
    rotated(store.rotate(graced(&record.id, &first, t0)).await.unwrap());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            let (presented, next) = (record.id, token());
            tokio::spawn(async move {
                let outcome = store.rotate(graced(&presented, &next, t0 + secs(1))).await;
                (next, outcome)
            })
        })
        .collect();
    let mut issued = vec![first];
    for task in tasks {
        let (next, outcome) = task.await.unwrap();
        assert_eq!(rotated(outcome.unwrap()).id, next);
        issued.push(next);
    }
    let heads = store.list(&user, t0 + secs(1)).await.unwrap();
    assert_eq!(heads.len(), 1, "exactly one live head: {heads:?}");
    let head = heads[0].id;
    assert!(issued.contains(&head));
    for id in issued.iter().filter(|id| **id != head) {
        assert_eq!(
            store
                .rotate(graced(id, &token(), t0 + secs(2)))
                .await
                .unwrap(),
            RotateOutcome::Invalid,
            "a replaced successor is gone"
        );
    }
    assert!(
        store
            .family_live(&record.family, t0 + secs(2))
            .await
            .unwrap()
    );
    // The live head still rotates.
    rotated(
        store
            .rotate(graced(&head, &token(), t0 + secs(2)))
            .await
            .unwrap(),
    );
}
