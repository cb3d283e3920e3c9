//! Fallible record-at-a-time steps (`try_map`, `try_filter`, `try_flat_map`): the function's
//! errors are data errors, handled by a [`BadRecordPolicy`].
//!
//! # After a crash
//! Skipped records are counted again when they are replayed (the counter is a metric, not
//! state). Dead letters are a side output: exactly once downstream, as any output.

use super::{Emitter, OperatorContext, OperatorCore};
use crate::data::{downcast, erase, Data, ErasedBatch, Record};
use crate::metrics::OperatorMetrics;
use crate::side_output::{BadRecordPolicy, DeadLetter, SideOutputs};
use crate::{Error, Result};
use std::sync::Arc;

/// A fallible function: appends its outputs for one input, or returns the error message.
pub(crate) type TryFn<I, O> = Arc<dyn Fn(I, &mut Vec<O>) -> std::result::Result<(), String> + Send + Sync>;

/// Runs a [`TryFn`] under a bad-record policy.
pub(crate) struct FallibleOp<I, O> {
    pub(crate) f: TryFn<I, O>,
    pub(crate) policy: BadRecordPolicy,
    /// Whether dead letters are read (then the step emits tagged records).
    pub(crate) tagged: bool,
    step: String,
    metrics: OperatorMetrics,
    side: SideOutputs,
}

impl<I: Data, O: Data> FallibleOp<I, O> {
    pub(crate) fn new(f: TryFn<I, O>, policy: BadRecordPolicy, tagged: bool) -> Self {
        FallibleOp {
            f,
            policy,
            tagged,
            step: String::new(),
            metrics: OperatorMetrics::default(),
            side: SideOutputs::default(),
        }
    }
}

impl<I: Data, O: Data> OperatorCore for FallibleOp<I, O> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.step = ctx.operator.clone();
        self.metrics = ctx.metrics.clone();
        Ok(())
    }

    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let batch = downcast::<I>(batch)?;
        let mut produced = Vec::with_capacity(batch.len());
        let mut scratch = Vec::new();
        let (mut skipped, mut dead) = (0, 0);
        for r in batch {
            // The record is kept for its dead letter only under that policy.
            let kept = (self.policy == BadRecordPolicy::DeadLetter).then(|| r.value.clone());
            scratch.clear();
            match (self.f)(r.value, &mut scratch) {
                Ok(()) => produced.extend(scratch.drain(..).map(|value| Record {
                    value,
                    timestamp: r.timestamp,
                })),
                Err(error) => match self.policy {
                    BadRecordPolicy::Fail => {
                        return Err(Error::data(format!(
                            "step \"{}\" rejected a record: {error}",
                            self.step
                        )))
                    }
                    BadRecordPolicy::Skip => skipped += 1,
                    BadRecordPolicy::DeadLetter => {
                        dead += 1;
                        if self.tagged {
                            let letter = DeadLetter {
                                step: self.step.clone(),
                                record: kept.expect("kept under this policy"),
                                error,
                            };
                            self.side.emit(&DeadLetter::<I>::TAG, &letter, r.timestamp)?;
                        }
                    }
                },
            }
        }
        if skipped > 0 {
            self.metrics.count("skipped_records", skipped);
        }
        if dead > 0 {
            self.metrics.count("dead_letters", dead);
        }
        if self.tagged {
            out.batch(erase(self.side.tag_with(produced)));
        } else {
            out.batch(erase(produced));
        }
        Ok(())
    }
}
