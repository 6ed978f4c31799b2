//! Processes for the browser test: a scratch directory, the demo (started with
//! [`demo_bin::launch`]) and chromedriver, each cleaned up on drop (including the Chromium
//! processes that chromedriver started).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::demo_bin::{self, Launched, tail};

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

/// The demo server, database strategy on a SQLite file in `dir`.
pub struct Demo {
    launched: Launched,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub port: u16,
    pub log: PathBuf,
}

impl Demo {
    pub fn start(dir: &Path) -> Self {
        let log = dir.join("demo.log");
        let db = dir.join("demo.db");
        let mut cmd = demo_bin::command(dir);
        cmd.env("KEYCARD_STRATEGY", "database")
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("RUST_LOG", "keycard=info,warn");
        let launched = demo_bin::launch(cmd, &log, |_| {});
        assert!(
            launched.line.contains("strategy: database"),
            "{}",
            launched.line
        );
        Self {
            addr: launched.addr.clone(),
            port: launched.port(),
            log,
            launched,
        }
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
