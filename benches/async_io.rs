//! Async I/O against a service with a fixed latency (an in-process Tokio timer per call):
//! throughput of `async_map` by capacity and order, and what a checkpoint costs while
//! requests are in flight (the barrier does not wait for them: their records go into state).
//!
//! Each run reads `WEIR_BENCH_RECORDS` records (default 20,000) through generator →
//! async_map → discard at parallelism 1, with checkpoints every 100 ms to local disk, and
//! reports records/s over the run, the median and largest synchronous snapshot time and
//! alignment of the checkpoints, and the median state size (the records in flight).
//!
//! `cargo bench --bench async_io`. Knobs: `WEIR_BENCH_RECORDS`, `WEIR_BENCH_LATENCY_MS`
//! (default 5).

use std::future::Future;
use std::time::{Duration, Instant};
use weir::prelude::*;

#[derive(Clone)]
struct FixedLatency(Duration);

impl AsyncFunction<u64> for FixedLatency {
    type Out = u64;
    fn call(&self, i: u64) -> impl Future<Output = Result<Vec<u64>>> + Send {
        let wait = self.0;
        async move {
            tokio::time::sleep(wait).await;
            Ok(vec![i])
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let records = env_or("WEIR_BENCH_RECORDS", 20_000);
    let latency = Duration::from_millis(env_or("WEIR_BENCH_LATENCY_MS", 5));
    println!("{records} records, service latency {latency:?}, parallelism 1, checkpoints every 100 ms");
    println!(
        "{:<10} {:>8} {:>12} {:>12} {:>12} {:>14} {:>12}",
        "order", "capacity", "records/s", "sync p50 ms", "sync max ms", "align max ms", "state p50 B"
    );
    for (order, capacity) in [
        ("ordered", 10usize),
        ("ordered", 100),
        ("unordered", 100),
        ("ordered", 1000),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = match order {
            "ordered" => AsyncOptions::ordered(Duration::from_secs(30)),
            _ => AsyncOptions::unordered(Duration::from_secs(30)),
        }
        .capacity(capacity);
        let p = Pipeline::new("async-bench")
            .parallelism(1)
            .checkpoint_storage(dir.path().join("checkpoints"))
            .checkpoint_interval(Duration::from_millis(100));
        p.source("numbers", GeneratorSource::new(|i| i).bounded(records))
            .async_map("call", FixedLatency(latency), options)
            .sink("out", DiscardSink::new());
        let started = Instant::now();
        let report = p.run().unwrap();
        let secs = started.elapsed().as_secs_f64();
        let sync: Vec<f64> = report.checkpoints.iter().map(|c| c.sync_ms).collect();
        let align = report.checkpoints.iter().map(|c| c.alignment_ms).fold(0.0, f64::max);
        let state = median(report.checkpoints.iter().map(|c| c.state_bytes as f64).collect());
        println!(
            "{:<10} {:>8} {:>12.0} {:>12.2} {:>12.2} {:>14.2} {:>12.0}",
            order,
            capacity,
            records as f64 / secs,
            median(sync.clone()),
            sync.iter().copied().fold(0.0, f64::max),
            align,
            state
        );
    }
}
