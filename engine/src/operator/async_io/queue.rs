//! The records of an async subtask whose results are not emitted yet, and the watermarks and
//! idleness changes between them, in arrival order (Flink's `StreamElementQueue`).
//!
//! Ordered: a record's results leave when every earlier record's did. Unordered: a record's
//! results leave as soon as they are in, but not before a watermark (or idleness change) that
//! arrived before the record, nor after one that arrived after it. A watermark leaves once
//! every record that arrived before it has left, so it never overtakes their results.

use super::options::ResultOrder;
use crate::data::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Event-time progress that arrived between records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Marker {
    /// The input watermark advanced.
    Watermark(Timestamp),
    /// The input became idle (`true`) or active.
    Idle(bool),
}

/// One element of the queue as a checkpoint keeps it: an input record without its result, or
/// a marker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Saved<I> {
    /// A record whose results were not emitted: it is called again after a restore.
    Record { value: I, timestamp: Option<Timestamp> },
    /// A marker not emitted yet.
    Marker(Marker),
}

/// What leaves the queue, in emission order.
#[derive(Debug, PartialEq)]
pub(crate) enum Ready<I, R> {
    /// A record and its result.
    Record {
        value: I,
        timestamp: Option<Timestamp>,
        result: R,
    },
    /// A marker whose earlier records have all left.
    Marker(Marker),
}

struct Pending<I, R> {
    value: I,
    timestamp: Option<Timestamp>,
    result: Option<R>,
}

/// The queue of one subtask. Records are numbered in arrival order; a marker sits before the
/// record numbered by its boundary.
pub(crate) struct Queue<I, R> {
    order: ResultOrder,
    records: BTreeMap<u64, Pending<I, R>>,
    /// `(boundary, marker)`: the marker follows every record numbered below `boundary`.
    markers: VecDeque<(u64, Marker)>,
    /// Records with a result, not yet left.
    done: BTreeSet<u64>,
    /// Records not yet issued, in arrival order.
    waiting: VecDeque<u64>,
    next_seq: u64,
}

impl<I: Clone, R> Queue<I, R> {
    pub(crate) fn new(order: ResultOrder) -> Self {
        Queue {
            order,
            records: BTreeMap::new(),
            markers: VecDeque::new(),
            done: BTreeSet::new(),
            waiting: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Records whose results have not left.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing (record or marker) is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.markers.is_empty()
    }

    /// Appends a record, to be issued; returns its number.
    pub(crate) fn push_record(&mut self, value: I, timestamp: Option<Timestamp>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.records.insert(
            seq,
            Pending {
                value,
                timestamp,
                result: None,
            },
        );
        self.waiting.push_back(seq);
        seq
    }

    /// Appends a marker. A watermark right after another one (no record between) replaces it.
    pub(crate) fn push_marker(&mut self, marker: Marker) {
        if let (Some((b, Marker::Watermark(_))), Marker::Watermark(_)) = (self.markers.back(), marker) {
            if *b == self.next_seq {
                self.markers.pop_back();
            }
        }
        self.markers.push_back((self.next_seq, marker));
    }

    /// The next record to issue, in arrival order: its number and a copy of its value.
    pub(crate) fn issue_next(&mut self) -> Option<(u64, I)> {
        let seq = self.waiting.pop_front()?;
        self.records.get(&seq).map(|p| (seq, p.value.clone()))
    }

    /// Records the result of record `seq`; `false` if it is not queued.
    pub(crate) fn complete(&mut self, seq: u64, result: R) -> bool {
        match self.records.get_mut(&seq) {
            Some(p) => {
                p.result = Some(result);
                self.done.insert(seq);
                true
            }
            None => false,
        }
    }

    /// Takes what may leave now, in emission order.
    pub(crate) fn pop_ready(&mut self) -> Vec<Ready<I, R>> {
        let mut out = Vec::new();
        loop {
            let head = self.records.keys().next().copied();
            if let Some(&(boundary, marker)) = self.markers.front() {
                if head.is_none_or(|h| h >= boundary) {
                    self.markers.pop_front();
                    out.push(Ready::Marker(marker));
                    continue;
                }
            }
            let bound = self.markers.front().map_or(u64::MAX, |m| m.0);
            let ready: Vec<u64> = match self.order {
                ResultOrder::Ordered => head.filter(|h| self.done.contains(h)).into_iter().collect(),
                ResultOrder::Unordered => self.done.range(..bound).copied().collect(),
            };
            if ready.is_empty() {
                return out;
            }
            for seq in ready {
                self.done.remove(&seq);
                if let Some(p) = self.records.remove(&seq) {
                    out.push(Ready::Record {
                        value: p.value,
                        timestamp: p.timestamp,
                        result: p.result.expect("a done record has its result"),
                    });
                }
            }
        }
    }

    /// Everything queued, in arrival order, without results (for a checkpoint).
    pub(crate) fn saved(&self) -> Vec<Saved<I>> {
        let mut out = Vec::with_capacity(self.records.len() + self.markers.len());
        let mut markers = self.markers.iter().peekable();
        for (&seq, p) in &self.records {
            while let Some((_, m)) = markers.next_if(|(b, _)| *b <= seq) {
                out.push(Saved::Marker(*m));
            }
            out.push(Saved::Record {
                value: p.value.clone(),
                timestamp: p.timestamp,
            });
        }
        out.extend(markers.map(|(_, m)| Saved::Marker(*m)));
        out
    }

    /// Appends what a checkpoint kept, in its order (before any new record).
    pub(crate) fn restore(&mut self, saved: Vec<Saved<I>>) {
        for s in saved {
            match s {
                Saved::Record { value, timestamp } => {
                    self.push_record(value, timestamp);
                }
                Saved::Marker(m) => self.push_marker(m),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ready: Vec<Ready<u32, u32>>) -> Vec<String> {
        ready
            .into_iter()
            .map(|r| match r {
                Ready::Record { value, .. } => format!("r{value}"),
                Ready::Marker(Marker::Watermark(w)) => format!("w{w}"),
                Ready::Marker(Marker::Idle(i)) => format!("i{i}"),
            })
            .collect()
    }

    fn filled(order: ResultOrder) -> Queue<u32, u32> {
        let mut q = Queue::new(order);
        q.push_record(0, None);
        q.push_record(1, None);
        q.push_marker(Marker::Watermark(10));
        q.push_record(2, None);
        while q.issue_next().is_some() {}
        q
    }

    #[test]
    fn ordered_results_wait_for_earlier_records_and_watermarks_for_all_before_them() {
        let mut q = filled(ResultOrder::Ordered);
        q.complete(1, 1);
        q.complete(2, 2);
        assert!(q.pop_ready().is_empty());
        q.complete(0, 0);
        assert_eq!(values(q.pop_ready()), ["r0", "r1", "w10", "r2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn unordered_results_leave_when_done_but_not_across_a_watermark() {
        let mut q = filled(ResultOrder::Unordered);
        q.complete(2, 2);
        q.complete(1, 1);
        assert_eq!(values(q.pop_ready()), ["r1"]);
        q.complete(0, 0);
        assert_eq!(values(q.pop_ready()), ["r0", "w10", "r2"]);
    }

    #[test]
    fn a_checkpoint_keeps_unemitted_records_and_markers_in_order() {
        let mut q = filled(ResultOrder::Ordered);
        q.complete(0, 0);
        assert_eq!(values(q.pop_ready()), ["r0"]);
        q.push_marker(Marker::Idle(true));
        let saved = q.saved();
        assert_eq!(
            saved,
            vec![
                Saved::Record {
                    value: 1,
                    timestamp: None
                },
                Saved::Marker(Marker::Watermark(10)),
                Saved::Record {
                    value: 2,
                    timestamp: None
                },
                Saved::Marker(Marker::Idle(true)),
            ]
        );
        let mut restored: Queue<u32, u32> = Queue::new(ResultOrder::Ordered);
        restored.restore(saved);
        assert_eq!(restored.issue_next(), Some((0, 1)));
        assert_eq!(restored.issue_next(), Some((1, 2)));
        restored.complete(1, 2);
        restored.complete(0, 1);
        assert_eq!(values(restored.pop_ready()), ["r1", "w10", "r2", "itrue"]);
    }

    #[test]
    fn consecutive_watermarks_collapse_into_the_latest() {
        let mut q: Queue<u32, u32> = Queue::new(ResultOrder::Ordered);
        q.push_record(0, None);
        q.push_marker(Marker::Watermark(5));
        q.push_marker(Marker::Watermark(7));
        q.issue_next();
        q.complete(0, 0);
        assert_eq!(values(q.pop_ready()), ["r0", "w7"]);
    }
}
