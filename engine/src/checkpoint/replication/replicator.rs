//! The replicator thread: copies completed checkpoints into the replica, newest first.

use super::copy::copy_verified;
use super::plan::{files_to_copy, retention};
use super::ReplicationConfig;
use crate::checkpoint::metadata::{encode_metadata, CheckpointMetadata, StoredFile};
use crate::checkpoint::storage::CheckpointStorage;
use crate::checkpoint::upload::read_metadata;
use crate::message::CheckpointId;
use crate::ownership::{OwnerInfo, OwnerLease};
use crate::{Error, ErrorKind, Result};
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a failed copy waits before it is tried again (a newer checkpoint offered
/// meanwhile is copied instead).
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// Files of one checkpoint copied at once.
const COPIES_IN_FLIGHT: usize = 8;
/// How long the end of a job waits for the replica to catch up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The replica's state, as a user watching the recovery point wants it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The replica (`describe()` of its storage).
    pub target: String,
    /// The newest checkpoint completed in the job's own storage.
    pub primary_newest: Option<CheckpointId>,
    /// When that checkpoint was triggered, ms since the epoch.
    pub primary_newest_triggered_at_ms: u64,
    /// The newest checkpoint complete in the replica.
    pub replicated: Option<CheckpointId>,
    /// When that checkpoint was triggered, ms since the epoch.
    pub replicated_triggered_at_ms: u64,
    /// Checkpoints completed in the job's storage and not (yet) in the replica, newer than
    /// the replica's newest: the replica's lag in checkpoints.
    pub checkpoints_behind: u64,
    /// Checkpoints copied by this run.
    pub copied: u64,
    /// Bytes copied by this run (shared files once).
    pub bytes_copied: u64,
    /// How long the last copy took, ms.
    pub last_copy_ms: f64,
    /// Copies that failed (and were retried or superseded).
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// Offered and newer than the replica's newest.
    #[serde(skip)]
    waiting: BTreeSet<CheckpointId>,
}

impl ReplicationStatus {
    /// The replica's lag in seconds: how much older its newest checkpoint is than the job's
    /// newest (0 when it holds the newest).
    pub fn seconds_behind(&self) -> f64 {
        self.primary_newest_triggered_at_ms
            .saturating_sub(self.replicated_triggered_at_ms) as f64
            / 1e3
    }
}

enum Msg {
    Completed(Box<CheckpointMetadata>),
    Stop,
}

/// Copies completed checkpoints into a replica on a thread of its own.
///
/// Dropping it waits (bounded) until the newest offered checkpoint is replicated, then stops.
pub struct Replicator {
    tx: Sender<Msg>,
    status: Arc<Mutex<ReplicationStatus>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator").field("status", &self.status()).finish()
    }
}

impl Replicator {
    /// Takes ownership of the replica (a job started on it later fences this replicator),
    /// reads what it holds, and starts the thread. `keep` checkpoints are retained in it.
    ///
    /// # Errors
    /// `Config` when the replica cannot be used or another process owns it; `External` when it
    /// cannot be read.
    pub fn start(
        source: Arc<dyn CheckpointStorage>,
        cfg: &ReplicationConfig,
        keep: usize,
        owner: &OwnerInfo,
        scratch: PathBuf,
    ) -> Result<Replicator> {
        let target = cfg.target.clone();
        target
            .validate()
            .map_err(|e| e.context(format!("the checkpoint replica {}", target.describe())))?;
        let lease = target.acquire(owner)?;
        let mut retained = BTreeMap::new();
        for (id, complete) in target.list()? {
            if complete {
                retained.insert(id, read_metadata(target.as_ref(), id)?);
            }
        }
        let present: HashSet<String> = retained
            .values()
            .flat_map(|m| m.files().map(|f| f.key.clone()))
            .collect();
        let mut status = ReplicationStatus {
            target: target.describe(),
            ..Default::default()
        };
        if let Some((id, m)) = retained.iter().next_back() {
            status.replicated = Some(*id);
            status.replicated_triggered_at_ms = m.stats.triggered_at_ms;
        }
        std::fs::create_dir_all(&scratch).map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
        let status = Arc::new(Mutex::new(status));
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker = Worker {
            source,
            target,
            lease,
            keep,
            retained,
            present,
            reserved: BTreeSet::new(),
            identity_copied: None,
            scratch,
            status: status.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("weir-replicator".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| Error::io("starting the checkpoint replicator", e))?;
        Ok(Replicator {
            tx,
            status,
            thread: Some(thread),
        })
    }

    /// Hands over checkpoint `meta`, just completed in the job's storage.
    pub fn offer(&self, meta: &CheckpointMetadata) {
        {
            let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            if s.primary_newest < Some(meta.id) {
                s.primary_newest = Some(meta.id);
                s.primary_newest_triggered_at_ms = meta.stats.triggered_at_ms;
            }
            if s.replicated < Some(meta.id) {
                s.waiting.insert(meta.id);
                s.checkpoints_behind = s.waiting.len() as u64;
            }
        }
        let _ = self.tx.send(Msg::Completed(Box::new(meta.clone())));
    }

    /// The replica's state now.
    pub fn status(&self) -> ReplicationStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The newest checkpoint complete in the replica.
    pub fn replicated(&self) -> Option<CheckpointId> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).replicated
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread's side.
struct Worker {
    source: Arc<dyn CheckpointStorage>,
    target: Arc<dyn CheckpointStorage>,
    lease: OwnerLease,
    keep: usize,
    /// Complete in the replica, with their metadata.
    retained: BTreeMap<CheckpointId, CheckpointMetadata>,
    /// Keys the replica holds, verified.
    present: HashSet<String>,
    /// Ids reserved in the replica by this run.
    reserved: BTreeSet<CheckpointId>,
    /// The identity record last copied.
    identity_copied: Option<Vec<u8>>,
    scratch: PathBuf,
    status: Arc<Mutex<ReplicationStatus>>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut pending: Option<Box<CheckpointMetadata>> = None;
        let mut stopping: Option<Instant> = None;
        loop {
            // Take everything offered: only the newest matters. Block only when idle.
            let first = if stopping.is_some() || pending.is_some() {
                rx.try_recv().ok()
            } else {
                match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                }
            };
            for msg in first.into_iter().chain(rx.try_iter()) {
                match msg {
                    Msg::Completed(m) if pending.as_ref().is_none_or(|p| p.id < m.id) => pending = Some(m),
                    Msg::Completed(_) => {}
                    Msg::Stop => {
                        stopping.get_or_insert_with(Instant::now);
                    }
                }
            }
            let Some(meta) = pending.take() else {
                if stopping.is_some() {
                    return;
                }
                continue;
            };
            if self.retained.last_key_value().is_some_and(|(&id, _)| id >= meta.id) {
                continue;
            }
            match self.replicate(&meta) {
                Ok(()) => {}
                Err(e) => {
                    let superseded = e.kind() == ErrorKind::Checkpoint;
                    tracing::warn!(checkpoint = meta.id.get(), replica = %self.target.describe(), error = %e,
                        superseded, "replicating a checkpoint failed");
                    {
                        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                        s.failures += 1;
                        s.last_error = Some(e.to_string());
                    }
                    if e.kind() == ErrorKind::Config {
                        return; // fenced out or unusable: a person must look
                    }
                    if !superseded {
                        if stopping.is_some_and(|t| t.elapsed() > DRAIN_TIMEOUT) {
                            return;
                        }
                        pending = Some(meta);
                        std::thread::sleep(RETRY_AFTER);
                    }
                }
            }
        }
    }

    /// Copies checkpoint `meta` into the replica and publishes it there.
    fn replicate(&mut self, meta: &CheckpointMetadata) -> Result<()> {
        let started = Instant::now();
        let id = meta.id;
        if self.reserved.insert(id) {
            if let Err(e) = self.target.reserve(id, &self.lease) {
                self.reserved.remove(&id);
                return Err(e);
            }
        }
        let files = files_to_copy(meta, &self.present);
        let bytes = self.copy_all(&files)?;
        self.present.extend(files.iter().map(|f| f.key.clone()));
        if let Some(identity) = self.source.read_identity()? {
            if self.identity_copied.as_ref() != Some(&identity) {
                self.target.write_identity(&identity)?;
                self.identity_copied = Some(identity);
            }
        }
        self.target.verify_lease(&self.lease)?;
        self.target.write_metadata(id, &encode_metadata(meta)?)?;
        self.retained.insert(id, meta.clone());
        {
            let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            s.replicated = Some(id);
            s.replicated_triggered_at_ms = meta.stats.triggered_at_ms;
            s.waiting = s.waiting.split_off(&id.next());
            s.checkpoints_behind = s.waiting.len() as u64;
            s.copied += 1;
            s.bytes_copied += bytes;
            s.last_copy_ms = started.elapsed().as_secs_f64() * 1e3;
        }
        tracing::debug!(checkpoint = id.get(), bytes, replica = %self.target.describe(), "checkpoint replicated");
        if let Err(e) = self.apply_retention() {
            tracing::warn!(error = %e, replica = %self.target.describe(), "replica retention failed; old files are kept");
        }
        Ok(())
    }

    /// Copies `files`, [`COPIES_IN_FLIGHT`] at a time; returns the bytes copied.
    fn copy_all(&self, files: &[&StoredFile]) -> Result<u64> {
        let next = AtomicUsize::new(0);
        let (source, target) = (self.source.as_ref(), self.target.as_ref());
        std::thread::scope(|scope| {
            let copiers: Vec<_> = (0..COPIES_IN_FLIGHT.min(files.len()))
                .map(|n| {
                    let (next, scratch) = (&next, self.scratch.join(format!("copier-{n}")));
                    scope.spawn(move || -> Result<u64> {
                        std::fs::create_dir_all(&scratch)
                            .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
                        let mut bytes = 0;
                        while let Some(f) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                            bytes += copy_verified(source, target, f, &scratch)?;
                        }
                        Ok(bytes)
                    })
                })
                .collect();
            let mut total = 0;
            let mut first_error = None;
            for c in copiers {
                match c.join() {
                    Ok(Ok(b)) => total += b,
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(_) => {
                        first_error.get_or_insert(Error::internal("a checkpoint copier panicked"));
                    }
                }
            }
            first_error.map_or(Ok(total), Err)
        })
    }

    fn apply_retention(&mut self) -> Result<()> {
        let shared = self.target.list_shared()?;
        let (drop, unreferenced) = retention(&self.retained, self.keep, &shared);
        for id in drop {
            self.target.delete_checkpoint(id)?;
            self.retained.remove(&id);
            self.reserved.remove(&id);
        }
        let newest = self.retained.keys().next_back().copied();
        for key in unreferenced {
            // A shared file of a checkpoint newer than the newest replicated one belongs to a
            // copy in progress (none here: one thread), never to garbage; keep it anyway.
            if shared_id(&key).is_some_and(|k| Some(k) > newest) {
                continue;
            }
            self.target.delete(&key)?;
            self.present.remove(&key);
        }
        Ok(())
    }
}

/// The checkpoint id a shared file's name starts with (`shared/<op>/<subtask>/<id>-<name>`).
fn shared_id(key: &str) -> Option<CheckpointId> {
    key.rsplit('/').next()?.split_once('-')?.0.parse().ok()
}
