//! Rescale on restore measured against a plain restore of the same checkpoint, in one run
//! (`cargo bench --bench rescale`).
//!
//! A keyed job keeps the latest 1 KiB value of each of 1 M keys (~1 GB of RocksDB state;
//! `WEIR_BENCH_KEYS` sets another count) and runs to its end at parallelism 2, and once more at
//! 3, with checkpoints in a local directory. Each final checkpoint is then restored three times
//! at its own parallelism (plain: every subtask opens one snapshot, its files linked) and three
//! times at the other (2 → 3: each new subtask keeps every overlap of at least 16 MiB as a
//! segment of its store, its SST files hard-linked from the checkpoint and the other key
//! groups dropped with range deletes; 3 → 2 likewise). Restore = the attempt's start until every subtask runs on restored state; medians.

#[path = "common/restore_time.rs"]
mod restore_time;

use std::sync::Arc;
use std::time::Duration;
use weir::engine::checkpoint::{CheckpointConfig, CheckpointStorage, LocalDirStorage, RestoreMode};
use weir::engine::source::generator::mix;
use weir::prelude::*;
use weir_examples::latest_value::LatestValue;

const VALUE_BYTES: usize = 1_024;

/// The job over `keys` keys at `parallelism`, checkpointing into `storage` (restoring
/// `restore` when given).
fn job(
    keys: u64,
    parallelism: usize,
    storage: Arc<dyn CheckpointStorage>,
    restore: Option<CheckpointId>,
    state: &std::path::Path,
) -> Pipeline {
    let mut config = CheckpointConfig::with_storage(storage);
    if let Some(id) = restore {
        config.restore = RestoreMode::Checkpoint(id);
    }
    let p = Pipeline::new("rescale-bench")
        .parallelism(parallelism)
        .state_dir(state)
        .checkpointing(config)
        .checkpoint_interval(Duration::from_secs(5));
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
        .bounded(keys)
        .splits(6),
    )
    .key_by("by-key", |(k, _): &(u64, Vec<u8>)| *k)
    .process("latest", LatestValue)
    .sink("out", DiscardSink::new());
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the job to its end at `parallelism`; its final checkpoint and state size in MB.
fn build(
    keys: u64,
    parallelism: usize,
    storage: Arc<dyn CheckpointStorage>,
    state: &std::path::Path,
) -> (CheckpointId, f64) {
    let report = job(keys, parallelism, storage, None, state).run().expect("the job");
    let last = report.checkpoints.last().expect("a final checkpoint");
    (last.id, last.state_bytes as f64 / 1e6)
}

/// Restores checkpoint `id` at `parallelism` with a new state directory: the time from the
/// attempt's start until every subtask runs on restored state.
fn restore_ms(
    keys: u64,
    parallelism: usize,
    storage: Arc<dyn CheckpointStorage>,
    id: CheckpointId,
    state: &std::path::Path,
) -> f64 {
    let _ = std::fs::remove_dir_all(state);
    restore_time::restore_ms(
        job(keys, parallelism, storage, Some(id), state).start().expect("start"),
        Duration::from_secs(900),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks: nothing to list
    }
    let keys: u64 = std::env::var("WEIR_BENCH_KEYS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1_000_000);
    let work = tempfile::tempdir().unwrap();
    let local = |name: &str| -> Arc<dyn CheckpointStorage> { Arc::new(LocalDirStorage::new(work.path().join(name))) };
    println!("rescale benchmark: {keys} keys × {VALUE_BYTES} B of RocksDB state, checkpoints in a local directory");
    println!("  from  to  state MB  restore ms (median of 3)  vs plain restore of the same checkpoint");
    for (from, to) in [(2usize, 3usize), (3, 2)] {
        let dir = format!("chk-{from}");
        let (id, mb) = build(keys, from, local(&dir), &work.path().join(format!("state-{from}")));
        let timed = |p: usize| -> f64 {
            median(
                (0..3)
                    .map(|_| restore_ms(keys, p, local(&dir), id, &work.path().join("restore")))
                    .collect(),
            )
        };
        let plain = timed(from);
        let rescaled = timed(to);
        println!(
            "  {from:>4}  {to:>2}  {mb:>8.0}  {rescaled:>24.0}  {:.2}x (plain {plain:.0} ms)",
            rescaled / plain
        );
    }
}
