//! The cluster runtime measured against one process, in one run (`cargo bench --bench cluster`):
//!
//! 1. **Throughput**: the keyed running sum (generator → key_by → ValueState sum → discarding
//!    sink) at parallelism 2 with RocksDB and 1 s checkpoints, in one process and on a master
//!    plus 2 worker processes (the local launcher), alternating, `WEIR_BENCH_RUNS` times each
//!    (default 3): the median events/s of each, their ratio, and the median checkpoint
//!    duration (trigger → metadata durable).
//! 2. **RTO at ~100 MB of keyed state**: the same shape with 100-byte incompressible values
//!    over 560k keys on 2 workers; once a checkpoint holds ~100 MB, `kill -9` of a worker, then
//!    of the master: the time from the signal until every subtask runs again on restored state
//!    (detection, cancellation, restart and restore included), as the launcher sees it.
//!
//! Every job runs in a child process of this benchmark (this executable with
//! `WEIR_BENCH_JOB` set), so that in-process and cluster runs start alike; a cluster run's
//! child is the launcher, whose master and workers are this executable again.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weir::engine::source::generator::mix;
use weir::prelude::*;
use weir_examples::latest_value::LatestValue;
use weir_examples::running_sum::RunningSum;

const THROUGHPUT_EVENTS: u64 = 3_000_000;
const STATE_KEYS: u64 = 560_000;
const VALUE_BYTES: usize = 100;

/// What a job's child process prints on its last line.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    wall_ms: f64,
    events: u64,
    checkpoint_ms: Vec<f64>,
    state_bytes: u64,
    worker_kill_rto_ms: Option<f64>,
    master_kill_rto_ms: Option<f64>,
}

fn pipeline(name: &str, dir: &Path) -> Pipeline {
    Pipeline::new(name)
        .parallelism(2)
        .state_dir(dir.join("state"))
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_secs(1))
}

fn throughput_job(dir: &Path) -> Outcome {
    let p = pipeline("running-sum", dir);
    p.source(
        "gen",
        GeneratorSource::new(|i| (i % 100_000, i))
            .bounded(THROUGHPUT_EVENTS)
            .splits(2),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .process("sum", RunningSum)
    .sink("discard", DiscardSink::new());
    let started = Instant::now();
    let report = p.run().expect("the running sum");
    Outcome {
        wall_ms: started.elapsed().as_secs_f64() * 1e3,
        events: THROUGHPUT_EVENTS,
        checkpoint_ms: report.checkpoints.iter().map(|c| c.total_ms).collect(),
        state_bytes: report.checkpoints.iter().map(|c| c.state_bytes).max().unwrap_or(0),
        worker_kill_rto_ms: None,
        master_kill_rto_ms: None,
    }
}

/// Kills `pid` with `signal`.
fn signal(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "kill {signal} {pid} failed");
}

/// Waits until the job runs again after a restart beyond `restarts`; the time since `from`.
fn await_recovery(handle: &JobHandle, restarts: u32, from: Instant) -> f64 {
    loop {
        let p = handle.progress();
        if p.running && p.restarts > restarts {
            return from.elapsed().as_secs_f64() * 1e3;
        }
        assert!(from.elapsed() < Duration::from_secs(120), "no recovery within 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn rto_job(dir: &Path) -> Outcome {
    let p = pipeline("state-100mb", dir);
    p.source(
        "gen",
        GeneratorSource::new(|i| {
            let bytes: Vec<u8> = (0..VALUE_BYTES as u64 / 8)
                .flat_map(|j| mix(i, j).to_le_bytes())
                .chain([0u8; VALUE_BYTES % 8])
                .collect();
            (i % STATE_KEYS, bytes)
        })
        .splits(2),
    )
    .key_by("by-key", |(k, _): &(u64, Vec<u8>)| *k)
    .process("latest", LatestValue)
    .sink("discard", DiscardSink::new());
    let handle = p.start().expect("starting the state job");
    let started = Instant::now();
    // ~100 MB: every key written, and a checkpoint taken after that.
    let checkpoints = dir.join("checkpoints");
    while handle.progress().source_records < 2 * STATE_KEYS || latest_state_bytes(&checkpoints) < 90_000_000 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the state did not reach 100 MB"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let state_bytes = latest_state_bytes(&checkpoints);
    let pids = weir::engine::cluster::ClusterPids::read(&dir.join("pids.json")).expect("the cluster's processes");
    let before = handle.progress().restarts;
    let at = Instant::now();
    signal("-KILL", pids.workers[&0]);
    let worker_kill = await_recovery(&handle, before, at);
    std::thread::sleep(Duration::from_secs(3));
    let pids = weir::engine::cluster::ClusterPids::read(&dir.join("pids.json")).expect("the cluster's processes");
    let before = handle.progress().restarts;
    let at = Instant::now();
    signal("-KILL", pids.master);
    let master_kill = await_recovery(&handle, before, at);
    handle.cancel();
    let _ = handle.join();
    Outcome {
        wall_ms: started.elapsed().as_secs_f64() * 1e3,
        events: 0,
        checkpoint_ms: Vec::new(),
        state_bytes,
        worker_kill_rto_ms: Some(worker_kill),
        master_kill_rto_ms: Some(master_kill),
    }
}

/// The state size of the newest checkpoint whose metadata can be read.
fn latest_state_bytes(checkpoints: &Path) -> u64 {
    let storage = weir::engine::checkpoint::LocalDirStorage::new(checkpoints);
    let mut ids: Vec<u64> = std::fs::read_dir(checkpoints)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids.iter()
        .rev()
        .find_map(|&id| weir::engine::checkpoint::read_metadata(&storage, CheckpointId::new(id)).ok())
        .map_or(0, |m| m.stats.state_bytes)
}

/// Runs `job` in a child process of this benchmark, on `workers` worker processes or in one.
fn run_child(job: &str, workers: Option<u32>) -> Outcome {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut c = Command::new(std::env::current_exe().expect("this executable"));
    c.env("WEIR_BENCH_JOB", job)
        .env("WEIR_BENCH_DIR", dir.path())
        .env_remove("WEIR_ROLE")
        .env_remove("WEIR_WORKERS");
    if let Some(n) = workers {
        c.env("WEIR_WORKERS", n.to_string())
            .env("WEIR_SLOTS", "1")
            .env("WEIR_HEARTBEAT_MS", "100")
            .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000")
            .env(weir::engine::cluster::PIDS_ENV, dir.path().join("pids.json"));
    }
    let out = c.output().expect("running a benchmark job");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "benchmark job {job} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("the job's outcome");
    serde_json::from_str(last).expect("the job's outcome")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    if let Ok(job) = std::env::var("WEIR_BENCH_JOB") {
        let dir = PathBuf::from(std::env::var_os("WEIR_BENCH_DIR").expect("WEIR_BENCH_DIR"));
        let outcome = match job.as_str() {
            "throughput" => throughput_job(&dir),
            "rto" => rto_job(&dir),
            other => panic!("no benchmark job {other}"),
        };
        // Only the process that ran the job reaches this line (workers and a launched master
        // end inside `run`).
        println!("{}", serde_json::to_string(&outcome).expect("an outcome"));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("WEIR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("cluster: keyed running sum, parallelism 2, RocksDB, 1 s checkpoints, {THROUGHPUT_EVENTS} events; {runs} runs each, alternating");
    let (mut local, mut cluster, mut local_ck, mut cluster_ck) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let a = run_child("throughput", None);
        local.push(a.events as f64 / (a.wall_ms / 1e3));
        local_ck.extend(a.checkpoint_ms);
        let b = run_child("throughput", Some(2));
        cluster.push(b.events as f64 / (b.wall_ms / 1e3));
        cluster_ck.extend(b.checkpoint_ms);
    }
    let (l, c) = (median(local), median(cluster));
    println!(
        "  one process:            median {l:>12.0} events/s, checkpoint p50 {:.1} ms",
        median(local_ck)
    );
    println!(
        "  master + 2 workers:     median {c:>12.0} events/s, checkpoint p50 {:.1} ms",
        median(cluster_ck)
    );
    println!("  ratio cluster / one process: {:.2}", c / l);
    println!("rto: ~100 MB of keyed state (560k keys x 100 B) on a master and 2 workers, heartbeat timeout 1 s");
    let r = run_child("rto", Some(2));
    println!("  state at the failures: {:.1} MB", r.state_bytes as f64 / 1e6);
    println!(
        "  kill -9 of a worker: RTO {:.0} ms (detection, cancellation, restart, restore)",
        r.worker_kill_rto_ms.unwrap_or(f64::NAN)
    );
    println!(
        "  kill -9 of the master: RTO {:.0} ms (the workers' heartbeat timeout, a new master, restore)",
        r.master_kill_rto_ms.unwrap_or(f64::NAN)
    );
}
