//! Snapshots of a harnessed keyed step, and which of them a restore at some subtask and
//! parallelism reads (the pipeline's rescaling rules, [`assign_keyed_state`]).

use super::builder::HarnessBuilder;
use crate::data::Timestamp;
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::operator::{OperatorCore, SnapshotTarget};
use crate::state::rescale::assign_keyed_state;
use crate::state::{KeyGroupRange, KeyedRestore, SnapshotPart};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A snapshot of a harnessed step, as a checkpoint holds it: the files of its keyed store
/// (state, timers and watermark), its operator state (the broadcast state, at subtask 0),
/// where it was taken, and its backend.
///
/// The files live in a temporary directory that is deleted when the last clone of the
/// snapshot is dropped; a harness restored from it copies what it needs when it opens.
#[derive(Debug, Clone)]
pub struct HarnessSnapshot {
    pub(crate) dir: Arc<tempfile::TempDir>,
    pub(crate) files: Vec<PathBuf>,
    /// The operator state the step wrote (the broadcast state's copy, by subtask 0 only).
    pub(crate) operator_state: Option<Arc<Vec<u8>>>,
    pub(crate) backend: &'static str,
    pub(crate) subtask: usize,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: usize,
    pub(crate) watermark: Timestamp,
}

impl HarnessSnapshot {
    /// Snapshots `operator` as checkpoint number `checkpoint`, triggered at processing time
    /// `now_ms`, would, and completes that checkpoint (sinks and two-phase steps see it done).
    /// `backend` names the keyed store's backend (`"none"` without one); `watermark` is the
    /// step's event time.
    pub(crate) fn take(
        operator: &mut dyn OperatorCore,
        checkpoint: u64,
        now_ms: u64,
        settings: &HarnessBuilder,
        backend: &'static str,
        watermark: Timestamp,
    ) -> Result<HarnessSnapshot> {
        let dir = tempfile::Builder::new()
            .prefix("weir-harness-snapshot-")
            .tempdir()
            .map_err(|e| Error::io("creating a harness snapshot directory", e))?;
        let barrier = Barrier {
            id: CheckpointId::new(checkpoint),
            kind: BarrierKind::Checkpoint,
            triggered_at_ms: now_ms,
        };
        let snap = operator.snapshot(
            &barrier,
            &SnapshotTarget {
                dir: Some(dir.path().join("store")),
            },
        )?;
        operator.notify_checkpoint_complete(barrier.id)?;
        Ok(HarnessSnapshot {
            dir: Arc::new(dir),
            files: snap.keyed_files,
            operator_state: snap.operator_state.map(Arc::new),
            backend,
            subtask: settings.subtask,
            parallelism: settings.parallelism,
            max_parallelism: settings.max_parallelism,
            watermark,
        })
    }

    /// The subtask that took it.
    pub fn subtask(&self) -> usize {
        self.subtask
    }

    /// The parallelism of the step that took it.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// The max parallelism (number of key groups) of the step that took it.
    pub fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    /// The key groups whose state it holds.
    pub fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.subtask, self.parallelism, self.max_parallelism)
    }

    /// The step's watermark when it was taken (a restore continues from it).
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The name of the state backend that wrote it (`"memory"`, `"rocksdb"`).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The directory of the keyed store's snapshot.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The operator state it holds: the encoded broadcast state in the snapshot of subtask 0
    /// of a broadcast step, `None` otherwise.
    pub fn operator_state(&self) -> Option<&[u8]> {
        self.operator_state.as_deref().map(Vec::as_slice)
    }

    /// The store's files, relative to [`store_dir`](Self::store_dir).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// How subtask `subtask` of `parallelism` restores from `snapshots` (the subtasks of one
/// earlier parallelism, each at most once), with backend `backend`; `None` without snapshots.
///
/// # Errors
/// `Config` when the snapshots disagree on the max parallelism or parallelism, repeat a
/// subtask, come from another backend, or lack one the restore needs.
pub(crate) fn plan_restore(
    snapshots: &[HarnessSnapshot],
    subtask: usize,
    parallelism: usize,
    max_parallelism: usize,
    backend: &str,
) -> Result<Option<KeyedRestore>> {
    let Some(first) = snapshots.first() else {
        return Ok(None);
    };
    let old_parallelism = first.parallelism;
    for s in snapshots {
        if s.max_parallelism != max_parallelism {
            return Err(Error::config(format!(
                "harness restore: the snapshot of subtask {} has max parallelism {}, the harness {max_parallelism}: \
                 keyed state is partitioned into key groups, whose number never changes",
                s.subtask, s.max_parallelism
            )));
        }
        if s.parallelism != old_parallelism {
            return Err(Error::config(format!(
                "harness restore: the snapshots were taken at different parallelisms ({old_parallelism} and {}); \
                 give the snapshots of all subtasks of one parallelism",
                s.parallelism
            )));
        }
        if s.backend != backend {
            return Err(Error::config(format!(
                "harness restore: the snapshot of subtask {} was written by the {} state backend, the harness uses \
                 {backend}",
                s.subtask, s.backend
            )));
        }
        if snapshots.iter().filter(|o| o.subtask == s.subtask).count() > 1 {
            return Err(Error::config(format!(
                "harness restore: two snapshots of subtask {} of {old_parallelism}",
                s.subtask
            )));
        }
    }
    let dir_of = |old_subtask: usize| -> Result<&Path> {
        snapshots
            .iter()
            .find(|s| s.subtask == old_subtask)
            .map(|s| s.dir.path())
            .ok_or_else(|| {
                let given: Vec<usize> = snapshots.iter().map(|s| s.subtask).collect();
                Error::config(format!(
                    "harness restore: subtask {subtask} of {parallelism} takes key groups of subtask {old_subtask} of \
                     {old_parallelism}, whose snapshot was not given (given: subtasks {given:?})"
                ))
            })
    };
    let assignment = assign_keyed_state(subtask, parallelism, old_parallelism, max_parallelism);
    if old_parallelism == parallelism {
        return Ok(Some(KeyedRestore::Whole(dir_of(subtask)?.join("store"))));
    }
    let parts = assignment
        .sources
        .iter()
        .map(|t| {
            Ok(SnapshotPart {
                dir: dir_of(t.old_subtask)?.join("store"),
                taken: t.taken,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(KeyedRestore::Rescaled(parts)))
}
