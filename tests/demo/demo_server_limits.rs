//! The demo's HTTP server bounds what clients can hold (`examples/demo/serve.rs`): with its
//! open-file limit at 1,024 and 1,100 idle connections against it, a normal login and `/me`
//! still answer within the header-read timeout plus 1 s, and every idle connection is closed once
//! the timeout passes; `Host` rules of RFC 9112 §3.2, the body limit and the request timeout.
//! Loopback only, every wait bounded.
#![cfg(all(unix, feature = "sqlite"))]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};

use crate::common::demo_bin::{self, Launched};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_CONNECTIONS: usize = 1100;
const DEMO_OPEN_FILES: u64 = 1024;

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("keycard-demo-limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The demo under `ulimit -n 1024` with `vars`.
fn start(dir: &std::path::Path, vars: &[(&str, &str)]) -> Launched {
    let mut cmd = demo_bin::command_with_open_file_limit(dir, DEMO_OPEN_FILES);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    demo_bin::launch(cmd, &dir.join("demo-stderr.log"), |_| {})
}

/// Writes `request` on a fresh connection and reads until the server closes it (or 10 s pass):
/// the status and everything read.
async fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // A reset after the answer (unread request bytes) still leaves the answer read.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {:?}", String::from_utf8_lossy(request)));
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// Logs alice in and reads `/me` with her cookie, each exchange within `limit`.
async fn login_and_me(addr: &str, limit: Duration) -> Result<(), String> {
    let login = demo_bin::exchange(
        addr,
        "POST",
        "/login",
        &[("Content-Type", "application/json")],
        r#"{"username":"alice","password":"wonderland"}"#,
        limit,
    )
    .await?;
    if login.status != 200 {
        return Err(format!("login: {}\n{}", login.head, login.body));
    }
    let cookie = login
        .cookie_pair("__Host-keycard")
        .ok_or_else(|| format!("no session cookie: {}", login.head))?;
    let me = demo_bin::exchange(addr, "GET", "/me", &[("Cookie", &cookie)], "", limit).await?;
    if me.status != 200 || me.json()["subject"] != "alice" {
        return Err(format!("/me: {}\n{}", me.head, me.body));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_lock_out_clients() {
    // This process holds 1,100 sockets: raise its soft open-file limit to the hard one.
    let soft = rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE");
    assert!(
        soft >= IDLE_CONNECTIONS as u64 + 256,
        "the test needs an open-file limit of at least {}; the hard limit allows {soft}",
        IDLE_CONNECTIONS + 256
    );
    let dir = scratch_dir("idle");
    let demo = start(&dir, &[("KEYCARD_DEMO_HEADER_TIMEOUT", "2s")]);
    #[cfg(target_os = "linux")]
    {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", demo.child.id()))
            .expect("/proc/<pid>/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("open-file limit line");
        assert_eq!(
            line.split_whitespace().nth(3),
            Some("1024"),
            "the demo runs with 1,024 files: {line}"
        );
    }
    let addr = demo.addr.clone();
    assert!(addr.starts_with("127.0.0.1:"), "loopback only: {addr}");

    // Half of them send nothing, half stop in the middle of a request line.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
            .await
            .unwrap_or_else(|_| panic!("connection {i}: connect timed out"))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let silent = i % 2 == 0;
        if !silent {
            stream.write_all(b"GET /me HT").await.expect("half a line");
        }
        idle.push((stream, silent, Instant::now()));
    }
    let all_open = Instant::now();

    let limit = HEADER_TIMEOUT + Duration::from_secs(1);
    login_and_me(&addr, limit)
        .await
        .unwrap_or_else(|e| panic!("with {IDLE_CONNECTIONS} idle connections: {e}"));
    let answered = all_open.elapsed();
    assert!(answered <= limit, "login and /me took {answered:?}");

    // Every idle connection is closed (end of stream or reset) by the timeout plus 1 s after
    // the last one opened.
    let deadline = tokio::time::Instant::from_std(all_open + limit);
    let mut closing = JoinSet::new();
    for (mut stream, silent, opened) in idle {
        closing.spawn(async move {
            let closed = tokio::time::timeout_at(deadline, async {
                let mut buf = [0u8; 512];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                Instant::now()
            })
            .await;
            (silent, closed.map(|at| at - opened))
        });
    }
    let (mut evicted, mut timed_out, mut still_open) = ([0; 2], [0; 2], 0);
    let mut slowest = Duration::ZERO;
    while let Some(joined) = closing.join_next().await {
        let (silent, after) = joined.expect("reader task");
        match after {
            Ok(after) if after < HEADER_TIMEOUT => evicted[usize::from(silent)] += 1,
            Ok(after) => {
                timed_out[usize::from(silent)] += 1;
                slowest = slowest.max(after);
            }
            Err(_) => still_open += 1,
        }
    }
    println!(
        "{IDLE_CONNECTIONS} idle connections (header timeout {HEADER_TIMEOUT:?}, demo open-file \
         limit {DEMO_OPEN_FILES}): login + /me answered {answered:?} after the last opened; \
         closed early at the connection cap: {} silent + {} half-line; closed by the header \
         timeout: {} silent + {} half-line, the last {slowest:?} after it opened; still open: \
         {still_open}",
        evicted[1], evicted[0], timed_out[1], timed_out[0]
    );
    assert_eq!(still_open, 0, "every idle connection is closed");
    assert!(
        timed_out[1] > 0 && timed_out[0] > 0,
        "the header timeout closes silent and half-line connections alike"
    );
    assert!(slowest <= limit, "closed {slowest:?} after opening");

    // And the demo keeps serving.
    login_and_me(&addr, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("after the idle connections closed: {e}"));
    let stderr = demo_bin::tail(&demo.stderr_log, 4000);
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn host_header_body_size_and_request_time_are_checked() {
    let dir = scratch_dir("host");
    let demo = start(&dir, &[("KEYCARD_DEMO_REQUEST_TIMEOUT", "1s")]);
    let addr = demo.addr.as_str();
    let host = format!("Host: {addr}\r\n");

    let (status, text) = raw(addr, b"GET /me HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400, "HTTP/1.1 without Host: {text}");
    assert!(text.contains("invalid_request"), "{text}");
    let twice = format!("GET /me HTTP/1.1\r\n{host}{host}Connection: close\r\n\r\n");
    let (status, text) = raw(addr, twice.as_bytes()).await;
    assert_eq!(status, 400, "two Host headers: {text}");
    let (status, text) = raw(
        addr,
        b"GET /me HTTP/1.1\r\nHost: user@example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "a Host that is not host[:port]: {text}");
    // HTTP/1.0 may leave Host out; one Host is fine.
    let (status, text) = raw(addr, b"GET /me HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 401, "HTTP/1.0 without Host reaches the app: {text}");
    let once = format!("GET /me HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
    let (status, text) = raw(addr, once.as_bytes()).await;
    assert_eq!(status, 401, "one Host reaches the app: {text}");

    // A declared body over the default 64 KiB is refused before it is sent.
    let big = format!(
        "POST /login HTTP/1.1\r\n{host}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        64 * 1024 + 1
    );
    let (status, text) = raw(addr, big.as_bytes()).await;
    assert_eq!(status, 413, "{text}");

    // A body that stops arriving gets 408 after the request timeout.
    let slow = format!(
        "POST /login HTTP/1.1\r\n{host}Content-Type: application/json\r\n\
         Content-Length: 50\r\nConnection: close\r\n\r\n{{\"username\""
    );
    let started = Instant::now();
    let (status, text) = raw(addr, slow.as_bytes()).await;
    assert_eq!(status, 408, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    login_and_me(addr, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_limits_exit_with_one_line() {
    let dir = scratch_dir("bad");
    let run = |var: &str, value: &str| {
        let output = demo_bin::command_with_open_file_limit(&dir, DEMO_OPEN_FILES)
            .env("KEYCARD_DEMO_ADDR", "127.0.0.1:0")
            .env(var, value)
            .output()
            .expect("run demo");
        assert!(!output.status.success(), "{var}={value} should fail");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr:?}");
        assert!(lines[0].contains(var), "{}", lines[0]);
        lines[0].to_owned()
    };
    run("KEYCARD_DEMO_HEADER_TIMEOUT", "soon");
    run("KEYCARD_DEMO_HEADER_TIMEOUT", "0s");
    run("KEYCARD_DEMO_REQUEST_TIMEOUT", "-1");
    run("KEYCARD_DEMO_MAX_BODY", "lots");
    run("KEYCARD_DEMO_MAX_CONNECTIONS", "0");
    let line = run("KEYCARD_DEMO_MAX_CONNECTIONS", "1000");
    assert!(
        line.contains("1024") && line.contains("896"),
        "the cap stays below the open-file limit: {line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
