//! Nexmark throughput: the queries of Flink's Nexmark suite (q0 to q22 but q10, see
//! `weir_examples::nexmark::queries`) over the generated Nexmark stream, each without and with
//! checkpoints every second.
//!
//! Each run is unbounded and cancelled after a warm-up and a measured interval; the figure is
//! the events read by the source during the interval over its length (events/s, the unit of
//! the published Nexmark results), median of the runs. "Per core" divides by the CPU time the
//! whole process used instead of the wall time. Runs with and without checkpoints alternate.
//! Overhead is given twice: as lost events/s (wall), and as extra CPU time per event (CPU),
//! which is steadier on a shared machine.
//!
//! `cargo bench --bench nexmark`. Knobs: `WEIR_BENCH_RUNS` (default 3), `WEIR_BENCH_SECONDS`
//! (measured seconds per run, default 3), `WEIR_BENCH_PARALLELISM` (default 1),
//! `WEIR_BENCH_BACKEND` (`memory`, the default, or `rocksdb`), `WEIR_BENCH_QUERY` (one query, or
//! several separated by commas),
//! `WEIR_BENCH_DIR` (where state and checkpoints go).

use std::time::Duration;
use weir::engine::source::nexmark::{NexmarkConfig, NexmarkSource};
use weir_examples::nexmark::harness::{self, env_or, Backend, JobSetup, Measured};
use weir_examples::nexmark::queries::Query;

fn measure(query: Query, setup: JobSetup, warmup: Duration, interval: Duration) -> Measured {
    let (p, _dir) = harness::pipeline(&format!("nexmark-{}", query.name()), setup);
    let source = NexmarkSource::new(NexmarkConfig::default()).splits(setup.parallelism);
    query.discard(&p.source("nexmark", source));
    harness::run_for(p, warmup, interval)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = env_or("WEIR_BENCH_RUNS", if quick { 1 } else { 3 }) as usize;
    let seconds = env_or("WEIR_BENCH_SECONDS", if quick { 1 } else { 3 });
    let parallelism = env_or("WEIR_BENCH_PARALLELISM", 1) as usize;
    let backend: Backend = std::env::var("WEIR_BENCH_BACKEND")
        .unwrap_or_else(|_| "memory".into())
        .parse()
        .expect("WEIR_BENCH_BACKEND");
    let queries: Vec<Query> = match std::env::var("WEIR_BENCH_QUERY") {
        Ok(q) => q
            .split(',')
            .map(|q| q.trim().parse().expect("WEIR_BENCH_QUERY"))
            .collect(),
        Err(_) => Query::ALL.to_vec(),
    };
    let (warmup, interval) = (Duration::from_millis(1000), Duration::from_secs(seconds));
    println!(
        "Nexmark at parallelism {parallelism}, {} state, {runs} run(s) of {seconds} s each (after 1 s warm-up), median",
        backend.name()
    );
    println!("| query | checkpoints | events/s | events/s per core | checkpoints taken | overhead % (wall) | overhead % (CPU) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for q in queries {
        let rows = harness::with_and_without_checkpoints(runs, |checkpoint| {
            let setup = JobSetup {
                parallelism,
                backend,
                checkpoint,
            };
            measure(q, setup, warmup, interval)
        });
        for row in rows {
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |",
                q.name(),
                row.label,
                row.rate,
                row.per_core,
                row.taken,
                row.overhead,
                row.overhead_cpu
            );
        }
    }
}
