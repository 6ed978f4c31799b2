//! `GET /metrics` of the real demo binary, scraped by a real Prometheus server: the demo runs on
//! Redis with the session read cache on, Prometheus (Debian's `prometheus` package; `scripts/test`
//! installs it) runs on a free loopback port with a generated config and a 1 s scrape interval,
//! and the authentication counters are read back through Prometheus' HTTP query API as requests
//! arrive.
//!
//! `cargo test` builds the demo first; with `cargo test --test demo` alone, build it with
//! `cargo build --example demo --all-features`.
#![cfg(all(unix, feature = "sqlite", feature = "redis"))]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    demo_bin::{self, Launched},
    redis_url,
};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keycard-demo-metrics-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping `target` every second, and waits until it is ready.
    async fn start(dir: &Path, target: &str) -> Self {
        let binary = which_prometheus();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: keycard-demo\n    scrape_interval: 1s\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus config");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("spawn prometheus");
        let prometheus = Self { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = demo_bin::exchange(
                &prometheus.addr,
                "GET",
                "/-/ready",
                &[],
                "",
                Duration::from_secs(5),
            )
            .await;
            if matches!(ready, Ok(ref r) if r.status == 200) {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s: {:?}\n{}",
                ready.map(|r| r.status),
                demo_bin::tail(&prometheus.log, 4000)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The value of an instant query returning one sample, if it returns one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let path = format!("/api/v1/query?query={encoded}");
        let r = demo_bin::exchange(&self.addr, "GET", &path, &[], "", Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 200, "{}\n{}", r.head, r.body);
        let body: Value = r.json();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }

    /// Waits (at most 30 s) until `promql` equals `want`; fails with the last value otherwise.
    async fn wait_for(&self, promql: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.query(promql).await;
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: {got:?} after 30 s, want {want}\n{}",
                demo_bin::tail(&self.log, 2000)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn which_prometheus() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .expect("`prometheus` is not installed: `apt-get install prometheus` (scripts/test does)")
}

async fn get(addr: &str, path: &str, cookie: &str) -> u16 {
    demo_bin::exchange(
        addr,
        "GET",
        path,
        &[("Cookie", cookie)],
        "",
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .status
}

#[tokio::test]
async fn prometheus_scrapes_the_authentication_counters_of_the_demo_on_redis_with_the_cache() {
    let dir = scratch_dir("scrape");
    std::fs::write(
        dir.join("keycard.toml"),
        format!(
            "strategy = \"redis\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"kc-metrics-{}\"\n\
             [session.cache]\ncapacity = 1000\n",
            redis_url(),
            std::process::id()
        ),
    )
    .expect("config");
    let mut cmd = demo_bin::command(&dir);
    cmd.env("KEYCARD_CONFIG", dir.join("keycard.toml"))
        .env("KEYCARD_SESSION_CACHE", "on");
    let demo: Launched = demo_bin::launch(cmd, &dir.join("demo-stderr.log"), |_| {});
    assert!(demo.line.contains("strategy: redis"), "{}", demo.line);

    let login = demo_bin::exchange(
        &demo.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/json")],
        r#"{"username":"alice","password":"wonderland"}"#,
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login.status, 200, "{}\n{}", login.head, login.body);
    let cookie = login.cookie_pair("__Host-keycard").expect("session cookie");

    // The demo's own text format first.
    let text = demo_bin::exchange(
        &demo.addr,
        "GET",
        "/metrics",
        &[],
        "",
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.status, 200);
    assert!(
        text.body.contains("keycard_logins_total{outcome=\"ok\"} 1"),
        "{}",
        text.body
    );
    assert!(!text.body.contains("alice"), "no subject in a label");

    let prometheus = Prometheus::start(&dir, &demo.addr).await;
    let ok = r#"sum(keycard_authentications_total{strategy="redis",outcome="ok"})"#;
    let hits = r#"sum(keycard_session_cache_lookups_total{result="hit"})"#;
    for _ in 0..5 {
        assert_eq!(get(&demo.addr, "/me", &cookie).await, 200);
    }
    prometheus.wait_for(ok, 5.0).await;
    // The counter moves as more requests arrive; the cache answers the repeats.
    for _ in 0..3 {
        assert_eq!(get(&demo.addr, "/me", &cookie).await, 200);
    }
    prometheus.wait_for(ok, 8.0).await;
    let hit_count = prometheus.query(hits).await.unwrap_or(0.0);
    assert!(hit_count >= 6.0, "cache hits: {hit_count}");
    prometheus
        .wait_for(r#"keycard_revocation_feed_connected"#, 1.0)
        .await;
    let store_calls =
        r#"sum(keycard_store_call_duration_seconds_count{store="session",operation="load"})"#;
    assert!(prometheus.query(store_calls).await.unwrap_or(0.0) >= 1.0);
    drop(prometheus);
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}
