//! The timestamp and watermark assigner operator.
//!
//! Its watermark follows the largest timestamp it has seen, so that value is part of every
//! checkpoint (in the operator's state): after a restore the assigner continues from the
//! largest timestamp seen before the checkpoint and emits the same watermarks after the same
//! records as a run without failure.

use super::{Emitter, OperatorContext, OperatorCore, OperatorSnapshot, SnapshotTarget};
use crate::data::{downcast, erase, Data, ErasedBatch, Timestamp, MAX_WATERMARK};
use crate::message::Barrier;
use crate::time::WatermarkStrategy;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What a checkpoint keeps of an assigner subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct AssignerState {
    max_seen: Option<Timestamp>,
    emitted: Timestamp,
}

/// Sets timestamps and emits watermarks per [`WatermarkStrategy`]. Upstream watermarks are
/// replaced by this one's, except the final one that marks the end of input.
pub(crate) struct WatermarkOp<T> {
    pub(crate) strategy: WatermarkStrategy<T>,
    pub(crate) max_seen: Option<Timestamp>,
    pub(crate) emitted: Timestamp,
    pub(crate) last_record: Instant,
    pub(crate) idle: bool,
}

impl<T> WatermarkOp<T> {
    pub(crate) fn new(strategy: WatermarkStrategy<T>) -> Self {
        WatermarkOp {
            strategy,
            max_seen: None,
            emitted: Timestamp::MIN,
            last_record: Instant::now(),
            idle: false,
        }
    }
}

impl<T: Data> OperatorCore for WatermarkOp<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let decode = |raw: &Vec<u8>| -> Result<AssignerState> {
            let (st, _): (AssignerState, _) = bincode::serde::decode_from_slice(raw, bincode::config::standard())
                .map_err(|e| {
                    Error::checkpoint(format!(
                        "the checkpointed watermark of {} cannot be read: {e}",
                        ctx.describe()
                    ))
                })?;
            Ok(st)
        };
        let mut restored = ctx.restored_state.iter().map(decode).collect::<Result<Vec<_>>>()?;
        // After a rescale the splits this subtask reads come from any old subtask: it starts
        // from the earliest of them all, so that it never emits a watermark ahead of a split.
        for (_, raw) in &ctx.rescaled_state {
            restored.push(decode(raw)?);
        }
        if let Some(first) = restored.first().copied() {
            let earliest = restored.iter().fold(first, |a, b| AssignerState {
                max_seen: a.max_seen.min(b.max_seen),
                emitted: a.emitted.min(b.emitted),
            });
            self.max_seen = earliest.max_seen;
            self.emitted = earliest.emitted;
        }
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let mut batch = downcast::<T>(batch)?;
        if batch.is_empty() {
            return Ok(());
        }
        self.last_record = Instant::now();
        if self.idle {
            self.idle = false;
            out.idle(false);
        }
        let mut max = self.max_seen.unwrap_or(Timestamp::MIN);
        for r in &mut batch {
            let ts = match &self.strategy.timestamp {
                Some(f) => f(&r.value),
                None => r.timestamp.ok_or_else(|| {
                    Error::config(
                        "a watermark strategy without a timestamp assigner needs records with timestamps from the source",
                    )
                })?,
            };
            r.timestamp = Some(ts);
            max = max.max(ts);
        }
        self.max_seen = Some(max);
        out.batch(erase(batch));
        let ooo = self.strategy.out_of_orderness.as_millis() as Timestamp;
        let wm = max.saturating_sub(ooo).saturating_sub(1);
        if wm > self.emitted {
            self.emitted = wm;
            out.watermark(wm);
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if wm == MAX_WATERMARK && self.emitted < MAX_WATERMARK {
            self.emitted = MAX_WATERMARK;
            out.watermark(MAX_WATERMARK);
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier, _target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        let st = AssignerState {
            max_seen: self.max_seen,
            emitted: self.emitted,
        };
        Ok(OperatorSnapshot {
            keyed_files: Vec::new(),
            operator_state: Some(bincode::serde::encode_to_vec(st, bincode::config::standard())?),
        })
    }

    fn on_idle(&mut self, _idle: bool, _out: &mut Emitter) -> Result<()> {
        Ok(()) // this operator decides idleness from its own input
    }

    fn on_processing_time(&mut self, _now_ms: u64, out: &mut Emitter) -> Result<()> {
        if let Some(d) = self.strategy.idleness {
            if !self.idle && self.emitted < MAX_WATERMARK && self.last_record.elapsed() >= d {
                self.idle = true;
                out.idle(true);
            }
        }
        Ok(())
    }
}
