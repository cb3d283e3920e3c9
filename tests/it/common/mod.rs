//! Helpers shared by the integration tests.
#![allow(dead_code)] // not every helper is used by every build of the tests

pub mod threshold_rules;

use std::sync::mpsc;
use std::time::Duration;
use weir::prelude::*;

/// Which state backend a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    Rocks,
}

/// Every backend: stateful tests run on each.
pub const BACKENDS: [Backend; 2] = [Backend::Memory, Backend::Rocks];

/// A pipeline keeping keyed state in `backend` (RocksDB under `dir`).
pub fn pipeline(name: &str, backend: Backend, dir: &tempfile::TempDir) -> Pipeline {
    let p = Pipeline::new(name);
    match backend {
        Backend::Memory => p.state_backend(MemoryBackend::new()),
        Backend::Rocks => p.state_dir(dir.path().join("state")),
    }
}

/// `v`, sorted.
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Runs `f` on another thread and fails the test if it does not return within `secs`.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not return within {secs} s"))
}

/// The spec of a child process (this test binary re-executed with `env` set to the spec's
/// JSON), with Weir's warnings sent to stderr (the parent shows them when the child fails);
/// `None` in a process that is not such a child.
pub fn child_spec<T: serde::de::DeserializeOwned>(env: &str) -> Option<T> {
    let spec = std::env::var(env).ok()?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    Some(serde_json::from_str(&spec).unwrap_or_else(|e| panic!("{env} is not a child's spec: {e}")))
}

/// Sends Weir's tracing events to stderr when `RUST_LOG` is set (for debugging a test).
pub fn trace_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The `weir` command (package `weir-cli`), built for this test profile on first use: it lives
/// in its own package, whose binary the tests of this one cannot depend on.
pub fn weir_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // This test binary is target/<profile>/deps/it-<hash>.
            let exe = std::env::current_exe().expect("the test binary's path");
            let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
            let target = profile_dir.parent().expect("the target directory");
            let mut build = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            build
                .args(["build", "--quiet", "-p", "weir-cli", "--bin", "weir"])
                .env("CARGO_TARGET_DIR", target)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build.status().expect("running cargo to build the weir command");
            assert!(status.success(), "building the weir command failed: {status:?}");
            profile_dir.join("weir")
        })
        .clone()
}

/// Polls `done` every 10 ms until it holds; fails the test naming `what` after `secs` seconds
/// (generous: the machine running the tests is shared and loaded).
pub fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
