//! Where a harnessed step runs: job and step names, subtask, parallelism, key groups, attempt,
//! state backend and the snapshots it restores, and the operator context built from them.

use super::snapshot::{plan_restore, HarnessSnapshot};
use super::state_names::{note_stored, NotingStore, StateNames};
use crate::metrics::OperatorMetrics;
use crate::operator::OperatorContext;
use crate::state::key_group::MAX_KEY_GROUPS;
use crate::state::{KeyGroupRange, MemoryBackend, RocksDbBackend, StateBackend, StoreScope};
use crate::{Error, Result};
use std::sync::Arc;

/// The number of key groups of a pipeline that does not set it.
const DEFAULT_MAX_PARALLELISM: usize = 128;

/// The keyed store of a harness.
#[derive(Debug, Clone)]
enum Backend {
    Memory,
    /// RocksDB in a temporary directory of the harness.
    RocksDb,
    Custom(Arc<dyn StateBackend>),
}

/// Configures a harness: where its step runs and, for keyed steps, its store and what it
/// restores. Finish with [`keyed`](Self::keyed) or one of the stateless steps
/// ([`map`](Self::map), [`map_function`](Self::map_function), [`try_map`](Self::try_map), ...).
///
/// By default the step is subtask 0 of 1, with 128 key groups (a pipeline's default), state in
/// memory, attempt 1 and processing time 0.
#[derive(Debug, Clone)]
pub struct HarnessBuilder {
    pub(crate) job: String,
    pub(crate) step: String,
    pub(crate) subtask: usize,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: usize,
    pub(crate) attempt: u32,
    backend: Backend,
    pub(crate) restore: Vec<HarnessSnapshot>,
    pub(crate) processing_time: u64,
}

impl Default for HarnessBuilder {
    fn default() -> Self {
        HarnessBuilder {
            job: "harness".into(),
            step: "step".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            attempt: 1,
            backend: Backend::Memory,
            restore: Vec::new(),
            processing_time: 0,
        }
    }
}

impl HarnessBuilder {
    /// A step `"step"` of job `"harness"`, subtask 0 of 1, 128 key groups, state in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The job's name (what `RuntimeContext::job` says).
    pub fn job(mut self, name: &str) -> Self {
        self.job = name.into();
        self
    }

    /// The step's name (what `RuntimeContext::step`, dead letters and errors say).
    pub fn step(mut self, name: &str) -> Self {
        self.step = name.into();
        self
    }

    /// Runs the step as subtask `index` of `parallelism`: a keyed step then owns that
    /// subtask's key groups only, and refuses records of other keys as a pipeline never
    /// routes them there.
    pub fn subtask(mut self, index: usize, parallelism: usize) -> Self {
        self.subtask = index;
        self.parallelism = parallelism;
        self
    }

    /// The number of key groups (the job's max parallelism).
    pub fn max_parallelism(mut self, key_groups: usize) -> Self {
        self.max_parallelism = key_groups;
        self
    }

    /// The attempt the step belongs to (what `RuntimeContext::attempt` says; 1 is the job's
    /// first run, a restore after a failure is a later one).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Keeps keyed state in RocksDB, in a temporary directory deleted with the harness.
    pub fn rocksdb(mut self) -> Self {
        self.backend = Backend::RocksDb;
        self
    }

    /// Keeps keyed state in `backend`.
    pub fn state_backend(mut self, backend: Arc<dyn StateBackend>) -> Self {
        self.backend = Backend::Custom(backend);
        self
    }

    /// The processing time the harness starts at (ms; default 0).
    pub fn processing_time(mut self, ms: u64) -> Self {
        self.processing_time = ms;
        self
    }

    /// Restores keyed state from `snapshot` (call again to add the snapshots of other
    /// subtasks of the same parallelism: a harness at another parallelism takes the key groups
    /// it owns from each, as a pipeline restored at a new parallelism does).
    pub fn restore_from(mut self, snapshot: &HarnessSnapshot) -> Self {
        self.restore.push(snapshot.clone());
        self
    }

    /// Restores keyed state from the snapshots of all subtasks of one parallelism (see
    /// [`restore_from`](Self::restore_from)).
    pub fn restore_from_all<'a>(mut self, snapshots: impl IntoIterator<Item = &'a HarnessSnapshot>) -> Self {
        self.restore.extend(snapshots.into_iter().cloned());
        self
    }

    /// The settings of a harness restoring `snapshot` where it was taken: its subtask,
    /// parallelism, max parallelism and backend.
    pub(crate) fn restoring(snapshot: &HarnessSnapshot) -> Self {
        let b = HarnessBuilder::new()
            .subtask(snapshot.subtask, snapshot.parallelism)
            .max_parallelism(snapshot.max_parallelism)
            .restore_from(snapshot);
        if snapshot.backend == "rocksdb" {
            b.rocksdb()
        } else {
            b
        }
    }

    /// The copy of the step's replicated operator state (the broadcast state) a restore opens
    /// with: the one subtask 0 wrote, as every subtask of a pipeline reads it at any
    /// parallelism. `None` without snapshots.
    ///
    /// # Errors
    /// `Config` if snapshots are given but not subtask 0's, which alone holds the copy.
    pub(crate) fn replicated_state(&self) -> Result<Option<Vec<u8>>> {
        if self.restore.is_empty() {
            return Ok(None);
        }
        match self.restore.iter().find(|s| s.subtask == 0) {
            Some(s) => Ok(Some(s.operator_state.as_deref().cloned().unwrap_or_default())),
            None => {
                let given: Vec<usize> = self.restore.iter().map(|s| s.subtask).collect();
                Err(Error::config(format!(
                    "harness for step \"{}\": the broadcast state is checkpointed by subtask 0 only, and every \
                     subtask restores that copy; give the snapshot of subtask 0 too (given: subtasks {given:?})",
                    self.step
                )))
            }
        }
    }

    /// The step's subtask and parallelism, checked.
    pub(crate) fn check(&self) -> Result<KeyGroupRange> {
        if !(1..=MAX_KEY_GROUPS).contains(&self.max_parallelism) {
            return Err(Error::config(format!(
                "harness for step \"{}\": max parallelism {} is not in 1..={MAX_KEY_GROUPS}",
                self.step, self.max_parallelism
            )));
        }
        if !(1..=self.max_parallelism).contains(&self.parallelism) || self.subtask >= self.parallelism {
            return Err(Error::config(format!(
                "harness for step \"{}\": subtask {} of parallelism {}: the index must be below the parallelism, and \
                 the parallelism in 1..={} (the max parallelism)",
                self.step, self.subtask, self.parallelism, self.max_parallelism
            )));
        }
        Ok(KeyGroupRange::for_subtask(
            self.subtask,
            self.parallelism,
            self.max_parallelism,
        ))
    }

    /// The operator context of a stateless step (no store).
    pub(crate) fn stateless_context(&self) -> Result<OperatorContext> {
        if !self.restore.is_empty() {
            return Err(Error::config(format!(
                "harness for step \"{}\": a stateless step has no keyed state to restore",
                self.step
            )));
        }
        let key_groups = self.check()?;
        Ok(self.context(key_groups, OperatorMetrics::default(), false))
    }

    /// The operator context of a function step (`map_function`, `flat_map_function`), whose
    /// operator lists restore from the snapshots as a pipeline's do: every subtask gets every
    /// old subtask's state, and its own too when the parallelism is the same.
    ///
    /// # Errors
    /// `Config` when the snapshots were taken at different parallelisms or repeat a subtask.
    pub(crate) fn function_context(&self) -> Result<OperatorContext> {
        let key_groups = self.check()?;
        let mut ctx = self.context(key_groups, OperatorMetrics::default(), !self.restore.is_empty());
        if let Some(first) = self.restore.first() {
            for s in &self.restore {
                if s.parallelism != first.parallelism {
                    return Err(Error::config(format!(
                        "harness for step \"{}\": the snapshots were taken at different parallelisms ({} and {}); \
                         give the snapshots of all subtasks of one parallelism",
                        self.step, first.parallelism, s.parallelism
                    )));
                }
                if self.restore.iter().filter(|o| o.subtask == s.subtask).count() > 1 {
                    return Err(Error::config(format!(
                        "harness for step \"{}\": two snapshots of subtask {} of {}",
                        self.step, s.subtask, s.parallelism
                    )));
                }
            }
            let state = |s: &HarnessSnapshot| s.operator_state.as_deref().cloned();
            ctx.restored_state = self
                .restore
                .iter()
                .find(|s| s.subtask == self.subtask && s.parallelism == self.parallelism)
                .and_then(state);
            ctx.rescaled_state = self
                .restore
                .iter()
                .filter_map(|s| state(s).map(|raw| (s.subtask, raw)))
                .collect();
        }
        Ok(ctx)
    }

    /// The operator context of a non-keyed step whose only state is replicated operator state
    /// (the broadcast state), restored from subtask 0's snapshot if snapshots are given.
    pub(crate) fn replicated_context(&self) -> Result<OperatorContext> {
        let key_groups = self.check()?;
        let restored = self.replicated_state()?;
        let mut ctx = self.context(key_groups, OperatorMetrics::default(), restored.is_some());
        ctx.restored_state = restored;
        Ok(ctx)
    }

    /// Opens the keyed store (restored from the snapshots, if any) and the operator context
    /// holding it; also returns the temporary directory of a RocksDB store and the backend's
    /// name.
    pub(crate) fn keyed_context(&self, names: &StateNames) -> Result<KeyedOpened> {
        let key_groups = self.check()?;
        let (backend, workdir): (Arc<dyn StateBackend>, _) = match &self.backend {
            Backend::Memory => (Arc::new(MemoryBackend::new()), None),
            Backend::RocksDb => {
                let dir = tempfile::Builder::new()
                    .prefix("weir-harness-rocksdb-")
                    .tempdir()
                    .map_err(|e| Error::io("creating the harness's RocksDB directory", e))?;
                (Arc::new(RocksDbBackend::new(dir.path())), Some(dir))
            }
            Backend::Custom(b) => (b.clone(), None),
        };
        backend.validate()?;
        let scope = StoreScope {
            job: self.job.clone(),
            operator: self.step.clone(),
            subtask: self.subtask,
            key_groups,
        };
        let restore = plan_restore(
            &self.restore,
            self.subtask,
            self.parallelism,
            self.max_parallelism,
            backend.name(),
        )
        .map_err(|e| Error::config(format!("harness for step \"{}\": {}", self.step, e.message())))?;
        let mut store = match &restore {
            Some(r) => r.open(backend.as_ref(), &scope)?,
            None => backend.open_store(&scope, None)?,
        };
        note_stored(store.as_mut(), key_groups, names)?;
        let mut ctx = self.context(key_groups, OperatorMetrics::default(), restore.is_some());
        // Subtask 0's copy of the broadcast state, if the step has one (see `replicated_state`).
        ctx.restored_state = self
            .restore
            .iter()
            .find(|s| s.subtask == 0)
            .and_then(|s| s.operator_state.as_deref().cloned());
        ctx.store = Some(Box::new(NotingStore {
            inner: store,
            names: names.clone(),
        }));
        Ok(KeyedOpened {
            ctx,
            workdir,
            backend: backend.name(),
        })
    }

    fn context(&self, key_groups: KeyGroupRange, metrics: OperatorMetrics, restored: bool) -> OperatorContext {
        OperatorContext {
            job: self.job.clone(),
            operator: self.step.clone(),
            subtask: self.subtask,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            attempt: self.attempt,
            key_groups,
            store: None,
            metrics,
            restored_state: None,
            rescaled_state: Vec::new(),
            restored_checkpoint: restored.then_some(crate::message::CheckpointId::FIRST),
            checkpoint_timing: None,
            fail_points: crate::fail::FailPoints::new(),
            store_opener: None,
            committed_output: Default::default(),
            cancellation: crate::cancellation::Cancellation::new(),
        }
    }
}

/// A keyed step's context with its store open.
pub(crate) struct KeyedOpened {
    pub(crate) ctx: OperatorContext,
    /// The RocksDB working directory, deleted with the harness.
    pub(crate) workdir: Option<tempfile::TempDir>,
    pub(crate) backend: &'static str,
}
