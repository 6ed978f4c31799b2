//! The demo in a real browser: headless Chromium (Debian's `chromium`) driven over WebDriver
//! (`chromium-driver`) against the demo binary, database strategy on a temporary SQLite file.
//!
//! Signs in through the HTML form at `http://localhost:<port>/`, reloads (the `__Host-keycard`
//! cookie persists), signs out; then signs in again and opens a page on another site
//! (`http://127.0.0.1:<port2>/`, a different host and so a different site) that auto-submits a
//! form POST to `/logout-all`: the demo answers 403 and the session still works.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` and fails (it does not skip) without
//! them; `.ci/run` installs both. The demo binary is built by `cargo test` (alone:
//! `cargo build --example demo`).
#![cfg(all(unix, feature = "sqlite", feature = "jwt"))]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::common::{
    browser_support::{CHROMIUM, ChromeDriver, Demo, Scratch, require_browser},
    demo_bin::tail,
};
use anyhow::{Context, Result, anyhow, bail, ensure};
use axum::{Router, response::Html, routing::get};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Bound on each wait for the page to reach an expected state.
const STEP: Duration = Duration::from_secs(20);
/// Bound on the whole browser scenario.
const WHOLE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_reload_sign_out_and_a_cross_site_form_cannot_log_out() {
    require_browser();
    // Dropped last: after the processes that use it.
    let scratch = Scratch::new("browser");
    let demo = Demo::start(scratch.path());
    let driver = ChromeDriver::start(scratch.path());
    let elsewhere = serve_cross_site_page(demo.port).await;

    let client = tokio::time::timeout(Duration::from_secs(60), connect(&driver))
        .await
        .map_err(|_| anyhow!("no WebDriver session within 60 s"))
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("{e:#}\nchromedriver log:\n{}", tail(&driver.log, 6000)));
    let outcome =
        tokio::time::timeout(WHOLE, scenario(&client, demo.port, &elsewhere, &demo.log)).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), client.close()).await;
    let failure = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("the browser scenario took longer than {WHOLE:?}"),
    };
    panic!(
        "{failure}\n--- demo stderr ({}):\n{}\n--- chromedriver log (tail):\n{}",
        demo.addr,
        tail(&demo.log, 4000),
        tail(&driver.log, 4000)
    );
}

/// A WebDriver session with headless Chromium on a fresh profile.
async fn connect(driver: &ChromeDriver) -> Result<Client> {
    let args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--user-data-dir={}", driver.profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": {"pageLoad": 20_000, "script": 10_000, "implicit": 0},
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    // Two rustls crypto providers are in this test's dependency graph (aws-lc-rs through
    // fantoccini, ring through reqwest): name the process default explicitly.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    ClientBuilder::rustls()
        .context("WebDriver client (loads the system's root certificates)")?
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .context("start a Chromium session through chromedriver")
}

/// The other site: `http://127.0.0.1:<port2>/` serves a page that auto-submits a form POST to
/// the demo's `/logout-all` on `http://localhost:<port>`. Returns the page's URL.
async fn serve_cross_site_page(demo_port: u16) -> String {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>elsewhere</title></head>\
         <body><p>An unrelated site.</p>\
         <form id=\"f\" method=\"post\" action=\"http://localhost:{demo_port}/logout-all\">\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\"></form>\
         <script>document.getElementById('f').submit();</script></body></html>"
    );
    let app = Router::new().route("/", get(move || async move { Html(page) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the cross-site server");
    let addr = listener.local_addr().expect("cross-site address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

async fn scenario(client: &Client, port: u16, elsewhere: &str, demo_log: &Path) -> Result<()> {
    let origin = format!("http://localhost:{port}");
    let root = format!("{origin}/");

    // 1. Anonymous: the login form.
    client.goto(&root).await.context("open the demo")?;
    wait_for_login_form(client).await?;

    // 2. Sign in through the form: the signed-in page names the subject.
    sign_in(client).await?;
    let text = body_text(client).await?;
    ensure!(
        text.contains("this session"),
        "the sessions table marks the current session:\n{text}"
    );
    let cookie = client
        .get_named_cookie("__Host-keycard")
        .await
        .context("Chromium kept no `__Host-keycard` cookie for http://localhost")?;
    ensure!(
        cookie.secure() == Some(true) && cookie.http_only() == Some(true),
        "cookie attributes: {cookie:?}"
    );
    ensure!(cookie.path() == Some("/"), "cookie path: {cookie:?}");
    eprintln!("session cookie as Chromium keeps it: {cookie:?}");

    // 3. Reload: the cookie persists, still signed in.
    client.refresh().await.context("reload")?;
    wait_for_text(client, "Signed in as alice").await?;

    // 4. Sign out with the page's button: back to the login form, cookie gone.
    click(client, "form[action='/logout'] button").await?;
    wait_for_login_form(client).await?;
    ensure!(
        client.get_named_cookie("__Host-keycard").await.is_err(),
        "the session cookie is cleared on sign-out"
    );

    // 5. Sign in again; note the session.
    sign_in(client).await?;
    let before = me(client, &origin).await?;

    // 6. Another site auto-submits a form POST to /logout-all: refused with 403.
    client
        .goto(elsewhere)
        .await
        .context("open the cross-site page")?;
    let target = format!("{origin}/logout-all");
    let landed = wait_until(client, "the cross-site form to reach the demo", || async {
        let url = client.current_url().await?;
        Ok(url.as_str().starts_with(&origin).then_some(url))
    })
    .await?;
    let status = navigation_status(client).await?;
    let text = body_text(client).await?;
    eprintln!("cross-site POST /logout-all: {status} at {landed}: {text:?}");
    ensure!(
        landed.as_str() == target && status == 403 && text.contains("csrf_rejected"),
        "a cross-site form POST to /logout-all must be refused with 403 `csrf_rejected`; the \
         browser ended at {landed} with status {status}: {text}"
    );
    let log = tail(demo_log, 100_000);
    ensure!(
        log.contains("csrf_rejected"),
        "the demo reports a csrf_rejected security event:\n{log}"
    );

    // 7. The session still works: the page, and /me with the same session.
    client.goto(&root).await.context("back to the demo")?;
    wait_for_text(client, "Signed in as alice").await?;
    let after = me(client, &origin).await?;
    ensure!(
        before["session_id"] == after["session_id"],
        "same session before and after: {before} / {after}"
    );

    // 8. The same form from the demo's own page is accepted: it was the site that mattered.
    client.goto(&root).await?;
    wait_for_text(client, "Signed in as alice").await?;
    click(client, "form[action='/logout-all'] button").await?;
    wait_for_login_form(client).await?;
    client.goto(&format!("{origin}/me")).await?;
    let status = navigation_status(client).await?;
    ensure!(status == 401, "/me after a same-site logout-all: {status}");
    Ok(())
}

async fn sign_in(client: &Client) -> Result<()> {
    let username = wait_for_login_form(client).await?;
    username.send_keys("alice").await?;
    client
        .find(Locator::Css("input[name='password']"))
        .await?
        .send_keys("wonderland")
        .await?;
    click(client, "form[action='/login'] button").await?;
    wait_for_text(client, "Signed in as alice").await?;
    let url = client.current_url().await?;
    ensure!(url.path() == "/", "the form login ends on `/`, not {url}");
    Ok(())
}

/// `GET /me` in the browser: 200 JSON for alice. Returns the JSON.
async fn me(client: &Client, origin: &str) -> Result<Value> {
    client.goto(&format!("{origin}/me")).await?;
    let status = navigation_status(client).await?;
    let text = body_text(client).await?;
    ensure!(status == 200, "/me answered {status}: {text}");
    let json: Value =
        serde_json::from_str(text.trim()).with_context(|| format!("/me is not JSON: {text}"))?;
    ensure!(json["subject"] == "alice", "/me: {json}");
    ensure!(json["session_id"].is_string(), "/me: {json}");
    Ok(json)
}

async fn click(client: &Client, css: &str) -> Result<()> {
    client
        .find(Locator::Css(css))
        .await
        .with_context(|| format!("find `{css}`"))?
        .click()
        .await
        .with_context(|| format!("click `{css}`"))
}

/// The HTTP status of the current document (Navigation Timing's `responseStatus`).
async fn navigation_status(client: &Client) -> Result<u64> {
    let value = client
        .execute(
            "const e = performance.getEntriesByType('navigation')[0]; \
             return e ? e.responseStatus : null;",
            vec![],
        )
        .await?;
    value
        .as_u64()
        .ok_or_else(|| anyhow!("no navigation status in this Chromium: {value}"))
}

async fn body_text(client: &Client) -> Result<String> {
    let value = client
        .execute(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .await?;
    Ok(value.as_str().unwrap_or_default().to_owned())
}

async fn wait_for_login_form(client: &Client) -> Result<fantoccini::elements::Element> {
    wait_until(client, "the login form", || async {
        let found = client
            .find_all(Locator::Css("form[action='/login'] input[name='username']"))
            .await?;
        let text = body_text(client).await?;
        Ok(found
            .into_iter()
            .next()
            .filter(|_| !text.contains("Signed in as")))
    })
    .await
}

/// Waits until the page text contains `needle`; returns the text.
async fn wait_for_text(client: &Client, needle: &str) -> Result<String> {
    wait_until(client, &format!("the text {needle:?}"), || async {
        let text = body_text(client).await?;
        Ok(text.contains(needle).then_some(text))
    })
    .await
}

/// Polls `probe` until it yields a value, for at most [`STEP`]; the error names what was awaited
/// and where the browser was.
async fn wait_until<T, F, Fut>(client: &Client, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + STEP;
    let mut last_error = None;
    loop {
        match tokio::time::timeout(STEP, probe()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => {}
            // A probe can race a navigation (stale element, no document yet): retry.
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => last_error = Some(anyhow!("a WebDriver call hung")),
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = tokio::time::timeout(Duration::from_secs(5), client.current_url()).await;
    let text = tokio::time::timeout(Duration::from_secs(5), body_text(client)).await;
    bail!(
        "timed out after {STEP:?} waiting for {what}; last error: {last_error:?}; \
         the browser is at {url:?} showing {text:?}"
    )
}
