//! Redis-specific store scenarios, run against a single node and against a cluster by
//! [`redis_scenarios!`], next to the shared conformance suite
//! (`tests/common/conformance.rs`). They check what only Redis can show: server-side expiry, the
//! per-subject index staying exact and pruned, races between logins, rotations and revoke-all,
//! index keys cleaned up, and the pub/sub feed between two instances.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use futures_util::{StreamExt, future::join_all};
use keycard::{
    store::{
        CreateOutcome, DataLimits, DataPatch, LimitPolicy, RefreshStore, Revocation,
        RevocationStore, RotateOutcome, RotateRequest, SessionLimit, SessionStore, StoreErrorKind,
        redis::{RedisOptions, RedisStore},
    },
    token::TokenHash,
};
use redis::{FromRedisValue, aio::ConnectionLike};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{family_head, fresh_id, now, session, session_at, unique_prefix, unique_subject};
use crate::common::to_millis;

/// Where the scenarios run: the Redis URLs, whether they form a cluster, and a fresh prefix.
#[derive(Clone, Debug)]
pub struct Target {
    /// Redis URL(s).
    pub urls: Vec<String>,
    /// Whether `urls` are cluster nodes.
    pub cluster: bool,
    /// The key prefix of this run.
    pub prefix: String,
}

impl Target {
    /// A target with a fresh key prefix.
    pub fn new(urls: Vec<String>, cluster: bool) -> Self {
        Self {
            urls,
            cluster,
            prefix: unique_prefix(),
        }
    }

    /// The default options with this target's prefix.
    pub fn options(&self) -> RedisOptions {
        let mut options = RedisOptions::default();
        options.key_prefix = self.prefix.clone();
        options
    }

    /// A store on this target.
    pub async fn store(&self) -> RedisStore {
        self.store_with(self.options()).await
    }

    /// A store on this target with `options`.
    pub async fn store_with(&self, options: RedisOptions) -> RedisStore {
        if self.cluster {
            RedisStore::connect_cluster_with(&self.urls, options)
                .await
                .expect("connect to the cluster")
        } else {
            RedisStore::connect_with(&self.urls[0], options)
                .await
                .expect("connect to Redis")
        }
    }

    /// A plain connection for inspecting keys.
    pub async fn raw(&self) -> Raw {
        if self.cluster {
            let client = redis::cluster::ClusterClient::new(self.urls.clone()).expect("client");
            Raw::Cluster(client.get_async_connection().await.expect("raw connection"))
        } else {
            let client = redis::Client::open(self.urls[0].as_str()).expect("client");
            Raw::Single(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("raw connection"),
            )
        }
    }

    /// The session key of `id`.
    pub fn session_key(&self, id: &TokenHash) -> String {
        format!("{}:{{s:{}}}", self.prefix, id.handle())
    }

    /// The subject's index key with `suffix` (`si`, `se`, `sg`, `rf`, `rx`).
    pub fn subject_key(&self, subject: &str, suffix: &str) -> String {
        let hash = TokenHash::from_bytes(Sha256::digest(subject.as_bytes()).into()).handle();
        format!("{}:{{u:{hash}}}:{suffix}", self.prefix)
    }
}

/// A raw connection of either kind.
pub enum Raw {
    /// Single node.
    Single(redis::aio::MultiplexedConnection),
    /// Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    /// Runs `cmd`.
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> T {
        let value = match self {
            Raw::Single(c) => c.req_packed_command(cmd).await,
            Raw::Cluster(c) => c.req_packed_command(cmd).await,
        }
        .expect("raw query");
        redis::from_redis_value(&value).expect("raw reply type")
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn created(outcome: CreateOutcome) -> Vec<TokenHash> {
    match outcome {
        CreateOutcome::Created { evicted } => evicted,
        other => panic!("expected Created, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------------------------
// Sessions
// ----------------------------------------------------------------------------------------------

/// `load` refuses a record at or after `expires_at`; the key carries the expiry on the server.
pub async fn expiry_is_enforced_and_on_the_server(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let record = session(&unique_subject());
    store.create(&record, None).await.unwrap();
    let just_before = record.expires_at - Duration::from_millis(1);
    assert!(store.load(&record.id, just_before).await.unwrap().is_some());
    assert!(
        store
            .load(&record.id, record.expires_at)
            .await
            .unwrap()
            .is_none()
    );
    let mut raw = t.raw().await;
    let at: i64 = raw
        .query(redis::cmd("PEXPIRETIME").arg(t.session_key(&record.id)))
        .await;
    assert_eq!(at, to_millis(record.expires_at));

    // A session created already expired is never served, even before any sweep.
    let past = session_at(&unique_subject(), now() - secs(3600));
    store.create(&past, None).await.unwrap();
    assert!(store.load(&past.id, now()).await.unwrap().is_none());
    let exists: i64 = raw
        .query(redis::cmd("EXISTS").arg(t.session_key(&past.id)))
        .await;
    assert_eq!(exists, 0, "the server dropped the expired key itself");
}

/// `touch` slides the expiry (capped at the absolute timeout) on the record, the key and the
/// index; it refuses unknown and expired sessions.
pub async fn touch_slides_and_caps(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let mut raw = t.raw().await;
    let record = session(&unique_subject());
    store.create(&record, None).await.unwrap();
    let later = record.created_at + secs(60);
    let new_expiry = later + secs(30 * 60);
    assert!(store.touch(&record.id, later, new_expiry).await.unwrap());
    let loaded = store.load(&record.id, later).await.unwrap().unwrap();
    assert_eq!(loaded.last_seen_at, later);
    assert_eq!(loaded.expires_at, new_expiry);
    let at: i64 = raw
        .query(redis::cmd("PEXPIRETIME").arg(t.session_key(&record.id)))
        .await;
    assert_eq!(at, to_millis(new_expiry));
    let score: f64 = raw
        .query(
            redis::cmd("ZSCORE")
                .arg(t.subject_key(&record.subject, "se"))
                .arg(record.id.handle()),
        )
        .await;
    assert!(score >= to_millis(new_expiry) as f64);

    // Capped at the absolute expiry.
    let beyond = record.absolute_expires_at + secs(3600);
    assert!(store.touch(&record.id, later, beyond).await.unwrap());
    let loaded = store.load(&record.id, later).await.unwrap().unwrap();
    assert_eq!(loaded.expires_at, record.absolute_expires_at);

    // Not for expired or unknown sessions.
    assert!(
        !store
            .touch(&record.id, record.absolute_expires_at, beyond)
            .await
            .unwrap()
    );
    assert!(!store.touch(&fresh_id(), later, new_expiry).await.unwrap());
}

/// A session's data hash (`<session key>:d`) carries the session's expiry through create,
/// update and touch, and is deleted with the session.
pub async fn session_data_key_follows_the_session(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let mut raw = t.raw().await;
    let mut record = session(&unique_subject());
    record.data = Some(r#"{"a":1}"#.into());
    store.create(&record, None).await.unwrap();
    let data_key = format!("{}:d", t.session_key(&record.id));
    let at: i64 = raw.query(redis::cmd("PEXPIRETIME").arg(&data_key)).await;
    assert_eq!(at, to_millis(record.expires_at));
    let later = record.created_at + secs(60);
    let new_expiry = later + secs(30 * 60);
    assert!(store.touch(&record.id, later, new_expiry).await.unwrap());
    let at: i64 = raw.query(redis::cmd("PEXPIRETIME").arg(&data_key)).await;
    assert_eq!(at, to_millis(new_expiry));
    let mut patch = DataPatch::new();
    patch.set("b", RawValue::from_string("2".into()).unwrap());
    let limits = DataLimits::default();
    assert!(
        store
            .update_data(&record.id, &patch, &limits, later)
            .await
            .unwrap()
    );
    let at: i64 = raw.query(redis::cmd("PEXPIRETIME").arg(&data_key)).await;
    assert_eq!(at, to_millis(new_expiry));
    let loaded = store.load(&record.id, later).await.unwrap().unwrap();
    assert_eq!(loaded.data.as_deref(), Some(r#"{"a":1,"b":2}"#));
    assert!(store.delete(&record.subject, &record.id).await.unwrap());
    let exists: i64 = raw.query(redis::cmd("EXISTS").arg(&data_key)).await;
    assert_eq!(exists, 0, "the data hash went with the session");
}

/// Of concurrent rotations of one session exactly one wins, and only its new ID survives.
pub async fn concurrent_rotations_one_wins(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let subject = unique_subject();
    let old = session(&subject);
    store.create(&old, None).await.unwrap();
    let candidates: Vec<_> = (0..12).map(|_| session(&subject)).collect();
    let results = join_all(candidates.iter().map(|c| store.rotate(&old.id, c))).await;
    let winners: Vec<_> = candidates
        .iter()
        .zip(&results)
        .filter(|(_, r)| *r.as_ref().unwrap())
        .map(|(c, _)| c.id)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let listed: Vec<TokenHash> = store
        .list(&subject, now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, winners);
    for c in &candidates {
        let loaded = store.load(&c.id, now()).await.unwrap();
        assert_eq!(loaded.is_some(), winners.contains(&c.id));
    }
}

/// `list` is oldest first, skips expired sessions and other subjects; `delete_all` removes every
/// session of the subject and counts them.
pub async fn list_and_delete_all(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let subject = unique_subject();
    let base = now();
    let mut records = Vec::new();
    for i in [3u64, 1, 2, 0] {
        let r = session_at(&subject, base + Duration::from_millis(i * 10));
        store.create(&r, None).await.unwrap();
        records.push(r);
    }
    let bystander = session(&unique_subject());
    store.create(&bystander, None).await.unwrap();
    records.sort_by_key(|r| r.created_at);
    let listed = store.list(&subject, base).await.unwrap();
    assert_eq!(listed, records);
    // At a time when the first three have expired only the last remains.
    let late = records[2].expires_at;
    let listed = store.list(&subject, late).await.unwrap();
    assert_eq!(listed, vec![records[3].clone()]);

    assert_eq!(store.delete_all(&subject).await.unwrap(), 4);
    assert!(store.list(&subject, base).await.unwrap().is_empty());
    for r in &records {
        assert!(store.load(&r.id, base).await.unwrap().is_none());
    }
    assert!(store.load(&bystander.id, base).await.unwrap().is_some());
    assert_eq!(store.delete_all(&subject).await.unwrap(), 0);
    let mut raw = t.raw().await;
    for suffix in ["si", "se", "sg"] {
        let n: i64 = raw
            .query(redis::cmd("EXISTS").arg(t.subject_key(&subject, suffix)))
            .await;
        assert_eq!(n, 0, "index key {suffix} left behind");
    }
}

/// Concurrent logins never exceed the limit, with either policy.
pub async fn concurrent_logins_respect_the_limit(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    for policy in [LimitPolicy::Reject, LimitPolicy::EvictOldest] {
        let subject = unique_subject();
        let limit = Some(SessionLimit { max: 3, policy });
        let base = now();
        let records: Vec<_> = (0..24)
            .map(|i| session_at(&subject, base + Duration::from_millis(i)))
            .collect();
        let outcomes = join_all(records.iter().map(|r| store.create(r, limit))).await;
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(CreateOutcome::Created { .. })))
            .count();
        let listed = store.list(&subject, base).await.unwrap();
        assert_eq!(listed.len(), 3, "{policy:?}: {outcomes:?}");
        let loadable = join_all(records.iter().map(|r| store.load(&r.id, base))).await;
        let loadable: HashSet<TokenHash> = loadable
            .into_iter()
            .filter_map(|r| r.unwrap().map(|r| r.id))
            .collect();
        let listed: HashSet<TokenHash> = listed.into_iter().map(|r| r.id).collect();
        assert_eq!(loadable, listed, "{policy:?}: index and keys agree");
        match policy {
            LimitPolicy::Reject => assert_eq!(created, 3),
            LimitPolicy::EvictOldest => assert_eq!(created, 24),
        }
    }
}

/// Revoke-all racing logins: every session created before the revoke is gone, and every session
/// that survived is listed (the index stays exact).
pub async fn revoke_all_racing_logins(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let subject = unique_subject();
    let before: Vec<_> = (0..6).map(|_| session(&subject)).collect();
    for r in &before {
        store.create(r, None).await.unwrap();
    }
    let during: Vec<_> = (0..12).map(|_| session(&subject)).collect();
    let logins = join_all(during.iter().map(|r| store.create(r, None)));
    let rotations = join_all(before.iter().take(3).map(|r| {
        let next = session(&subject);
        let old = r.id;
        async move { store.rotate(&old, &next).await.map(|ok| (ok, next)) }
    }));
    let revoke = store.delete_all(&subject);
    let (logins, rotations, revoked) = tokio::join!(logins, rotations, revoke);
    let revoked = revoked.unwrap();
    assert!(revoked >= 3, "revoked {revoked}");
    for r in &before {
        assert!(store.load(&r.id, now()).await.unwrap().is_none());
    }
    let mut survivors: HashSet<TokenHash> = HashSet::new();
    for (r, outcome) in during.iter().zip(&logins) {
        assert!(matches!(outcome, Ok(CreateOutcome::Created { .. })));
        if store.load(&r.id, now()).await.unwrap().is_some() {
            survivors.insert(r.id);
        }
    }
    for outcome in rotations {
        let (ok, next) = outcome.unwrap();
        let live = store.load(&next.id, now()).await.unwrap().is_some();
        assert!(
            ok || !live,
            "a refused rotation left its new session behind"
        );
        if live {
            survivors.insert(next.id);
        }
    }
    let listed: HashSet<TokenHash> = store
        .list(&subject, now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, survivors, "every live session is in the index");
    store.delete_all(&subject).await.unwrap();
    for id in survivors {
        assert!(store.load(&id, now()).await.unwrap().is_none());
    }
}

/// Index entries of expired sessions are pruned by later writes; the index never grows without
/// bound even if `sweep` never runs.
pub async fn index_is_pruned(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let mut raw = t.raw().await;
    let subject = unique_subject();
    for _ in 0..5 {
        let mut r = session(&subject);
        r.expires_at = r.created_at + Duration::from_millis(150);
        store.create(&r, None).await.unwrap();
    }
    let se = t.subject_key(&subject, "se");
    let n: i64 = raw.query(redis::cmd("ZCARD").arg(&se)).await;
    assert_eq!(n, 5);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The whole index expired with its last entry.
    let n: i64 = raw.query(redis::cmd("EXISTS").arg(&se)).await;
    assert_eq!(n, 0, "index key outlived all its sessions");

    // With a long-lived session alongside, later writes prune the dead entries.
    let keeper = session(&subject);
    store.create(&keeper, None).await.unwrap();
    for _ in 0..5 {
        let mut r = session(&subject);
        r.expires_at = r.created_at + Duration::from_millis(150);
        store.create(&r, None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.create(&session(&subject), None).await.unwrap();
    let n: i64 = raw.query(redis::cmd("ZCARD").arg(&se)).await;
    assert_eq!(n, 2);
    let si: i64 = raw
        .query(redis::cmd("ZCARD").arg(t.subject_key(&subject, "si")))
        .await;
    assert_eq!(si, 2);
}

/// `sweep` removes sessions expired at the given time and prunes their index entries.
pub async fn sweep_sessions(t: &Target) {
    let owned = t.store().await;
    let store: &dyn SessionStore = &owned;
    let subject = unique_subject();
    let r1 = session(&subject);
    let r2 = session(&subject);
    store.create(&r1, None).await.unwrap();
    store.create(&r2, None).await.unwrap();
    let n = store.sweep(r1.created_at).await.unwrap();
    assert_eq!(n, 0);
    let later = r1.expires_at + secs(1);
    let n = store.sweep(later).await.unwrap();
    assert_eq!(n, 2);
    assert!(store.load(&r1.id, r1.created_at).await.unwrap().is_none());
    assert!(
        store
            .list(&subject, r1.created_at)
            .await
            .unwrap()
            .is_empty()
    );
}

// ----------------------------------------------------------------------------------------------
// Refresh families
// ----------------------------------------------------------------------------------------------

fn request<'a>(
    presented: &'a TokenHash,
    next: &'a TokenHash,
    now: SystemTime,
    grace: Duration,
) -> RotateRequest<'a> {
    RotateRequest {
        presented,
        next,
        now,
        idle: secs(3600),
        grace,
    }
}

/// Families insert once; rotation spends the head and issues a successor; a spent token revokes
/// the family.
pub async fn refresh_rotation_and_reuse(t: &Target) {
    let owned = t.store().await;
    let store: &dyn RefreshStore = &owned;
    let subject = unique_subject();
    let head = family_head(&subject, now());
    assert!(store.insert(&head).await.unwrap());
    assert!(!store.insert(&head).await.unwrap(), "same token");
    let mut same_family = family_head(&subject, now());
    same_family.family = head.family.clone();
    assert!(!store.insert(&same_family).await.unwrap(), "same family");
    assert!(
        store
            .family_live(&head.family, head.issued_at)
            .await
            .unwrap()
    );

    let at = head.issued_at + secs(60);
    let next_id = fresh_id();
    let outcome = store
        .rotate(request(&head.id, &next_id, at, Duration::ZERO))
        .await
        .unwrap();
    let RotateOutcome::Rotated { next } = outcome else {
        panic!("expected Rotated, got {outcome:?}");
    };
    assert_eq!(next, head.successor(next_id, at, secs(3600)));
    let listed = store.list(&subject, at).await.unwrap();
    assert_eq!(listed, vec![next.clone()]);

    // Reuse of the spent head revokes the family.
    let outcome = store
        .rotate(request(&head.id, &fresh_id(), at, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RotateOutcome::Reused {
            family: head.family.clone(),
            subject: subject.clone()
        }
    );
    assert!(!store.family_live(&head.family, at).await.unwrap());
    let outcome = store
        .rotate(request(&next.id, &fresh_id(), at, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid);
    assert!(store.list(&subject, at).await.unwrap().is_empty());

    // Unknown and expired tokens are invalid.
    let outcome = store
        .rotate(request(&fresh_id(), &fresh_id(), at, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid);
    let other = family_head(&subject, now());
    store.insert(&other).await.unwrap();
    let outcome = store
        .rotate(request(
            &other.id,
            &fresh_id(),
            other.expires_at,
            Duration::ZERO,
        ))
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid);

    // A colliding next token is a conflict and changes nothing.
    let outcome = store
        .rotate(request(&other.id, &head.id, at, Duration::ZERO))
        .await;
    // `head.id`'s pointer was deleted with its family, so it no longer collides.
    assert!(
        matches!(outcome, Ok(RotateOutcome::Rotated { .. })),
        "{outcome:?}"
    );
    let third = family_head(&subject, now());
    store.insert(&third).await.unwrap();
    let err = store
        .rotate(request(&third.id, &other.id, at, Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert!(store.family_live(&third.family, at).await.unwrap());
}

/// Listing, deleting one family, deleting all and sweeping.
pub async fn refresh_list_delete_sweep(t: &Target) {
    let owned = t.store().await;
    let store: &dyn RefreshStore = &owned;
    let subject = unique_subject();
    let base = now();
    let mut heads = Vec::new();
    for i in 0..3u64 {
        let h = family_head(&subject, base + Duration::from_millis(i));
        store.insert(&h).await.unwrap();
        heads.push(h);
    }
    let listed = store.list(&subject, base).await.unwrap();
    assert_eq!(listed, heads);
    assert!(
        !store
            .delete_family("intruder", &heads[0].family)
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_family(&subject, &heads[0].family)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_family(&subject, &heads[0].family)
            .await
            .unwrap()
    );
    assert_eq!(store.delete_all(&subject).await.unwrap(), 2);
    assert!(store.list(&subject, base).await.unwrap().is_empty());

    let h = family_head(&subject, base);
    store.insert(&h).await.unwrap();
    let at = base + secs(1);
    let n = fresh_id();
    store
        .rotate(request(&h.id, &n, at, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(store.sweep(at).await.unwrap(), 0);
    // After the head's idle expiry the family is dead: both tokens go.
    let dead = at + secs(3601);
    assert_eq!(store.sweep(dead).await.unwrap(), 2);
    assert!(!store.family_live(&h.family, at).await.unwrap());
    let mut raw = t.raw().await;
    let n: i64 = raw
        .query(redis::cmd("ZCARD").arg(t.subject_key(&subject, "rf")))
        .await;
    assert_eq!(n, 0);
}

// ----------------------------------------------------------------------------------------------
// Revocations
// ----------------------------------------------------------------------------------------------

/// A revocation made through one instance reaches another instance's feed.
pub async fn revocation_feed_across_instances(t: &Target) {
    let publisher = t.store().await;
    let subscriber = t.store().await;
    let (publisher, subscriber): (&dyn RevocationStore, &dyn RevocationStore) =
        (&publisher, &subscriber);
    let mut feed = subscriber
        .subscribe()
        .await
        .unwrap()
        .expect("Redis has a push channel");
    let revocation = Revocation::Epoch {
        subject: unique_subject(),
        epoch: now(),
    };
    publisher.revoke(&revocation).await.unwrap();
    let got = tokio::time::timeout(secs(5), async {
        loop {
            match feed.next().await {
                Some(Ok(r)) if r == revocation => return r,
                Some(Ok(_)) => continue,
                other => panic!("feed ended: {other:?}"),
            }
        }
    })
    .await
    .expect("revocation delivered within 5 s");
    assert_eq!(got, revocation);
}

/// Generates one `#[tokio::test]` per scenario, each on a target from `$target` (an async
/// expression evaluating to a [`Target`]).
macro_rules! redis_scenarios {
    ($target:expr) => {
        $crate::common::redis_support::scenarios::redis_scenarios!(@tests $target;
            expiry_is_enforced_and_on_the_server,
            touch_slides_and_caps,
            session_data_key_follows_the_session,
            concurrent_rotations_one_wins,
            list_and_delete_all,
            concurrent_logins_respect_the_limit,
            revoke_all_racing_logins,
            index_is_pruned,
            sweep_sessions,
            refresh_rotation_and_reuse,
            refresh_list_delete_sweep,
            revocation_feed_across_instances,
        );
    };
    (@tests $target:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let target = $target;
                $crate::common::redis_support::scenarios::$name(&target).await;
            }
        )*
    };
}
pub(crate) use redis_scenarios;
