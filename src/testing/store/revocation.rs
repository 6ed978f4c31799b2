//! The [`RevocationStore`] checks.

use std::sync::Arc;

use super::{millis, now, secs, subject};
use crate::{
    store::{Revocation, RevocationStore},
    token::random_id,
};

fn contains(all: &[Revocation], wanted: &Revocation) -> bool {
    all.iter().any(|r| r == wanted)
}

/// A denylisted `jti` is revoked until its `until`, `load` returns only entries in force, and
/// revoking again never shortens an entry.
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

/// A subject's epoch voids tokens issued before it (not at it, not of other subjects) and only ever
/// moves forward.
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

/// `sweep` forgets denylist entries whose `until` has passed and keeps the others.
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

/// A store with a push channel delivers its revocations to a subscriber within 10 seconds (a store
/// without one passes).
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
