//! Word count on keyed RocksDB state, checked against a sequential model.
//!
//! A seeded generator produces sentences; the pipeline splits them into words, keys them by
//! word and keeps a running count per word in `ValueState`; the exactly-once collect sink
//! receives every update. At the end the final count of every word is compared with a plain
//! sequential count of the same input.
//!
//! ```text
//! cargo run --release --example wordcount -- --sentences 200000 --parallelism 2
//! ```

use anyhow::{bail, Context};
use clap::Parser;
use std::collections::BTreeMap;
use weir::prelude::*;
use weir::engine::source::generator::mix;

const WORDS: [&str; 16] = [
    "payment", "ledger", "refund", "merchant", "customer", "barrier", "checkpoint", "replay", "commit",
    "offset", "watermark", "window", "state", "key", "exactly", "once",
];

/// Word count with a built-in audit.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Number of generated sentences.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    sentences: u64,
    /// Parallelism of every step.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=128))]
    parallelism: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Keep state in memory instead of RocksDB.
    #[arg(long)]
    memory: bool,
}

fn sentence(seed: u64, i: u64) -> String {
    let n = 3 + mix(seed, i) % 6;
    (0..n).map(|w| WORDS[(mix(seed ^ w, i) % WORDS.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
}

#[derive(Clone)]
struct Count;

impl KeyedProcess<String, String> for Count {
    type Out = (String, u64);
    fn process(&mut self, word: String, ctx: &mut KeyedContext<'_, String, (String, u64)>) -> Result<()> {
        let mut count = ctx.value_state::<u64>("count");
        let n = count.get()?.unwrap_or(0) + 1;
        count.set(&n)?;
        ctx.emit((word, n));
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let state = tempfile::tempdir().context("creating a state directory")?;
    let seed = args.seed;
    let mut p = Pipeline::new("wordcount").parallelism(args.parallelism as usize);
    p = if args.memory { p.state_backend(MemoryBackend::new()) } else { p.state_dir(state.path()) };
    let sink = CollectSink::new();
    p.source("sentences", GeneratorSource::new(move |i| sentence(seed, i)).bounded(args.sentences).splits(4))
        .flat_map("split", |s: String| s.split(' ').map(str::to_string).collect::<Vec<_>>())
        .key_by("by-word", |w: &String| w.clone())
        .process("count", Count)
        .sink("counts", sink.clone());
    println!("{}", p.explain());
    let report = p.run()?;
    println!("{report}");

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..args.sentences {
        for w in sentence(seed, i).split(' ') {
            *expected.entry(w.to_string()).or_default() += 1;
        }
    }
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for (w, n) in sink.records() {
        let e = latest.entry(w).or_default();
        *e = (*e).max(n);
    }
    let updates: u64 = expected.values().sum();
    let committed = sink.collected().records.len() as u64;
    println!("audit: {} words, {updates} expected updates, {committed} committed", expected.len());
    if latest != expected || committed != updates {
        bail!("audit FAILED: committed counts differ from the sequential model");
    }
    println!("audit passed: every word counted exactly once");
    Ok(())
}
