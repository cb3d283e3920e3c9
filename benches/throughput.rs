//! Throughput of whole pipelines (events/s): a stateless map/filter chain, and the keyed
//! running sum (generator → key_by → process with ValueState → discarding sink) at
//! parallelism 1 and 2 on the memory and RocksDB backends.
//!
//! `cargo bench --bench throughput`; criterion reports time per run and elements/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use weir::prelude::*;
use weir_examples::running_sum::RunningSum;

fn stateless(events: u64) {
    let p = Pipeline::new("stateless").parallelism(1);
    p.source("gen", GeneratorSource::new(|i| i).bounded(events))
        .map("square", |x: u64| x.wrapping_mul(x))
        .filter("even", |x| x % 2 == 0)
        .map("inc", |x| x + 1)
        .sink("discard", DiscardSink::new());
    p.run().expect("stateless pipeline");
}

fn running_sum(events: u64, parallelism: usize, rocks: Option<&std::path::Path>) {
    let mut p = Pipeline::new("running-sum").parallelism(parallelism);
    if let Some(dir) = rocks {
        p = p.state_dir(dir);
    }
    p.source(
        "gen",
        GeneratorSource::new(|i| (i % 100_000, i))
            .bounded(events)
            .splits(parallelism),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .process("sum", RunningSum)
    .sink("discard", DiscardSink::new());
    p.run().expect("running-sum pipeline");
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("stateless-chain");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let n = 2_000_000;
    g.throughput(Throughput::Elements(n));
    g.bench_function("map-filter-map/p1", |b| b.iter(|| stateless(n)));
    g.finish();

    let mut g = c.benchmark_group("keyed-running-sum");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    let n = 500_000;
    g.throughput(Throughput::Elements(n));
    for p in [1usize, 2] {
        g.bench_function(format!("memory/p{p}"), |b| b.iter(|| running_sum(n, p, None)));
        let dir = tempfile::tempdir().expect("tempdir");
        g.bench_function(format!("rocksdb/p{p}"), |b| {
            b.iter(|| running_sum(n, p, Some(dir.path())))
        });
    }
    g.finish();
}

criterion_group!(throughput, benches);
criterion_main!(throughput);
