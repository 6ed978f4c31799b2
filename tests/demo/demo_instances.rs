//! Several demo processes (the real binary, `target/<profile>/examples/demo`) sharing one store:
//! a logout, logout-all or session revocation made through one instance is seen by the others at
//! their next request; and a demo on Redis fails closed (503, never 200 or 500) while its Redis is
//! paused or dead, and recovers without a restart when Redis is back.
//!
//! Stores: Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`, under a key prefix of this
//! test's own), a Redis Cluster and throwaway `redis-server`s started by the tests, and, with the
//! `postgres` feature, a database created for the test on the server at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped afterwards.
//!
//! `cargo test` builds the examples first; with `cargo test --test demo` alone, build
//! the binary with the same features (`cargo build --example demo --all-features`). A missing
//! binary fails the tests.
#![cfg(all(unix, feature = "redis", feature = "sqlite", feature = "jwt"))]

use std::{
    ops::{Deref, DerefMut},
    path::PathBuf,
    process::Child,
    time::{Duration, Instant},
};

use crate::common::{
    demo_bin::{self, Launched, RawResp as Resp},
    http_client::COOKIE,
    redis_support::{
        cluster::Cluster,
        server::{Standalone, cli, scratch_dir, signal, spawn_watchdog},
    },
};

const ALICE: &str = r#"{"username":"alice","password":"wonderland"}"#;

// ---------------------------------------------------------------------------------------------
// Demo processes

/// A running demo process, killed on drop (a watchdog also kills it should this process die).
struct Demo {
    launched: Launched,
    watchdog: Option<Child>,
    dir: PathBuf,
}

impl Deref for Demo {
    type Target = Launched;
    fn deref(&self) -> &Launched {
        &self.launched
    }
}

impl DerefMut for Demo {
    fn deref_mut(&mut self) -> &mut Launched {
        &mut self.launched
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.launched.kill();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Demo {
    /// Starts the demo on a free loopback port with only `vars` (plus a config file holding
    /// `config_toml`, if given) in its keycard environment.
    fn start(vars: &[(&str, &str)], config_toml: Option<&str>) -> Self {
        let dir = scratch_dir("demo-instance");
        let mut cmd = demo_bin::command(&dir);
        if let Some(toml) = config_toml {
            let path = dir.join("keycard.toml");
            std::fs::write(&path, toml).expect("write config");
            cmd.env("KEYCARD_CONFIG", path);
        }
        cmd.envs(vars.iter().copied());
        let mut watchdog = None;
        let launched = demo_bin::launch(cmd, &dir.join("stderr.log"), |child| {
            watchdog = spawn_watchdog(&[child.id()], &dir);
        });
        Demo {
            launched,
            watchdog,
            dir,
        }
    }
}

/// A config file that only gives Redis a key prefix of its own, so these tests neither see nor
/// revoke anyone else's sessions on a shared Redis. The store itself comes from the environment.
fn redis_prefix_config() -> String {
    format!(
        "strategy = \"redis\"\n[redis]\nkey_prefix = \"kc-demo-instances-{}\"\n",
        crate::common::random_id().expect("random id")
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP, through `demo_bin::exchange`

/// One exchange on a fresh connection, the whole of it within `limit`, from the user agent
/// `demo-instances-test`, with `cookie` and a JSON `body` if given.
async fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
    limit: Duration,
) -> Result<Resp, String> {
    let mut headers = vec![("User-Agent", "demo-instances-test")];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    demo_bin::exchange(addr, method, path, &headers, body, limit).await
}

async fn http(addr: &str, method: &str, path: &str, cookie: Option<&str>, body: &str) -> Resp {
    try_http(addr, method, path, cookie, body, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Logs alice in and returns her session cookie (`name=value`).
async fn login(addr: &str) -> String {
    let r = http(addr, "POST", "/login", None, ALICE).await;
    assert_eq!(r.status, 200, "login on {addr}: {}\n{}", r.head, r.body);
    r.cookie_pair(COOKIE)
        .unwrap_or_else(|| panic!("login sets the session cookie: {}", r.head))
}

async fn me(addr: &str, cookie: &str) -> u16 {
    http(addr, "GET", "/me", Some(cookie), "").await.status
}

// ---------------------------------------------------------------------------------------------
// Revocation across instances

/// What one instance revokes, the other refuses at its next request.
async fn revocation_is_seen_across_instances(a: &Demo, b: &Demo, strategy: &str) {
    let (a, b) = (a.addr.as_str(), b.addr.as_str());

    // A login through A is a session on B.
    let c1 = login(a).await;
    let r = http(b, "GET", "/me", Some(&c1), "").await;
    assert_eq!(r.status, 200, "cookie from A on B: {}\n{}", r.head, r.body);
    let me_b = r.json();
    assert_eq!(me_b["subject"], "alice");
    assert_eq!(me_b["strategy"], strategy);
    let sessions = http(b, "GET", "/sessions", Some(&c1), "").await;
    assert_eq!(sessions.status, 200);
    assert!(
        sessions.json().as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["current"] == true && s["user_agent"] == "demo-instances-test")),
        "B lists the session made on A: {}",
        sessions.body
    );

    // Logout on A → B refuses the cookie at its next request.
    let r = http(a, "POST", "/logout", Some(&c1), "").await;
    assert_eq!(r.status, 204, "logout on A: {}\n{}", r.head, r.body);
    assert_eq!(me(b, &c1).await, 401, "B after logout on A");
    assert_eq!(me(a, &c1).await, 401, "A after logout on A");

    // Two logins (one per instance), logout-all through B → both refused on A (and on B).
    let c2 = login(a).await;
    let c3 = login(b).await;
    assert_eq!(me(b, &c2).await, 200);
    assert_eq!(me(a, &c3).await, 200);
    let r = http(b, "POST", "/logout-all", Some(&c3), "").await;
    assert_eq!(r.status, 204, "logout-all on B: {}\n{}", r.head, r.body);
    for (addr, name) in [(a, "A"), (b, "B")] {
        assert_eq!(
            me(addr, &c2).await,
            401,
            "login on A, after logout-all, on {name}"
        );
        assert_eq!(
            me(addr, &c3).await,
            401,
            "login on B, after logout-all, on {name}"
        );
    }

    // One session revoked by id through B → A refuses it; the caller's own survives.
    let c4 = login(a).await;
    let c5 = login(b).await;
    let list = http(b, "GET", "/sessions", Some(&c5), "").await.json();
    let other: Vec<&str> = list
        .as_array()
        .expect("session list")
        .iter()
        .filter(|s| s["current"] == false)
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(other.len(), 1, "exactly the session made on A: {list}");
    let r = http(
        b,
        "DELETE",
        &format!("/sessions/{}", other[0]),
        Some(&c5),
        "",
    )
    .await;
    assert_eq!(
        r.status, 204,
        "DELETE /sessions/id on B: {}\n{}",
        r.head, r.body
    );
    assert_eq!(me(a, &c4).await, 401, "revoked on B, presented on A");
    assert_eq!(me(a, &c5).await, 200, "the caller's own session survives");
    let r = http(a, "POST", "/logout", Some(&c5), "").await;
    assert_eq!(r.status, 204);
    assert_eq!(me(b, &c5).await, 401);
}

#[tokio::test]
async fn two_instances_share_one_redis() {
    let url = crate::common::redis_url();
    let config = redis_prefix_config();
    let vars = [("KEYCARD_STRATEGY", "redis"), ("REDIS_URL", url.as_str())];
    let a = Demo::start(&vars, Some(&config));
    let b = Demo::start(&vars, Some(&config));
    revocation_is_seen_across_instances(&a, &b, "redis").await;
}

#[tokio::test]
async fn two_instances_share_one_redis_cluster() {
    let cluster = Cluster::start(2000);
    let urls = cluster.urls().join(",");
    let config = redis_prefix_config();
    let vars = [
        ("KEYCARD_STRATEGY", "redis"),
        ("REDIS_CLUSTER_URLS", urls.as_str()),
    ];
    let a = Demo::start(&vars, Some(&config));
    let b = Demo::start(&vars, Some(&config));
    revocation_is_seen_across_instances(&a, &b, "redis").await;
    drop((a, b));
    drop(cluster);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn two_instances_share_one_postgres_database() {
    // A database of this test's own on the PostgreSQL server, dropped after it.
    let db = crate::common::pg::TempPg::create("demo_instances").await;
    let url = db.url();
    let vars = [
        ("KEYCARD_STRATEGY", "database"),
        ("DATABASE_URL", url.as_str()),
    ];
    let a = Demo::start(&vars, None);
    let b = Demo::start(&vars, None);
    revocation_is_seen_across_instances(&a, &b, "database").await;
    drop((a, b));
    drop(db);
}

// ---------------------------------------------------------------------------------------------
// Fail closed

/// `GET /me` with a valid cookie while Redis cannot answer: 503 within 5 s (never 200 or 500).
async fn assert_fails_closed(addr: &str, cookie: &str, what: &str) {
    let start = Instant::now();
    let r = try_http(
        addr,
        "GET",
        "/me",
        Some(cookie),
        "",
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = start.elapsed();
    eprintln!("{what}: {} in {took:?}", r.status);
    assert_eq!(r.status, 503, "{what}: {}\n{}", r.head, r.body);
    assert!(took < Duration::from_secs(5), "{what}: 503 after {took:?}");
}

/// Polls `GET /me` until it answers 200, for at most `limit`; every answer on the way must be a
/// 503 (never a 401: the session is intact, nor a 500).
async fn assert_recovers(addr: &str, cookie: &str, limit: Duration, what: &str) {
    let start = Instant::now();
    loop {
        let r = try_http(
            addr,
            "GET",
            "/me",
            Some(cookie),
            "",
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        match r.status {
            200 => {
                assert_eq!(r.json()["subject"], "alice");
                return;
            }
            503 if start.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            s => panic!(
                "{what}: {s} after {:?}: {}\n{}",
                start.elapsed(),
                r.head,
                r.body
            ),
        }
    }
}

#[tokio::test]
async fn demo_fails_closed_while_redis_is_paused_or_dead_and_recovers() {
    // (Blocking calls on the test's runtime are fine: the demo is another process.)
    let mut redis = Standalone::start();
    let url = redis.url();
    let mut demo = Demo::start(
        &[("KEYCARD_STRATEGY", "redis"), ("REDIS_URL", url.as_str())],
        None,
    );
    let addr = demo.addr.clone();
    let addr = addr.as_str();
    let cookie = login(addr).await;
    assert_eq!(me(addr, &cookie).await, 200);

    // Hung: the server is stopped, its socket still accepts and never answers.
    signal(redis.pid(), "-STOP");
    assert_fails_closed(addr, &cookie, "redis paused").await;
    assert_fails_closed(addr, &cookie, "redis still paused").await;
    let r = try_http(addr, "POST", "/login", None, ALICE, Duration::from_secs(10))
        .await
        .expect("login while paused");
    assert_eq!(r.status, 503, "login while paused: {}\n{}", r.head, r.body);
    signal(redis.pid(), "-CONT");
    assert_recovers(addr, &cookie, Duration::from_secs(10), "after SIGCONT").await;

    // Dead: killed (its data saved first, so the same cookie is valid after the restart).
    assert_eq!(cli(redis.port, &["SAVE"]).trim(), "OK", "redis SAVE");
    redis.kill();
    assert_fails_closed(addr, &cookie, "redis killed").await;
    assert_fails_closed(addr, &cookie, "redis still dead").await;
    redis.restart();
    assert_recovers(addr, &cookie, Duration::from_secs(15), "after restart").await;
    assert!(
        demo.child.try_wait().expect("try_wait").is_none(),
        "the same demo process served throughout"
    );
    let r = http(addr, "POST", "/logout", Some(&cookie), "").await;
    assert_eq!(r.status, 204);
    assert_eq!(me(addr, &cookie).await, 401);
    drop(demo);
    drop(redis);
}
