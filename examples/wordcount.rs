//! Word count on keyed RocksDB state with exactly-once file output, checked against a
//! sequential model.
//!
//! A seeded generator produces sentences; the pipeline splits them into words, keys them by
//! word and keeps a running count per word in `ValueState`; every update goes to an
//! exactly-once file sink. At the end the committed files are compared with a plain
//! sequential count of the same input: every word counted exactly once, no update lost or
//! doubled.
//!
//! With `--checkpoint-dir` and `--output-dir` the job is resumable: kill it (even with
//! `kill -9`) and start it again with the same flags, and it continues from its latest
//! completed checkpoint; the audit at the end covers all runs.
//!
//! ```text
//! cargo run --release --example wordcount -- --sentences 200000 --parallelism 2
//! ```
//!
//! The job and its audit are `weir_examples::wordcount` (`examples/lib/src/wordcount/`).

use clap::Parser;
use weir_examples::wordcount;

/// Word count with a built-in exactly-once audit.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: wordcount::Args,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs on stderr: WEIR_LOG=info (or any filter), WEIR_LOG_FORMAT=json.
    weir_examples::logging::init("warn")?;
    wordcount::run(cli.args)
}
