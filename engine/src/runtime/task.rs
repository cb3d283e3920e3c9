//! The loop of one subtask thread: read from the head (a source reader or the input gate),
//! push through the chain, answer barriers and control messages.
//!
//! End of input is a checkpoint like any other: an exhausted source keeps answering checkpoint
//! triggers (its positions no longer move), and when every source is exhausted the master
//! triggers a `Final` barrier. On that barrier each subtask delivers the final watermark,
//! finishes its operators (their last output travels ahead of the barrier), snapshots and sends
//! end of stream. Sinks commit the final output only once that checkpoint is complete, exactly
//! as for periodic checkpoints.
//!
//! A `StopWithSavepoint` barrier ends the stream the same way, without the final watermark and
//! without finishing operators: sources stop reading at it, every subtask snapshots, and ends
//! once the savepoint's checkpoint is complete (its output committed). Open windows and timers
//! stay in the savepoint's state.

use crate::checkpoint::ack::{CheckpointAck, OperatorSubtaskSnapshot, SourceSnapshot};
use crate::data::{Timestamp, MAX_WATERMARK};
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::metrics::TaskClock;
use crate::operator::{OperatorContext, SnapshotTarget};
use crate::runtime::attempt::JobShared;
use crate::runtime::chain::Chain;
use crate::runtime::control::Control;
use crate::runtime::events::TaskEvent;
use crate::runtime::gate::{GateEvent, InputGate};
use crate::source::driver::SourceDriver;
use crate::source::{ReadStatus, SourceWatermark};
use crate::{Error, ErrorKind, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often operators see processing time when nothing else happens.
const TICK: Duration = Duration::from_millis(50);

pub(crate) use crate::wall_clock::now_ms;

/// Where a subtask's records come from.
pub(crate) enum Head {
    Source(Box<dyn SourceDriver>),
    Gate(InputGate),
}

/// Everything one subtask thread owns.
pub(crate) struct Task {
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) head: Head,
    pub(crate) chain: Chain,
    pub(crate) control: Receiver<Control>,
    pub(crate) events: Sender<TaskEvent>,
    pub(crate) job: Arc<JobShared>,
    pub(crate) batch_size: usize,
    /// Busy, idle and backpressured time, and the watermark, for the metrics.
    pub(crate) clock: TaskClock,
}

/// What a source task has sent downstream of its reader's watermark.
#[derive(Default)]
struct SourceEventTime {
    watermark: Option<Timestamp>,
    idle: bool,
}

impl SourceEventTime {
    /// Forwards the reader's watermark when it moved forward, and idleness when it changed.
    fn advance(&mut self, reported: SourceWatermark, chain: &mut Chain) -> Result<()> {
        match reported {
            SourceWatermark::Untracked => {}
            SourceWatermark::At(w) => {
                if self.idle {
                    self.idle = false;
                    chain.push_idle(false)?;
                }
                if self.watermark.is_none_or(|prev| w > prev) {
                    self.watermark = Some(w);
                    chain.push_watermark(w)?;
                }
            }
            SourceWatermark::Idle => {
                if !self.idle {
                    self.idle = true;
                    chain.push_idle(true)?;
                }
            }
        }
        Ok(())
    }
}

enum Phase {
    Running,
    /// Snapshotted the final checkpoint or the stop-with-savepoint `id` (nothing more is
    /// emitted): waits for its completion.
    AwaitingFinalCommit(CheckpointId),
}

impl Task {
    /// Runs the subtask on a thread of its own, which reports how it ended
    /// ([`TaskEvent::Exited`]) whatever happens, a panic included.
    pub(crate) fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let events = self.events.clone();
        let (id, name) = (self.id, self.name.clone());
        std::thread::Builder::new().name(format!("weir-{name}")).spawn(move || {
            let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())) {
                Ok(r) => r,
                Err(p) => Err(Error::internal(format!(
                    "subtask {name} panicked: {}",
                    crate::error::panic_message(&p)
                ))),
            };
            let _ = events.send(TaskEvent::Exited {
                task: id,
                outcome: crate::runtime::events::TaskOutcome::of(result),
            });
        })
    }

    /// Runs the subtask until it finishes, fails or is cancelled.
    pub(crate) fn run(mut self) -> Result<()> {
        self.chain.open()?;
        let _ = self.events.send(TaskEvent::Running { task: self.id });
        let r = match std::mem::replace(&mut self.head, Head::Gate(InputGate::new(Vec::new()))) {
            Head::Source(src) => self.run_source(src),
            Head::Gate(gate) => self.run_gate(gate),
        };
        self.chain.close();
        r
    }

    fn run_source(&mut self, mut src: Box<dyn SourceDriver>) -> Result<()> {
        let mut exhausted = false;
        let mut event_time = SourceEventTime::default();
        let mut phase = Phase::Running;
        let mut next_tick = Instant::now() + TICK;
        loop {
            // Control first: a trigger must not wait behind a long stream of records.
            loop {
                match self.control.try_recv() {
                    Ok(c) => {
                        if let Some(done) = self.on_source_control(c, &mut src, &mut phase)? {
                            return Ok(done);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(Error::internal("control channel closed")),
                }
            }
            self.check_cancelled()?;
            // After the final barrier nothing may be emitted: it would never be committed.
            if Instant::now() >= next_tick && matches!(phase, Phase::Running) {
                self.chain.on_processing_time(now_ms())?;
                next_tick = Instant::now() + TICK;
            }
            // Deadlines an operator of the chain asked for (timers, async results) come
            // between ticks too.
            let deadline = self
                .chain
                .next_deadline_ms()
                .filter(|_| matches!(phase, Phase::Running));
            if deadline.is_some_and(|d| d <= now_ms()) {
                self.chain.on_processing_time(now_ms())?;
            }
            let wait = if exhausted || matches!(phase, Phase::AwaitingFinalCommit(_)) {
                TICK
            } else {
                let (batch, status) = src.poll(self.batch_size)?;
                if let Some(b) = batch {
                    self.chain.push_batch(0, b)?;
                }
                event_time.advance(src.watermark(), &mut self.chain)?;
                if let Some(w) = event_time.watermark {
                    self.clock.watermark(w);
                }
                match status {
                    ReadStatus::More => {
                        self.clock.busy_until_now();
                        continue;
                    }
                    ReadStatus::Pending(d) => d.min(TICK),
                    ReadStatus::Finished => {
                        exhausted = true;
                        // Event time ends with the input; downstream timers may fire now.
                        self.chain.push_watermark(MAX_WATERMARK)?;
                        let _ = self.events.send(TaskEvent::SourceExhausted { task: self.id });
                        TICK
                    }
                }
            };
            let wait = match deadline {
                Some(d) => wait.min(Duration::from_millis(d.saturating_sub(now_ms()))),
                None => wait,
            };
            self.clock.wait_starts();
            let received = self.control.recv_timeout(wait);
            self.clock.wait_ends();
            match received {
                Ok(c) => {
                    if let Some(done) = self.on_source_control(c, &mut src, &mut phase)? {
                        return Ok(done);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(Error::internal("control channel closed")),
            }
        }
    }

    /// Handles a control message in a source task; `Some(())` means the task is done.
    fn on_source_control(
        &mut self,
        c: Control,
        src: &mut Box<dyn SourceDriver>,
        phase: &mut Phase,
    ) -> Result<Option<()>> {
        match c {
            Control::TriggerCheckpoint { barrier } => {
                let started = Instant::now();
                let positions = src.snapshot_positions(barrier.id);
                if barrier.kind == BarrierKind::Final {
                    // Only sent once every source is exhausted: the final watermark already went out.
                    self.chain.finish_operators()?;
                }
                let operators = self.snapshot_chain(&barrier)?;
                let sync_duration = started.elapsed();
                if barrier.kind.ends_stream() {
                    // End of stream goes out before the ack: once the master has every ack,
                    // every end of stream has been sent, and downstream tasks wait for it.
                    self.chain.end_outputs()?;
                    *phase = Phase::AwaitingFinalCommit(barrier.id);
                }
                self.ack(CheckpointAck {
                    task: self.id,
                    barrier,
                    operators,
                    source: Some(SourceSnapshot {
                        source: src.name().to_string(),
                        positions,
                        records_read: src.records_read(),
                    }),
                    alignment: Duration::ZERO,
                    sync_duration,
                });
                Ok(None)
            }
            Control::CheckpointComplete { id } => {
                src.notify_checkpoint_complete(id)?;
                self.chain.notify_checkpoint_complete(id)?;
                Ok(match phase {
                    Phase::AwaitingFinalCommit(f) if id >= *f => Some(()),
                    _ => None,
                })
            }
            Control::Cancel => Err(cancelled()),
        }
    }

    fn run_gate(&mut self, mut gate: InputGate) -> Result<()> {
        let mut phase = Phase::Running;
        // The task ends once its final checkpoint is complete and every input has ended (so
        // no upstream is still sending to it), in whichever order the two happen.
        let mut final_complete = false;
        let mut inputs_ended = false;
        let mut watermark: Timestamp = Timestamp::MIN;
        if let Some((combined, channels)) = self.chain.restored_input_watermarks() {
            gate.restore_watermarks(combined, &channels);
            watermark = combined;
        }
        let mut next_tick = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            let running = matches!(phase, Phase::Running);
            if now >= next_tick && running {
                self.chain.on_processing_time(now_ms())?;
            }
            if now >= next_tick {
                next_tick = now + TICK;
            }
            let mut timeout = next_tick.saturating_duration_since(now);
            if let Some(d) = self.chain.next_deadline_ms().filter(|_| running) {
                let wall = now_ms();
                if d <= wall {
                    self.chain.on_processing_time(wall)?;
                    // A timer that keeps re-arming itself must not keep the task from
                    // noticing that it is cancelled.
                    self.check_cancelled()?;
                    continue;
                }
                timeout = timeout.min(Duration::from_millis(d - wall));
            }
            self.clock.wait_starts();
            let event = gate.next(&self.control, timeout)?;
            self.clock.wait_ends();
            match event {
                GateEvent::Batch(input, b) => self.chain.push_batch(input, b)?,
                GateEvent::Watermark(w) => {
                    watermark = w;
                    self.clock.watermark(w);
                    self.chain.push_watermark(w)?;
                }
                GateEvent::Idle(idle) => self.chain.push_idle(idle)?,
                GateEvent::Aligned(barrier, alignment) => {
                    let started = Instant::now();
                    if barrier.kind == BarrierKind::Final {
                        if watermark < MAX_WATERMARK {
                            watermark = MAX_WATERMARK;
                            self.chain.push_watermark(MAX_WATERMARK)?;
                        }
                        self.chain.finish_operators()?;
                    }
                    self.chain
                        .set_input_watermarks(gate.watermark(), &gate.channel_watermarks());
                    let operators = self.snapshot_chain(&barrier)?;
                    self.ack(CheckpointAck {
                        task: self.id,
                        barrier,
                        operators,
                        source: None,
                        alignment,
                        sync_duration: started.elapsed(),
                    });
                    if barrier.kind.ends_stream() {
                        phase = Phase::AwaitingFinalCommit(barrier.id);
                    }
                }
                GateEvent::Ended => {
                    if !matches!(phase, Phase::AwaitingFinalCommit(_)) {
                        return Err(Error::internal(format!(
                            "{}: inputs ended without the final checkpoint barrier",
                            self.name
                        )));
                    }
                    self.chain.end_outputs()?;
                    inputs_ended = true;
                    if final_complete {
                        return Ok(());
                    }
                }
                GateEvent::Control(Control::CheckpointComplete { id }) => {
                    self.chain.notify_checkpoint_complete(id)?;
                    if let Phase::AwaitingFinalCommit(f) = phase {
                        if id >= f {
                            final_complete = true;
                            if inputs_ended {
                                return Ok(());
                            }
                        }
                    }
                }
                GateEvent::Control(Control::Cancel) => return Err(cancelled()),
                GateEvent::Control(Control::TriggerCheckpoint { .. }) => {
                    return Err(Error::internal("checkpoint trigger sent to a non-source task"))
                }
                GateEvent::Timeout => self.check_cancelled()?,
            }
        }
    }

    fn snapshot_chain(&mut self, barrier: &Barrier) -> Result<Vec<OperatorSubtaskSnapshot>> {
        self.job.fail_points().hit(crate::fail::SNAPSHOT_SYNC)?;
        let dir = self.job.snapshot_dir(barrier.id);
        let target_for = |ctx: &OperatorContext| SnapshotTarget {
            dir: dir.as_ref().map(|d| {
                d.join(crate::state::backend::dir_name(&ctx.operator))
                    .join(ctx.subtask.to_string())
            }),
        };
        self.chain.snapshot(barrier, &target_for)
    }

    fn ack(&self, ack: CheckpointAck) {
        let _ = self.events.send(TaskEvent::Ack { ack: Box::new(ack) });
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.job.is_cancelled() {
            Err(cancelled())
        } else {
            Ok(())
        }
    }
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "job cancelled")
}
