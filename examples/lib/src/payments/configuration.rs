//! `--config FILE`: the payment example's settings from a Weir configuration file and its
//! `WEIR_*` variables ([`Configuration`]), under the flags given on the command line.
//!
//! Keys the example has flags for become those flags' values unless the flag was given:
//! `job.parallelism` (`--parallelism`), `checkpoint.interval` (`--checkpoint-ms`),
//! `checkpoint.storage` (`--checkpoint-storage`), `checkpoint.replica` (`--replica-storage`),
//! `state.backend = "memory"` (`--memory`). The example manages its RocksDB directories itself
//! (each drill process has its own), so `state.dir` is refused. Every other key (restart,
//! checkpoint timeout and retention, max parallelism, cluster) is applied to the job with
//! [`Pipeline::configure`](weir_engine::api::Pipeline::configure), in the drill's child
//! processes too (they get `--config` again).

use super::cli::Args;
use anyhow::bail;
use weir_engine::config::layered::{BackendKind, Configuration};

/// Loads `args.config` (if any) and the environment, sets the flags the command line did not
/// give (`explicit` says which it gave, by argument id), and returns what is left for
/// [`Pipeline::configure`](weir_engine::api::Pipeline::configure).
///
/// # Errors
/// The configuration's errors (a missing file, an unknown key, a bad value), and
/// `state.dir`, which the example does not take.
pub fn resolve(args: &mut Args, explicit: impl Fn(&str) -> bool) -> anyhow::Result<Configuration> {
    let mut c = Configuration::load(args.config.as_deref())?;
    if let Some(dir) = c.state.dir.take() {
        bail!(
            "state.dir ({}) is not for the payment example: it keeps each process's RocksDB state in a directory \
             of its own (use state.backend = \"memory\" for heap state)",
            dir.display()
        );
    }
    if let Some(n) = c.job.parallelism.take() {
        if !explicit("parallelism") {
            args.parallelism = n as u64;
        }
    }
    if let Some(i) = c.checkpoint.interval.take() {
        if !explicit("checkpoint_ms") {
            args.checkpoint_ms = (i.as_millis() as u64).max(1);
        }
    }
    if let Some(s) = c.checkpoint.storage.take() {
        if !explicit("checkpoint_storage") && !explicit("checkpoint_dir") {
            args.checkpoint_storage = Some(s);
        }
    }
    if let Some(r) = c.checkpoint.replica.take() {
        if !explicit("replica_storage") {
            args.replica_storage = Some(r);
        }
    }
    if let Some(kind) = c.state.backend.take() {
        if !explicit("memory") {
            args.memory = kind == BackendKind::Memory;
        }
    }
    Ok(c)
}
