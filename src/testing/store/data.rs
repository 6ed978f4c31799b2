//! The session-data checks of [`SessionStore`] and [`RefreshStore`].

use std::sync::Arc;

use serde_json::{Value, json, value::RawValue};

use super::{millis, now, refresh, secs, session, subject, token};
use crate::store::{
    DataLimits, DataPatch, RefreshStore, RotateOutcome, RotateRequest, SessionStore, StoreErrorKind,
};

/// A patch setting each `(key, value)`.
fn set(pairs: &[(&str, Value)]) -> DataPatch {
    let mut patch = DataPatch::new();
    for (key, value) in pairs {
        let raw = RawValue::from_string(value.to_string()).expect("a JSON value");
        patch.set(*key, raw);
    }
    patch
}

/// A patch removing each key.
fn remove(keys: &[&str]) -> DataPatch {
    let mut patch = DataPatch::new();
    keys.iter().for_each(|k| patch.remove(*k));
    patch
}

/// Stored data as a JSON value (`{}` for none), so that stores may format it as they like.
fn parsed(data: Option<String>) -> Value {
    data.map_or_else(
        || json!({}),
        |text| serde_json::from_str(&text).expect("stored data is JSON"),
    )
}

async fn session_data(store: &Arc<dyn SessionStore>, id: &crate::token::TokenHash) -> Value {
    let record = store
        .load(id, now())
        .await
        .unwrap()
        .expect("a live session");
    parsed(record.data)
}

/// Data written at creation reads back with the session; patches merge key by key (values of any
/// JSON type, removals); a session created without data has none.
pub async fn session_data_round_trip(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let limits = DataLimits::default();
    let mut record = session(&subject(), t0, secs(3600));
    record.data = Some(r#"{"theme":"dark","n":1}"#.into());
    store.create(&record, None).await.unwrap();
    assert_eq!(
        session_data(&store, &record.id).await,
        json!({"theme": "dark", "n": 1})
    );
    let value = json!({"nested": {"list": [1, "two", null], "x": 2.5}, "ü": "✓"});
    assert!(
        store
            .update_data(
                &record.id,
                &set(&[("blob", value.clone()), ("n", json!(2))]),
                &limits,
                t0
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .update_data(&record.id, &remove(&["theme", "absent"]), &limits, t0)
            .await
            .unwrap()
    );
    assert_eq!(
        session_data(&store, &record.id).await,
        json!({"blob": value, "n": 2})
    );
    assert!(
        store
            .update_data(&record.id, &remove(&["blob", "n"]), &limits, t0)
            .await
            .unwrap()
    );
    assert_eq!(session_data(&store, &record.id).await, json!({}));

    let bare = session(&subject(), t0, secs(3600));
    store.create(&bare, None).await.unwrap();
    assert_eq!(session_data(&store, &bare.id).await, json!({}));
}

/// Twenty concurrent writers of different keys of one session all take effect.
pub async fn session_data_concurrent_writers_all_land(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let record = session(&subject(), t0, secs(3600));
    store.create(&record, None).await.unwrap();
    let writers = (0..20).map(|i| {
        let store = store.clone();
        let id = record.id;
        tokio::spawn(async move {
            // Each writer read the session's data (none) before writing, as a request does.
            let patch = set(&[(&format!("key-{i}"), json!(i))]).with_base(None);
            store
                .update_data(&id, &patch, &DataLimits::default(), now())
                .await
        })
    });
    for writer in futures_util::future::join_all(writers).await {
        assert!(writer.expect("the writer task").unwrap());
    }
    let data = session_data(&store, &record.id).await;
    for i in 0..20 {
        assert_eq!(
            data[format!("key-{i}")],
            json!(i),
            "writer {i}'s key was lost"
        );
    }
}

/// A patch's [`base`](DataPatch::base), the data as the request read it, is only ever compared
/// against: a stale one (another request wrote since) never overwrites what that request wrote.
pub async fn session_data_stale_base_is_only_compared(store: Arc<dyn SessionStore>) {
    let limits = DataLimits::default();
    let mut record = session(&subject(), now(), secs(3600));
    record.data = Some(r#"{"a":1}"#.into());
    store.create(&record, None).await.unwrap();
    // Another request adds `b` after this one read `{"a":1}`.
    let other = set(&[("b", json!(2))]);
    assert!(
        store
            .update_data(&record.id, &other, &limits, now())
            .await
            .unwrap()
    );
    let stale = set(&[("c", json!(3))]).with_base(Some(r#"{"a":1}"#.into()));
    assert!(
        store
            .update_data(&record.id, &stale, &limits, now())
            .await
            .unwrap()
    );
    assert_eq!(
        session_data(&store, &record.id).await,
        json!({"a": 1, "b": 2, "c": 3}),
        "the other request's key survives a write based on what was read before it"
    );
    // A base of "no data" while there is some: the same.
    let none = remove(&["a"]).with_base(None);
    assert!(
        store
            .update_data(&record.id, &none, &limits, now())
            .await
            .unwrap()
    );
    assert_eq!(
        session_data(&store, &record.id).await,
        json!({"b": 2, "c": 3})
    );
}

/// A patch over a limit is refused whole ([`StoreErrorKind::TooLarge`]) and changes nothing.
pub async fn session_data_limits_refuse_whole_patch(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let limits = DataLimits {
        max_key_bytes: 8,
        max_value_bytes: 40,
        max_total_bytes: 64,
    };
    let record = session(&subject(), t0, secs(3600));
    store.create(&record, None).await.unwrap();
    let first = set(&[("a", json!("x".repeat(30)))]);
    assert!(
        store
            .update_data(&record.id, &first, &limits, t0)
            .await
            .unwrap()
    );
    // Each value fits, the total does not: neither key is written.
    let over = set(&[("b", json!("y".repeat(30))), ("c", json!(1))]);
    let err = store
        .update_data(&record.id, &over, &limits, t0)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::TooLarge);
    let value_over = set(&[("d", json!("z".repeat(41)))]);
    let err = store
        .update_data(&record.id, &value_over, &limits, t0)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::TooLarge);
    assert_eq!(
        session_data(&store, &record.id).await,
        json!({"a": "x".repeat(30)})
    );
}

/// Data of an unknown, expired or deleted session cannot be written; deleting a session discards
/// its data; an anonymous session (empty subject) keeps data like any other.
pub async fn session_data_goes_with_the_session(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let limits = DataLimits::default();
    let patch = set(&[("k", json!(true))]);
    assert!(
        !store
            .update_data(&token(), &patch, &limits, t0)
            .await
            .unwrap()
    );

    let short = session(&subject(), t0, millis(50));
    store.create(&short, None).await.unwrap();
    assert!(
        !store
            .update_data(&short.id, &patch, &limits, t0 + millis(50))
            .await
            .unwrap()
    );

    let record = session(&subject(), t0, secs(3600));
    store.create(&record, None).await.unwrap();
    assert!(
        store
            .update_data(&record.id, &patch, &limits, t0)
            .await
            .unwrap()
    );
    assert!(store.delete(&record.subject, &record.id).await.unwrap());
    assert!(
        !store
            .update_data(&record.id, &patch, &limits, t0)
            .await
            .unwrap()
    );
    assert_eq!(store.load(&record.id, t0).await.unwrap(), None);

    let mut anonymous = session("", t0, secs(600));
    anonymous.data = Some(r#"{"cart":[1,2]}"#.into());
    store.create(&anonymous, None).await.unwrap();
    let loaded = store.load(&anonymous.id, t0).await.unwrap().expect("live");
    assert!(loaded.is_anonymous());
    assert_eq!(parsed(loaded.data), json!({"cart": [1, 2]}));
    assert!(store.delete("", &anonymous.id).await.unwrap());
}

/// A rotation writes the new record's data as given, and the old ID's data is gone with it.
pub async fn session_data_rotate_carries_data(store: Arc<dyn SessionStore>) {
    let t0 = now();
    let old = session(&subject(), t0, secs(3600));
    store.create(&old, None).await.unwrap();
    let patch = set(&[("k", json!("v"))]);
    assert!(
        store
            .update_data(&old.id, &patch, &DataLimits::default(), t0)
            .await
            .unwrap()
    );
    let carried = store.load(&old.id, t0).await.unwrap().expect("live").data;
    let mut new = session(&old.subject, t0, secs(3600));
    new.data = carried;
    assert!(store.rotate(&old.id, &new).await.unwrap());
    assert_eq!(session_data(&store, &new.id).await, json!({"k": "v"}));
    assert!(
        !store
            .update_data(&old.id, &patch, &DataLimits::default(), t0)
            .await
            .unwrap()
    );
}

/// Family data: none at first, merged key by key by concurrent writers, refused whole over a
/// limit, kept across rotations, and gone with the family (reuse detection, deletion).
pub async fn family_data_lives_with_the_family(store: Arc<dyn RefreshStore>) {
    let t0 = now();
    let limits = DataLimits::default();
    let first = refresh(&subject(), t0, secs(600), secs(3600));
    assert!(store.insert(&first).await.unwrap());
    let family = first.family.clone();
    assert_eq!(store.family_data(&family, t0).await.unwrap(), None);
    let writers = (0..20).map(|i| {
        let store = store.clone();
        let family = family.clone();
        tokio::spawn(async move {
            let patch = set(&[(&format!("key-{i}"), json!(i))]);
            store
                .update_family_data(&family, &patch, &DataLimits::default(), now())
                .await
        })
    });
    for writer in futures_util::future::join_all(writers).await {
        assert!(writer.expect("the writer task").unwrap());
    }
    let data = parsed(store.family_data(&family, t0).await.unwrap());
    for i in 0..20 {
        assert_eq!(
            data[format!("key-{i}")],
            json!(i),
            "writer {i}'s key was lost"
        );
    }
    let small = DataLimits {
        max_total_bytes: 16,
        ..limits
    };
    let err = store
        .update_family_data(&family, &set(&[("big", json!("x".repeat(20)))]), &small, t0)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::TooLarge);
    assert_eq!(parsed(store.family_data(&family, t0).await.unwrap()), data);

    // Rotation keeps the data; a reuse revokes the family and its data.
    let next = token();
    let rotated = store
        .rotate(RotateRequest {
            presented: &first.id,
            next: &next,
            now: t0 + millis(1),
            idle: secs(600),
            grace: secs(0),
        })
        .await
        .unwrap();
    assert!(matches!(rotated, RotateOutcome::Rotated { .. }));
    assert_eq!(parsed(store.family_data(&family, t0).await.unwrap()), data);
    let reused = store
        .rotate(RotateRequest {
            presented: &first.id,
            next: &token(),
            now: t0 + millis(2),
            idle: secs(600),
            grace: secs(0),
        })
        .await
        .unwrap();
    assert!(matches!(reused, RotateOutcome::Reused { .. }));
    assert_eq!(store.family_data(&family, t0).await.unwrap(), None);
    let patch = set(&[("k", json!(1))]);
    assert!(
        !store
            .update_family_data(&family, &patch, &limits, t0)
            .await
            .unwrap()
    );

    // Deletion discards it too; an unknown family has none and takes none.
    let other = refresh(&subject(), t0, secs(600), secs(3600));
    assert!(store.insert(&other).await.unwrap());
    assert!(
        store
            .update_family_data(&other.family, &patch, &limits, t0)
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_family(&other.subject, &other.family)
            .await
            .unwrap()
    );
    assert_eq!(store.family_data(&other.family, t0).await.unwrap(), None);
    assert!(
        !store
            .update_family_data("no-such-family", &patch, &limits, t0)
            .await
            .unwrap()
    );
}
