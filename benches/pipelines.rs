//! End-to-end throughput of four pipeline shapes, each without and with checkpoints every
//! second, on the memory and RocksDB state backends:
//!
//! - `stateless`: generator → map → filter → map → discard (no state: the engine's own cost);
//! - `running-sum`: generator → key_by → running sum in `ValueState` (100,000 keys) → discard;
//! - `window-sum`: generator with event time → key_by → 1 s tumbling window sum per key
//!   (10,000 keys, 10 records per key and window) → discard;
//! - `join`: two generators → connect, key_by → `KeyedCoProcess` keeping each side's latest
//!   value per key (100,000 keys) and emitting the pair whenever both are present → discard.
//!
//! Each run is unbounded and cancelled after a warm-up and a measured interval; the figure is
//! the events read by the sources during the interval over its length, median of the runs.
//! Runs with and without checkpoints alternate, so drift on a shared machine hits both alike.
//! "Per core" divides by the CPU time the whole process used instead of the wall time.
//! Overhead is given twice: as lost events/s (wall), and as extra CPU time per event (CPU),
//! which is steadier on a shared machine.
//!
//! `cargo bench --bench pipelines`. Knobs: `WEIR_BENCH_RUNS` (default 3),
//! `WEIR_BENCH_SECONDS` (measured seconds per run, default 3), `WEIR_BENCH_PARALLELISM`
//! (default 2), `WEIR_BENCH_DIR` (where state and checkpoints go), `WEIR_BENCH_ONLY`
//! (a pipeline name, to run just that one).

use std::time::Duration;
use weir::engine::source::generator::mix;
use weir::prelude::*;
use weir_examples::nexmark::harness::{self, env_or, Backend, JobSetup, Measured};

/// The running sum of each key.
#[derive(Clone)]
struct RunningSum;

impl KeyedProcess<u64, (u64, u64)> for RunningSum {
    type Out = (u64, u64);
    fn process(&mut self, (k, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        let mut sum = ctx.value_state::<u64>("sum");
        let s = sum.get()?.unwrap_or(0).wrapping_add(v);
        sum.set(&s)?;
        ctx.emit((k, s));
        Ok(())
    }
}

/// Sum of the values.
struct Sum;

impl AggregateFunction<(u64, u64)> for Sum {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, v: &(u64, u64)) {
        *acc = acc.wrapping_add(v.1);
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc = acc.wrapping_add(other);
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Joins two streams on their key: each side's latest value is kept, and every record emits
/// the pair once the other side has a value.
#[derive(Clone)]
struct LatestJoin;

type Keyed = (u64, u64);

impl KeyedCoProcess<u64, Keyed, Keyed> for LatestJoin {
    type Out = (u64, u64, u64);
    fn process_first(&mut self, (k, a): Keyed, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        ctx.value_state::<u64>("first").set(&a)?;
        if let Some(b) = ctx.value_state::<u64>("second").get()? {
            ctx.emit((k, a, b));
        }
        Ok(())
    }
    fn process_second(&mut self, (k, b): Keyed, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        ctx.value_state::<u64>("second").set(&b)?;
        if let Some(a) = ctx.value_state::<u64>("first").get()? {
            ctx.emit((k, a, b));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Stateless,
    RunningSum,
    WindowSum,
    Join,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Stateless => "stateless",
            Shape::RunningSum => "running-sum",
            Shape::WindowSum => "window-sum",
            Shape::Join => "join",
        }
    }

    /// Adds the pipeline to `p`, with generators split `splits` ways.
    fn build(self, p: &Pipeline, splits: usize) {
        match self {
            Shape::Stateless => {
                p.source("gen", GeneratorSource::new(|i| i).splits(splits))
                    .map("square", |x: u64| x.wrapping_mul(x))
                    .filter("even", |x| x % 2 == 0)
                    .map("inc", |x| x + 1)
                    .sink("discard", DiscardSink::new());
            }
            Shape::RunningSum => {
                p.source("gen", GeneratorSource::new(|i| (mix(1, i) % 100_000, i)).splits(splits))
                    .key_by("by-key", |(k, _): &Keyed| *k)
                    .process("sum", RunningSum)
                    .sink("discard", DiscardSink::new());
            }
            Shape::WindowSum => {
                // 100 records per millisecond of event time: 100,000 per 1 s window.
                let gen = GeneratorSource::new(|i| (mix(2, i) % 10_000, i))
                    .with_timestamps(|i, _| (i / 100) as i64)
                    .splits(splits);
                p.source("gen", gen)
                    .assign_timestamps_and_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                        Duration::from_millis(100),
                    ))
                    .key_by("by-key", |(k, _): &Keyed| *k)
                    .window(TumblingEventTime::of(Duration::from_secs(1)))
                    .aggregate("window-sum", Sum)
                    .sink("discard", DiscardSink::new());
            }
            Shape::Join => {
                let first = p.source(
                    "first",
                    GeneratorSource::new(|i| (mix(3, i) % 100_000, i)).splits(splits),
                );
                let second = p.source(
                    "second",
                    GeneratorSource::new(|i| (mix(4, i) % 100_000, i)).splits(splits),
                );
                first
                    .connect(&second)
                    .key_by("by-key", |a: &Keyed| a.0, |b: &Keyed| b.0)
                    .process("join", LatestJoin)
                    .sink("discard", DiscardSink::new());
            }
        }
    }
}

fn measure(shape: Shape, setup: JobSetup, warmup: Duration, interval: Duration) -> Measured {
    let (p, _dir) = harness::pipeline(shape.name(), setup);
    shape.build(&p, setup.parallelism);
    harness::run_for(p, warmup, interval)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = env_or("WEIR_BENCH_RUNS", if quick { 1 } else { 3 }) as usize;
    let seconds = env_or("WEIR_BENCH_SECONDS", if quick { 1 } else { 3 });
    let parallelism = env_or("WEIR_BENCH_PARALLELISM", 2) as usize;
    let only = std::env::var("WEIR_BENCH_ONLY").ok();
    let (warmup, interval) = (Duration::from_millis(1000), Duration::from_secs(seconds));
    let cases = [
        (Shape::Stateless, Backend::Memory),
        (Shape::RunningSum, Backend::Memory),
        (Shape::RunningSum, Backend::RocksDb),
        (Shape::WindowSum, Backend::Memory),
        (Shape::WindowSum, Backend::RocksDb),
        (Shape::Join, Backend::Memory),
        (Shape::Join, Backend::RocksDb),
    ];
    println!("pipelines at parallelism {parallelism}, {runs} run(s) of {seconds} s each (after 1 s warm-up), median");
    println!(
        "| pipeline | backend | checkpoints | events/s | events/s per core | checkpoints taken | overhead % (wall) | overhead % (CPU) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (shape, backend) in cases {
        if only.as_deref().is_some_and(|o| o != shape.name()) {
            continue;
        }
        let backend_name = if shape == Shape::Stateless { "-" } else { backend.name() };
        let rows = harness::with_and_without_checkpoints(runs, |checkpoint| {
            let setup = JobSetup {
                parallelism,
                backend,
                checkpoint,
            };
            measure(shape, setup, warmup, interval)
        });
        for row in rows {
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |",
                shape.name(),
                backend_name,
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
