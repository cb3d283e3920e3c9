//! The Nexmark example's command line and its run: each selected query over a generated
//! stream, with its throughput. `examples/nexmark.rs` parses these flags (with the program's
//! name, version and about) and calls [`run`].

use super::harness::{self, Backend, JobSetup};
use super::queries::{side_input, Query, SideInput};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_engine::source::nexmark::{NexmarkConfig, NexmarkSource};

// The flags. No doc comment on the struct: flattened into the example's parser, it would
// replace the program's about text.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The query to run: q0 to q22 (q10 is not implemented: it only writes to a file
    /// system), or all.
    #[arg(long, default_value = "all", value_parser = parse_queries)]
    pub query: Queries,
    /// Events generated per query run.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Parallelism of every step (and number of source splits).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=128))]
    pub parallelism: u64,
    /// Checkpoint interval in milliseconds; without it, no checkpoints are taken.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_ms: Option<u64>,
    /// State backend of the windowed queries: rocksdb or memory.
    #[arg(long, default_value = "memory")]
    pub backend: Backend,
    /// Seed of the generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// q13's side input: a CSV file of `key,value` lines (as Flink's side-input generator
    /// writes them); default: that table generated in memory (10,000 rows `i,i`).
    #[arg(long)]
    pub side_input: Option<PathBuf>,
}

/// The queries selected by `--query`.
#[derive(Debug, Clone)]
pub struct Queries(pub Vec<Query>);

fn parse_queries(s: &str) -> Result<Queries, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Queries(Query::ALL.to_vec()));
    }
    s.parse().map(|q| Queries(vec![q]))
}

/// Runs the selected queries and prints a row of figures for each.
pub fn run(args: Args) -> anyhow::Result<()> {
    let queries = args.query.0;
    let side_input = Arc::new(match &args.side_input {
        Some(path) => SideInput::from_csv_file(path).map_err(anyhow::Error::msg)?,
        None => SideInput::generated(side_input::FLINK_SIDE_INPUT_ROWS),
    });
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
        q.discard_with(&p.source("nexmark", source), &side_input);
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
