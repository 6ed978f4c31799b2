//! A loopback TCP proxy in front of a real server that a test can stall or cut, to reproduce a
//! hung or dying store.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// The `host:port` part of a server URL (after any `user@`).
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// The address of the server `url` names.
pub fn upstream_of(url: &str) -> SocketAddr {
    std::net::ToSocketAddrs::to_socket_addrs(authority(url))
        .expect("a resolvable server address")
        .next()
        .expect("an address")
}

/// `url` with its server replaced by `addr` (a proxy in front of it).
pub fn through(url: &str, addr: SocketAddr) -> String {
    url.replacen(authority(url), &addr.to_string(), 1)
}

/// The proxy; dropping it stops accepting and closes every connection.
pub struct FaultProxy {
    pub addr: SocketAddr,
    stalled: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let s = stalled.clone();
        let cut_rx = cut.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, s.clone(), cut_rx.clone()));
                tokio::spawn(pump(sr, cw, s.clone(), cut_rx.clone()));
            }
        });
        Self {
            addr,
            stalled,
            cut,
            task,
        }
    }

    /// Stops forwarding bytes (connections stay open): the server looks hung.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Forwards bytes again.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Closes every open connection (new ones are still accepted): the server looks restarted.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
    mut cut: watch::Receiver<u64>,
) {
    let start = *cut.borrow();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = cut.wait_for(|v| *v != start) => return,
        };
        while stalled.load(Ordering::SeqCst) {
            if *cut.borrow() != start {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
