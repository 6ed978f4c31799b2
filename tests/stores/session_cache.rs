//! The server-session read cache: hits answer without I/O, and a revocation through any
//! instance is refused by every other within 100 ms — on the in-memory store, Redis (pub/sub)
//! and PostgreSQL (LISTEN/NOTIFY). A lost feed sends lookups back to the store.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use keycard::{
    ErrorKind, Principal, SessionStrategy,
    clock::ManualClock,
    store::{MemoryStore, RevocationStore, SessionStore},
    strategy::{
        CacheSettings, ClientMeta, Credential, CredentialSource, Reissue, ServerSessions,
        ServerSettings,
    },
};

fn settings() -> ServerSettings {
    ServerSettings {
        store_timeout: Duration::from_millis(500),
        ..ServerSettings::default()
    }
}

async fn instance(
    store: Arc<dyn SessionStore>,
    revocations: Arc<dyn RevocationStore>,
    clock: &ManualClock,
) -> ServerSessions {
    let s = ServerSessions::new(store, settings())
        .with_clock(Arc::new(clock.clone()))
        .with_cache(CacheSettings::default(), revocations);
    s.ready().await.expect("mirror ready");
    s
}

fn cookie(token: &str) -> Credential<'_> {
    Credential {
        value: token,
        source: CredentialSource::Cookie,
    }
}

async fn login(s: &ServerSessions, subject: &str) -> String {
    let issued = s
        .login(
            Principal::builder(subject).role("user").build(),
            &ClientMeta::default(),
            Default::default(),
        )
        .await
        .unwrap();
    issued.session_token.unwrap().expose_secret().to_owned()
}

/// Warms `b`'s cache with `token` and checks that the next lookup is a hit (no I/O).
async fn warm(b: &ServerSessions, token: &str) {
    b.authenticate(cookie(token)).await.expect("live");
    let fut = b.authenticate(cookie(token));
    assert!(fut.is_ready(), "a warm lookup answers without I/O");
    fut.await.expect("hit");
}

/// Polls `b` until it refuses `token`; returns how long that took.
async fn refused_within(b: &ServerSessions, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match b.authenticate(cookie(token)).await {
            Err(e) => {
                assert_ne!(e.kind(), ErrorKind::StoreUnavailable, "{e:?}");
                return started.elapsed();
            }
            Ok(_) => {
                assert!(started.elapsed() < limit, "still served after {limit:?}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

async fn revocation_crosses_instances(
    store: Arc<dyn SessionStore>,
    revocations: Arc<dyn RevocationStore>,
) {
    let clock = ManualClock::new();
    let a = instance(store.clone(), revocations.clone(), &clock).await;
    let b = instance(store, revocations, &clock).await;
    let limit = Duration::from_millis(100);
    let subject = format!("cache-{}", crate::common::random_id().unwrap());

    // Logout through A.
    let token = login(&a, &subject).await;
    warm(&b, &token).await;
    let p = a.authenticate(cookie(&token)).await.unwrap();
    a.logout(&p).await.unwrap();
    assert!(
        a.authenticate(cookie(&token)).await.is_err(),
        "A refuses at once"
    );
    let took = refused_within(&b, &token, limit).await;
    eprintln!("logout seen by the other instance after {took:?}");

    // Revoke one session by handle through A.
    let token = login(&a, &subject).await;
    warm(&b, &token).await;
    let handle = b
        .authenticate(cookie(&token))
        .await
        .unwrap()
        .session()
        .id
        .clone();
    assert!(a.revoke(&subject, &handle).await.unwrap());
    refused_within(&b, &token, limit).await;

    // Rotation (a role change) through A: the old ID dies everywhere, the new one works.
    let token = login(&a, &subject).await;
    warm(&b, &token).await;
    let p = a.authenticate(cookie(&token)).await.unwrap();
    let spec = Principal::builder(&subject)
        .roles(["user", "admin"])
        .build();
    let rotated = a.reissue(&p, Reissue::Rotate(Some(spec))).await.unwrap();
    refused_within(&b, &token, limit).await;
    let new = rotated.session_token.unwrap();
    let p = b.authenticate(cookie(new.expose_secret())).await.unwrap();
    assert!(p.has_role("admin"));

    // Log out everywhere through B: A's warm sessions die.
    let t1 = login(&a, &subject).await;
    let t2 = login(&b, &subject).await;
    warm(&a, &t1).await;
    warm(&a, &t2).await;
    assert!(b.logout_all(&subject).await.unwrap() >= 2);
    refused_within(&a, &t1, limit).await;
    refused_within(&a, &t2, limit).await;
    // A login after it works and is cached again. (One in the same millisecond as the
    // log-out-everywhere is served from the store but not cached: the frozen test clock must move.)
    clock.advance(Duration::from_millis(2));
    let t3 = login(&b, &subject).await;
    warm(&a, &t3).await;
}

#[tokio::test]
async fn memory_instances() {
    let store = Arc::new(MemoryStore::new());
    revocation_crosses_instances(store.clone(), store).await;
}

#[tokio::test]
async fn expiry_is_honoured_on_hits() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new();
    let s = instance(store.clone(), store, &clock).await;
    let token = login(&s, "expiry").await;
    warm(&s, &token).await;
    // Past the renewal interval the cache asks the store again (which renews).
    clock.advance(Duration::from_secs(4 * 60));
    assert!(!s.authenticate(cookie(&token)).is_ready());
    s.authenticate(cookie(&token)).await.unwrap();
    // Idle for longer than the idle timeout: refused, cached or not.
    clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(
        s.authenticate(cookie(&token)).await.unwrap_err().kind(),
        ErrorKind::InvalidCredential
    );
}

#[tokio::test]
async fn capacity_bounds_the_cache() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new();
    let s = ServerSessions::new(store.clone(), settings())
        .with_clock(Arc::new(clock.clone()))
        .with_cache(
            CacheSettings {
                capacity: 8,
                ..CacheSettings::default()
            },
            store,
        );
    s.ready().await.unwrap();
    for i in 0..50 {
        let token = login(&s, &format!("cap-{i}")).await;
        s.authenticate(cookie(&token)).await.unwrap();
        assert!(s.cached_sessions() <= 8);
    }
    assert_eq!(s.cached_sessions(), 8);
}

#[cfg(feature = "redis")]
mod redis_backed {
    use super::*;
    use keycard::store::redis::{RedisOptions, RedisStore};

    use crate::common::redis_support;

    async fn store(url: &str) -> Arc<RedisStore> {
        let mut o = RedisOptions::default();
        o.key_prefix = redis_support::unique_prefix();
        Arc::new(RedisStore::connect_with(url, o).await.unwrap())
    }

    #[tokio::test]
    async fn redis_instances() {
        let url = crate::common::redis_url();
        let s = store(&url).await;
        revocation_crosses_instances(s.clone(), s).await;
    }

    #[tokio::test]
    async fn lost_feed_sends_lookups_to_the_store() {
        let mut server = redis_support::server::Standalone::start();
        let s = store(&server.url()).await;
        let clock = ManualClock::new();
        let a = instance(s.clone(), s, &clock).await;
        let token = login(&a, "feed").await;
        warm(&a, &token).await;
        server.kill();
        // The feed ends with the connection; from then on nothing is served from the cache.
        let started = Instant::now();
        loop {
            match a.authenticate(cookie(&token)).await {
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::StoreUnavailable);
                    break;
                }
                Ok(_) => assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "cache outlived its feed"
                ),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.restart();
        // Sessions were in the killed server's memory only: the token is now unknown, and the
        // answer comes from the store again (not a stale cache).
        let started = Instant::now();
        loop {
            match a.authenticate(cookie(&token)).await {
                Err(e) if e.kind() == ErrorKind::InvalidCredential => break,
                Err(e) => assert_eq!(e.kind(), ErrorKind::StoreUnavailable),
                Ok(_) => panic!("a session lost with the server was served"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "did not recover"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_instances() {
    use keycard::store::sql::{SqlOptions, SqlStore};
    let url = crate::common::pg_url();
    let s = Arc::new(
        SqlStore::connect(&url, SqlOptions::default())
            .await
            .unwrap(),
    );
    revocation_crosses_instances(s.clone(), s).await;
}
