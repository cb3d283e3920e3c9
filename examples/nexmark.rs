//! Nexmark on Weir: runs the queries of Flink's Nexmark suite (q0 to q22 but q10) over a
//! generated Nexmark stream and
//! prints each one's throughput, in events per second of wall time and per second of CPU time
//! (per fully used core), for comparison with other engines' published Nexmark figures.
//!
//! ```text
//! cargo run --release --example nexmark -- --query all --events 10000000 --parallelism 2
//! cargo run --release --example nexmark -- --query q5 --checkpoint-ms 1000 --backend rocksdb
//! ```
//!
//! The queries and the harness are `weir_examples::nexmark` (`examples/lib/src/nexmark/`),
//! shared with the benches and the tests.

use clap::Parser;
use weir_examples::nexmark::cli;

/// Nexmark queries on Weir, with throughput figures.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: cli::Args,
}

fn main() -> anyhow::Result<()> {
    let args = Cli::parse().args;
    // Logs on stderr: WEIR_LOG=info (or any filter), WEIR_LOG_FORMAT=json.
    weir_examples::logging::init("warn")?;
    cli::run(args)
}
