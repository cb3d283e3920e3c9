//! Graceful stop: SIGTERM to a running job's process stops the job at a final checkpoint whose
//! output the sinks commit, then the process exits 0; a later run restores that checkpoint and
//! finishes with output equal to the sequential model.
//!
//! The job is `savepoints.rs`'s count-sensitive tally (no deduplication: an event processed
//! twice or lost changes the committed output). It runs in a child process (this test binary,
//! re-executed with the spec in `SPEC_ENV`) that installs
//! [`stop_on_termination`](weir::engine::runtime::stop_on_termination); on a cluster the child
//! is the launcher, which relays the stop to its master process.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir::engine::checkpoint::{read_metadata, LocalDirStorage};
use weir::prelude::*;

use crate::common::within;
use crate::savepoints::{check_against_model, committed, Job, EVENTS, FAST, SLOW};

const SPEC_ENV: &str = "WEIR_TEST_GRACEFUL_STOP_SPEC";
const CHILD: &str = "graceful_stop::graceful_stop_child";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spec {
    dir: PathBuf,
    /// Run on a master and this many worker processes.
    workers: Option<u32>,
}

/// The child role: runs the job, stops it on SIGTERM, writes its report to `dir/report.json`
/// and a `dir/running` marker once it has read a quarter of the input and checkpointed.
#[test]
fn graceful_stop_child() {
    let Some(spec) = crate::common::child_spec::<Spec>(SPEC_ENV) else {
        return; // not a child: nothing to do
    };
    let job = Job {
        rate: SLOW,
        ..Job::new(&spec.dir, "checkpoints")
    };
    // Workers and the master never return from here; the launcher (or the one process) does.
    let handle = job.start();
    weir::engine::runtime::stop_on_termination(&handle, Duration::from_secs(60)).unwrap();
    crate::common::wait_until("the job made progress", 60, || {
        let p = handle.progress();
        p.source_records >= EVENTS / 4 && p.last_checkpoint.is_some()
    });
    std::fs::write(spec.dir.join("running"), b"").unwrap();
    let report = handle.join().unwrap();
    std::fs::write(spec.dir.join("report.json"), serde_json::to_vec(&report).unwrap()).unwrap();
}

/// Runs the child until it reads a quarter of the input, sends it SIGTERM, and returns its
/// report once it exited 0.
fn run_and_terminate(spec: &Spec) -> JobReport {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([CHILD, "--exact", "--nocapture", "--test-threads", "1"])
        .env(SPEC_ENV, serde_json::to_string(spec).unwrap())
        .env_remove("WEIR_ROLE")
        .env_remove("WEIR_WORKERS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(n) = spec.workers {
        c.env("WEIR_WORKERS", n.to_string())
            .env("WEIR_SLOTS", "2")
            .env("WEIR_HEARTBEAT_MS", "100")
            .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000");
    }
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !spec.dir.join("running").exists() {
        assert!(Instant::now() < deadline, "the job never got going");
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the stopped job's process must exit 0 ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&std::fs::read(spec.dir.join("report.json")).unwrap()).unwrap()
}

/// The stopped run committed exactly what its final checkpoint read, and a new run from there
/// commits the rest: the output equals the model.
fn stop_and_resume(dir: &Path, workers: Option<u32>) {
    let report = run_and_terminate(&Spec {
        dir: dir.to_path_buf(),
        workers,
    });
    let id = report.stopped_at.expect("the job stopped at a final checkpoint");
    assert!(!report.cancelled, "stopped, not cancelled");
    let storage = LocalDirStorage::new(dir.join("checkpoints"));
    let read = read_metadata(&storage, id).unwrap().stats.source_records;
    let got = committed(dir);
    let mut ids: Vec<u64> = got.iter().map(|t| t.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "an event committed twice");
    assert_eq!(
        got.len() as u64,
        read,
        "the output is exactly what the final checkpoint read"
    );
    assert!((EVENTS / 4..EVENTS).contains(&read), "stopped midway: {read}");
    let resumed = Job {
        rate: FAST,
        ..Job::new(dir, "checkpoints")
    };
    let report = resumed.start().join().unwrap();
    assert_eq!(
        report.restored_from,
        Some(id),
        "the next run continues from the final checkpoint"
    );
    check_against_model(dir);
}

#[test]
fn sigterm_stops_a_job_at_a_final_committed_checkpoint_and_the_next_run_continues_from_it() {
    crate::common::trace_if_asked();
    within(300, || {
        let d = tempfile::tempdir().unwrap();
        stop_and_resume(d.path(), None);
    });
}

#[test]
fn sigterm_to_a_local_clusters_launcher_stops_the_job_on_its_workers_the_same_way() {
    crate::common::trace_if_asked();
    within(300, || {
        let d = tempfile::tempdir().unwrap();
        stop_and_resume(d.path(), Some(3));
    });
}
