//! The demo binary as a process: where it is, the one way to start it ([`launch`]), and a
//! minimal HTTP/1.1 client to talk to it ([`exchange`]). The demo's router in process is
//! [`super::demo`].
//!
//! `cargo test` builds the examples (with the same features as the tests) before running any
//! test, so the binary is fresh there. Running one test target alone (`cargo test --test X`)
//! does not build examples: build it first with `cargo build --example demo` and the same
//! features. A missing binary fails the test; it never skips.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// `target/<profile>/examples/demo`, next to this test binary.
pub fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("demo");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test` (which builds the examples) or build it \
         with `cargo build --example demo` and the same features",
        path.display()
    );
    path
}

/// A command running the demo in `dir`, with the demo's variables cleared so that the
/// developer's environment does not leak in.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(demo_binary());
    clear_demo_env(&mut cmd, dir);
    cmd
}

/// [`command`] with the demo's open-file limit (soft and hard) set to `nofile` by the shell's
/// `ulimit -n` before it starts.
pub fn command_with_open_file_limit(dir: &Path, nofile: u64) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\""))
        .arg(demo_binary());
    clear_demo_env(&mut cmd, dir);
    cmd
}

fn clear_demo_env(cmd: &mut Command, dir: &Path) {
    cmd.current_dir(dir);
    for var in [
        "KEYCARD_DEMO_ADDR",
        "KEYCARD_CONFIG",
        "KEYCARD_STRATEGY",
        "DATABASE_URL",
        "REDIS_URL",
        "REDIS_CLUSTER_URLS",
        "KEYCARD_SESSION_CACHE",
        "KEYCARD_TRANSPORT",
        "RUST_LOG",
        "KEYCARD_DEMO_HEADER_TIMEOUT",
        "KEYCARD_DEMO_MAX_CONNECTIONS",
        "KEYCARD_DEMO_REQUEST_TIMEOUT",
        "KEYCARD_DEMO_MAX_BODY",
    ] {
        cmd.env_remove(var);
    }
}

/// The last `max` bytes of a log file, for failure messages.
pub fn tail(path: &Path, max: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

/// A running demo process, killed on drop.
pub struct Launched {
    pub child: Child,
    /// The start-up line.
    pub line: String,
    /// `127.0.0.1:<port>`, from the start-up line.
    pub addr: String,
    /// Where the demo's stderr goes.
    pub stderr_log: PathBuf,
}

impl Launched {
    /// The port the demo listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.addr))
    }

    /// Kills the demo (if still running) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `cmd` (from [`command`]) on a free loopback port (`KEYCARD_DEMO_ADDR=127.0.0.1:0`):
/// stdin closed, stderr written to `stderr_log`, stdout read by a thread that takes the start-up
/// line and then drains the rest (so the demo never writes into a closed pipe). `on_spawn` runs
/// right after the spawn (to start a watchdog). Waits up to 60 s for the start-up line naming the
/// address; without one, kills the demo and fails with its stderr.
pub fn launch(mut cmd: Command, stderr_log: &Path, on_spawn: impl FnOnce(&Child)) -> Launched {
    let stderr = File::create(stderr_log).expect("demo stderr log");
    let mut child = cmd
        .env("KEYCARD_DEMO_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawn demo");
    on_spawn(&child);
    let stdout = child.stdout.take().expect("demo stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let mut sink = String::new();
        while matches!(reader.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let mut launched = Launched {
        child,
        line,
        addr: String::new(),
        stderr_log: stderr_log.to_owned(),
    };
    let Some(addr) = launched
        .line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
    else {
        // Give a failing start a moment to write its one-line reason.
        std::thread::sleep(Duration::from_millis(200));
        launched.kill();
        panic!(
            "the demo did not start: stdout {:?}, stderr:\n{}",
            launched.line,
            tail(stderr_log, 4000)
        );
    };
    launched.addr = addr;
    launched
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client

/// A response read off the wire.
pub struct RawResp {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub body: String,
}

impl RawResp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body))
    }

    /// `<cookie>=<value>` from the response's `Set-Cookie`, if it sets `cookie` to a value.
    pub fn cookie_pair(&self, cookie: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("set-cookie") {
                return None;
            }
            let pair = value.trim().split(';').next()?;
            let v = pair.strip_prefix(cookie)?.strip_prefix('=')?;
            (!v.is_empty()).then(|| pair.to_owned())
        })
    }
}

/// One exchange on a fresh connection (`Connection: close`) to `addr`, with `headers` besides
/// `Host`, `Connection` and `Content-Length`; the whole of it within `limit`.
pub async fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    limit: Duration,
) -> Result<RawResp, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let raw = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no head/body split in {raw:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok(RawResp {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("{method} {path} on {addr}: no response within {limit:?}"))?
}
