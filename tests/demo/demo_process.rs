//! Runs the real demo binary (`target/<profile>/examples/demo`): the start-up line, the default
//! SQLite file, client IPs, graceful shutdown and one-line failures for bad configuration.
//!
//! `cargo test` builds the examples first; with `cargo test --test demo` alone, build
//! the binary with `cargo build --example demo`. A missing binary fails the tests.
#![cfg(all(unix, feature = "sqlite", feature = "jwt"))]

use crate::common::demo_bin;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keycard-demo-process-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

struct Running {
    child: Child,
    addr: String,
    line: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut cmd: Command) -> Running {
    let mut child = cmd
        .env("KEYCARD_DEMO_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("start-up line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Running { child, addr, line }
}

/// One HTTP/1.1 exchange; returns the status, the raw head and the body.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let raw = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_owned(), body.to_owned())
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
    let mut run = start(demo_bin::command(&dir));
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
