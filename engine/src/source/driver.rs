//! Type-erased access to a source reader for the task loop.

use crate::data::{erase, Data, ErasedBatch, Record};
use crate::message::CheckpointId;
use crate::source::{ReadStatus, SourceReader, SourceWatermark, SplitPosition};
use crate::{Error, Result};

/// A source reader as the task loop sees it.
pub(crate) trait SourceDriver: Send {
    /// Reads up to `max` records.
    fn poll(&mut self, max: usize) -> Result<(Option<Box<dyn ErasedBatch>>, ReadStatus)>;
    /// Positions of every assigned split, remembered as those of checkpoint `id`.
    fn snapshot_positions(&mut self, id: CheckpointId) -> Vec<SplitPosition>;
    /// Checkpoint `id` is complete.
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()>;
    /// The reader's watermark after the last poll.
    fn watermark(&mut self) -> SourceWatermark;
    /// The source step's name.
    fn name(&self) -> &str;
    /// Records read so far by this subtask.
    fn records_read(&self) -> u64;
}

/// Drives a typed reader, remembering the positions of the last checkpoints taken so it can
/// tell the reader which positions a completed checkpoint holds.
pub(crate) struct TypedSourceDriver<T: Data> {
    pub(crate) reader: Box<dyn SourceReader<T>>,
    pub(crate) taken: Vec<(CheckpointId, Vec<SplitPosition>)>,
    pub(crate) records: crate::metrics::OperatorMetrics,
    pub(crate) name: String,
    pub(crate) subtask: usize,
}

impl<T: Data> TypedSourceDriver<T> {
    /// Runs a reader call, naming the source subtask in errors and turning panics into
    /// user-function errors.
    fn guarded<R>(&mut self, what: &str, f: impl FnOnce(&mut dyn SourceReader<T>) -> Result<R>) -> Result<R> {
        let reader = self.reader.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(reader))) {
            Ok(r) => r.map_err(|e| e.context(format!("source {}[{}] ({what})", self.name, self.subtask))),
            Err(p) => Err(Error::user(format!(
                "source {}[{}] panicked ({what}): {}",
                self.name,
                self.subtask,
                crate::error::panic_message(&p)
            ))),
        }
    }
}

impl<T: Data> SourceDriver for TypedSourceDriver<T> {
    fn poll(&mut self, max: usize) -> Result<(Option<Box<dyn ErasedBatch>>, ReadStatus)> {
        let mut out: Vec<Record<T>> = Vec::with_capacity(max);
        let status = self.guarded("reading", |r| r.poll(&mut out, max))?;
        self.records.add_out(out.len() as u64);
        let batch = if out.is_empty() { None } else { Some(erase(out)) };
        Ok((batch, status))
    }

    fn snapshot_positions(&mut self, id: CheckpointId) -> Vec<SplitPosition> {
        let p = self.reader.positions();
        self.taken.push((id, p.clone()));
        p
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn watermark(&mut self) -> SourceWatermark {
        self.reader.watermark()
    }

    fn records_read(&self) -> u64 {
        self.records.records_out()
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let positions = match self.taken.iter().position(|(c, _)| *c == id) {
            Some(i) => self.taken.drain(..=i).next_back().map(|(_, p)| p).unwrap_or_default(),
            None => return Ok(()),
        };
        self.guarded("checkpoint complete", |r| r.notify_checkpoint_complete(id, &positions))
    }
}
