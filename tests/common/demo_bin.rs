//! The demo binary for process-level tests.
//!
//! `cargo test` builds the examples (with the same features as the tests) before running any
//! test, so the binary is fresh there. Running one test target alone (`cargo test --test X`)
//! does not build examples: build it first with `cargo build --example demo` and the same
//! features. A missing binary fails the test; it never skips.

use std::{
    path::{Path, PathBuf},
    process::Command,
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
    cmd.current_dir(dir);
    for var in [
        "KEYCARD_DEMO_ADDR",
        "KEYCARD_CONFIG",
        "KEYCARD_STRATEGY",
        "DATABASE_URL",
        "REDIS_URL",
        "REDIS_CLUSTER_URLS",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
