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
//!
//! After a restore the gate starts where it was when the checkpoint was taken: the combined
//! watermark and the watermark of every channel are set from what the head operator restored
//! ([`restore_watermarks`](InputGate::restore_watermarks)); watermarks from before the
//! checkpoint that upstream subtasks send again change nothing, and a channel whose upstream
//! sends a new one moves exactly as it would have without the failure.

use crate::data::{ErasedBatch, Timestamp, MIN_WATERMARK};
use crate::message::{Barrier, Message};
use crate::net::credit::CreditReturn;
use crate::runtime::control::Control;
use crate::time::ChannelWatermark;
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
    /// For a channel from another process: gives credits back as messages are taken.
    credit: Option<CreditReturn>,
}

/// One input channel of a subtask: its queue, the operator input it feeds and, for a channel
/// from another process, its flow control.
pub(crate) struct GateInput {
    pub(crate) rx: Receiver<Message>,
    pub(crate) input: usize,
    pub(crate) credit: Option<CreditReturn>,
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
    /// A gate over `(receiver, logical input)` pairs of in-process channels.
    pub(crate) fn new(inputs: Vec<(Receiver<Message>, usize)>) -> Self {
        Self::with_inputs(
            inputs
                .into_iter()
                .map(|(rx, input)| GateInput {
                    rx,
                    input,
                    credit: None,
                })
                .collect(),
        )
    }

    /// A gate over channels in-process and from other processes.
    pub(crate) fn with_inputs(inputs: Vec<GateInput>) -> Self {
        InputGate {
            channels: inputs
                .into_iter()
                .map(|i| Channel {
                    rx: i.rx,
                    input: i.input,
                    watermark: MIN_WATERMARK,
                    idle: false,
                    ended: false,
                    blocked: false,
                    credit: i.credit,
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

    /// The combined watermark reported last.
    pub(crate) fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The watermark and idleness of every channel, in channel order (what a snapshot keeps).
    pub(crate) fn channel_watermarks(&self) -> Vec<ChannelWatermark> {
        self.channels
            .iter()
            .map(|c| ChannelWatermark {
                watermark: c.watermark,
                idle: c.idle,
            })
            .collect()
    }

    /// Continues from a checkpoint: the combined watermark starts at `combined` and never
    /// reports anything at or below it; each channel starts with its entry of `channels`
    /// (watermark and idleness) when there is one per channel. Otherwise every channel relearns
    /// its watermark from its upstream, and the combined one holds at `combined` until they all
    /// passed it.
    pub(crate) fn restore_watermarks(&mut self, combined: Timestamp, channels: &[ChannelWatermark]) {
        self.watermark = self.watermark.max(combined);
        if channels.len() == self.channels.len() && !channels.is_empty() {
            for (c, r) in self.channels.iter_mut().zip(channels) {
                c.watermark = c.watermark.max(r.watermark);
                c.idle = r.idle;
            }
            // The subtask already told its operators about idleness before the checkpoint.
            self.idle = self.channels.iter().all(|c| c.idle);
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
        // A consequence, not a cause: the upstream subtask reports its own failure.
        Error::new(
            crate::ErrorKind::Cancelled,
            format!("input channel {i} closed without end of stream (its upstream subtask stopped)"),
        )
    }

    fn on_message(&mut self, i: usize, msg: Message) -> Result<()> {
        if let Some(c) = self.channels[i].credit.as_mut() {
            c.taken();
        }
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
                tracing::debug!(
                    old = a.barrier.id.get(),
                    new = b.id.get(),
                    "abandoning barrier alignment"
                );
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

#[cfg(test)]
mod tests {
    //! The gate driven by hand over crossbeam channels: alignment, end of stream, abandoned
    //! barriers, watermark combination and idleness, plus a property test over random
    //! interleavings of batches, barriers and watermarks.

    use super::*;
    use crate::data::{downcast, erase, Record, MAX_WATERMARK};
    use crate::message::{BarrierKind, CheckpointId};
    use crossbeam_channel::{unbounded, Sender};
    use proptest::prelude::*;

    /// A record as the tests send it: (channel, sequence number on the channel, epoch = number
    /// of barriers the channel sent before it).
    type Rec = (usize, u64, u64);

    #[derive(Debug, Clone, PartialEq)]
    enum Ev {
        Batch(usize, Vec<Rec>),
        Wm(Timestamp),
        Idle(bool),
        Aligned(CheckpointId),
        Ended,
    }

    /// The id of the barrier being aligned, if any.
    fn aligning_id(gate: &InputGate) -> Option<CheckpointId> {
        gate.aligning.as_ref().map(|a| a.barrier.id)
    }

    fn barrier(id: CheckpointId) -> Barrier {
        Barrier {
            id,
            kind: BarrierKind::Checkpoint,
            triggered_at_ms: 0,
        }
    }

    fn rec(ch: usize, seq: u64, epoch: u64) -> Message {
        Message::Batch(erase(vec![Record::new((ch, seq, epoch))]))
    }

    fn batch(input: usize, recs: &[Rec]) -> Ev {
        Ev::Batch(input, recs.to_vec())
    }

    struct Harness {
        gate: InputGate,
        txs: Vec<Sender<Message>>,
        _ctl_tx: Sender<Control>,
        ctl_rx: Receiver<Control>,
    }

    impl Harness {
        /// A gate over `n` channels; channel `i` is logical input `i`.
        fn new(n: usize) -> Self {
            let mut txs = Vec::new();
            let mut inputs = Vec::new();
            for i in 0..n {
                let (tx, rx) = unbounded();
                txs.push(tx);
                inputs.push((rx, i));
            }
            let (ctl_tx, ctl_rx) = unbounded();
            Harness {
                gate: InputGate::new(inputs),
                txs,
                _ctl_tx: ctl_tx,
                ctl_rx,
            }
        }

        fn send(&self, ch: usize, msg: Message) {
            self.txs[ch].send(msg).expect("gate alive");
        }

        /// One call of `next` without waiting; `None` when it produced no event.
        fn poll(&mut self) -> Option<Ev> {
            match self.gate.next(&self.ctl_rx, Duration::ZERO).expect("gate error") {
                GateEvent::Batch(input, b) => Some(Ev::Batch(
                    input,
                    downcast::<Rec>(b).unwrap().into_iter().map(|r| r.value).collect(),
                )),
                GateEvent::Watermark(w) => Some(Ev::Wm(w)),
                GateEvent::Idle(i) => Some(Ev::Idle(i)),
                GateEvent::Aligned(b, _) => Some(Ev::Aligned(b.id)),
                GateEvent::Ended => Some(Ev::Ended),
                GateEvent::Control(c) => panic!("unexpected control message {c:?}"),
                GateEvent::Timeout => None,
            }
        }

        /// Whether another `next` cannot produce anything: nothing pending, `Ended` reported if
        /// due, and every channel the gate reads is empty.
        fn quiescent(&self) -> bool {
            self.gate.pending.is_empty()
                && (!self.gate.all_ended() || self.gate.ended_reported)
                && (0..self.gate.channels.len()).all(|i| !self.gate.readable(i) || self.gate.channels[i].rx.is_empty())
        }

        /// Every event the gate can produce from what was sent so far.
        fn drain(&mut self) -> Vec<Ev> {
            let mut out = Vec::new();
            for _ in 0..100_000 {
                match self.poll() {
                    Some(e) => out.push(e),
                    None if self.quiescent() => return out,
                    None => {}
                }
            }
            panic!("the gate did not settle; events so far: {out:?}");
        }
    }

    fn records(events: &[Ev]) -> Vec<Rec> {
        events
            .iter()
            .flat_map(|e| match e {
                Ev::Batch(_, r) => r.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn position(events: &[Ev], wanted: &Ev) -> usize {
        events
            .iter()
            .position(|e| e == wanted)
            .unwrap_or_else(|| panic!("{wanted:?} not in {events:?}"))
    }

    #[test]
    fn records_pass_through_with_their_logical_input() {
        let mut h = Harness::new(2);
        h.send(0, rec(0, 0, 0));
        h.send(1, rec(1, 0, 0));
        h.send(0, rec(0, 1, 0));
        let mut ev = h.drain();
        ev.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            ev,
            vec![batch(0, &[(0, 0, 0)]), batch(0, &[(0, 1, 0)]), batch(1, &[(1, 0, 0)])]
        );
    }

    #[test]
    fn alignment_blocks_a_channel_that_delivered_the_barrier() {
        let mut h = Harness::new(2);
        h.send(0, rec(0, 0, 0));
        h.send(0, Message::Barrier(barrier(CheckpointId::new(1))));
        h.send(0, rec(0, 1, 1));
        h.send(1, rec(1, 0, 0));
        let ev = h.drain();
        // Records before the barrier on channel 0 and everything on channel 1 come out; the
        // record after the barrier on channel 0 stays in its channel.
        let mut got = records(&ev);
        got.sort();
        assert_eq!(got, vec![(0, 0, 0), (1, 0, 0)], "{ev:?}");
        assert!(!ev.iter().any(|e| matches!(e, Ev::Aligned(_))), "{ev:?}");
        assert_eq!(aligning_id(&h.gate), Some(CheckpointId::new(1)));
        assert!(h.gate.channels[0].blocked);
        assert_eq!(
            h.gate.channels[0].rx.len(),
            1,
            "the record after the barrier is still queued"
        );

        // More records on the unblocked channel keep flowing.
        h.send(1, rec(1, 1, 0));
        assert_eq!(h.drain(), vec![batch(1, &[(1, 1, 0)])]);

        // The barrier on the last channel completes the alignment; records after the barrier on
        // both channels come after `Aligned`.
        h.send(1, Message::Barrier(barrier(CheckpointId::new(1))));
        h.send(1, rec(1, 2, 1));
        let ev = h.drain();
        assert_eq!(ev[0], Ev::Aligned(CheckpointId::new(1)), "{ev:?}");
        let mut after = records(&ev[1..]);
        after.sort();
        assert_eq!(after, vec![(0, 1, 1), (1, 2, 1)]);
        assert_eq!(ev.iter().filter(|e| matches!(e, Ev::Aligned(_))).count(), 1);
        assert_eq!(aligning_id(&h.gate), None);
        assert!(!h.gate.channels[0].blocked && !h.gate.channels[1].blocked);
    }

    #[test]
    fn aligned_fires_once_when_every_live_channel_delivered_the_barrier() {
        let mut h = Harness::new(3);
        h.send(0, Message::Barrier(barrier(CheckpointId::new(7))));
        h.send(1, Message::Barrier(barrier(CheckpointId::new(7))));
        assert_eq!(h.drain(), vec![]);
        assert_eq!(aligning_id(&h.gate), Some(CheckpointId::new(7)));
        h.send(2, Message::Barrier(barrier(CheckpointId::new(7))));
        assert_eq!(h.drain(), vec![Ev::Aligned(CheckpointId::new(7))]);
        assert_eq!(h.drain(), vec![], "Aligned is reported once");
        // The next checkpoint aligns the same way.
        for ch in [2, 0, 1] {
            h.send(ch, Message::Barrier(barrier(CheckpointId::new(8))));
        }
        assert_eq!(h.drain(), vec![Ev::Aligned(CheckpointId::new(8))]);
    }

    #[test]
    fn aligned_carries_the_barrier_and_the_alignment_time() {
        let mut h = Harness::new(2);
        let b = Barrier {
            id: CheckpointId::new(3),
            kind: BarrierKind::Final,
            triggered_at_ms: 1234,
        };
        h.send(0, Message::Barrier(b));
        assert!(h.poll().is_none());
        std::thread::sleep(Duration::from_millis(20));
        h.send(1, Message::Barrier(b));
        let mut got = None;
        for _ in 0..10 {
            if let GateEvent::Aligned(a, d) = h.gate.next(&h.ctl_rx, Duration::ZERO).unwrap() {
                got = Some((a, d));
                break;
            }
        }
        let (a, d) = got.expect("aligned");
        assert_eq!(a, b);
        assert!(d >= Duration::from_millis(20), "alignment took {d:?}");
    }

    #[test]
    fn an_ended_channel_never_blocks_alignment() {
        // Ended before the barrier.
        let mut h = Harness::new(2);
        h.send(1, rec(1, 0, 0));
        h.send(1, Message::End);
        assert_eq!(h.drain(), vec![batch(1, &[(1, 0, 0)])]);
        h.send(0, Message::Barrier(barrier(CheckpointId::new(1))));
        assert_eq!(h.drain(), vec![Ev::Aligned(CheckpointId::new(1))]);

        // Ends while the others wait for it.
        let mut h = Harness::new(3);
        h.send(0, Message::Barrier(barrier(CheckpointId::new(1))));
        h.send(0, rec(0, 0, 1));
        h.send(1, Message::Barrier(barrier(CheckpointId::new(1))));
        assert_eq!(h.drain(), vec![]);
        h.send(2, rec(2, 0, 0));
        h.send(2, Message::End);
        let ev = h.drain();
        let aligned = position(&ev, &Ev::Aligned(CheckpointId::new(1)));
        assert!(position(&ev, &batch(2, &[(2, 0, 0)])) < aligned, "{ev:?}");
        assert!(position(&ev, &batch(0, &[(0, 0, 1)])) > aligned, "{ev:?}");
        // Later barriers need only the live channels.
        h.send(0, Message::Barrier(barrier(CheckpointId::new(2))));
        h.send(1, Message::Barrier(barrier(CheckpointId::new(2))));
        assert_eq!(h.drain(), vec![Ev::Aligned(CheckpointId::new(2))]);
    }

    #[test]
    fn a_newer_barrier_abandons_the_older_alignment() {
        let mut h = Harness::new(3);
        h.send(0, Message::Barrier(barrier(CheckpointId::new(1))));
        h.send(0, rec(0, 0, 1));
        h.send(0, Message::Barrier(barrier(CheckpointId::new(2))));
        h.send(0, rec(0, 1, 2));
        assert_eq!(h.drain(), vec![]);
        assert_eq!(aligning_id(&h.gate), Some(CheckpointId::new(1)));
        // Channel 1 skipped checkpoint 1 (abandoned upstream) and sends barrier 2.
        h.send(1, Message::Barrier(barrier(CheckpointId::new(2))));
        let ev = h.drain();
        assert_eq!(aligning_id(&h.gate), Some(CheckpointId::new(2)), "{ev:?}");
        // Channel 0 was released: its record between barrier 1 and 2 comes out, then it
        // blocks on barrier 2.
        assert_eq!(ev, vec![batch(0, &[(0, 0, 1)])]);
        assert!(h.gate.channels[0].blocked && h.gate.channels[1].blocked && !h.gate.channels[2].blocked);
        // A stale barrier 1 on channel 2 is ignored (it does not block channel 2).
        h.send(2, Message::Barrier(barrier(CheckpointId::new(1))));
        h.send(2, rec(2, 0, 1));
        assert_eq!(h.drain(), vec![batch(2, &[(2, 0, 1)])]);
        assert!(!h.gate.channels[2].blocked);
        h.send(2, Message::Barrier(barrier(CheckpointId::new(2))));
        let ev = h.drain();
        assert_eq!(ev, vec![Ev::Aligned(CheckpointId::new(2)), batch(0, &[(0, 1, 2)])]);
        assert!(!ev.contains(&Ev::Aligned(CheckpointId::new(1))));
    }

    #[test]
    fn watermark_is_the_min_over_live_active_channels_and_never_regresses() {
        let mut h = Harness::new(3);
        h.send(0, Message::Watermark(10));
        h.send(1, Message::Watermark(20));
        assert_eq!(h.drain(), vec![], "channel 2 has no watermark yet");
        h.send(2, Message::Watermark(5));
        assert_eq!(h.drain(), vec![Ev::Wm(5)]);
        h.send(2, Message::Watermark(30));
        assert_eq!(h.drain(), vec![Ev::Wm(10)]);
        // A lower watermark on a channel does not move it back.
        h.send(0, Message::Watermark(3));
        assert_eq!(h.drain(), vec![]);
        assert_eq!(h.gate.channels[0].watermark, 10);
        // An idle channel does not hold the watermark back...
        h.send(0, Message::Idle(true));
        assert_eq!(h.drain(), vec![Ev::Wm(20)]);
        // ...and coming back with an older watermark does not make it regress.
        h.send(0, Message::Watermark(12));
        assert_eq!(h.drain(), vec![]);
        assert_eq!(h.gate.watermark, 20);
        h.send(0, Message::Watermark(25));
        assert_eq!(h.drain(), vec![]);
        // An ended channel does not hold it back either.
        h.send(1, Message::End);
        assert_eq!(h.drain(), vec![Ev::Wm(25)]);
        h.send(0, Message::Watermark(MAX_WATERMARK));
        assert_eq!(h.drain(), vec![Ev::Wm(30)]);
        h.send(2, Message::Watermark(MAX_WATERMARK));
        assert_eq!(h.drain(), vec![Ev::Wm(MAX_WATERMARK)]);
    }

    #[test]
    fn a_restored_gate_continues_as_the_gate_that_took_the_checkpoint() {
        // The gate that ran before the failure: channel 0 at 100, channel 1 at 50.
        let mut before = Harness::new(2);
        before.send(0, Message::Watermark(100));
        before.send(1, Message::Watermark(50));
        assert_eq!(before.drain(), vec![Ev::Wm(50)]);
        let channels = before.gate.channel_watermarks();
        let watermarks: Vec<Timestamp> = channels.iter().map(|c| c.watermark).collect();
        assert_eq!(watermarks, vec![100, 50]);
        let mut restored = Harness::new(2);
        restored.gate.restore_watermarks(50, &channels);
        for h in [&mut before, &mut restored] {
            // Watermarks from before the checkpoint, sent again, change nothing.
            h.send(0, Message::Watermark(80));
            h.send(1, Message::Watermark(50));
            assert_eq!(h.drain(), vec![]);
            // Channel 1 moves on: the combined watermark follows at once, to channel 0's.
            h.send(1, Message::Watermark(120));
            assert_eq!(h.drain(), vec![Ev::Wm(100)]);
            h.send(0, Message::Watermark(130));
            assert_eq!(h.drain(), vec![Ev::Wm(120)]);
        }
    }

    #[test]
    fn a_channel_idle_at_the_checkpoint_is_idle_after_the_restore() {
        // Channel 1 went idle at 20, so the watermark followed channel 0 to 70.
        let mut before = Harness::new(2);
        before.send(1, Message::Watermark(20));
        before.send(0, Message::Watermark(60));
        assert_eq!(before.drain(), vec![Ev::Wm(20)]);
        before.send(1, Message::Idle(true));
        assert_eq!(before.drain(), vec![Ev::Wm(60)]);
        before.send(0, Message::Watermark(70));
        assert_eq!(before.drain(), vec![Ev::Wm(70)]);
        let channels = before.gate.channel_watermarks();
        let mut restored = Harness::new(2);
        restored.gate.restore_watermarks(70, &channels);
        for h in [&mut before, &mut restored] {
            // Channel 1 stays out of the minimum until it delivers something again.
            h.send(0, Message::Watermark(90));
            assert_eq!(h.drain(), vec![Ev::Wm(90)]);
            h.send(1, Message::Watermark(95));
            h.send(0, Message::Watermark(100));
            assert_eq!(h.drain(), vec![Ev::Wm(95)]);
        }
        // All channels idle at the checkpoint: the restored gate is idle without saying so
        // again (its operators heard it before the checkpoint), and wakes up as before.
        let mut all_idle = Harness::new(2);
        all_idle.gate.restore_watermarks(
            40,
            &[
                ChannelWatermark {
                    watermark: 40,
                    idle: true,
                },
                ChannelWatermark {
                    watermark: 50,
                    idle: true,
                },
            ],
        );
        all_idle.send(0, Message::Watermark(45));
        assert_eq!(all_idle.drain(), vec![Ev::Idle(false), Ev::Wm(45)]);
    }

    #[test]
    fn a_gate_restored_without_channel_watermarks_holds_the_restored_one_until_all_pass_it() {
        let mut h = Harness::new(2);
        h.gate.restore_watermarks(
            50,
            &[ChannelWatermark {
                watermark: 70,
                idle: false,
            }],
        );
        h.send(1, Message::Watermark(40));
        h.send(0, Message::Watermark(45));
        assert_eq!(h.drain(), vec![], "below the restored watermark");
        h.send(1, Message::Watermark(120));
        assert_eq!(h.drain(), vec![], "channel 0 is still behind the restored watermark");
        h.send(0, Message::Watermark(60));
        assert_eq!(h.drain(), vec![Ev::Wm(60)]);
    }

    #[test]
    fn watermarks_are_in_order_with_the_records_of_their_channel() {
        let mut h = Harness::new(1);
        h.send(0, rec(0, 0, 0));
        h.send(0, Message::Watermark(100));
        h.send(0, rec(0, 1, 0));
        h.send(0, Message::Watermark(200));
        assert_eq!(
            h.drain(),
            vec![batch(0, &[(0, 0, 0)]), Ev::Wm(100), batch(0, &[(0, 1, 0)]), Ev::Wm(200)]
        );
    }

    #[test]
    fn all_idle_makes_the_gate_idle_until_a_batch_or_watermark_arrives() {
        let mut h = Harness::new(2);
        h.send(0, Message::Watermark(10));
        h.send(1, Message::Watermark(10));
        assert_eq!(h.drain(), vec![Ev::Wm(10)]);
        h.send(0, Message::Idle(true));
        assert_eq!(h.drain(), vec![], "one live channel is still active");
        h.send(1, Message::Idle(true));
        assert_eq!(h.drain(), vec![Ev::Idle(true)]);
        h.send(0, Message::Idle(true));
        assert_eq!(h.drain(), vec![], "idleness is reported once");
        // A batch makes its channel (and the gate) active again, before the batch itself.
        h.send(1, rec(1, 0, 0));
        assert_eq!(h.drain(), vec![Ev::Idle(false), batch(1, &[(1, 0, 0)])]);
        // Channel 1 is active alone: its watermark alone counts.
        h.send(1, Message::Watermark(15));
        assert_eq!(h.drain(), vec![Ev::Wm(15)]);
        h.send(1, Message::Idle(true));
        assert_eq!(h.drain(), vec![Ev::Idle(true)]);
        // A watermark also ends idleness.
        h.send(0, Message::Watermark(40));
        assert_eq!(h.drain(), vec![Ev::Idle(false), Ev::Wm(40)]);
        // Idle(false) from upstream too.
        h.send(0, Message::Idle(true));
        assert_eq!(h.drain(), vec![Ev::Idle(true)]);
        h.send(1, Message::Idle(false));
        assert_eq!(
            h.drain(),
            vec![Ev::Idle(false)],
            "channel 1's watermark 15 is below the gate's 40"
        );
    }

    #[test]
    fn idle_channels_and_ended_channels_leave_the_gate_idle() {
        let mut h = Harness::new(2);
        h.send(0, Message::Idle(true));
        assert_eq!(h.drain(), vec![]);
        h.send(1, Message::End);
        assert_eq!(h.drain(), vec![Ev::Idle(true)], "the only live channel is idle");
    }

    #[test]
    fn all_ended_reports_ended_once() {
        let mut h = Harness::new(3);
        h.send(0, Message::End);
        h.send(1, rec(1, 0, 0));
        h.send(1, Message::End);
        assert_eq!(h.drain(), vec![batch(1, &[(1, 0, 0)])]);
        h.send(2, Message::End);
        assert_eq!(h.drain(), vec![Ev::Ended]);
        assert_eq!(h.drain(), vec![]);
        // Control messages are still read after the end.
        h._ctl_tx
            .send(Control::CheckpointComplete {
                id: CheckpointId::new(4),
            })
            .unwrap();
        assert!(matches!(
            h.gate.next(&h.ctl_rx, Duration::from_millis(100)).unwrap(),
            GateEvent::Control(Control::CheckpointComplete { id }) if id == CheckpointId::new(4)
        ));
    }

    #[test]
    fn a_gate_without_channels_is_ended() {
        let mut h = Harness::new(0);
        assert_eq!(h.drain(), vec![Ev::Ended]);
    }

    #[test]
    fn control_messages_come_first_and_timeouts_are_reported() {
        let mut h = Harness::new(1);
        h.send(0, rec(0, 0, 0));
        h._ctl_tx.send(Control::Cancel).unwrap();
        assert!(matches!(
            h.gate.next(&h.ctl_rx, Duration::ZERO).unwrap(),
            GateEvent::Control(Control::Cancel)
        ));
        assert_eq!(h.drain(), vec![batch(0, &[(0, 0, 0)])]);
        let t = Instant::now();
        assert!(matches!(
            h.gate.next(&h.ctl_rx, Duration::from_millis(30)).unwrap(),
            GateEvent::Timeout
        ));
        assert!(t.elapsed() >= Duration::from_millis(25));
    }

    #[test]
    fn a_blocked_gate_still_reads_control_messages() {
        let mut h = Harness::new(2);
        h.send(0, Message::Barrier(barrier(CheckpointId::new(1))));
        h.send(0, rec(0, 0, 1));
        assert_eq!(h.drain(), vec![]);
        let ctl = h._ctl_tx.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ctl.send(Control::Cancel).unwrap();
        });
        assert!(matches!(
            h.gate.next(&h.ctl_rx, Duration::from_secs(10)).unwrap(),
            GateEvent::Control(Control::Cancel)
        ));
        t.join().unwrap();
    }

    #[test]
    fn a_closed_channel_without_end_is_an_error() {
        let mut h = Harness::new(2);
        let tx = h.txs.remove(1);
        drop(tx);
        let e = (0..10)
            .find_map(|_| h.gate.next(&h.ctl_rx, Duration::ZERO).err())
            .expect("an error for the closed channel");
        // A consequence of the upstream's failure, which that subtask reports itself.
        assert_eq!(e.kind(), crate::ErrorKind::Cancelled);
        assert!(e.to_string().contains("input channel 1 closed"), "{e}");
    }

    // ---- property test -------------------------------------------------------------------

    #[derive(Debug, Clone, Copy)]
    enum Spec {
        Rec(u64, u64),
        Wm(Timestamp),
        Barrier(CheckpointId),
        End,
    }

    /// What one channel sends: per epoch (before barrier 1, between 1 and 2, ...) some records
    /// and maybe a watermark; optionally end of stream after some epoch.
    fn channel_script(ch: usize, segments: &[(usize, Option<i64>)], end_after: usize) -> Vec<Spec> {
        let mut out = Vec::new();
        let mut seq = 0;
        let mut wm = 0;
        let barriers = segments.len() - 1;
        for (epoch, (n, w)) in segments.iter().enumerate() {
            for _ in 0..*n {
                out.push(Spec::Rec(seq, epoch as u64));
                seq += 1;
            }
            if let Some(step) = w {
                wm += step;
                out.push(Spec::Wm(wm + ch as i64));
            }
            if epoch == end_after {
                out.push(Spec::End);
                return out;
            }
            if epoch < barriers {
                out.push(Spec::Barrier(CheckpointId::new(epoch as u64 + 1)));
            }
        }
        out
    }

    fn scenario() -> impl Strategy<Value = (Vec<Vec<Spec>>, Vec<usize>)> {
        (2usize..=4, 1usize..=4)
            .prop_flat_map(|(n, b)| {
                let segment = (0usize..4, prop::option::of(1i64..50));
                let channel = (prop::collection::vec(segment, b + 1), 0..=b + 1);
                (prop::collection::vec(channel, n), prop::collection::vec(0..=n, 0..250))
            })
            .prop_map(|(channels, schedule)| {
                let scripts = channels
                    .iter()
                    .enumerate()
                    .map(|(ch, (segs, end))| channel_script(ch, segs, *end))
                    .collect();
                (scripts, schedule)
            })
    }

    /// Checks every event against what was sent so far.
    struct Checker {
        scripts: Vec<Vec<Spec>>,
        sent: Vec<usize>,
        delivered: Vec<Vec<(u64, u64)>>,
        aligned: u64,
        watermark: Timestamp,
        ended: usize,
    }

    impl Checker {
        fn sent_records_before_epoch(&self, ch: usize, epoch: u64) -> usize {
            self.scripts[ch]
                .iter()
                .filter(|s| matches!(s, Spec::Rec(_, e) if *e < epoch))
                .count()
        }

        fn watermark_bound(&self) -> Timestamp {
            (0..self.scripts.len())
                .map(|ch| {
                    let sent = &self.scripts[ch][..self.sent[ch]];
                    if sent.iter().any(|s| matches!(s, Spec::End)) {
                        MAX_WATERMARK
                    } else {
                        sent.iter()
                            .filter_map(|s| match s {
                                Spec::Wm(w) => Some(*w),
                                _ => None,
                            })
                            .max()
                            .unwrap_or(MIN_WATERMARK)
                    }
                })
                .min()
                .unwrap_or(MAX_WATERMARK)
        }

        fn check(&mut self, gate: &InputGate, ev: Ev) -> std::result::Result<(), TestCaseError> {
            match ev {
                Ev::Batch(input, recs) => {
                    for (ch, seq, epoch) in recs {
                        prop_assert_eq!(input, ch);
                        // Never a record from a channel blocked for the barrier being aligned:
                        // a record after barrier n comes only after Aligned(n), a record
                        // before it only before.
                        prop_assert_eq!(
                            epoch,
                            self.aligned,
                            "record {:?} of epoch {} delivered after {} alignments (aligning {:?})",
                            (ch, seq),
                            epoch,
                            self.aligned,
                            aligning_id(gate)
                        );
                        prop_assert!(!gate.channels[ch].blocked, "record from blocked channel {}", ch);
                        prop_assert_eq!(seq, self.delivered[ch].len() as u64, "channel {} out of order", ch);
                        self.delivered[ch].push((seq, epoch));
                    }
                }
                Ev::Aligned(id) => {
                    let id = id.get();
                    prop_assert_eq!(id, self.aligned + 1, "barriers align in order, once each");
                    // Every record sent before barrier `id` on any channel was delivered.
                    for ch in 0..self.scripts.len() {
                        let want = self.sent_records_before_epoch(ch, id);
                        let got = self.delivered[ch].iter().filter(|(_, e)| *e < id).count();
                        prop_assert_eq!(got, want, "channel {} at Aligned({})", ch, id);
                    }
                    self.aligned = id;
                }
                Ev::Wm(w) => {
                    prop_assert!(
                        w > self.watermark,
                        "watermark regressed or repeated: {} after {}",
                        w,
                        self.watermark
                    );
                    let bound = self.watermark_bound();
                    prop_assert!(w <= bound, "watermark {} above the min over channels {}", w, bound);
                    self.watermark = w;
                }
                Ev::Idle(i) => prop_assert!(false, "no channel went idle, got Idle({})", i),
                Ev::Ended => {
                    prop_assert!(self.sent.iter().zip(&self.scripts).all(|(s, sc)| *s == sc.len()));
                    prop_assert!(self.scripts.iter().all(|s| matches!(s.last(), Some(Spec::End))));
                    self.ended += 1;
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn alignment_holds_for_random_interleavings((scripts, schedule) in scenario()) {
            let n = scripts.len();
            let mut h = Harness::new(n);
            let mut c = Checker {
                delivered: vec![Vec::new(); n],
                sent: vec![0; n],
                scripts,
                aligned: 0,
                watermark: MIN_WATERMARK,
                ended: 0,
            };
            let send_next = |h: &Harness, c: &mut Checker, ch: usize| {
                if let Some(spec) = c.scripts[ch].get(c.sent[ch]).copied() {
                    c.sent[ch] += 1;
                    h.send(ch, match spec {
                        Spec::Rec(seq, epoch) => rec(ch, seq, epoch),
                        Spec::Wm(w) => Message::Watermark(w),
                        Spec::Barrier(id) => Message::Barrier(barrier(id)),
                        Spec::End => Message::End,
                    });
                }
            };
            for action in schedule {
                if action == n {
                    if let Some(ev) = h.poll() {
                        c.check(&h.gate, ev)?;
                    }
                } else {
                    send_next(&h, &mut c, action);
                }
            }
            for ch in 0..n {
                while c.sent[ch] < c.scripts[ch].len() {
                    send_next(&h, &mut c, ch);
                }
            }
            for ev in h.drain() {
                c.check(&h.gate, ev)?;
            }
            // Everything was delivered, every barrier some channel sent was aligned, and the
            // gate is not left blocked.
            for ch in 0..n {
                let want = c.scripts[ch].iter().filter(|s| matches!(s, Spec::Rec(..))).count();
                prop_assert_eq!(c.delivered[ch].len(), want, "channel {}", ch);
            }
            let barriers = c.scripts.iter()
                .map(|s| s.iter().filter(|x| matches!(x, Spec::Barrier(_))).count() as u64)
                .max()
                .unwrap_or(0);
            prop_assert_eq!(c.aligned, barriers);
            prop_assert_eq!(aligning_id(&h.gate), None);
            let all_end = c.scripts.iter().all(|s| matches!(s.last(), Some(Spec::End)));
            prop_assert_eq!(c.ended, usize::from(all_end));
            // The final watermark is the min over the channels that did not end.
            let live_min = c.scripts.iter()
                .filter(|s| !matches!(s.last(), Some(Spec::End)))
                .map(|s| s.iter().filter_map(|x| match x { Spec::Wm(w) => Some(*w), _ => None }).max().unwrap_or(MIN_WATERMARK))
                .min();
            if let Some(m) = live_min {
                prop_assert_eq!(c.watermark, m);
            }
        }
    }
}
