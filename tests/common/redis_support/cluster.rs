//! A 6-node Redis Cluster (3 primaries, 3 replicas) on free loopback ports, started with
//! `redis-server --cluster-enabled yes` and `redis-cli --cluster create`, torn down on drop (also
//! on panic) and by a watchdog when the test process exits.

use std::{
    path::PathBuf,
    process::{Child, Command},
    sync::{Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use super::server::{cli, scratch_dir, spawn_on_free_port, spawn_watchdog};

/// A running cluster. Dropping it kills every node.
pub struct Cluster {
    /// The nodes' ports.
    pub ports: Vec<u16>,
    nodes: Mutex<Vec<(u16, Child)>>,
    dir: PathBuf,
    watchdog: Mutex<Option<Child>>,
}

impl Cluster {
    /// Starts 6 nodes with `cluster-node-timeout` = `node_timeout_ms` and forms the cluster.
    pub fn start(node_timeout_ms: u32) -> Self {
        let dir = scratch_dir("cluster");
        let timeout = node_timeout_ms.to_string();
        let mut ports: Vec<u16> = Vec::new();
        let mut nodes = Vec::new();
        while nodes.len() < 6 {
            let (port, child) = spawn_on_free_port(&dir, &ports, |port| {
                let conf = dir.join(format!("nodes-{port}.conf"));
                vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    conf.to_string_lossy().into_owned(),
                    "--cluster-node-timeout".into(),
                    timeout.clone(),
                    "--cluster-replica-validity-factor".into(),
                    "0".into(),
                ]
            });
            ports.push(port);
            nodes.push((port, child));
        }
        let pids: Vec<u32> = nodes.iter().map(|(_, c)| c.id()).collect();
        let watchdog = spawn_watchdog(&pids, &dir);
        let cluster = Self {
            ports: ports.clone(),
            nodes: Mutex::new(nodes),
            dir,
            watchdog: Mutex::new(watchdog),
        };
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_healthy(Duration::from_secs(60));
        cluster
    }

    /// The cluster shared by every test of this binary, started on first use. Statics are never
    /// dropped, so its nodes are reaped by the watchdog when the test process exits.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| Cluster::start(2000))
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Ports of live nodes.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .lock()
            .expect("nodes lock")
            .iter()
            .map(|(p, _)| *p)
            .collect()
    }

    /// Waits until every live node reports `cluster_state:ok`, every primary has a connected
    /// replica and every replica's link is up.
    pub fn wait_until_healthy(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            if self.healthy() {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "cluster not healthy after {limit:?}: {}",
                cli(self.ports[0], &["CLUSTER", "NODES"])
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn healthy(&self) -> bool {
        self.live_ports().into_iter().all(|port| {
            let info = cli(port, &["CLUSTER", "INFO"]);
            if !info.contains("cluster_state:ok") {
                return false;
            }
            let repl = cli(port, &["INFO", "replication"]);
            if repl.contains("role:master") {
                repl.contains("connected_slaves:1")
            } else {
                repl.contains("master_link_status:up")
            }
        })
    }

    /// Waits until every live node reports `cluster_state:ok` (replicas may be missing).
    pub fn wait_until_ok(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            let ok = self
                .live_ports()
                .into_iter()
                .all(|p| cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The port of the primary serving `key`'s slot, as `CLUSTER NODES` on a live node says.
    /// Right after a failover a node's view may briefly show no primary for the slot, so this
    /// asks again for up to 15 s.
    pub fn primary_for(&self, key: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(port) = self.try_primary_for(key) {
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "no primary serves the slot of {key}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_primary_for(&self, key: &str) -> Option<u16> {
        let port = self.live_ports()[0];
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT");
        // `CLUSTER NODES` lines: id addr@bus flags master ping pong epoch state slots...
        for line in cli(port, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            for range in &fields[8..] {
                let (lo, hi) = match range.split_once('-') {
                    Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                    None => (range.parse::<u16>(), range.parse::<u16>()),
                };
                if let (Ok(lo), Ok(hi)) = (lo, hi)
                    && (lo..=hi).contains(&slot)
                {
                    let addr = fields[1].split('@').next().unwrap_or_default();
                    return Some(
                        addr.rsplit(':')
                            .next()
                            .and_then(|p| p.parse().ok())
                            .expect("node port"),
                    );
                }
            }
        }
        None
    }

    /// The node ID of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        cli(port, &["CLUSTER", "MYID"]).trim().to_owned()
    }

    /// The port of a live replica of the primary on `primary_port`, if it has one.
    pub fn replica_of(&self, primary_port: u16) -> Option<u16> {
        let id = self.node_id(primary_port);
        let live = self.live_ports();
        live.iter().copied().find(|&p| {
            p != primary_port
                && cli(p, &["INFO", "replication"]).contains("role:slave")
                && cli(p, &["CLUSTER", "NODES"]).lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[2].contains("myself") && f[3] == id
                })
        })
    }

    /// The process ID of the node on `port`.
    pub fn pid(&self, port: u16) -> u32 {
        self.nodes
            .lock()
            .expect("nodes lock")
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, c)| c.id())
            .expect("live node")
    }

    /// Kills the node on `port` (SIGKILL), as a crashed machine would disappear.
    pub fn kill_node(&self, port: u16) {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        if let Some(i) = nodes.iter().position(|(p, _)| *p == port) {
            let (_, mut child) = nodes.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(mut nodes) = self.nodes.lock() {
            for (_, child) in nodes.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            nodes.clear();
        }
        if let Ok(mut w) = self.watchdog.lock()
            && let Some(mut w) = w.take()
        {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
