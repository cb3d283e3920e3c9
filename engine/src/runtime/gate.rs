//! The input gate of a subtask: reads its input channels, aligns barriers and combines
//! watermarks.
//!
//! Alignment: when a channel delivers `Barrier(n)` the gate stops reading it (it is simply left
//! out of the select set) until every channel that has not ended delivered `Barrier(n)` too.
//! Then the gate reports the barrier as aligned: every record before it on every channel has
//! been handed out, and none after it. A channel that ended counts as aligned for every later
//! barrier, so a finished upstream never blocks a checkpoint.
//!
//! Watermarks: the gate's watermark is the minimum over channels that are neither idle nor
//! ended, and never goes backwards. When every live channel is idle the gate reports itself
//! idle, so an idle input never stalls event time downstream.

use crate::data::{ErasedBatch, Timestamp, MIN_WATERMARK};
use crate::message::{Barrier, Message};
use crate::runtime::control::Control;
use crate::{Error, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Select, TryRecvError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One input channel as the gate sees it.
struct Channel {
    rx: Receiver<Message>,
    /// Logical input of the operator (0, or 1 for the second input of a two-input operator).
    input: usize,
    watermark: Timestamp,
    idle: bool,
    ended: bool,
    /// Delivered the barrier being aligned; not read until alignment completes.
    blocked: bool,
}

/// What the gate hands to the task loop.
pub(crate) enum GateEvent {
    /// Records that arrived on logical input `input`.
    Batch(usize, Box<dyn ErasedBatch>),
    /// The combined watermark advanced.
    Watermark(Timestamp),
    /// The gate became idle or active.
    Idle(bool),
    /// Barrier aligned on every live channel, after waiting `alignment` for the last one.
    Aligned(Barrier, Duration),
    /// Every channel has ended.
    Ended,
    /// A control message for the task.
    Control(Control),
    /// Nothing arrived before the timeout.
    Timeout,
}

struct Alignment {
    barrier: Barrier,
    started: Instant,
}

/// Reads, aligns and combines a subtask's input channels.
pub(crate) struct InputGate {
    channels: Vec<Channel>,
    aligning: Option<Alignment>,
    watermark: Timestamp,
    idle: bool,
    pending: VecDeque<GateEvent>,
    next_channel: usize,
    ended_reported: bool,
}

impl InputGate {
    /// A gate over `(receiver, logical input)` pairs.
    pub(crate) fn new(inputs: Vec<(Receiver<Message>, usize)>) -> Self {
        InputGate {
            channels: inputs
                .into_iter()
                .map(|(rx, input)| Channel {
                    rx,
                    input,
                    watermark: MIN_WATERMARK,
                    idle: false,
                    ended: false,
                    blocked: false,
                })
                .collect(),
            aligning: None,
            watermark: MIN_WATERMARK,
            idle: false,
            pending: VecDeque::new(),
            next_channel: 0,
            ended_reported: false,
        }
    }

    /// The next event, waiting at most `timeout` (control messages are always read).
    pub(crate) fn next(&mut self, control: &Receiver<Control>, timeout: Duration) -> Result<GateEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(e);
        }
        if self.all_ended() {
            if !self.ended_reported {
                self.ended_reported = true;
                return Ok(GateEvent::Ended);
            }
            return match control.recv_timeout(timeout) {
                Ok(c) => Ok(GateEvent::Control(c)),
                Err(RecvTimeoutError::Timeout) => Ok(GateEvent::Timeout),
                Err(RecvTimeoutError::Disconnected) => Err(Error::internal("control channel closed")),
            };
        }
        match control.try_recv() {
            Ok(c) => return Ok(GateEvent::Control(c)),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Err(Error::internal("control channel closed")),
        }
        // Fast path: poll readable channels round-robin without building a Select.
        let n = self.channels.len();
        for k in 0..n {
            let i = (self.next_channel + k) % n;
            if !self.readable(i) {
                continue;
            }
            match self.channels[i].rx.try_recv() {
                Ok(msg) => {
                    self.next_channel = (i + 1) % n;
                    self.on_message(i, msg)?;
                    return Ok(self.pending.pop_front().unwrap_or(GateEvent::Timeout));
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(self.disconnected(i)),
            }
        }
        // Slow path: block on every readable channel and the control channel.
        let mut sel = Select::new();
        let mut index = Vec::with_capacity(n);
        for i in 0..n {
            if self.readable(i) {
                sel.recv(&self.channels[i].rx);
                index.push(i);
            }
        }
        let control_op = sel.recv(control);
        let op = match sel.select_timeout(timeout) {
            Ok(op) => op,
            Err(_) => return Ok(GateEvent::Timeout),
        };
        if op.index() == control_op {
            return match op.recv(control) {
                Ok(c) => Ok(GateEvent::Control(c)),
                Err(_) => Err(Error::internal("control channel closed")),
            };
        }
        let i = index[op.index()];
        match op.recv(&self.channels[i].rx) {
            Ok(msg) => {
                self.next_channel = (i + 1) % n;
                self.on_message(i, msg)?;
                Ok(self.pending.pop_front().unwrap_or(GateEvent::Timeout))
            }
            Err(_) => Err(self.disconnected(i)),
        }
    }

    fn readable(&self, i: usize) -> bool {
        let c = &self.channels[i];
        !c.ended && !c.blocked
    }

    fn all_ended(&self) -> bool {
        self.channels.iter().all(|c| c.ended)
    }

    fn disconnected(&self, i: usize) -> Error {
        Error::internal(format!(
            "input channel {i} closed without end of stream (its upstream subtask stopped)"
        ))
    }

    fn on_message(&mut self, i: usize, msg: Message) -> Result<()> {
        match msg {
            Message::Batch(b) => {
                if self.channels[i].idle {
                    self.channels[i].idle = false;
                    self.update_watermark();
                }
                self.pending.push_back(GateEvent::Batch(self.channels[i].input, b));
            }
            Message::Watermark(w) => {
                let c = &mut self.channels[i];
                c.idle = false;
                c.watermark = c.watermark.max(w);
                self.update_watermark();
            }
            Message::Idle(idle) => {
                self.channels[i].idle = idle;
                self.update_watermark();
            }
            Message::Barrier(b) => self.on_barrier(i, b),
            Message::End => {
                self.channels[i].ended = true;
                self.channels[i].blocked = false;
                self.update_watermark();
                self.check_aligned();
            }
        }
        Ok(())
    }

    fn on_barrier(&mut self, i: usize, b: Barrier) {
        match &self.aligning {
            Some(a) if b.id < a.barrier.id => return, // stale: belongs to an abandoned alignment
            Some(a) if b.id > a.barrier.id => {
                // The older checkpoint was abandoned upstream; align on the newer one instead.
                tracing::debug!(old = a.barrier.id, new = b.id, "abandoning barrier alignment");
                self.unblock_all();
                self.aligning = None;
            }
            _ => {}
        }
        if self.aligning.is_none() {
            self.aligning = Some(Alignment {
                barrier: b,
                started: Instant::now(),
            });
        }
        self.channels[i].blocked = true;
        self.check_aligned();
    }

    fn check_aligned(&mut self) {
        let Some(a) = &self.aligning else { return };
        if self.channels.iter().all(|c| c.ended || c.blocked) {
            let event = GateEvent::Aligned(a.barrier, a.started.elapsed());
            self.aligning = None;
            self.unblock_all();
            self.pending.push_back(event);
        }
    }

    fn unblock_all(&mut self) {
        for c in &mut self.channels {
            c.blocked = false;
        }
    }

    fn update_watermark(&mut self) {
        let live: Vec<&Channel> = self.channels.iter().filter(|c| !c.ended).collect();
        if live.is_empty() {
            return; // end of input: the task delivers the final watermark itself
        }
        let active: Vec<&Channel> = live.iter().copied().filter(|c| !c.idle).collect();
        if active.is_empty() {
            if !self.idle {
                self.idle = true;
                self.pending.push_back(GateEvent::Idle(true));
            }
            return;
        }
        if self.idle {
            self.idle = false;
            self.pending.push_back(GateEvent::Idle(false));
        }
        let min = active.iter().map(|c| c.watermark).min().unwrap_or(MIN_WATERMARK);
        if min > self.watermark {
            self.watermark = min;
            self.pending.push_back(GateEvent::Watermark(min));
        }
    }
}
