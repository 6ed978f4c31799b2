//! Processes for the browser test: a scratch directory, the demo binary and chromedriver, each
//! cleaned up on drop (including the Chromium processes that chromedriver started).

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Fails the test (never skips it) when Debian's browser packages are missing.
pub fn require_browser() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).is_file(),
            "{tool} is missing: the browser test needs Debian's `chromium` and `chromium-driver` \
             packages (`apt-get install chromium chromium-driver`; `.ci/run` installs them)"
        );
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("keycard-{name}-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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

/// A port that was free a moment ago (chromedriver needs a number up front).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free loopback port")
        .port()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The demo binary (`target/<profile>/examples/demo`), which `cargo test` builds.
pub fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples")
        .join("demo");
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --example demo` (plain `cargo test` builds it)",
        path.display()
    );
    path
}

/// The demo server, database strategy on a SQLite file in `dir`.
pub struct Demo {
    child: Child,
    /// Kept open so the demo never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub port: u16,
    pub log: PathBuf,
}

impl Demo {
    pub fn start(dir: &Path) -> Self {
        let log = dir.join("demo.log");
        let mut cmd = Command::new(demo_binary());
        cmd.current_dir(dir);
        for var in [
            "KEYCARD_CONFIG",
            "REDIS_URL",
            "REDIS_CLUSTER_URLS",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        let db = dir.join("demo.db");
        let mut child = cmd
            .env("KEYCARD_STRATEGY", "database")
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            // Port 0: the OS picks a free one and the start-up line names it.
            .env("KEYCARD_DEMO_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "keycard=info,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("demo log file"))
            .spawn()
            .expect("spawn the demo");
        let stdout = child.stdout.take().expect("demo stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line);
            let _ = tx.send((read.map(|_| line), reader));
        });
        let (line, stdout) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((Ok(line), reader)) if !line.is_empty() => (line, reader),
            other => {
                kill(&mut child);
                panic!(
                    "the demo printed no start-up line ({:?}); its stderr:\n{}",
                    other.map(|(l, _)| l),
                    tail(&log, 4000)
                );
            }
        };
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in the start-up line {line:?}"))
            .to_owned();
        assert!(line.contains("strategy: database"), "{line}");
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {addr}"));
        Self {
            child,
            _stdout: stdout,
            addr,
            port,
            log,
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// chromedriver on a free loopback port. On drop it is killed, and so is every process still
/// running with this driver's Chromium profile directory (when a session was not closed).
pub struct ChromeDriver {
    child: Child,
    pub url: String,
    pub profile: PathBuf,
    pub log: PathBuf,
}

impl ChromeDriver {
    pub fn start(dir: &Path) -> Self {
        let log = dir.join("chromedriver.log");
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).expect("chromium profile dir");
        let deadline = Instant::now() + Duration::from_secs(30);
        // The port can be taken between probing and binding; try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited, most likely "port in use": next port
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        profile,
                        log,
                    };
                }
                if Instant::now() > deadline {
                    kill(&mut child);
                    panic!(
                        "chromedriver did not listen within 30 s; its log:\n{}",
                        tail(&log, 4000)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "chromedriver would not start; its log:\n{}",
            tail(&log, 4000)
        );
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        kill(&mut self.child);
        // Chromium outlives a killed chromedriver: end the processes using our profile, by pid.
        let marker = format!("--user-data-dir={}", self.profile.display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == marker.as_bytes())
            {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
