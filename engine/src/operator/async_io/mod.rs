//! The async step (Flink's `AsyncWaitOperator`): calls an [`AsyncFunction`] for each record
//! without blocking its subtask, up to `capacity` records at once, and emits their results in
//! input order or as they complete.
//!
//! Requests run on the process's shared runtime ([`executor`]); their outcomes come back over
//! a channel that the subtask drains whenever the runtime calls it (records, watermarks, and
//! processing time: while requests are in flight the step asks for processing time every
//! millisecond). When `capacity` records are queued, taking the next record waits for a result:
//! backpressure reaches the inputs.
//!
//! # Checkpoints and after a crash
//! A barrier does not wait for requests: the records whose results were not emitted yet (with
//! the watermarks between them) go into the operator state ([`state`]), whatever their
//! requests' progress. After a restore they are issued again, in their order, before any new
//! record, and their results are emitted as if the failure had not happened: every record's
//! results appear exactly once in the committed output, while the service may see a record
//! called twice (at-least-once calls). At the end of the input (`finish`) the step waits for
//! every request.

pub(crate) mod executor;
pub mod options;
pub(crate) mod queue;
pub(crate) mod state;

use self::executor::{Completion, Outcome, RequestSettings};
use self::options::AsyncOptions;
use self::queue::{Marker, Queue, Ready};
use self::state::AsyncState;
use super::{ChannelWatermark, Emitter, OperatorContext, OperatorCore, OperatorSnapshot, SnapshotTarget};
use crate::cancellation::Cancellation;
use crate::data::{downcast, erase, Data, ErasedBatch, Record, Timestamp, MIN_WATERMARK};
use crate::functions::AsyncFunction;
use crate::keyed::event_time::EventTime;
use crate::message::Barrier;
use crate::metrics::OperatorMetrics;
use crate::side_output::{BadRecordPolicy, DeadLetter, SideOutputs};
use crate::{Error, ErrorKind, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a subtask waiting for a free slot checks that its attempt was not cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// A record's result in the queue: its outputs, or the error of a dead letter.
type Outputs<O> = std::result::Result<Vec<O>, String>;

/// One subtask of an async step.
pub(crate) struct AsyncOp<I, F: AsyncFunction<I>> {
    /// The function until `open`; then shared with the requests.
    unopened: Option<F>,
    f: Option<Arc<F>>,
    options: AsyncOptions,
    /// Whether dead letters are read (then the step emits tagged records).
    tagged: bool,
    queue: Queue<I, Outputs<F::Out>>,
    in_flight: HashMap<u64, tokio::task::AbortHandle>,
    done_tx: Sender<Completion<F::Out>>,
    done_rx: Receiver<Completion<F::Out>>,
    settings: Arc<RequestSettings>,
    runtime: Option<&'static tokio::runtime::Runtime>,
    step: String,
    metrics: OperatorMetrics,
    side: SideOutputs,
    cancellation: Cancellation,
    fail_points: crate::fail::FailPoints,
    /// The combined input watermark the step last saw, and its input channels' (reported
    /// before each snapshot): restored into the input gate.
    input: EventTime,
    restored_input: Option<EventTime>,
    /// The last watermark emitted: never goes back.
    emitted_watermark: Timestamp,
}

impl<I: Data, F: AsyncFunction<I>> AsyncOp<I, F> {
    pub(crate) fn new(f: F, options: AsyncOptions, tagged: bool) -> Self {
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let settings = Arc::new(RequestSettings {
            timeout: options.timeout,
            retry: options.retry,
            retries: AtomicU64::new(0),
        });
        AsyncOp {
            unopened: Some(f),
            f: None,
            queue: Queue::new(options.order),
            options,
            tagged,
            in_flight: HashMap::new(),
            done_tx,
            done_rx,
            settings,
            runtime: None,
            step: String::new(),
            metrics: OperatorMetrics::default(),
            side: SideOutputs::default(),
            cancellation: Cancellation::default(),
            fail_points: crate::fail::FailPoints::new(),
            input: EventTime::default(),
            restored_input: None,
            emitted_watermark: MIN_WATERMARK,
        }
    }

    /// Restores the records in flight (and input event time) a checkpoint kept for this subtask.
    fn restore(&mut self, ctx: &OperatorContext) -> Result<()> {
        let describe = ctx.describe();
        let state = if let Some(raw) = &ctx.restored_state {
            AsyncState::<I>::from_bytes(raw, &describe)?
        } else if !ctx.rescaled_state.is_empty() {
            let old = ctx
                .rescaled_state
                .iter()
                .map(|(i, raw)| Ok((*i, AsyncState::<I>::from_bytes(raw, &format!("{}[{i}]", ctx.operator))?)))
                .collect::<Result<Vec<_>>>()?;
            AsyncState::rescaled(old, ctx.subtask, ctx.parallelism)
        } else {
            return Ok(());
        };
        self.input = state.input.clone();
        self.restored_input = Some(state.input);
        let records = state
            .queued
            .iter()
            .filter(|s| matches!(s, self::queue::Saved::Record { .. }))
            .count();
        if records > 0 {
            self.metrics.count("async_restored_records", records as u64);
        }
        self.queue.restore(state.queued);
        Ok(())
    }

    /// Starts requests for waiting records, in their order, while fewer than `capacity` are
    /// in flight.
    fn issue(&mut self) -> Result<()> {
        let (Some(rt), Some(f)) = (self.runtime, self.f.as_ref()) else {
            return Err(Error::internal(format!(
                "async step \"{}\" used before open",
                self.step
            )));
        };
        while self.in_flight.len() < self.options.capacity {
            let Some((seq, input)) = self.queue.issue_next() else {
                break;
            };
            let handle = executor::spawn(rt, f.clone(), self.settings.clone(), seq, input, self.done_tx.clone());
            self.in_flight.insert(seq, handle);
        }
        Ok(())
    }

    /// Takes the outcome of a request into the queue.
    fn complete(&mut self, c: Completion<F::Out>) -> Result<()> {
        self.in_flight.remove(&c.seq);
        if c.timed_out {
            self.metrics.count("async_timeouts", 1);
        }
        let result = match c.outcome {
            Outcome::Results(v) => Ok(v),
            Outcome::TimedOut(e) => {
                return Err(e.context(format!(
                    "async step \"{}\": a request did not complete within {:?}",
                    self.step, self.options.timeout
                )))
            }
            Outcome::Failed(e) => match self.options.on_error {
                BadRecordPolicy::Fail => {
                    return Err(Error::data(format!(
                        "async step \"{}\" rejected a record: {e} (after {} attempt(s))",
                        self.step, self.options.retry.max_attempts
                    )))
                }
                BadRecordPolicy::Skip => {
                    self.metrics.count("skipped_records", 1);
                    Ok(Vec::new())
                }
                BadRecordPolicy::DeadLetter => {
                    self.metrics.count("dead_letters", 1);
                    Err(e.to_string())
                }
            },
        };
        self.queue.complete(c.seq, result);
        Ok(())
    }

    /// Takes every outcome already in, issues waiting records and emits what may leave.
    fn poll(&mut self, out: &mut Emitter) -> Result<()> {
        while let Ok(c) = self.done_rx.try_recv() {
            self.complete(c)?;
        }
        let retries = self.settings.retries.swap(0, Ordering::Relaxed);
        if retries > 0 {
            self.metrics.count("async_retries", retries);
        }
        self.issue()?;
        self.emit(out)
    }

    /// Waits for at least one outcome (checking for cancellation), then [`poll`](Self::poll)s.
    fn wait_for_one(&mut self, out: &mut Emitter) -> Result<()> {
        if self.in_flight.is_empty() {
            self.issue()?;
            if self.in_flight.is_empty() {
                // Nothing to wait for: whatever is queued has its result.
                return self.poll(out);
            }
        }
        loop {
            if self.cancellation.is_cancelled() {
                return Err(Error::new(ErrorKind::Cancelled, "job cancelled"));
            }
            match self.done_rx.recv_timeout(CANCEL_CHECK) {
                Ok(c) => {
                    self.complete(c)?;
                    return self.poll(out);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::internal(format!(
                        "async step \"{}\": results channel closed",
                        self.step
                    )))
                }
            }
        }
    }

    /// Emits the results and markers that may leave the queue, in order.
    fn emit(&mut self, out: &mut Emitter) -> Result<()> {
        let mut produced: Vec<Record<F::Out>> = Vec::new();
        for ready in self.queue.pop_ready() {
            match ready {
                Ready::Record {
                    value,
                    timestamp,
                    result,
                } => match result {
                    Ok(results) => produced.extend(results.into_iter().map(|value| Record { value, timestamp })),
                    Err(error) => {
                        if self.tagged {
                            let letter = DeadLetter {
                                step: self.step.clone(),
                                record: value,
                                error,
                            };
                            self.side.emit(&DeadLetter::<I>::TAG, &letter, timestamp)?;
                        }
                    }
                },
                Ready::Marker(marker) => {
                    self.flush(&mut produced, out);
                    self.forward(marker, out);
                }
            }
        }
        self.flush(&mut produced, out);
        Ok(())
    }

    fn flush(&mut self, produced: &mut Vec<Record<F::Out>>, out: &mut Emitter) {
        let batch = std::mem::take(produced);
        if self.tagged {
            out.batch(erase(self.side.tag_with(batch)));
        } else {
            out.batch(erase(batch));
        }
    }

    fn forward(&mut self, marker: Marker, out: &mut Emitter) {
        match marker {
            Marker::Watermark(w) if w > self.emitted_watermark => {
                self.emitted_watermark = w;
                out.watermark(w);
            }
            Marker::Watermark(_) => {}
            Marker::Idle(idle) => out.idle(idle),
        }
    }

    /// A watermark or idleness change: forwarded at once when nothing is queued, else queued
    /// behind the records that arrived before it.
    fn on_marker(&mut self, marker: Marker, out: &mut Emitter) -> Result<()> {
        self.poll(out)?;
        if self.queue.is_empty() {
            self.forward(marker, out);
        } else {
            self.queue.push_marker(marker);
        }
        Ok(())
    }
}

impl<I: Data, F: AsyncFunction<I>> OperatorCore for AsyncOp<I, F> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.step = ctx.operator.clone();
        self.metrics = ctx.metrics.clone();
        self.cancellation = ctx.cancellation.clone();
        self.fail_points = ctx.fail_points.clone();
        let rt = executor::runtime()?;
        self.runtime = Some(rt);
        self.restore(ctx)?;
        let mut f = self
            .unopened
            .take()
            .ok_or_else(|| Error::internal(format!("async step {} opened twice", ctx.describe())))?;
        {
            let _inside = rt.enter();
            f.open(&ctx.runtime())?;
        }
        self.f = Some(Arc::new(f));
        // Restored records go out first, before any new record.
        self.issue()
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let batch = downcast::<I>(batch)?;
        for r in batch {
            self.poll(out)?;
            while self.queue.len() >= self.options.capacity {
                self.wait_for_one(out)?;
            }
            self.queue.push_record(r.value, r.timestamp);
            self.issue()?;
            // A failure injected by a test strikes with this record's request in flight.
            self.fail_points.hit(crate::fail::PROCESS_RECORD)?;
        }
        self.poll(out)
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        self.input.watermark = self.input.watermark.max(wm);
        self.on_marker(Marker::Watermark(wm), out)
    }

    fn on_idle(&mut self, idle: bool, out: &mut Emitter) -> Result<()> {
        self.on_marker(Marker::Idle(idle), out)
    }

    fn on_processing_time(&mut self, _now_ms: u64, out: &mut Emitter) -> Result<()> {
        self.poll(out)
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        // Outcomes arrive on another thread: look for them every millisecond meanwhile.
        (!self.in_flight.is_empty()).then(|| crate::wall_clock::now_ms() + 1)
    }

    fn restored_input_watermarks(&self) -> Option<(Timestamp, Vec<ChannelWatermark>)> {
        let et = self.restored_input.as_ref()?;
        (et.watermark > MIN_WATERMARK || !et.channels.is_empty()).then(|| (et.watermark, et.channels.clone()))
    }

    fn set_input_watermarks(&mut self, channels: &[ChannelWatermark]) {
        self.input.channels.clear();
        self.input.channels.extend_from_slice(channels);
    }

    fn snapshot(&mut self, _barrier: &Barrier, _target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        let state = AsyncState::new(self.queue.saved(), self.input.clone());
        Ok(OperatorSnapshot {
            keyed_files: Vec::new(),
            operator_state: Some(state.to_bytes()?),
        })
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        self.poll(out)?;
        while !self.queue.is_empty() {
            self.wait_for_one(out)?;
        }
        Ok(())
    }

    fn close(&mut self) {
        for (_, handle) in self.in_flight.drain() {
            handle.abort();
        }
        if let Some(f) = &self.f {
            f.close();
        }
    }
}
