//! Card payments, exactly once, through a disaster-recovery drill.
//!
//! A seeded generator produces payment requests (with client retries, some late) and refund
//! requests. The Weir job deduplicates them by idempotency key, authorizes payments against
//! each customer's credit in RocksDB keyed state (with event-time fraud rules), carries out or
//! rejects refunds, settles every merchant per one-minute event-time window, and commits
//! decisions, refund results, fraud alerts, settlements and one record per dropped client
//! retry to exactly-once file sinks.
//!
//! By default it runs a drill: the job runs as a child process, and three failures are injected
//! at seeded random moments: a panic inside a subtask (the engine recovers in-process), a
//! `kill -9` of the process, and a crash right after a checkpoint became durable and before
//! the sinks committed it (the supervisor restarts the process each time). Then it verifies
//! the committed output against a sequential model of the same rules over the same input:
//! every payment decided exactly once, identical decisions, refunds, alerts and settlements,
//! exactly the model's dropped retries (an input event the engine processed twice would be
//! dropped by deduplication and show up only there), money conserved. It prints the verification and the drill report (RPO, RTO, throughput)
//! and exits non-zero on any difference.
//!
//! ```text
//! cargo run --release --example payments                            # drill with 3 failures + verify
//! cargo run --release --example payments -- --drill 10 --events 1000000
//! cargo run --release --example payments -- --drill 0               # one run, no failures
//! cargo run --release --example payments -- --verify-only --output-dir out/
//! ```
//!
//! The job, the model, the verification and the drill are in the `weir-examples` crate
//! (`examples/lib/src/payments/`): `domain.rs` (events and outputs), `rules.rs` (authorization,
//! fraud and refund rules), `generator.rs`, `pipeline.rs` (the Weir job), `model.rs` (the
//! sequential model), `audit.rs` (verification), `drill.rs` (supervisor and failure
//! injection), `report.rs` (progress bar and summary tables), `cli.rs` (the flags and the runs).

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::process::ExitCode;
use weir_examples::payments::{cli, configuration};

/// Card payments with retries, refunds, fraud rules and settlement, exactly once, through a
/// disaster-recovery drill.
///
/// Without flags: runs the job as a child process, injects three failures (a panic in a
/// subtask, a kill -9, a crash between checkpoint and commit), then verifies the committed
/// output against a sequential model and prints the drill report. Exits non-zero if the
/// output differs from the model in any way.
#[derive(Parser, Debug)]
#[command(version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    args: cli::Args,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut args = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli.args,
        Err(e) => e.exit(),
    };
    // Logs on stderr: WEIR_LOG=info (or any filter) and WEIR_LOG_FORMAT=json. The drill injects
    // failures on purpose and reports them itself, so only errors show by default.
    if let Err(e) = weir_examples::logging::init("error") {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    // --config FILE and WEIR_* variables, under the flags given on the command line.
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    match configuration::resolve(&mut args, given) {
        Ok(rest) => args.configuration = rest,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    cli::main(args)
}
