//! The migration guide (`docs/migrating-from-tower-sessions-axum-login.md`) as a test: its
//! "before" app (tower-sessions + axum-login, [`before`]) and its "after" app (keycard,
//! [`after`]) are served on loopback ports and put through one HTTP script (a login form, a
//! protected route, per-session data, logout), which both must pass with the same transcript;
//! and the guide's code blocks must be these two files, word for word.

mod after;
mod before;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use crate::common::demo_bin::{self, RawResp};
use tokio::net::TcpListener;

const GUIDE: &str = include_str!("../../../docs/migrating-from-tower-sessions-axum-login.md");

// ---------------------------------------------------------------------------------------------
// Serving the two apps

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// The "before" app on a loopback port: its address and session cookie name.
async fn start_before() -> (String, &'static str) {
    let (l, addr) = listener().await;
    tokio::spawn(async move { axum::serve(l, before::app()).await });
    (addr.to_string(), "id")
}

/// The "after" app on a loopback port, over a fresh SQLite file.
async fn start_after() -> (String, &'static str) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keycard-guide");
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!(
        "sqlite://{}/app-{}-{}.db",
        dir.display(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let app = after::app(&url).await.expect("the after app starts");
    let (l, addr) = listener().await;
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr.to_string(), "keycard")
}

// ---------------------------------------------------------------------------------------------
// A client with a cookie jar

/// One browser-like client of one app: it keeps the cookies the app sets and sends them back.
struct Client {
    addr: String,
    session_cookie: &'static str,
    jar: BTreeMap<String, String>,
}

impl Client {
    fn new(addr: &str, session_cookie: &'static str) -> Self {
        Self {
            addr: addr.to_owned(),
            session_cookie,
            jar: BTreeMap::new(),
        }
    }

    /// The session cookie's value, if the client holds one.
    fn session(&self) -> Option<String> {
        self.jar.get(self.session_cookie).cloned()
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&str>) -> RawResp {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = vec![];
        if !cookies.is_empty() {
            headers.push(("Cookie", cookies.as_str()));
        }
        if form.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let r = demo_bin::exchange(
            &self.addr,
            method,
            path,
            &headers,
            form.unwrap_or(""),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        for line in r.head.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let mut parts = value.trim().split(';');
            let Some((k, v)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let removed = v.is_empty() || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if removed {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        r
    }

    /// `POST /login` as the login form sends it.
    async fn login(&mut self, password: &str) -> RawResp {
        let form = format!("username=alice&password={password}");
        self.send("POST", "/login", Some(&form)).await
    }
}

// ---------------------------------------------------------------------------------------------
// The script

/// Runs the script against the app at `addr` whose session cookie is `cookie`, asserting each
/// step, and returns its transcript: one line per request (method, path, status and, for a
/// success, the body).
async fn script(addr: &str, cookie: &'static str) -> Vec<String> {
    let mut transcript = Vec::new();
    let mut log = |step: &str, r: &RawResp| {
        let body = if r.status < 300 { r.body.as_str() } else { "" };
        transcript.push(format!("{step} -> {} {body}", r.status));
    };
    let mut a = Client::new(addr, cookie);
    let mut b = Client::new(addr, cookie);

    // The protected route without a login.
    let r = a.send("GET", "/me", None).await;
    assert_eq!(r.status, 401, "{}", r.head);
    log("GET /me (anonymous)", &r);

    // The login form: a wrong password sets no session; the right one does.
    let r = a.login("wrong").await;
    assert_eq!(r.status, 401);
    assert_eq!(a.session(), None, "no session for a failed login");
    log("POST /login (wrong password)", &r);
    let r = a.login("wonderland").await;
    assert_eq!(r.status, 204, "{}\n{}", r.head, r.body);
    let first = a.session().expect("login sets the session cookie");
    log("POST /login", &r);

    // Per-session data: a visit counter in the session.
    for n in 1..=2 {
        let r = a.send("GET", "/me", None).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, &*format!("alice, visit {n}"))
        );
        log("GET /me (A)", &r);
    }
    // A second session of the same user has data of its own.
    b.login("wonderland").await;
    let r = b.send("GET", "/me", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alice, visit 1"));
    log("GET /me (B)", &r);
    let r = a.send("GET", "/me", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alice, visit 3"));
    log("GET /me (A)", &r);

    // Logout ends the session: the cookie is dropped, and replaying it (a copied cookie) is 401.
    let r = a.send("POST", "/logout", None).await;
    assert_eq!(r.status, 204, "{}\n{}", r.head, r.body);
    assert_eq!(a.session(), None, "logout removes the session cookie");
    log("POST /logout (A)", &r);
    let mut replay = Client::new(addr, cookie);
    replay.jar.insert(cookie.to_owned(), first);
    let r = replay.send("GET", "/me", None).await;
    assert_eq!(
        r.status, 401,
        "a logged-out session cookie still works: {}",
        r.body
    );
    log("GET /me (A's old cookie)", &r);

    // The data went with the session; the other session is untouched.
    a.login("wonderland").await;
    let r = a.send("GET", "/me", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alice, visit 1"));
    log("GET /me (A, logged in again)", &r);
    let r = b.send("GET", "/me", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alice, visit 2"));
    log("GET /me (B)", &r);
    transcript
}

#[tokio::test]
async fn before_and_after_behave_the_same() {
    let (before_addr, before_cookie) = start_before().await;
    let (after_addr, after_cookie) = start_after().await;
    let before = script(&before_addr, before_cookie).await;
    let after = script(&after_addr, after_cookie).await;
    assert_eq!(before, after);
}

/// The guide's "CSRF is on": a cross-site form post with the session cookie goes through on the
/// "before" app and is refused (403) by keycard, which keeps the session.
#[tokio::test]
async fn a_cross_site_logout_is_refused_only_after() {
    for ((addr, cookie), expected) in [(start_before().await, 204), (start_after().await, 403)] {
        let mut c = Client::new(&addr, cookie);
        c.login("wonderland").await;
        let session = format!("{cookie}={}", c.session().expect("session"));
        let r = demo_bin::exchange(
            &addr,
            "POST",
            "/logout",
            &[
                ("Cookie", session.as_str()),
                ("Sec-Fetch-Site", "cross-site"),
                ("Origin", "https://evil.example"),
            ],
            "",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        assert_eq!(r.status, expected, "{cookie}: {}", r.head);
        let still = c.send("GET", "/me", None).await.status;
        assert_eq!(still, if expected == 403 { 200 } else { 401 }, "{cookie}");
    }
}

// ---------------------------------------------------------------------------------------------
// The guide shows these files

/// The file's text after its `//!` header (and the blank line that ends it).
fn code_of(file: &str) -> &str {
    let start = file
        .lines()
        .take_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| l.len() + 1)
        .sum::<usize>();
    &file[start..]
}

/// The `rust` code blocks of the guide, in order.
fn guide_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in GUIDE.lines() {
        match &mut current {
            None if line == "```rust" => current = Some(String::new()),
            Some(block) if line == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn the_guide_shows_the_tested_code() {
    let blocks = guide_blocks();
    assert_eq!(blocks.len(), 2, "the guide has a before and an after block");
    assert_eq!(
        blocks[0],
        code_of(include_str!("before.rs")),
        "the guide's before block is tests/http/guide/before.rs"
    );
    assert_eq!(
        blocks[1],
        code_of(include_str!("after.rs")),
        "the guide's after block is tests/http/guide/after.rs"
    );
}
