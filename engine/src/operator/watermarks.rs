//! The timestamp and watermark assigner operator.

use super::{Emitter, OperatorCore};
use crate::data::{downcast, erase, Data, ErasedBatch, Timestamp, MAX_WATERMARK};
use crate::time::WatermarkStrategy;
use crate::{Error, Result};
use std::time::Instant;

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
