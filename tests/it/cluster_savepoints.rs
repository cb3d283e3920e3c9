//! Savepoints on the cluster runtime: a local cluster (a launcher, a master process and three
//! worker processes) takes savepoints on request, stops with one, and starts from one, each
//! worker fetching its subtasks' state from the savepoint's storage.
//!
//! The job is `savepoints.rs`'s count-sensitive tally (a running count and sum per region, no
//! deduplication, RocksDB state): an event processed twice or lost changes the committed
//! output, which is compared with the sequential model. Each run is a child process (this test
//! binary, re-executed with the spec in `SPEC_ENV`): its launcher re-executes it again for the
//! master and the workers, and only the launcher gets past `start()`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use weir::engine::checkpoint::{read_metadata, CheckpointStorage, LocalDirStorage, Savepoint};
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::object_storage::testing::{env_for, object_storage_at, S3Server};
use weir::prelude::*;

use crate::common::within;
use crate::savepoints::{check_against_model, committed, copy_dir, verify_all, Job, EVENTS, FAST, SLOW};

const SPEC_ENV: &str = "WEIR_TEST_CLUSTER_SAVEPOINT_SPEC";
const CHILD: &str = "cluster_savepoints::cluster_savepoint_child";

/// One run of the job on a local cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Spec {
    dir: PathBuf,
    /// The checkpoint directory, below `dir`.
    checkpoints: String,
    /// The stateful step's name ("tally"; a changed job renames it).
    step: String,
    rate: f64,
    from_savepoint: Option<PathBuf>,
    allow_non_restored_state: bool,
    /// Read this many records (and complete a checkpoint) before asking for savepoints.
    after_records: u64,
    /// A savepoint while the job runs, into this location (a path or `s3://` URL).
    savepoint_into: Option<String>,
    /// Then a stop with savepoint into this location.
    stop_into: Option<String>,
    /// A fail point at which every master and worker process aborts, on its nth hit, the
    /// first time it starts.
    abort_at: Option<(String, u64)>,
    /// Every step's parallelism [default 2].
    parallelism: Option<usize>,
}

impl Spec {
    /// A run of the job with the stateful step `step` and its checkpoints in `dir/<checkpoints>`.
    fn of(dir: &Path, checkpoints: &str, step: &str, rate: f64) -> Self {
        Spec {
            dir: dir.to_path_buf(),
            checkpoints: checkpoints.into(),
            step: step.into(),
            rate,
            ..Spec::default()
        }
    }
}

/// What the launcher saw, written to `dir/outcome.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    savepoint: Option<Result<Savepoint, String>>,
    stopped: Option<Result<Savepoint, String>>,
    report: Result<JobReport, String>,
}

/// The child role: runs the job of `SPEC_ENV` on a local cluster; the launcher asks for the
/// savepoints and writes the [`Outcome`].
#[test]
fn cluster_savepoint_child() {
    let Some(spec) = crate::common::child_spec::<Spec>(SPEC_ENV) else {
        return; // not a child: nothing to do
    };
    // The master opens the savepoint locations the launcher forwards, s3:// ones included.
    weir::object_storage::install();
    let first_start = std::env::var_os("WEIR_ROLE").is_some()
        && std::env::var(weir::engine::cluster::INCARNATION_ENV).as_deref() == Ok("0");
    if let (Some((point, nth)), true) = (&spec.abort_at, first_start) {
        let point = fail::ALL.iter().copied().find(|p| p == point).expect("a fail point");
        FailPoints::process_wide().arm(point, *nth, FailAction::Abort);
    }
    let job = Job {
        step: Box::leak(spec.step.clone().into_boxed_str()),
        rate: spec.rate,
        parallelism: spec.parallelism.unwrap_or(2),
        from_savepoint: spec
            .from_savepoint
            .as_ref()
            .map(|d| SavepointRestore::dir(d).allow_non_restored_state(spec.allow_non_restored_state)),
        ..Job::new(&spec.dir, &spec.checkpoints)
    };
    let mut out = Outcome {
        savepoint: None,
        stopped: None,
        report: Err(String::new()),
    };
    // Workers and the master never return from here; the launcher does.
    match job.pipeline().start() {
        Err(e) => out.report = Err(e.to_string()),
        Ok(handle) => {
            if spec.savepoint_into.is_some() || spec.stop_into.is_some() {
                crate::common::wait_until("the job made progress", 60, || {
                    let p = handle.progress();
                    p.source_records >= spec.after_records && p.last_checkpoint.is_some()
                });
            }
            let target = |location: &str| weir::object_storage::open(location).unwrap();
            if let Some(location) = &spec.savepoint_into {
                out.savepoint = Some(handle.savepoint(target(location)).map_err(|e| e.to_string()));
            }
            if let Some(location) = &spec.stop_into {
                out.stopped = Some(handle.stop_with_savepoint(target(location)).map_err(|e| e.to_string()));
            }
            out.report = handle.join().map_err(|e| e.to_string());
        }
    }
    std::fs::write(spec.dir.join("outcome.json"), serde_json::to_vec(&out).unwrap()).unwrap();
}

/// Runs `spec` in a child process on a master and three workers; returns what its launcher saw.
fn run(spec: &Spec, env: &[(String, String)]) -> Outcome {
    let outcome = spec.dir.join("outcome.json");
    let _ = std::fs::remove_file(&outcome);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([CHILD, "--exact", "--nocapture", "--test-threads", "1"])
        .env(SPEC_ENV, serde_json::to_string(spec).unwrap())
        .env_remove("WEIR_ROLE")
        .env("WEIR_WORKERS", "3")
        .env("WEIR_SLOTS", "2")
        .env("WEIR_HEARTBEAT_MS", "100")
        .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("starting the child process");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let Ok(bytes) = std::fs::read(&outcome) else {
        panic!("the child wrote no outcome ({}):\n{stderr}", out.status);
    };
    serde_json::from_slice(&bytes).unwrap()
}

fn taken(result: &Option<Result<Savepoint, String>>, what: &str) -> Savepoint {
    match result {
        Some(Ok(sp)) => sp.clone(),
        other => panic!("{what}: {other:?}"),
    }
}

/// A savepoint while running (into S3, opened by the master process from its URL) and a stop
/// with savepoint (into a directory) on a cluster; the stop savepoint, moved elsewhere, is
/// refused by a changed job, then restores a cluster whose workers each abort once: the output
/// equals the model.
#[test]
fn a_cluster_takes_savepoints_and_resumes_from_one_on_workers_with_exact_output() {
    crate::common::trace_if_asked();
    within(420, || {
        let server = S3Server::start().unwrap();
        let bucket = server.create_bucket("savepoints").unwrap();
        let env = env_for(&server.endpoint());
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let stop_at = dir.join("savepoints/stop");
        let first = Spec {
            after_records: EVENTS / 4,
            savepoint_into: Some(format!("s3://{bucket}/running")),
            stop_into: Some(stop_at.display().to_string()),
            ..Spec::of(dir, "checkpoints-a", "tally", SLOW)
        };
        let out = run(&first, &env);
        let running = taken(&out.savepoint, "the savepoint while running");
        let stopped = taken(&out.stopped, "the stop with savepoint");
        let report = out.report.expect("the first run");
        assert_eq!(running.location, format!("s3://{bucket}/running"));
        assert!(!running.stopped_job && running.files > 0, "{running:?}");
        assert!(stopped.stopped_job && stopped.id > running.id, "{stopped:?}");
        assert_eq!(report.stopped_with_savepoint.as_ref(), Some(&stopped));
        let before = committed(dir).len() as u64;
        assert!((EVENTS / 4..EVENTS).contains(&before), "{before} events committed");
        // The savepoint on S3 is complete: every file it names is there and verifies.
        let on_s3 = object_storage_at(&server.endpoint(), &bucket, "running").unwrap();
        let meta = read_metadata(&on_s3, running.id).unwrap();
        assert!(meta.files().all(|f| !f.key.starts_with("shared/")));
        for f in meta.files() {
            on_s3.read_verified(f).unwrap();
        }

        // Relocated, with the original and the job's checkpoints gone.
        let moved = dir.join("moved/stop");
        copy_dir(&stop_at, &moved);
        std::fs::remove_dir_all(dir.join("savepoints")).unwrap();
        std::fs::remove_dir_all(dir.join("checkpoints-a")).unwrap();
        // A job without the stateful step is refused, and commits nothing.
        let changed = Spec {
            from_savepoint: Some(moved.clone()),
            ..Spec::of(dir, "checkpoints-b", "tally-v2", FAST)
        };
        let e = run(&changed, &env).report.unwrap_err();
        assert!(e.contains("\"tally\"") && e.contains("allow_non_restored_state"), "{e}");
        assert_eq!(committed(dir).len() as u64, before, "a refused start commits nothing");

        // Every worker process aborts once in the first attempt: the restore from the
        // savepoint (or from the run's first checkpoint) happens again.
        let resumed = Spec {
            from_savepoint: Some(moved.clone()),
            abort_at: Some((fail::PROCESS_RECORD.to_string(), 60)),
            ..Spec::of(dir, "checkpoints-c", "tally", FAST)
        };
        let report = run(&resumed, &env).report.expect("the resumed run");
        assert_eq!(report.restored_from, Some(stopped.id));
        assert_eq!(report.restored_from_savepoint, Some(moved.display().to_string()));
        check_against_model(dir);
        // The job's checkpoints do not need the savepoint.
        std::fs::remove_dir_all(&moved).unwrap();
        let storage = LocalDirStorage::new(dir.join("checkpoints-c"));
        assert!(!verify_all(&storage).is_empty());
    });
}

/// A changed job allowed to drop the removed step's state starts from the savepoint on the
/// cluster: sources and sink continue where the savepoint was, every event committed once.
#[test]
fn a_cluster_start_allowed_to_drop_a_removed_steps_state_commits_every_event_once() {
    crate::common::trace_if_asked();
    within(300, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let at = dir.join("savepoint");
        let first = Spec {
            after_records: EVENTS / 4,
            stop_into: Some(at.display().to_string()),
            ..Spec::of(dir, "checkpoints-a", "tally", SLOW)
        };
        let out = run(&first, &[]);
        let sp = taken(&out.stopped, "the stop with savepoint");
        out.report.expect("the first run");
        let changed = Spec {
            from_savepoint: Some(at.clone()),
            allow_non_restored_state: true,
            ..Spec::of(dir, "checkpoints-b", "tally-v2", FAST)
        };
        let report = run(&changed, &[]).report.expect("the changed run, allowed");
        assert_eq!(report.restored_from, Some(sp.id));
        let mut ids: Vec<u64> = committed(dir).iter().map(|t| t.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..EVENTS).collect::<Vec<_>>());
        assert_path_is_dir(&at);
    });
}

fn assert_path_is_dir(p: &Path) {
    assert!(
        p.is_dir(),
        "{} is gone: a job never deletes the savepoint it started from",
        p.display()
    );
}

/// Rescale on a cluster: stopped with a savepoint at parallelism 2, the job starts from it at
/// 3 (each worker fetching the old subtasks its new ones take, every worker process aborting
/// once), then is stopped again and restored from its own checkpoint at 1: the output equals
/// the model.
#[test]
fn a_cluster_rescales_from_a_savepoint_and_from_its_checkpoint_with_exact_output() {
    crate::common::trace_if_asked();
    within(420, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let at = dir.join("savepoint");
        let first = Spec {
            after_records: EVENTS / 5,
            stop_into: Some(at.display().to_string()),
            ..Spec::of(dir, "checkpoints-a", "tally", SLOW)
        };
        let sp = taken(&run(&first, &[]).stopped, "the stop with savepoint at parallelism 2");
        let wider = Spec {
            from_savepoint: Some(at.clone()),
            parallelism: Some(3),
            abort_at: Some((fail::PROCESS_RECORD.to_string(), 40)),
            after_records: EVENTS / 2,
            stop_into: Some(dir.join("savepoint-3").display().to_string()),
            ..Spec::of(dir, "checkpoints-b", "tally", SLOW)
        };
        let out = run(&wider, &[]);
        let second = taken(&out.stopped, "the stop with savepoint at parallelism 3");
        let report = out.report.expect("the run at parallelism 3");
        assert_eq!(report.restored_from, Some(sp.id));
        let before = committed(dir).len() as u64;
        assert!(before < EVENTS, "stopped midway: {before}");
        // At parallelism 1, from the job's own latest checkpoint (the stop's).
        let narrower = Spec {
            parallelism: Some(1),
            ..Spec::of(dir, "checkpoints-b", "tally", FAST)
        };
        let report = run(&narrower, &[]).report.expect("the run at parallelism 1");
        assert_eq!(report.restored_from, Some(second.id));
        check_against_model(dir);
    });
}
