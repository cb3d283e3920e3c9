//! The vocabulary of a job's recovery that every layer shares: which checkpoint a job starts
//! from ([`RestoreMode`]), how checkpoints are paced ([`CheckpointTiming`], what sinks with
//! external transactions validate their timeouts against), and what a restore that
//! reproduces output reports ([`RestoreWarning`]).

use crate::message::CheckpointId;
use std::time::Duration;

/// Which checkpoint a job starts from.
///
/// Whatever the mode, a start never silently produces output a second time:
/// - a checkpoint that cannot be *read* (an I/O error) is retried with backoff, then the start
///   fails naming the checkpoint and the file; it is never skipped;
/// - a checkpoint that is *corrupt* (a file missing or failing its checksum, metadata that does
///   not parse or fails its checksum) stops the start, unless
///   [`CheckpointConfig::fallback_to_older_checkpoint_reproducing_output`](crate::checkpoint::CheckpointConfig::fallback_to_older_checkpoint_reproducing_output) allows restoring
///   the previous retained checkpoint instead;
/// - a sink whose committed output is ahead of the restored checkpoint (its files or its
///   transaction marker name a later checkpoint) stops the start under the same rule;
/// - a job that has run before (its `_job` record says it completed checkpoints, or a sink
///   holds committed output) but whose storage holds no completed checkpoint does not start
///   from scratch unless the mode is [`RestoreMode::Fresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreMode {
    /// The latest completed checkpoint, or a start from the sources' start positions when the
    /// storage holds none and the job shows no sign of an earlier run (a new job). The default.
    #[default]
    Latest,
    /// Exactly this checkpoint; failing if it cannot be restored. Sinks ahead of it stop the
    /// start as for `Latest`.
    Checkpoint(CheckpointId),
    /// Ignore existing checkpoints and start from the sources' configured start positions,
    /// even over the output of an earlier run: the explicit "start over". Checkpoint ids still
    /// continue after the highest one in storage. Output an earlier run committed stays and is
    /// produced again (an exactly-once Kafka sink resets its markers).
    Fresh,
}

/// How often checkpoints are taken and how long one may take: what sinks with external
/// transactions validate their timeouts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointTiming {
    /// Time between checkpoint triggers.
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
}

/// A restore that used an older checkpoint than the newest complete one, as
/// [`fallback_to_older_checkpoint_reproducing_output`](crate::checkpoint::CheckpointConfig::fallback_to_older_checkpoint_reproducing_output)
/// allowed: output committed after `restored` up to `newer` is produced and committed again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreWarning {
    /// The checkpoint restored.
    pub restored: CheckpointId,
    /// The newer checkpoint that was complete (its metadata corrupt, or a sink's committed
    /// output shows it): output of `restored + 1 ..= newer` is produced again.
    pub newer: CheckpointId,
    /// What was found and skipped, for people.
    pub message: String,
}

/// Restore warnings collected while a job runs (sinks report theirs when they start).
pub(crate) type SharedRestoreWarnings = std::sync::Arc<std::sync::Mutex<Vec<RestoreWarning>>>;
