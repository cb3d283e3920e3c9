//! Savepoints a run of the payment job takes on the user's request (`--savepoint-dir` with
//! `--savepoint-after-ms` and `--stop-with-savepoint-after-ms`), and where a run that starts
//! from one resumes: the same in one process and on a cluster, whose launcher forwards the
//! requests to its master process.

use super::pipeline::{latest_checkpoint, JobSettings};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_engine::checkpoint::{CheckpointStorage, LocalDirStorage};
use weir_engine::prelude::CheckpointId;
use weir_engine::runtime::JobHandle;

/// The savepoints a run takes.
#[derive(Debug, Clone, Default)]
pub struct SavepointPlan {
    /// Where savepoints go (each into a directory of its own below).
    pub dir: Option<PathBuf>,
    /// Take one while the job runs, this long after the start.
    pub after: Option<Duration>,
    /// Stop the job with one this long after the start.
    pub stop_after: Option<Duration>,
}

impl SavepointPlan {
    /// Whether the plan takes any savepoint.
    pub fn is_empty(&self) -> bool {
        self.after.is_none() && self.stop_after.is_none()
    }

    /// A new directory for a savepoint: `dir/savepoint-<unix ms>`.
    fn target(&self) -> anyhow::Result<Arc<dyn CheckpointStorage>> {
        let parent = self.dir.as_ref().context("no --savepoint-dir")?;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Ok(Arc::new(LocalDirStorage::new(parent.join(format!("savepoint-{ms}")))))
    }

    /// The requests of this plan, for one run.
    pub fn schedule(&self) -> SavepointSchedule {
        SavepointSchedule {
            plan: self.clone(),
            take_at: self.after,
            stop_at: self.stop_after,
        }
    }
}

/// The plan's requests not yet made in a run.
#[derive(Debug)]
pub struct SavepointSchedule {
    plan: SavepointPlan,
    take_at: Option<Duration>,
    stop_at: Option<Duration>,
}

impl SavepointSchedule {
    /// Makes the requests due `elapsed` after the start (each waits for its savepoint) and says
    /// how each went through `log`; a failed savepoint leaves the job running.
    ///
    /// # Errors
    /// Only when no savepoint directory can be named.
    pub fn run_due(
        &mut self,
        handle: &JobHandle,
        elapsed: Duration,
        log: &mut dyn FnMut(String),
    ) -> anyhow::Result<()> {
        if self.take_at.is_some_and(|t| elapsed >= t) {
            self.take_at = None;
            match handle.savepoint(self.plan.target()?) {
                Ok(sp) => log(format!(
                    "savepoint {} written to {} ({} files); the job goes on",
                    sp.id, sp.location, sp.files
                )),
                Err(e) => log(format!("the savepoint failed: {e}")),
            }
        }
        if self.stop_at.is_some_and(|t| elapsed >= t) {
            self.stop_at = None;
            match handle.stop_with_savepoint(self.plan.target()?) {
                Ok(sp) => log(format!("stopping with savepoint {} in {}", sp.id, sp.location)),
                Err(e) => log(format!("stop with savepoint failed, the job goes on: {e}")),
            }
        }
        Ok(())
    }
}

/// What the user is told when the job stopped with savepoint `id` at `location`.
pub fn stopped_message(id: CheckpointId, location: &str) -> String {
    format!(
        "the job stopped with savepoint {id} in {location}: the output up to it is committed; finish the run \
         with --from-savepoint {location} and a new --checkpoint-dir (the audit runs then)"
    )
}

/// Where a run resumes: the latest completed checkpoint of its storage, or, before it has
/// one, the savepoint it starts from (id and input position).
pub fn resume_point(s: &JobSettings) -> Option<(CheckpointId, u64)> {
    latest_checkpoint(s.checkpoint_storage.as_ref()).or_else(|| {
        s.from_savepoint
            .as_ref()
            .and_then(|dir| latest_checkpoint(&LocalDirStorage::new(dir)))
    })
}
