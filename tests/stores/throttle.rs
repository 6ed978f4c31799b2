//! The login throttle on every store: 50 concurrent wrong-password attempts on one identifier
//! admit no more than the limit, concurrent right ones all pass, windows expire, a success resets the identifier, lockouts grow,
//! addresses are counted apart, and a store that is down fails closed.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use keycard::{
    ErrorKind,
    clock::ManualClock,
    store::ThrottleStore,
    throttle::{LoginThrottle, ThrottleConfig},
};

use crate::common::random_id;

fn identifier() -> String {
    format!("user-{}", random_id().unwrap())
}

fn throttle(store: Arc<dyn ThrottleStore>, clock: &ManualClock) -> LoginThrottle {
    LoginThrottle::new(store, ThrottleConfig::default())
        .unwrap()
        .with_clock(Arc::new(clock.clone()))
}

/// 50 concurrent checks of one identifier, each a failure: how many were admitted.
pub async fn race(store: Arc<dyn ThrottleStore>, backend: &str) {
    let clock = ManualClock::new();
    let t = throttle(store, &clock);
    let id = identifier();
    let admitted = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (t, id, admitted) = (t.clone(), id.clone(), admitted.clone());
            tokio::spawn(async move {
                match t.check(&id, None).await {
                    Ok(guard) => {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        // The password check would run here.
                        tokio::task::yield_now().await;
                        guard.failure().await;
                    }
                    Err(r) => assert_eq!(r.kind(), ErrorKind::TooManyAttempts, "{r:?}"),
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let admitted = admitted.load(Ordering::SeqCst);
    eprintln!(
        "throttle race on {backend}: {admitted} of 50 concurrent attempts admitted (limit 5)"
    );
    assert_eq!(admitted, 5, "{backend}");
    let refused = t.check(&id, None).await.unwrap_err();
    assert_eq!(refused.status(), 429);
    let after = refused.into_error().retry_after().unwrap();
    assert!(
        after > Duration::from_secs(55) && after <= Duration::from_secs(60),
        "{after:?}"
    );
}

/// 20 concurrent checks of one identifier that all succeed (the right password): all go
/// through, at most 5 at a time, and nothing is locked.
pub async fn concurrent_successes(store: Arc<dyn ThrottleStore>) {
    let clock = ManualClock::new();
    let t = throttle(store, &clock);
    let id = identifier();
    let in_flight = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (t, id, in_flight, most) = (t.clone(), id.clone(), in_flight.clone(), most.clone());
            tokio::spawn(async move {
                let guard = t
                    .check(&id, None)
                    .await
                    .expect("a right password is admitted");
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                guard.success().await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= 5);
    fail(&t, &id, None, 5).await;
}

async fn fail(t: &LoginThrottle, id: &str, ip: Option<IpAddr>, times: usize) {
    for i in 0..times {
        let guard = t
            .check(id, ip)
            .await
            .unwrap_or_else(|e| panic!("attempt {i} refused: {e:?}"));
        guard.failure().await;
    }
}

fn refused_for(result: Result<keycard::throttle::ThrottleGuard, keycard::Rejection>) -> Duration {
    match result {
        Ok(_) => panic!("admitted"),
        Err(r) => {
            assert_eq!(r.kind(), ErrorKind::TooManyAttempts);
            r.into_error().retry_after().unwrap()
        }
    }
}

/// Windows end, lockouts end and grow, a success resets the identifier, other identifiers are
/// unaffected.
pub async fn windows_lockouts_and_resets(store: Arc<dyn ThrottleStore>) {
    let clock = ManualClock::new();
    let t = throttle(store, &clock);
    let (alice, bob) = (identifier(), identifier());

    // Four failures, then a success: the counter starts again.
    fail(&t, &alice, None, 4).await;
    t.check(&alice, None).await.unwrap().success().await;
    fail(&t, &alice, None, 5).await;
    assert_eq!(
        refused_for(t.check(&alice, None).await),
        Duration::from_secs(60)
    );
    // Locked: still refused, nothing counted, another identifier unaffected.
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        refused_for(t.check(&alice, None).await),
        Duration::from_secs(30)
    );
    fail(&t, &bob, None, 2).await;

    // After the lockout a new window; the next lockout is twice as long.
    clock.advance(Duration::from_secs(31));
    fail(&t, &alice, None, 5).await;
    assert_eq!(
        refused_for(t.check(&alice, None).await),
        Duration::from_secs(120)
    );

    // A window that ends without reaching the limit starts over.
    clock.advance(Duration::from_secs(61));
    fail(&t, &bob, None, 3).await; // 2 + 3 would lock within one window
    clock.advance(Duration::from_secs(61));
    fail(&t, &bob, None, 5).await;
    assert_eq!(
        refused_for(t.check(&bob, None).await),
        Duration::from_secs(60)
    );

    // A success after the lockout forgets the streak: the next lockout is the first again.
    clock.advance(Duration::from_secs(121));
    t.check(&alice, None).await.unwrap().success().await;
    fail(&t, &alice, None, 5).await;
    assert_eq!(
        refused_for(t.check(&alice, None).await),
        Duration::from_secs(60)
    );
}

/// The per-address counter: any identifiers from one address, successes given back, other
/// addresses unaffected.
pub async fn addresses(store: Arc<dyn ThrottleStore>) {
    let clock = ManualClock::new();
    let config = ThrottleConfig {
        address_max_attempts: 3,
        ..ThrottleConfig::default()
    };
    let t = LoginThrottle::new(store, config)
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    // Addresses unique to this run, so that runs sharing a server do not meet.
    let r = random_id().unwrap();
    let bytes = r.as_bytes();
    let net = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let a: IpAddr = format!("2001:db8:{:x}:{:x}::1", net(0), net(2))
        .parse()
        .unwrap();
    let b: IpAddr = format!("2001:db8:{:x}:{:x}::1", net(4), net(6))
        .parse()
        .unwrap();
    // Successes do not use up the address.
    for _ in 0..10 {
        t.check(&identifier(), Some(a))
            .await
            .unwrap()
            .success()
            .await;
    }
    for _ in 0..3 {
        fail(&t, &identifier(), Some(a), 1).await;
    }
    assert_eq!(
        refused_for(t.check(&identifier(), Some(a)).await),
        Duration::from_secs(60)
    );
    fail(&t, &identifier(), Some(b), 1).await;
    // The same address through another host of its /64.
    let sibling: IpAddr = a.to_string().replace("::1", "::2").parse().unwrap();
    assert!(t.check(&identifier(), Some(sibling)).await.is_err());
}

macro_rules! throttle_suite {
    ($backend:literal, $store:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fifty_concurrent_failures_admit_at_most_the_limit() {
            $crate::throttle::race($store, $backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_successes_all_pass() {
            $crate::throttle::concurrent_successes($store).await;
        }

        #[tokio::test]
        async fn windows_lockouts_and_resets() {
            $crate::throttle::windows_lockouts_and_resets($store).await;
        }

        #[tokio::test]
        async fn addresses_are_counted_apart() {
            $crate::throttle::addresses($store).await;
        }
    };
}

mod memory {
    use std::sync::Arc;

    use keycard::store::{MemoryStore, ThrottleStore};

    fn store() -> Arc<dyn ThrottleStore> {
        Arc::new(MemoryStore::new())
    }

    throttle_suite!("memory", store());
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::Arc;

    use keycard::{
        ErrorKind,
        store::{
            ThrottleStore,
            sql::{SqlOptions, SqlStore},
        },
        throttle::{LoginThrottle, OnStoreError, ThrottleConfig},
    };

    async fn sql() -> SqlStore {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-throttle");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.db", crate::common::random_id().unwrap()));
        SqlStore::connect(
            &format!("sqlite://{}", path.display()),
            SqlOptions::default(),
        )
        .await
        .unwrap()
    }

    async fn store() -> Arc<dyn ThrottleStore> {
        Arc::new(sql().await)
    }

    throttle_suite!("SQLite", store().await);

    /// A store that is down: 503 by default (fail closed), let through when configured so.
    #[tokio::test]
    async fn a_store_that_is_down_fails_closed() {
        let sql = sql().await;
        let closed = LoginThrottle::new(Arc::new(sql.clone()), ThrottleConfig::default()).unwrap();
        let open = LoginThrottle::new(
            Arc::new(sql.clone()),
            ThrottleConfig {
                on_store_error: OnStoreError::Allow,
                ..ThrottleConfig::default()
            },
        )
        .unwrap();
        sql.close().await;
        let refused = closed.check("alice", None).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::StoreUnavailable);
        assert_eq!(refused.status(), 503);
        open.check("alice", None).await.unwrap().failure().await;
    }
}

/// A pooled SQL throttle store at `url` (8 connections, for the races).
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn sql_server_store(url: &str) -> Arc<dyn ThrottleStore> {
    use keycard::store::sql::{SqlOptions, SqlStore};
    let mut options = SqlOptions::default();
    options.max_connections = 8;
    Arc::new(SqlStore::connect(url, options).await.unwrap())
}

#[cfg(feature = "postgres")]
mod postgres {
    throttle_suite!(
        "PostgreSQL",
        super::sql_server_store(&crate::common::pg_url()).await
    );
}

#[cfg(feature = "mysql")]
mod mysql {
    throttle_suite!(
        "MySQL/MariaDB",
        super::sql_server_store(&crate::common::mysql_url()).await
    );
}

#[cfg(feature = "redis")]
mod redis {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use axum::{Router, body::Body, extract::Request, http::StatusCode, routing::post};
    use http_body_util::BodyExt;
    use keycard::{
        Keycard, Rejection,
        store::{MemoryStore, ThrottleStore},
        strategy::{ServerSessions, ServerSettings},
        throttle::{LoginThrottle, OnStoreError, Throttle, ThrottleConfig},
    };
    use tower::ServiceExt;

    use crate::common::{
        fault_proxy::{FaultProxy, through, upstream_of},
        redis_support::scenarios::Target,
    };

    async fn store() -> Arc<dyn ThrottleStore> {
        Arc::new(
            Target::new(vec![crate::common::redis_url()], false)
                .store()
                .await,
        )
    }

    throttle_suite!("Redis", store().await);

    /// A login route behind keycard's layer with `throttle`: the throttle's check, then the
    /// password check, which counts itself in `checked`.
    fn login_app(throttle: LoginThrottle, checked: Arc<AtomicU32>) -> Router {
        let keycard = Keycard::builder()
            .strategy(ServerSessions::new(
                Arc::new(MemoryStore::new()),
                ServerSettings::default(),
            ))
            .throttle(throttle)
            .build()
            .unwrap();
        Router::new()
            .route(
                "/login",
                post(move |throttle: Throttle| async move {
                    let guard = throttle.check("alice").await?;
                    checked.fetch_add(1, Ordering::SeqCst);
                    guard.success().await;
                    Ok::<_, Rejection>("ok")
                }),
            )
            .layer(keycard.layer())
    }

    async fn login(app: &Router) -> (StatusCode, serde_json::Value) {
        let response = app
            .clone()
            .oneshot(Request::post("/login").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// Redis goes down under a running throttle (the proxy in front of it stops accepting and
    /// closes its connections): the login answers 503 before any password check (fail closed),
    /// and a throttle configured to allow lets it through.
    #[tokio::test]
    async fn a_store_that_is_down_fails_closed() {
        let url = crate::common::redis_url();
        let proxy = FaultProxy::start(upstream_of(&url)).await;
        let store = Arc::new(
            Target::new(vec![through(&url, proxy.addr)], false)
                .store()
                .await,
        );
        let checked = Arc::new(AtomicU32::new(0));
        let closed = login_app(
            LoginThrottle::new(store.clone(), ThrottleConfig::default()).unwrap(),
            checked.clone(),
        );
        let allowed = Arc::new(AtomicU32::new(0));
        let open = login_app(
            LoginThrottle::new(
                store,
                ThrottleConfig {
                    on_store_error: OnStoreError::Allow,
                    ..ThrottleConfig::default()
                },
            )
            .unwrap(),
            allowed.clone(),
        );
        assert_eq!(login(&closed).await.0, StatusCode::OK);
        assert_eq!(checked.load(Ordering::SeqCst), 1);

        drop(proxy);
        let (status, body) = login(&closed).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert_eq!(
            checked.load(Ordering::SeqCst),
            1,
            "no password check while the throttle's store is down"
        );

        assert_eq!(login(&open).await.0, StatusCode::OK);
        assert_eq!(allowed.load(Ordering::SeqCst), 1);
    }
}

#[cfg(feature = "redis")]
mod redis_cluster {
    use std::sync::Arc;

    use keycard::store::ThrottleStore;

    use crate::common::redis_support::{cluster::Cluster, scenarios::Target};

    async fn store() -> Arc<dyn ThrottleStore> {
        Arc::new(Target::new(Cluster::shared().urls(), true).store().await)
    }

    throttle_suite!("Redis Cluster", store().await);
}
