//! Nexmark on Weir: runs queries q0, q1, q2, q5 and q7 over a generated Nexmark stream and
//! prints each one's throughput, in events per second of wall time and per second of CPU time
//! (per fully used core), for comparison with other engines' published Nexmark figures.
//!
//! ```text
//! cargo run --release --example nexmark -- --query all --events 10000000 --parallelism 2
//! cargo run --release --example nexmark -- --query q5 --checkpoint-ms 1000 --backend rocksdb
//! ```

#[allow(dead_code)]
#[path = "nexmark/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "nexmark/queries.rs"]
mod queries;

use clap::Parser;
use harness::{Backend, JobSetup};
use queries::Query;
use std::time::Duration;
use weir::engine::source::nexmark::{NexmarkConfig, NexmarkSource};

/// Nexmark queries on Weir, with throughput figures.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The query to run: q0, q1, q2, q5, q7, or all.
    #[arg(long, default_value = "all", value_parser = parse_queries)]
    query: Queries,
    /// Events generated per query run.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Parallelism of every step (and number of source splits).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=128))]
    parallelism: u64,
    /// Checkpoint interval in milliseconds; without it, no checkpoints are taken.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_ms: Option<u64>,
    /// State backend of the windowed queries: rocksdb or memory.
    #[arg(long, default_value = "memory")]
    backend: Backend,
    /// Seed of the generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The queries selected by `--query`.
#[derive(Debug, Clone)]
struct Queries(Vec<Query>);

fn parse_queries(s: &str) -> Result<Queries, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Queries(Query::ALL.to_vec()));
    }
    s.parse().map(|q| Queries(vec![q]))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let queries = args.query.0;
    let setup = JobSetup {
        parallelism: args.parallelism as usize,
        backend: args.backend,
        checkpoint: args.checkpoint_ms.map(Duration::from_millis),
    };
    println!(
        "Nexmark, {} events, parallelism {}, {} state, {}",
        args.events,
        setup.parallelism,
        setup.backend.name(),
        match setup.checkpoint {
            Some(i) => format!("checkpoints every {i:?}"),
            None => "no checkpoints".to_string(),
        }
    );
    println!(
        "{:<6} {:>14} {:>16} {:>9} {:>12}",
        "query", "events/s", "events/s/core", "wall s", "checkpoints"
    );
    for q in queries {
        let (p, _dir) = harness::pipeline(&format!("nexmark-{}", q.name()), setup);
        let source = NexmarkSource::new(NexmarkConfig::with_seed(args.seed))
            .bounded(args.events)
            .splits(setup.parallelism);
        q.discard(&p.source("nexmark", source));
        let m = harness::run_bounded(p, args.events);
        println!(
            "{:<6} {:>14.0} {:>16.0} {:>9.2} {:>12}",
            q.name(),
            m.rate(),
            m.rate_per_core(),
            m.wall.as_secs_f64(),
            m.checkpoints
        );
    }
    Ok(())
}
