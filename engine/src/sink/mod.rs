//! Sinks: where records leave a pipeline, with a two-phase commit contract.
//!
//! A sink writer receives records; on each checkpoint barrier it pre-commits everything
//! written since the previous barrier into a *committable*, which the engine stores in the
//! checkpoint. Only when the checkpoint is complete (its metadata durable) does the engine call
//! `commit`, and after a restore it calls `commit` again with the committables found in the
//! restored checkpoint: commit must therefore be idempotent. Output of records after the
//! restored checkpoint is never committed; replay produces it again.

pub mod collect;
pub mod discard;
pub mod file;
pub mod idempotent;

mod committed_output;

use crate::data::{Data, Record};
use crate::message::CheckpointId;
use crate::Result;

pub use committed_output::CommittedOutputCheck;

pub use collect::{CollectSink, Collected};
pub use discard::DiscardSink;
pub use file::{read_committed_lines, FileCommittable, FileSink};
pub use idempotent::{Idempotent, IdempotentSink, UpsertMap};

/// Where a sink writer runs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The job's name.
    pub job: String,
    /// The sink step's name.
    pub name: String,
    /// Subtask index.
    pub subtask: usize,
    /// The sink's parallelism.
    pub parallelism: usize,
    /// The job's max parallelism (its number of key groups).
    pub max_parallelism: usize,
    /// The attempt this writer belongs to: 1 for the job's first, one more per restart.
    pub attempt: u32,
    /// The checkpoint the job restored from, if it did: output pre-committed after it (and
    /// not in it) belongs to an abandoned attempt and must be discarded.
    pub restored_checkpoint: Option<CheckpointId>,
    /// The job's checkpoint interval and timeout (`None`: checkpointing is off, and
    /// committables are committed only when a bounded job ends).
    pub checkpoint_timing: Option<crate::recovery::CheckpointTiming>,
    /// The restore rules a writer applies to output an earlier run committed: see
    /// [`check_committed_output`](Self::check_committed_output).
    pub committed_output: CommittedOutputCheck,
    /// Raised when the attempt this writer belongs to is cancelled: a call that waits (a full
    /// producer queue, retries against the destination) checks it between tries and returns
    /// an error instead of holding up failover.
    pub cancellation: crate::cancellation::Cancellation,
    /// The job's fail points: a sink checks its own named points here (the Kafka
    /// exactly-once sink's transaction points), so that only this job's failures trigger.
    pub fail_points: crate::fail::FailPoints,
}

impl SinkContext {
    /// The same context user functions are opened with.
    pub fn runtime(&self) -> crate::functions::RuntimeContext {
        crate::functions::RuntimeContext {
            job: self.job.clone(),
            step: self.name.clone(),
            subtask: self.subtask,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            attempt: self.attempt,
        }
    }

    /// Checks what this sink subtask found committed in its destination before it starts:
    /// `newest` is the newest checkpoint whose output it holds as committed (a final file of
    /// that checkpoint, a transaction marker), `found` says what and where, for the error.
    ///
    /// A sink writer with durable output calls this when it is created, **before** it changes
    /// anything (deleting leftovers, resetting markers), and returns the error.
    ///
    /// # Errors
    /// `Config` when the output is ahead of the restored checkpoint (unless the user allowed
    /// falling back), or when the job restored no checkpoint and the restore mode is not
    /// [`RestoreMode::Fresh`](crate::checkpoint::RestoreMode::Fresh): the job has run before and
    /// this start would produce committed output again.
    pub fn check_committed_output(&self, newest: CheckpointId, found: &str) -> Result<()> {
        self.committed_output
            .check(&self.name, self.subtask, self.restored_checkpoint, newest, found)
    }
}

/// A sink for records of type `T`.
pub trait Sink<T>: Send + Sync + 'static {
    /// What pre-commit produces and commit consumes; stored in checkpoints.
    type Committable: Data;

    /// A writer for one subtask.
    ///
    /// # Errors
    /// `Config` or `External` if the destination cannot be used.
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T, Self::Committable>>>;
}

/// Writes one subtask's records.
///
/// # Checkpointing
/// After `pre_commit(n)` returns, the committable must be enough to make the records written
/// before barrier `n` visible later, even from another process after a crash. Records must
/// not become visible before `commit` is called with their committable.
pub trait SinkWriter<T, C>: Send {
    /// Writes records (not visible until committed).
    fn write(&mut self, records: Vec<Record<T>>) -> Result<()>;

    /// Barrier `checkpoint`: flushes and turns everything written since the previous
    /// pre-commit into a committable (`None` if nothing was written).
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<C>>;

    /// Makes the records of these committables visible. Idempotent: committing the same
    /// committable twice has the effect of committing it once.
    fn commit(&mut self, committables: Vec<(CheckpointId, C)>) -> Result<()>;

    /// After a restore at another parallelism: makes visible the committables of the restored
    /// checkpoint that sink subtask `subtask` of the checkpoint pre-committed, a subtask this
    /// writer takes over (it no longer runs, or runs elsewhere with other state). Called once
    /// per such subtask when the writer is created, before any record is written. Idempotent
    /// as `commit`; the default commits them as this writer's own.
    fn commit_taken_over(&mut self, subtask: usize, committables: Vec<(CheckpointId, C)>) -> Result<()> {
        let _ = subtask;
        self.commit(committables)
    }

    /// Discards records written but not pre-committed (the job is failing or cancelled).
    fn abort(&mut self) -> Result<()> {
        Ok(())
    }

    /// The attempt ended (normally or not), after `abort` if it failed: release external
    /// resources. Must not panic.
    fn close(&mut self) {}
}
