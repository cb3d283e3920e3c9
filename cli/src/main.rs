//! `weir`: operates a running Weir job through its status API, and inspects a job's checkpoint
//! storage.
//!
//! ```text
//! weir status      --job URL [--json]          state, steps with rates, checkpoints, recoveries
//! weir checkpoints --job URL [--json]          the running job's checkpoint history
//! weir savepoint   --job URL TARGET [--json]   takes a savepoint into TARGET (a directory or URL)
//! weir stop        --job URL [--json]          stops the job at a final checkpoint
//! weir cancel      --job URL [--json]          cancels the job
//! weir checkpoints list DIR|URL [--json]       every checkpoint in checkpoint storage
//! weir checkpoints show DIR|URL [ID] [--json]  one checkpoint, or a savepoint's
//! ```
//!
//! `--job` is the job's status address (`http://host:port` or `host:port`, see
//! `Pipeline::status_addr` and `WEIR_STATUS_ADDR`); without it, `WEIR_JOB` is used.
//!
//! Exit codes: 0 on success; 2 for a usage error, a missing directory or a checkpoint that is
//! not there, or a request the job refused (a bad savepoint target, a job that has ended); 1 for
//! anything else (a job that cannot be reached, unreadable or corrupt metadata).

mod job;
#[cfg(feature = "storage")]
mod storage;
mod summary;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

/// Operate running Weir jobs and inspect their checkpoints.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Which running job: its status address.
#[derive(Debug, Args)]
struct JobArg {
    /// The job's status address, `http://host:port` (default: the `WEIR_JOB` variable).
    #[arg(long, value_name = "URL")]
    job: Option<String>,
}

impl JobArg {
    fn url(&self) -> Result<String, CliError> {
        let given = self
            .job
            .clone()
            .or_else(|| std::env::var("WEIR_JOB").ok().filter(|v| !v.trim().is_empty()))
            .ok_or_else(|| {
                CliError::NotFound(
                    "which job? Give its status address with --job http://HOST:PORT or in WEIR_JOB".into(),
                )
            })?;
        job::base_url(&given)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows a running job's state, steps, rates, backpressure, checkpoints and recoveries.
    Status(JobArg),
    /// A running job's checkpoint history (`--job`), or the checkpoints in a job's checkpoint
    /// storage (`list`, `show`).
    Checkpoints(CheckpointsArgs),
    /// Takes a savepoint of a running job into TARGET and waits until it is written.
    Savepoint {
        #[command(flatten)]
        job: JobArg,
        /// Where the savepoint goes: a directory, file:// or s3:// URL that holds no savepoint yet.
        target: String,
    },
    /// Stops a running job gracefully at a final checkpoint: its sinks commit everything up to
    /// it, and the next run restores it.
    Stop(JobArg),
    /// Cancels a running job: output committed so far stays; a new run resumes from the latest
    /// completed checkpoint.
    Cancel(JobArg),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct CheckpointsArgs {
    #[command(subcommand)]
    storage: Option<StorageCommand>,
    #[command(flatten)]
    job: JobArg,
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Lists every checkpoint in the directory: id, completeness, kind, trigger time, sizes,
    /// durations and source records.
    List {
        /// The checkpoint storage: a directory or an object store URL.
        #[arg(value_name = "DIR|URL")]
        dir: String,
    },
    /// Shows one completed checkpoint or a savepoint: operators, subtasks, key groups, files,
    /// source positions and statistics.
    Show {
        /// The checkpoint storage (a directory or an object store URL), or a savepoint's.
        #[arg(value_name = "DIR|URL")]
        dir: String,
        /// The checkpoint id; may be left out when the storage holds one completed
        /// checkpoint (a savepoint's).
        id: Option<u64>,
    },
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The user named something that is not there, or asked for what cannot be done (exit
    /// code 2).
    NotFound(String),
    /// Anything else (exit code 1).
    Failed(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(CliError::NotFound(msg)) => {
            eprintln!("weir: error: {msg}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(msg)) => {
            eprintln!("weir: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Runs a command and returns what to print.
fn run(cli: &Cli) -> Result<String, CliError> {
    let json = cli.json;
    match &cli.command {
        Command::Status(job) => {
            let status = job::get(&job.url()?, "/api/status")?;
            Ok(if json {
                job::pretty(&status)
            } else {
                summary::status(&status)
            })
        }
        Command::Checkpoints(CheckpointsArgs { storage: None, job }) => {
            let history = job::get(&job.url()?, "/api/checkpoints")?;
            Ok(if json {
                job::pretty(&history)
            } else {
                summary::checkpoints(&history)
            })
        }
        Command::Checkpoints(CheckpointsArgs {
            storage: Some(command), ..
        }) => storage_command(command, json),
        Command::Savepoint { job, target } => {
            let sp = job::post(&job.url()?, "/api/savepoint", target)?;
            Ok(if json {
                job::pretty(&sp)
            } else {
                summary::savepoint(&sp)
            })
        }
        Command::Stop(job) => {
            let stopped = job::post(&job.url()?, "/api/stop", "")?;
            Ok(if json {
                job::pretty(&stopped)
            } else {
                format!(
                    "the job stopped at checkpoint {}: its output is committed up to it, and the next run restores it\n",
                    stopped["stopped_at"]
                )
            })
        }
        Command::Cancel(job) => {
            let cancelled = job::post(&job.url()?, "/api/cancel", "")?;
            Ok(if json {
                job::pretty(&cancelled)
            } else {
                "the job is being cancelled\n".into()
            })
        }
    }
}

#[cfg(feature = "storage")]
fn storage_command(command: &StorageCommand, json: bool) -> Result<String, CliError> {
    match command {
        StorageCommand::List { dir } => storage::list(dir, json),
        StorageCommand::Show { dir, id } => storage::show(dir, *id, json),
    }
}

#[cfg(not(feature = "storage"))]
fn storage_command(_: &StorageCommand, _: bool) -> Result<String, CliError> {
    Err(CliError::Failed(
        "this weir was built without the `storage` feature: it cannot read checkpoint storage (build weir-cli \
         with its default features)"
            .into(),
    ))
}
