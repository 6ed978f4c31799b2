//! Runs the real demo binary (`target/<profile>/examples/demo`): the start-up line, the default
//! SQLite file, client IPs, graceful shutdown and one-line failures for bad configuration.
//!
//! `cargo test` builds the examples first; with `cargo test --test demo` alone, build
//! the binary with `cargo build --example demo`. A missing binary fails the tests.
#![cfg(all(unix, feature = "sqlite", feature = "jwt"))]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use crate::common::demo_bin::{self, Launched};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keycard-demo-process-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The demo started from `cmd` in `dir`, its stderr in `dir/demo-stderr.log`.
fn start(cmd: Command, dir: &Path) -> Launched {
    demo_bin::launch(cmd, &dir.join("demo-stderr.log"), |_| {})
}

/// One HTTP/1.1 exchange (within 30 s); returns the status, the raw head and the body.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let r = demo_bin::exchange(addr, method, path, headers, body, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (r.status, r.head, r.body)
}

fn failure(output: Output) -> String {
    assert!(!output.status.success(), "should fail: {output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    lines[0].to_owned()
}

#[tokio::test]
async fn serves_with_sqlite_by_default_and_shuts_down_on_ctrl_c() {
    let dir = scratch_dir("serve");
    let mut run = start(demo_bin::command(&dir), &dir);
    assert!(run.line.contains("strategy: database"), "{}", run.line);
    assert!(
        run.line.contains("sqlite://keycard-demo.db"),
        "{}",
        run.line
    );
    assert!(
        dir.join("keycard-demo.db").is_file(),
        "SQLite file created on first start"
    );

    let (status, head, body) = http(
        &run.addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "process-test"),
        ],
        r#"{"username":"alice","password":"wonderland"}"#,
    )
    .await;
    assert_eq!(status, 200, "{head}\n{body}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("Set-Cookie")
        .to_owned();
    assert!(cookie.starts_with("__Host-keycard="));

    let (status, _, body) = http(&run.addr, "GET", "/sessions", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200);
    let sessions: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sessions[0]["ip"], "127.0.0.1",
        "client IPs come from ConnectInfo"
    );
    assert_eq!(sessions[0]["user_agent"], "process-test");

    let (status, _, body) = http(
        &run.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/json")],
        r#"{"username":"nobody","password":"wonderland"}"#,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"error":"invalid_credentials"}"#)
    );

    let pid = run.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = run.child.wait().expect("exit");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line() {
    let dir = scratch_dir("bad");
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = demo_bin::command(&dir);
        cmd.env("KEYCARD_DEMO_ADDR", "127.0.0.1:0");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        failure(cmd.output().expect("run demo"))
    };
    let line = run(&[("KEYCARD_STRATEGY", "magic")]);
    assert!(
        line.contains("KEYCARD_STRATEGY") && line.contains("magic"),
        "{line}"
    );

    let line = run(&[(
        "DATABASE_URL",
        "sqlite:///nonexistent-keycard-dir/x/demo.db",
    )]);
    assert!(line.contains("database"), "{line}");

    let line = run(&[("DATABASE_URL", "bogus://user:hunter2@host/db")]);
    assert!(!line.contains("hunter2"), "passwords are masked: {line}");

    let line = run(&[("KEYCARD_DEMO_ADDR", "not-an-address")]);
    assert!(line.contains("KEYCARD_DEMO_ADDR"), "{line}");

    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        "strategy = \"database\"\n[session]\nidle_timeot = \"1m\"\n",
    )
    .unwrap();
    let line = run(&[("KEYCARD_CONFIG", config.to_str().unwrap())]);
    assert!(line.contains("idle_timeot"), "{line}");

    let line = run(&[("KEYCARD_CONFIG", "/nonexistent/keycard.toml")]);
    assert!(line.contains("KEYCARD_CONFIG"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}
