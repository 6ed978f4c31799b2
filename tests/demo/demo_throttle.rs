//! Login throttling in the demo (DEMO.md, second round): after 5 failures for one username
//! within 60 s, `POST /login` for that username answers 429 `{"error":"too_many_attempts"}`
//! with `Retry-After`, even with the right password, while other usernames are unaffected;
//! unknown usernames are throttled the same way; a throttle store that is down answers 503.

use std::{sync::Arc, time::Duration};

use http::{StatusCode, header};
use keycard::{
    Keycard, StrategyKind,
    clock::{Clock, ManualClock},
    store::MemoryStore,
    strategy::{ServerSessions, ServerSettings},
};

use crate::common::{
    demo,
    http_client::{Client, Resp},
};

fn client(keycard: Keycard, clock: &ManualClock) -> Client {
    Client {
        router: demo::router(keycard),
        clock: clock.clone(),
        cookies: true,
        agent: Some("throttle"),
    }
}

fn assert_throttled(r: &Resp, what: &str) {
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {}",
        r.text()
    );
    assert_eq!(r.json()["error"], "too_many_attempts", "{what}");
    let after: u64 = r
        .header(header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "{what}: Retry-After {after}");
    assert!(r.set_cookies().is_empty(), "{what}");
}

/// The contract on one keycard.
async fn contract(c: &Client) {
    for name in ["alice", "mallory"] {
        for i in 0..5 {
            let r = c.login_response(name, "not the password").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} failure {i}");
        }
    }
    // Even the right password is refused, and the response looks the same for a known and an
    // unknown username.
    assert_throttled(&c.login_response("alice", "wonderland").await, "alice");
    assert_throttled(&c.login_response("mallory", "wonderland").await, "mallory");
    // Another user is unaffected.
    let r = c
        .login_response("admin", "correct horse battery staple")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // After the lockout the right password works again, and resets the counter.
    c.clock.advance(Duration::from_secs(61));
    assert_eq!(
        c.login_response("alice", "wonderland").await.status,
        StatusCode::OK
    );
    for _ in 0..4 {
        c.login_response("alice", "nope").await;
    }
    assert_eq!(
        c.login_response("alice", "wonderland").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_keycard_built_in_code_throttles_in_memory() {
    let clock = ManualClock::new();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let strategy = ServerSessions::new(Arc::new(MemoryStore::new()), ServerSettings::default())
        .with_clock(shared.clone());
    let keycard = Keycard::builder()
        .strategy(strategy)
        .clock(shared)
        .build()
        .unwrap();
    contract(&client(keycard, &clock)).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_database_strategy_throttles_in_its_sqlite_store() {
    let clock = ManualClock::new();
    let db = demo::TempDb::new();
    let config = demo::database_config(StrategyKind::Database, &db.url());
    contract(&client(demo::keycard(&config, &clock).await, &clock)).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_strategy_throttles_in_redis() {
    let clock = ManualClock::new();
    let mut config = keycard::KeycardConfig::new(StrategyKind::Redis);
    config.redis = Some(keycard::config::RedisConfig {
        url: Some(crate::common::redis_url()),
        cluster_urls: Vec::new(),
        key_prefix: Some(format!(
            "keycard-demo-throttle-{}",
            crate::common::random_id().unwrap()
        )),
    });
    contract(&client(demo::keycard(&config, &clock).await, &clock)).await;
}

/// The throttle's store is down: `POST /login` answers 503 and checks no password.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_throttle_store_that_is_down_answers_503() {
    use keycard::{
        store::sql::{SqlOptions, SqlStore},
        throttle::{LoginThrottle, ThrottleConfig},
    };
    let clock = ManualClock::new();
    let db = demo::TempDb::new();
    let sql = SqlStore::connect(&db.url(), SqlOptions::default())
        .await
        .unwrap();
    let keycard = Keycard::builder()
        .strategy(ServerSessions::new(
            Arc::new(MemoryStore::new()),
            ServerSettings::default(),
        ))
        .throttle(LoginThrottle::new(Arc::new(sql.clone()), ThrottleConfig::default()).unwrap())
        .build()
        .unwrap();
    let c = client(keycard, &clock);
    assert_eq!(
        c.login_response("alice", "wonderland").await.status,
        StatusCode::OK
    );
    sql.close().await;
    let r = c.login_response("alice", "wonderland").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
}

/// The demo binary: the client address is known, the counters live in its SQLite file.
#[cfg(all(unix, feature = "sqlite", feature = "jwt"))]
#[tokio::test]
async fn the_demo_process_throttles_a_username() {
    use crate::common::demo_bin;

    let dir = std::env::temp_dir().join(format!("keycard-demo-throttle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = demo_bin::launch(
        demo_bin::command(&dir),
        &dir.join("demo-stderr.log"),
        |_| {},
    );
    let login = |user: &'static str, password: &'static str| {
        let addr = run.addr.clone();
        async move {
            let body = serde_json::json!({"username": user, "password": password}).to_string();
            demo_bin::exchange(
                &addr,
                "POST",
                "/login",
                &[("Content-Type", "application/json")],
                &body,
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    for _ in 0..5 {
        assert_eq!(login("alice", "wrong").await.status, 401);
    }
    let r = login("alice", "wonderland").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.head.to_ascii_lowercase().contains("\r\nretry-after: "),
        "{}",
        r.head
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["error"],
        "too_many_attempts"
    );
    assert_eq!(
        login("admin", "correct horse battery staple").await.status,
        200
    );
    let _ = std::fs::remove_dir_all(&dir);
}
