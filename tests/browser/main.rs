//! The demo in a real browser (headless Chromium over WebDriver). Its own binary: it needs
//! Chromium and ChromeDriver, and fails (never skips) without them.

#[path = "../common/mod.rs"]
mod common;

mod browser;
