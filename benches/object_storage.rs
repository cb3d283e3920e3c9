//! Checkpoints on object storage measured against a local directory, in one run
//! (`cargo bench --bench object_storage`), with the S3-compatible test server (moto, on
//! loopback: an in-memory Python server, far slower than S3 itself; the figures show Weir's
//! protocol costs against a local directory, not what S3 would do).
//!
//! 1. **Checkpoints**: a keyed job keeps the latest 1 KiB value of each of 100 k keys
//!    (~100 MB of RocksDB state), 1 s checkpoints, once with checkpoints in a local directory
//!    and once on S3: the median checkpoint duration and asynchronous part, and the upload
//!    throughput (bytes stored anew / time of the asynchronous parts).
//! 2. **Restore**: the same job started again on its final checkpoint, at ~100 MB and ~1 GB
//!    (1 M keys; `WEIR_BENCH_LARGE=0` skips it): from S3 (every file downloaded and verified)
//!    and from the local directory (files linked: what a cluster worker's local recovery does
//!    with its own copy). Restore = the attempt's start until every subtask runs.
//! 3. **Replication lag** at 1 s checkpoints: the 100 MB job with checkpoints in a local
//!    directory replicated asynchronously to S3; the replica's lag sampled every 100 ms.

#[path = "common/restore_time.rs"]
mod restore_time;

use std::sync::Arc;
use std::time::Duration;
use weir::engine::checkpoint::replication::{ReplicationConfig, ReplicationMode};
use weir::engine::checkpoint::{CheckpointConfig, CheckpointStorage, LocalDirStorage};
use weir::engine::source::generator::mix;
use weir::object_storage::testing::S3Server;
use weir::prelude::*;
use weir_examples::latest_value::LatestValue;

const VALUE_BYTES: usize = 1_024;

/// The job over `keys` keys (each written once, then a tenth of them again), checkpointing
/// into `config`.
fn job(keys: u64, config: CheckpointConfig, state: &std::path::Path) -> Pipeline {
    let p = Pipeline::new("object-storage-bench")
        .parallelism(2)
        .state_dir(state)
        .checkpointing(config)
        .checkpoint_interval(Duration::from_secs(1));
    p.source(
        "values",
        GeneratorSource::new(move |i| {
            let k = i % keys;
            // Incompressible: each value is a run of pseudo-random words.
            let v: Vec<u8> = (0..VALUE_BYTES / 8)
                .flat_map(|w| mix(i, w as u64).to_le_bytes())
                .collect();
            (k, v)
        })
        .bounded(keys + keys / 10)
        .splits(2),
    )
    .key_by("by-key", |(k, _): &(u64, Vec<u8>)| *k)
    .process("latest", LatestValue)
    .sink("out", DiscardSink::new());
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct CheckpointFigures {
    total_ms: f64,
    async_ms: f64,
    mb_per_s: f64,
    state_mb: f64,
    count: usize,
}

/// Runs the job to its end into `storage`; the checkpoint figures.
fn build_state(keys: u64, storage: Arc<dyn CheckpointStorage>, state: &std::path::Path) -> CheckpointFigures {
    let report = job(keys, CheckpointConfig::with_storage(storage), state)
        .run()
        .expect("the job");
    let c = &report.checkpoints;
    let uploaded: u64 = c.iter().map(|s| s.uploaded_bytes).sum();
    let async_s: f64 = c.iter().map(|s| s.async_ms).sum::<f64>() / 1e3;
    CheckpointFigures {
        total_ms: median(c.iter().map(|s| s.total_ms).collect()),
        async_ms: median(c.iter().map(|s| s.async_ms).collect()),
        mb_per_s: uploaded as f64 / 1e6 / async_s.max(1e-9),
        state_mb: c.last().map_or(0.0, |s| s.state_bytes as f64 / 1e6),
        count: c.len(),
    }
}

/// Starts the job on its final checkpoint in `storage` with a new state directory: the time
/// from the attempt's start until every subtask runs on restored state.
fn restore_ms(keys: u64, storage: Arc<dyn CheckpointStorage>, state: &std::path::Path) -> f64 {
    let _ = std::fs::remove_dir_all(state);
    restore_time::restore_ms(
        job(keys, CheckpointConfig::with_storage(storage), state)
            .start()
            .expect("start"),
        Duration::from_secs(600),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks: nothing to list
    }
    let server = S3Server::start().expect("the S3 test server (bash .ci/setup installs moto)");
    let bucket = server.create_bucket("bench").unwrap();
    let work = tempfile::tempdir().unwrap();
    let s3 = |prefix: &str| server.storage(&bucket, prefix).unwrap();
    let local = |name: &str| -> Arc<dyn CheckpointStorage> { Arc::new(LocalDirStorage::new(work.path().join(name))) };

    println!("object storage benchmark: S3-compatible server = moto on loopback (in memory)");
    println!("\n1. checkpoints of ~100 MB of RocksDB state, 1 s interval");
    let keys = 100_000;
    let on_local = build_state(keys, local("chk-local"), &work.path().join("state-local"));
    let on_s3 = build_state(keys, s3("small"), &work.path().join("state-s3"));
    println!("  storage          checkpoints  state MB  p50 total ms  p50 async ms  upload MB/s");
    for (name, f) in [("local directory", &on_local), ("S3 (moto)", &on_s3)] {
        println!(
            "  {name:<16} {:>11}  {:>8.0}  {:>12.0}  {:>12.0}  {:>11.0}",
            f.count, f.state_mb, f.total_ms, f.async_ms, f.mb_per_s
        );
    }
    println!(
        "  S3 / local: checkpoint duration {:.2}x, upload throughput {:.2}x",
        on_s3.total_ms / on_local.total_ms,
        on_s3.mb_per_s / on_local.mb_per_s
    );

    println!("\n2. restore (attempt start → every subtask running on restored state)");
    let mut sizes = vec![(keys, "small", "chk-local", on_local.state_mb)];
    if std::env::var("WEIR_BENCH_LARGE").as_deref() != Ok("0") {
        let big = 1_000_000;
        let f_local = build_state(big, local("chk-local-1g"), &work.path().join("state-local-1g"));
        build_state(big, s3("large"), &work.path().join("state-s3-1g"));
        sizes.push((big, "large", "chk-local-1g", f_local.state_mb));
    }
    println!("  state MB  from S3 (download + verify) ms  from a local directory (links) ms  ratio");
    for (k, prefix, dir, mb) in sizes {
        let from_s3 = median(
            (0..3)
                .map(|_| restore_ms(k, s3(prefix), &work.path().join("restore-s3")))
                .collect(),
        );
        let from_local = median(
            (0..3)
                .map(|_| restore_ms(k, local(dir), &work.path().join("restore-local")))
                .collect(),
        );
        println!(
            "  {mb:>8.0}  {from_s3:>31.0}  {from_local:>33.0}  {:>5.1}",
            from_s3 / from_local
        );
    }

    println!("\n3. replication lag, 1 s checkpoints, local directory → S3 (asynchronous)");
    let mut config = CheckpointConfig::with_storage(local("chk-replicated"));
    config.replication = Some(ReplicationConfig::new(s3("replica")).mode(ReplicationMode::Async));
    let handle = job(keys * 3, config, &work.path().join("state-replicated"))
        .start()
        .unwrap();
    let (mut seconds, mut behind) = (Vec::new(), Vec::new());
    while !handle.is_finished() {
        if let Some(r) = handle.progress().replication {
            if r.replicated.is_some() {
                seconds.push(r.seconds_behind());
                behind.push(r.checkpoints_behind as f64);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = handle.join().unwrap();
    let status = report.replication.unwrap();
    println!(
        "  {} checkpoints, {} replicated ({:.0} MB copied, last copy {:.0} ms); lag: median {:.2} s / {} checkpoint(s), max {:.2} s / {} checkpoint(s)",
        report.checkpoints.len(),
        status.copied,
        status.bytes_copied as f64 / 1e6,
        status.last_copy_ms,
        median(seconds.clone()),
        median(behind.clone()),
        seconds.iter().cloned().fold(0.0, f64::max),
        behind.iter().cloned().fold(0.0, f64::max)
    );
}
