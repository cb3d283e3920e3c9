//! Checkpoint cost on a keyed running sum with large RocksDB state.
//!
//! Loads `WEIR_BENCH_STATE_MB` (default 256) of keyed state (1 KiB incompressible value per
//! key), then updates random keys for `WEIR_BENCH_UPDATES` events (default 1,000,000) while
//! measuring throughput, once with checkpoints every second and once with none (only commit
//! barriers). Prints the update-phase throughput of both, the overhead, and every
//! checkpoint's synchronous and asynchronous durations, state size and uploaded bytes.
//!
//! `cargo bench --bench checkpoint_overhead` (set WEIR_BENCH_STATE_MB=1024 for ~1 GB;
//! WEIR_BENCH_WRITE_BUFFER_MB sets RocksDB's memtable size, default 16 like the backend).

use std::time::{Duration, Instant};
use weir::engine::source::generator::mix;
use weir::prelude::*;

const VALUE: usize = 1024;

#[derive(Clone)]
struct RunningSum;

impl KeyedProcess<u64, (u64, u64)> for RunningSum {
    type Out = u64;
    fn process(&mut self, (_k, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        let mut st = ctx.value_state::<(u64, Vec<u8>)>("sum");
        let sum = match st.get()? {
            Some((s, _)) => s + v,
            None => v,
        };
        // The padding keeps every key's state at ~1 KiB and incompressible.
        let pad: Vec<u8> = (0..VALUE as u64 / 8).flat_map(|i| mix(sum, i).to_le_bytes()).collect();
        st.set(&(sum, pad))?;
        ctx.emit(sum);
        Ok(())
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Outcome {
    update_rate: f64,
    report: JobReport,
}

fn run(keys: u64, updates: u64, checkpoints: bool) -> Outcome {
    let dir = tempfile::tempdir_in(std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let backend = RocksDbBackend::new(dir.path().join("state"))
        .write_buffer_size(env("WEIR_BENCH_WRITE_BUFFER_MB", 16) as usize * 1024 * 1024);
    let mut p = Pipeline::new("checkpoint-overhead")
        .parallelism(2)
        .state_backend(backend);
    p = if checkpoints {
        p.checkpoint_storage(dir.path().join("checkpoints"))
            .checkpoint_interval(Duration::from_secs(1))
    } else {
        p.checkpoint_interval(Duration::from_secs(1)) // commit barriers only, no snapshots
    };
    p.source(
        "gen",
        GeneratorSource::new(move |i| if i < keys { (i, 1) } else { (mix(7, i) % keys, 1) })
            .bounded(keys + updates)
            .splits(2),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .process("sum", RunningSum)
    .sink("discard", DiscardSink::new());
    let handle = p.start().unwrap();
    // Sample progress to time the update phase only (after the bulk load).
    let (mut t_start, mut n_start) = (None, 0);
    let mut last = (Instant::now(), 0u64);
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        let n = handle.source_records();
        if t_start.is_none() && n >= keys {
            t_start = Some(Instant::now());
            n_start = n;
        }
        if n > last.1 {
            last = (Instant::now(), n);
        }
    }
    let report = handle.join().unwrap();
    let t0 = t_start.expect("update phase reached");
    let rate = (last.1 - n_start) as f64 / last.0.duration_since(t0).as_secs_f64();
    Outcome {
        update_rate: rate,
        report,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let state_mb = env("WEIR_BENCH_STATE_MB", if quick { 8 } else { 256 });
    let updates = env("WEIR_BENCH_UPDATES", if quick { 20_000 } else { 1_000_000 });
    let keys = state_mb * 1024 * 1024 / VALUE as u64;
    println!("keyed running sum, parallelism 2, RocksDB, {keys} keys x {VALUE} B (~{state_mb} MB), {updates} updates");
    let with = run(keys, updates, true);
    let without = run(keys, updates, false);
    println!(
        "update throughput: {:.0} events/s without checkpoints, {:.0} events/s with 1 s checkpoints: overhead {:.1} %",
        without.update_rate,
        with.update_rate,
        100.0 * (1.0 - with.update_rate / without.update_rate)
    );
    println!(
        "{:>4} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "id", "sync ms", "align ms", "async ms", "state MB", "uploaded MB"
    );
    let mut syncs: Vec<f64> = Vec::new();
    let mut asyncs: Vec<f64> = Vec::new();
    for c in &with.report.checkpoints {
        println!(
            "{:>4} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>12.1}",
            c.id,
            c.sync_ms,
            c.alignment_ms,
            c.async_ms,
            c.state_bytes as f64 / 1e6,
            c.uploaded_bytes as f64 / 1e6
        );
        syncs.push(c.sync_ms);
        asyncs.push(c.async_ms);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    println!(
        "checkpoints: {} completed, median sync {:.1} ms, median async {:.1} ms",
        with.report.checkpoints.len(),
        median(&mut syncs),
        median(&mut asyncs)
    );
}
