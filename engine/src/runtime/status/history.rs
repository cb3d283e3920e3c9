//! The checkpoint history the master keeps for the status page: the latest checkpoints with
//! their outcome, in memory.

use super::{CheckpointEntry, CheckpointState};
use crate::checkpoint::CheckpointStats;
use crate::message::{BarrierKind, CheckpointId};
use std::collections::VecDeque;

/// How many checkpoints the history keeps (the oldest go first).
pub const KEPT: usize = 100;

/// The latest checkpoints, oldest first.
#[derive(Debug, Default)]
pub(crate) struct CheckpointHistory {
    entries: VecDeque<CheckpointEntry>,
}

fn kind_name(kind: BarrierKind) -> &'static str {
    match kind {
        BarrierKind::Checkpoint => "checkpoint",
        BarrierKind::Final => "final",
        BarrierKind::Savepoint => "savepoint",
        BarrierKind::StopWithSavepoint => "stop_with_savepoint",
    }
}

impl CheckpointHistory {
    /// Checkpoint `id` was triggered.
    pub(crate) fn triggered(&mut self, id: CheckpointId, kind: BarrierKind, at_ms: u64) {
        if self.entries.len() == KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(CheckpointEntry {
            id: id.get(),
            kind: kind_name(kind).into(),
            status: CheckpointState::InProgress,
            triggered_at_ms: at_ms,
            duration_ms: None,
            state_bytes: None,
            uploaded_bytes: None,
            alignment_ms: None,
            sync_ms: None,
            async_ms: None,
            failure: None,
        });
    }

    fn entry(&mut self, id: CheckpointId) -> Option<&mut CheckpointEntry> {
        self.entries.iter_mut().rev().find(|e| e.id == id.get())
    }

    /// Checkpoint `id` is complete.
    pub(crate) fn completed(&mut self, id: CheckpointId, stats: &CheckpointStats) {
        if let Some(e) = self.entry(id) {
            e.status = CheckpointState::Completed;
            e.duration_ms = Some(stats.total_ms);
            e.state_bytes = Some(stats.state_bytes);
            e.uploaded_bytes = Some(stats.uploaded_bytes);
            e.alignment_ms = Some(stats.alignment_ms);
            e.sync_ms = Some(stats.sync_ms);
            e.async_ms = Some(stats.async_ms);
        }
    }

    /// Checkpoint `id` ended without completing.
    pub(crate) fn ended(&mut self, id: CheckpointId, status: CheckpointState, why: String, now_ms: u64) {
        if let Some(e) = self.entry(id) {
            if e.status == CheckpointState::InProgress {
                e.status = status;
                e.duration_ms = Some(now_ms.saturating_sub(e.triggered_at_ms) as f64);
                e.failure = Some(why);
            }
        }
    }

    /// The attempt ended: checkpoints still in progress will never complete.
    pub(crate) fn attempt_ended(&mut self, now_ms: u64) {
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.status == CheckpointState::InProgress)
        {
            e.status = CheckpointState::Failed;
            e.duration_ms = Some(now_ms.saturating_sub(e.triggered_at_ms) as f64);
            e.failure = Some("its attempt ended before it completed".into());
        }
    }

    /// The history, oldest first.
    pub(crate) fn entries(&self) -> Vec<CheckpointEntry> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_and_records_outcomes() {
        let mut h = CheckpointHistory::default();
        for i in 1..=(KEPT as u64 + 2) {
            h.triggered(CheckpointId::new(i), BarrierKind::Checkpoint, 1000 * i);
        }
        let stats = CheckpointStats {
            total_ms: 12.0,
            state_bytes: 10,
            ..Default::default()
        };
        h.completed(CheckpointId::new(KEPT as u64 + 1), &stats);
        h.ended(
            CheckpointId::new(KEPT as u64),
            CheckpointState::Aborted,
            "timed out".into(),
            0,
        );
        h.attempt_ended(u64::MAX);
        let e = h.entries();
        assert_eq!(e.len(), KEPT);
        assert_eq!(e[0].id, 3, "the two oldest are gone");
        assert_eq!(e[KEPT - 3].id, KEPT as u64);
        assert_eq!(e[KEPT - 3].status, CheckpointState::Aborted);
        assert_eq!(e[KEPT - 3].failure.as_deref(), Some("timed out"));
        assert_eq!(e[KEPT - 2].status, CheckpointState::Completed);
        assert_eq!(e[KEPT - 2].state_bytes, Some(10));
        assert_eq!(e[KEPT - 2].duration_ms, Some(12.0));
        assert_eq!(e[KEPT - 1].status, CheckpointState::Failed);
        assert_eq!(
            e[0].status,
            CheckpointState::Failed,
            "in progress when the attempt ended"
        );
    }
}
