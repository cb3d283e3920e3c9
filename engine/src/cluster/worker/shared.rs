//! What a worker process keeps between attempts: its program, its data plane, its staging
//! directory, the master it reports to, and the attempt it runs.
//!
//! # After a crash
//! A worker restarted after a crash holds nothing of its earlier life: it registers again,
//! and the master's next attempt restores its subtasks from the checkpoint storage. The
//! staging directory of a dead worker process is removed by the next one (its lock is free).
//!
//! Within one process, the snapshots a worker stored stay as its local copies until a newer
//! checkpoint completes; a restore of a subtask this worker ran takes its keyed files from
//! there (local recovery) when they verify against the checkpoint's sizes and CRC-32C, and
//! fetches from the storage whatever does not.

use crate::checkpoint::metadata::StoredFile;
use crate::checkpoint::reassign::{state_to_fetch, OperatorStateRule};
use crate::checkpoint::restore::{materialize, with_retries, RestoreInput, SubtaskKey, READ_RETRY};
use crate::checkpoint::staging::StagingArea;
use crate::checkpoint::storage::CheckpointStorage;
use crate::checkpoint::upload::{read_metadata, reusable_files, StagedFileKey};
use crate::cluster::ha::term::{Term, TermGate};
use crate::cluster::protocol::{AttemptProgress, Deployment, MasterServiceClient, Session};
use crate::cluster::worker::attempt::{AttemptSpec, WorkerAttempt};
use crate::cluster::worker::forward;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::message::CheckpointId;
use crate::net::inbound::DataPlane;
use crate::net::{NetSettings, WorkerId};
use crate::runtime::control::Control;
use crate::runtime::layout::Layout;
use crate::Result;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a worker waits for the subtasks of an attempt it replaces to stop; beyond it the
/// process ends (its supervisor restarts it), so that no new attempt runs next to old threads.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// Keyed files of a completed checkpoint by operator subtask and name.
type ReusableFiles = Arc<HashMap<StagedFileKey, StoredFile>>;

/// The latest completed checkpoint a worker knows of, and the files of the one it read.
#[derive(Default)]
struct Completed {
    latest: Option<CheckpointId>,
    files: Option<(CheckpointId, ReusableFiles)>,
}

/// The master this worker reports to.
#[derive(Clone)]
pub(crate) struct MasterLink {
    pub(crate) session: Session,
    pub(crate) client: MasterServiceClient,
}

/// The attempt the worker runs.
struct Current {
    attempt: WorkerAttempt,
}

/// A worker's lasting parts.
pub(crate) struct WorkerCore {
    pub(crate) graph: Arc<Graph>,
    pub(crate) cfg: JobConfig,
    pub(crate) layout: Layout,
    pub(crate) me: WorkerId,
    pub(crate) fingerprint: u64,
    pub(crate) plane: DataPlane,
    pub(crate) net: NetSettings,
    pub(crate) rt: tokio::runtime::Handle,
    /// Where subtasks stage snapshots (`chk-<id>/<step>/<subtask>/`) and restores land.
    staging: StagingArea,
    master: Mutex<Option<MasterLink>>,
    /// The newest leader term seen: calls of an older term are refused.
    terms: Mutex<TermGate>,
    current: Mutex<Option<Current>>,
    /// The newest attempt this worker ran.
    last_attempt: Mutex<u32>,
    /// The latest completed checkpoint this worker knows of, and its files by subtask.
    completed: Mutex<Completed>,
}

impl WorkerCore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        graph: Arc<Graph>,
        cfg: JobConfig,
        me: WorkerId,
        fingerprint: u64,
        plane: DataPlane,
        net: NetSettings,
        rt: tokio::runtime::Handle,
        staging: StagingArea,
    ) -> Result<Self> {
        let layout = Layout::of(&graph, &cfg)?;
        Ok(WorkerCore {
            graph,
            cfg,
            layout,
            me,
            fingerprint,
            plane,
            net,
            rt,
            staging,
            master: Mutex::new(None),
            terms: Mutex::new(TermGate::default()),
            current: Mutex::new(None),
            last_attempt: Mutex::new(0),
            completed: Mutex::new(Completed::default()),
        })
    }

    /// Where this worker keeps its copies of the snapshots it stored, by checkpoint.
    fn local_copies(&self) -> PathBuf {
        self.staging.dir().join("local")
    }

    /// The local copy of `operator`'s subtask `subtask` in checkpoint `id`.
    fn local_copy(&self, id: CheckpointId, operator: &str, subtask: usize) -> PathBuf {
        self.local_copies()
            .join(format!("chk-{id}"))
            .join(crate::state::backend::dir_name(operator))
            .join(subtask.to_string())
    }

    /// Keeps the snapshot staged in `staged` (stored in checkpoint storage already) as the
    /// local copy of `operator`'s subtask in checkpoint `id`; the staged directory is gone after.
    pub(crate) fn keep_local_copy(&self, id: CheckpointId, operator: &str, subtask: usize, staged: &std::path::Path) {
        let dest = self.local_copy(id, operator, subtask);
        let kept = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::rename(staged, &dest));
        if kept.is_err() {
            let _ = std::fs::remove_dir_all(staged);
        }
    }

    /// Removes the local copies of checkpoints older than `keep` (newer ones may be a
    /// checkpoint in flight, whose completion this worker has not heard of yet).
    fn prune_local_copies(&self, keep: CheckpointId) {
        let Ok(entries) = std::fs::read_dir(self.local_copies()) else {
            return;
        };
        for e in entries.flatten() {
            let id = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse::<CheckpointId>().ok());
            if id.is_none_or(|id| id < keep) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Where this worker's subtasks stage snapshots.
    pub(crate) fn snapshot_root(&self) -> PathBuf {
        self.staging.dir().join("snapshots")
    }

    /// The checkpoint storage, when the job has one.
    pub(crate) fn storage(&self) -> Option<&Arc<dyn CheckpointStorage>> {
        self.cfg.checkpoint.as_ref().map(|c| &c.storage)
    }

    pub(crate) fn last_attempt(&self) -> u32 {
        *lock(&self.last_attempt)
    }

    pub(crate) fn master(&self) -> Option<MasterLink> {
        lock(&self.master).clone()
    }

    pub(crate) fn set_master(&self, link: Option<MasterLink>) {
        *lock(&self.master) = link;
    }

    /// Whether `session` is the master this worker reports to, of a term no older than the
    /// newest this worker has seen.
    pub(crate) fn is_session(&self, session: Session) -> bool {
        lock(&self.master).as_ref().is_some_and(|m| m.session == session) && lock(&self.terms).would_admit(session.term)
    }

    /// Takes `term`, a master's that accepted this worker, as the newest seen; false if a newer
    /// one was seen before (the master is a former leader, fenced).
    pub(crate) fn admit_term(&self, term: Term) -> bool {
        lock(&self.terms).admit(term)
    }

    /// Runs `d`: cancels the attempt running here, restores this worker's subtasks from the
    /// checkpoint `d` names, starts them and connects to the workers they send to.
    ///
    /// # Errors
    /// Why the attempt could not start (a restore or a connection failed); nothing of it runs.
    pub(crate) fn deploy(self: &Arc<Self>, d: Deployment) -> Result<()> {
        let mut current = lock(&self.current);
        if let Some(mut old) = current.take() {
            old.attempt.cancel(&self.plane);
            if !old.attempt.join(CANCEL_WAIT) {
                tracing::error!(worker = self.me, "subtasks of an earlier attempt did not stop within {CANCEL_WAIT:?}; ending the process so that it is restarted");
                std::process::exit(70);
            }
        }
        {
            let mut last = lock(&self.last_attempt);
            *last = (*last).max(d.attempt);
        }
        let _ = std::fs::remove_dir_all(self.snapshot_root());
        let restore = self.restore(&d)?;
        // A savepoint is not the job's checkpoint: nothing of it is referenced by the next one.
        lock(&self.completed).latest = d.restore.filter(|_| d.from_savepoint.is_none());
        let (events, rx) = crossbeam_channel::unbounded();
        let spec = AttemptSpec {
            graph: &self.graph,
            cfg: &self.cfg,
            fingerprint: self.fingerprint,
            me: self.me,
            attempt: d.attempt,
            assignment: &d.assignment,
            peers: &d.peers,
            restore: &restore,
            snapshot_root: Some(self.snapshot_root()),
            net: &self.net,
        };
        let attempt = WorkerAttempt::start(spec, &self.plane, events)?;
        forward::spawn(self.clone(), d.attempt, rx)?;
        tracing::info!(worker = self.me, attempt = d.attempt, tasks = ?attempt.tasks().collect::<Vec<_>>(), restore = ?d.restore, "attempt started");
        *current = Some(Current { attempt });
        Ok(())
    }

    /// Fetches the state of this worker's subtasks from checkpoint `d.restore`: from the job's
    /// checkpoint storage (taking its own local copies where they verify), or from the
    /// savepoint's storage when the job starts from a savepoint (no local copy can serve, and
    /// nothing of it is reused by the job's checkpoints: the first one stores everything).
    fn restore(&self, d: &Deployment) -> Result<RestoreInput> {
        let (Some(id), Some(storage)) = (d.restore, self.storage()) else {
            return Ok(RestoreInput::default());
        };
        let storage = match &d.from_savepoint {
            Some(location) => self.savepoint_storage(location)?,
            None => storage.clone(),
        };
        let mine: BTreeSet<SubtaskKey> = d
            .assignment
            .tasks_of(self.me)
            .into_iter()
            .flat_map(|t| self.layout.steps_of(&self.graph, t))
            .map(|(step, s)| SubtaskKey::new(&step, s))
            .collect();
        let dir = self.staging.dir().join("restore");
        let _ = std::fs::remove_dir_all(&dir);
        let from_savepoint = d.from_savepoint.is_some();
        // Only copies of the checkpoint restored can serve.
        self.prune_local_copies(id);
        let meta = with_retries(
            READ_RETRY,
            &|| format!("checkpoint {id}, file chk-{id}/_metadata in {}", storage.describe()),
            || read_metadata(storage.as_ref(), id),
        )?;
        let local = |operator: &str, subtask: usize| {
            let copy = self.local_copy(id, operator, subtask);
            (!from_savepoint && copy.is_dir()).then_some(copy)
        };
        // After a change of parallelism, the new subtasks take state of other old subtasks.
        let parallelism = crate::runtime::plan::parallelism_by_name(&self.graph, &self.cfg)?;
        let wanted = state_to_fetch(&meta, &mine, &parallelism, &|step| {
            self.graph
                .nodes
                .iter()
                .find(|n| n.name == step)
                .map_or(OperatorStateRule::Combined, |n| {
                    crate::runtime::plan::operator_state_rule(&self.graph, n)
                })
        });
        let input = materialize(
            storage.as_ref(),
            &meta,
            &dir,
            READ_RETRY,
            &|k| wanted.contains(k),
            &local,
        )
        .map_err(|e| {
            let corrupt = e.kind() == crate::ErrorKind::Checkpoint;
            let what = if from_savepoint { "savepoint" } else { "checkpoint" };
            let e = e.context(format!("worker {} restoring {what} {id}", self.me));
            if corrupt {
                e.with_reason(crate::Reason::RestoredStateCorrupt)
            } else {
                e
            }
        })?;
        lock(&self.completed).files = (!from_savepoint).then(|| (id, Arc::new(reusable_files(&meta))));
        Ok(input)
    }

    /// The storage of the savepoint the job starts from, which the master names `location`.
    ///
    /// # Errors
    /// `Config` when this worker's program starts from no savepoint or from another one.
    fn savepoint_storage(&self, location: &str) -> Result<Arc<dyn CheckpointStorage>> {
        let mine = self.cfg.checkpoint.as_ref().and_then(|c| c.from_savepoint.as_ref());
        match mine {
            Some(sp) if sp.storage.describe() == location => Ok(sp.storage.clone()),
            Some(sp) => Err(crate::Error::config(format!(
                "worker {}: the master starts the job from the savepoint in {location}, this worker's program \
                 from the one in {}: start every process of the job with the same savepoint",
                self.me,
                sp.storage.describe()
            ))),
            None => Err(crate::Error::config(format!(
                "worker {}: the master starts the job from the savepoint in {location}, this worker's program \
                 from none: start every process of the job with the same savepoint",
                self.me
            ))),
        }
    }

    /// Hands `controls` of attempt `attempt` to its subtasks; a cancel stops the whole attempt.
    pub(crate) fn control(&self, attempt: u32, controls: Vec<(usize, Control)>) {
        let current = lock(&self.current);
        let Some(c) = current.as_ref().filter(|c| c.attempt.number() == attempt) else {
            return;
        };
        for (task, control) in controls {
            match control {
                Control::Cancel => {
                    c.attempt.cancel(&self.plane);
                    return;
                }
                Control::CheckpointComplete { id } => {
                    {
                        let mut done = lock(&self.completed);
                        done.latest = Some(done.latest.map_or(id, |d| d.max(id)));
                    }
                    self.prune_local_copies(id);
                    c.attempt.control(task, control);
                }
                other => c.attempt.control(task, other),
            }
        }
    }

    /// Cancels attempt `attempt` (any attempt with `None`), if it runs here.
    pub(crate) fn cancel(&self, attempt: Option<u32>) {
        let current = lock(&self.current);
        if let Some(c) = current
            .as_ref()
            .filter(|c| attempt.is_none_or(|a| c.attempt.number() == a))
        {
            tracing::warn!(worker = self.me, attempt = c.attempt.number(), "cancelling attempt");
            c.attempt.cancel(&self.plane);
        }
    }

    /// How far the attempt running here got.
    pub(crate) fn progress(&self) -> AttemptProgress {
        match lock(&self.current).as_ref() {
            Some(c) => {
                let (source_records, sink_records) = c.attempt.records();
                AttemptProgress {
                    attempt: c.attempt.number(),
                    source_records,
                    sink_records,
                    subtasks: c.attempt.counters(),
                }
            }
            None => AttemptProgress::default(),
        }
    }

    /// Stops everything before the process ends.
    pub(crate) fn shutdown(&self) {
        if let Some(mut c) = lock(&self.current).take() {
            c.attempt.cancel(&self.plane);
            c.attempt.join(Duration::from_secs(10));
        }
    }

    /// The keyed files of the latest completed checkpoint this worker knows of, which a
    /// snapshot of a later checkpoint references instead of storing again.
    pub(crate) fn reusable(&self) -> ReusableFiles {
        let latest = lock(&self.completed).latest;
        let Some(latest) = latest else {
            return Arc::new(HashMap::new());
        };
        if let Some((id, files)) = &lock(&self.completed).files {
            if *id == latest {
                return files.clone();
            }
        }
        let Some(storage) = self.storage() else {
            return Arc::new(HashMap::new());
        };
        match read_metadata(storage.as_ref(), latest) {
            Ok(meta) => {
                let files = Arc::new(reusable_files(&meta));
                lock(&self.completed).files = Some((latest, files.clone()));
                files
            }
            // Nothing is referenced then: everything is stored again.
            Err(_) => Arc::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
