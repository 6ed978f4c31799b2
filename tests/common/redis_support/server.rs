//! Throwaway `redis-server` processes on free loopback ports, killed on drop and, should the test
//! process die without unwinding, by a watchdog shell that outlives it by at most a second.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

/// A port on 127.0.0.1 that is free now, whose cluster bus port (`+10000`) is free too.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let port = addr.port();
        if port > 55_000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keycard-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Spawns `redis-server` on `port` with `extra` arguments, logging to `dir/redis-<port>.log`.
pub fn spawn_redis(port: u16, dir: &Path, extra: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("redis-{port}.log"))).expect("log file");
    Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log file")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn redis-server (is it installed?)")
}

/// Spawns `redis-server` on a free port (not one of `taken`) with the arguments `extra` gives for
/// that port, and waits until it answers. A port is only free when it is picked: another process
/// (a test's outgoing connection, another server) may bind it, or its cluster bus port, before
/// the server does, and the server then exits at once. So a server that exits is started again on
/// another port.
pub fn spawn_on_free_port(
    dir: &Path,
    taken: &[u16],
    extra: impl Fn(u16) -> Vec<String>,
) -> (u16, Child) {
    for _ in 0..20 {
        let port = free_port();
        if taken.contains(&port) {
            continue;
        }
        let args = extra(port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn_redis(port, dir, &args);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if ping(port) {
                return (port, child);
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not start redis-server on a free port (see the logs in {dir:?})");
}

/// Spawns a shell that kills `pids` and removes `dir` once this test process has exited.
pub fn spawn_watchdog(pids: &[u32], dir: &Path) -> Option<Child> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; rm -rf '{dir}'",
        me = std::process::id(),
        pids = pids.join(" "),
        dir = dir.display(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Blocks until `redis-cli -p port PING` answers `PONG`, or panics after `limit`.
pub fn wait_for_ping(port: u16, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ping(port) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on port {port} did not come up within {limit:?}");
}

/// Whether the server on `port` answers `PING`.
pub fn ping(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        .unwrap_or(false)
}

/// Runs `redis-cli -p port args...` and returns its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends a signal to a process with `kill`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// One standalone `redis-server`, killed on drop.
pub struct Standalone {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    watchdog: Option<Child>,
}

impl Standalone {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        let dir = scratch_dir("redis");
        let (port, child) = spawn_on_free_port(&dir, &[], |_| Vec::new());
        let watchdog = spawn_watchdog(&[child.id()], &dir);
        Self {
            port,
            child: Some(child),
            dir,
            watchdog,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("server running")
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn_redis(self.port, &self.dir, &[]);
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        self.watchdog = spawn_watchdog(&[child.id()], &self.dir);
        self.child = Some(child);
        wait_for_ping(self.port, Duration::from_secs(10));
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A stopped process ignores SIGKILL until continued on some systems; be sure.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
