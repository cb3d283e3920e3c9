//! Sources: where records enter a pipeline, with replayable read positions.
//!
//! A source is divided into splits (a Kafka partition, a file, a slice of a generated
//! sequence). The engine assigns split `i` to subtask `i % parallelism` and asks each reader
//! for the position of every split it reads: the offset of the next record. Checkpoints store
//! these positions; after a failure the reader is created again at them, so replay resumes
//! exactly after the last record whose effects the restored state already holds.

pub(crate) mod driver;
pub mod file_lines;
pub mod generator;
mod indexed;
pub mod nexmark;
pub mod vec;

use crate::data::{Data, Record, Timestamp};
use crate::message::CheckpointId;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use file_lines::FileLinesSource;
pub use generator::GeneratorSource;
pub use vec::VecSource;

/// A split's stable identifier.
pub type SplitId = String;

/// Where reading of one split continues: the offset of the next record, and for a source
/// whose position is more than a number (a file name and a byte offset, a Kinesis sequence
/// number, a compound cursor), a typed [`state`](Self::state) of its own.
///
/// Positions are stored in checkpoint metadata (JSON) and sent between processes; the typed
/// state is kept as the JSON text of the source's own type, so it reads back in later versions
/// that add fields with defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPosition {
    /// The split.
    pub split: SplitId,
    /// Offset of the next record to read (its meaning is the source's: index, byte, Kafka offset).
    /// A source with a typed state may use it as a count of records read, or leave it 0.
    pub offset: u64,
    /// The largest event timestamp handed out from this split so far, for a source that
    /// derives a watermark per split (Kafka). Restored with the offset, so that after a
    /// restore the source produces the watermarks of the failure-free run instead of starting
    /// its event-time tracking again from the replayed records. `None` for other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<Timestamp>,
    /// The source's own position type, as JSON text ([`with_state`](Self::with_state)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl SplitPosition {
    /// Split `split` continues at `offset` (no event time, no typed state).
    pub fn at(split: impl Into<SplitId>, offset: u64) -> Self {
        SplitPosition {
            split: split.into(),
            offset,
            event_time: None,
            state: None,
        }
    }

    /// This position with the source's typed position `state` (any serde type: a path and a
    /// byte offset, a sequence number as a string, a struct of several cursors).
    ///
    /// # Errors
    /// `Internal` if `state` cannot be serialized to JSON (a map with non-string keys, say).
    pub fn with_state<P: Serialize>(mut self, state: &P) -> Result<Self> {
        let text = serde_json::to_string(state).map_err(|e| {
            crate::Error::internal(format!("encoding the position of split {}", self.split)).with_source(e)
        })?;
        self.state = Some(text);
        Ok(self)
    }

    /// The typed position, `None` when the position has none.
    ///
    /// # Errors
    /// `Checkpoint` naming the split when the stored state does not read as `P` (the source's
    /// position type changed incompatibly since the checkpoint was taken).
    pub fn state<P: serde::de::DeserializeOwned>(&self) -> Result<Option<P>> {
        decode_state(&self.split, self.state.as_deref())
    }
}

/// Reads a split's typed position.
fn decode_state<P: serde::de::DeserializeOwned>(split: &str, state: Option<&str>) -> Result<Option<P>> {
    state
        .map(|text| {
            serde_json::from_str(text).map_err(|e| {
                crate::Error::checkpoint(format!(
                    "the restored position of split {split} ({text}) does not read as {}: {e}",
                    std::any::type_name::<P>()
                ))
            })
        })
        .transpose()
}

/// A split handed to a reader, with where reading continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedSplit {
    /// The split.
    pub id: SplitId,
    /// The restored offset of the next record to read; `None` when the restored checkpoint
    /// has no position for this split (a fresh start, or a split created after the
    /// checkpoint: see [`SubtaskInfo::restored`]).
    pub offset: Option<u64>,
    /// The split's restored [`SplitPosition::event_time`].
    pub event_time: Option<Timestamp>,
    /// The split's restored typed position ([`SplitPosition::state`]), as JSON text; read it
    /// with [`state`](Self::state).
    pub state: Option<String>,
}

impl AssignedSplit {
    /// A split without a restored position.
    pub fn fresh(id: impl Into<SplitId>) -> Self {
        AssignedSplit {
            id: id.into(),
            offset: None,
            event_time: None,
            state: None,
        }
    }

    /// A split continuing at `position`.
    pub fn restored(position: SplitPosition) -> Self {
        AssignedSplit {
            id: position.split,
            offset: Some(position.offset),
            event_time: position.event_time,
            state: position.state,
        }
    }

    /// The restored typed position, `None` on a fresh start or when the position has none.
    ///
    /// # Errors
    /// `Checkpoint` naming the split when the stored position does not read as `P`.
    pub fn state<P: serde::de::DeserializeOwned>(&self) -> Result<Option<P>> {
        decode_state(&self.id, self.state.as_deref())
    }
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Records may be available right away.
    More,
    /// Nothing now; poll again after about this long.
    Pending(Duration),
    /// Every split of this reader is exhausted (bounded sources only).
    Finished,
}

/// Event-time progress a reader reports for the splits it reads.
///
/// A source that knows its splits' event time (Kafka partitions, each in timestamp order up to
/// a bound) tracks a watermark per split and reports the minimum over splits that are not idle,
/// so one slow or empty split neither races ahead of nor stalls the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceWatermark {
    /// The source does not track event time (a watermark step downstream may).
    Untracked,
    /// No record with a timestamp at or before this one is expected any more.
    At(Timestamp),
    /// Every split of this reader is idle: downstream must not wait for this subtask.
    Idle,
}

/// Identity of the subtask a reader runs in.
#[derive(Debug, Clone, Copy)]
pub struct SubtaskInfo {
    /// Subtask index.
    pub index: usize,
    /// The operator's parallelism.
    pub parallelism: usize,
    /// The job restored a checkpoint that holds positions of this source: a split without a
    /// position was created after that checkpoint, so its records must all be read (a source
    /// reads it from its beginning, not from its fresh-start position).
    pub restored: bool,
}

/// A source of records of type `Out`.
pub trait Source: Send + Sync + 'static {
    /// The record type.
    type Out: Data;

    /// Every split, in a stable order. Called when the job starts.
    ///
    /// # Errors
    /// `Config` or `External` if the source cannot be reached or is misconfigured.
    fn splits(&self) -> Result<Vec<SplitId>>;

    /// A reader of `splits`, each starting at its restored offset, or at the source's
    /// configured start position when the offset is `None` (a fresh start; after a restore,
    /// see [`SubtaskInfo::restored`]).
    fn create_reader(
        &self,
        splits: Vec<AssignedSplit>,
        subtask: SubtaskInfo,
    ) -> Result<Box<dyn SourceReader<Self::Out>>>;
}

/// Reads the splits assigned to one subtask.
///
/// # Checkpointing
/// `positions` must describe exactly the records handed out so far: after a crash, a reader
/// created at these positions continues with the first record not yet returned by `poll`.
pub trait SourceReader<T>: Send {
    /// Appends up to `max` records to `out`.
    fn poll(&mut self, out: &mut Vec<Record<T>>, max: usize) -> Result<ReadStatus>;

    /// The position of every assigned split.
    fn positions(&self) -> Vec<SplitPosition>;

    /// This reader's watermark after the records polled so far; asked after every poll.
    /// Watermarks only move forward: a value below one already reported is ignored.
    fn watermark(&mut self) -> SourceWatermark {
        SourceWatermark::Untracked
    }

    /// Checkpoint `id`, which holds `positions`, is complete (for example to commit offsets to
    /// a consumer group for monitoring).
    fn notify_checkpoint_complete(&mut self, id: CheckpointId, positions: &[SplitPosition]) -> Result<()> {
        let _ = (id, positions);
        Ok(())
    }

    /// Called once, before the first poll, with this subtask's counters: a reader may add to
    /// named counters (`metrics.count("dead_letters", n)`) and export its lag per partition
    /// ([`OperatorMetrics::consumer_lag`](crate::metrics::OperatorMetrics::consumer_lag)).
    fn attach_metrics(&mut self, metrics: &crate::metrics::OperatorMetrics) {
        let _ = metrics;
    }
}
