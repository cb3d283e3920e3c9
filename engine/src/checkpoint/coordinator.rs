//! The checkpoint coordinator's durable side: checkpoint ids, the lineage of completed
//! checkpoints, uploads, publication, retention and restore.
//!
//! # One writer
//! The coordinator takes an [`OwnerLease`] on the storage when it is created and holds it
//! until it is dropped (the job ended): a second process of the job fails to start. Every
//! reservation carries the lease, and before publishing a checkpoint the coordinator checks
//! that its lease was not taken over.
//! The lease, the latest-checkpoint pointer and the id counter come from a
//! [`CheckpointPointer`](super::pointer::CheckpointPointer): the storage's own listing and lock
//! by default, a highly available cluster's etcd (fenced by the leader's term) otherwise.
//!
//! # After a crash
//! A checkpoint is complete exactly when its `_metadata` exists. Ids continue after the
//! highest id found in storage, complete or not, so an id is never reused. Files of
//! checkpoints that never completed are deleted once a later checkpoint completes and its
//! sinks were told to commit ([`Coordinator::apply_retention`] runs after the notification).
//! The job identity record (`_job`, see [`identity`](super::identity)) is written on the first
//! start and at the first completed checkpoint, so that a later start can tell "a new job"
//! from "a job whose checkpoints are gone".
//!
//! # Savepoints and retention
//! A run whose storage holds no completed checkpoint starts from the configured savepoint, if
//! any (its own storage, never joining the lineage: the first checkpoint stores every file
//! anew, with ids after the savepoint's). A savepoint is written by copying a completed
//! checkpoint ([`savepoint`](super::savepoint)). Retention keeps checkpoints by count and age
//! (always the newest) and never deletes a shared file a checkpoint in flight is storing
//! ([`retention`](super::retention)); [`Coordinator::delete_all_checkpoints`] serves
//! `OnCancel::Delete`.

use super::ack::CheckpointAck;
use super::config::{CheckpointConfig, RestoreMode, SavepointRestore};
use super::identity::{check_identity, IdentityAction, JobIdentity};
use super::metadata::{CheckpointMetadata, CheckpointStats};
use super::pointer::{CheckpointPointer, StorageListing};
use super::replication::{ReplicationMode, ReplicationStatus, Replicator};
use super::restore::RestoreInput;
use super::restore::{restore_from, with_retries, RestorePolicy, READ_RETRY};
use super::retention::{expired, unreferenced_shared, Completed, RetentionPolicy};
use super::savepoint::{check_non_restored_state, find_savepoint, write_savepoint, Savepoint};
use super::storage::CheckpointStorage;
use super::upload::{publish, read_metadata, reusable_files, upload, UploadJob};
use crate::checkpoint::staging::StagingArea;
use crate::fail::{self, FailPoints};
use crate::message::{Barrier, CheckpointId};
use crate::ownership::{OwnerInfo, OwnerLease};
use crate::recovery::{RestoreWarning, SharedRestoreWarnings};
use crate::{Error, Result, ResultExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The outcome of a restore.
pub(crate) struct Restored {
    pub(crate) metadata: CheckpointMetadata,
    pub(crate) input: RestoreInput,
    pub(crate) dir: PathBuf,
}

/// Durable checkpoint bookkeeping of one job, across its attempts.
pub(crate) struct Coordinator {
    pub(crate) cfg: CheckpointConfig,
    job: String,
    max_parallelism: usize,
    next_id: CheckpointId,
    /// Completed checkpoints in storage, ascending, with their metadata once read.
    retained: BTreeMap<CheckpointId, Option<CheckpointMetadata>>,
    /// Completed checkpoints of the current lineage (the restored one and later ones).
    lineage: Vec<CheckpointId>,
    staging_root: PathBuf,
    /// Whether restores fetch operator state into this process.
    materialize: bool,
    /// The run's locked staging directory (`staging_root`), removed when the coordinator is.
    _staging: StagingArea,
    runtime: tokio::runtime::Runtime,
    /// Statistics of every checkpoint completed by this run.
    pub(crate) completed: Vec<CheckpointStats>,
    /// The job identity record in storage, as last written or read (`None`: not written yet).
    identity: Option<JobIdentity>,
    /// Fallbacks to older checkpoints the user allowed, by the restore or by sinks.
    restore_warnings: SharedRestoreWarnings,
    /// Exclusive ownership of the storage, released when the coordinator is dropped.
    lease: OwnerLease,
    /// Where the latest-checkpoint pointer and the id counter live (the storage's listing,
    /// or a highly available cluster's etcd).
    pointer: Arc<dyn CheckpointPointer>,
    /// The job's fail points (the upload, after-metadata and restore phases check them).
    fail_points: FailPoints,
    /// Copies completed checkpoints to the replica, if one is configured.
    replicator: Option<Replicator>,
    /// The savepoint the job starts from (its storage, its id), while the job has no completed
    /// checkpoint of its own to restore instead.
    savepoint: Option<(SavepointRestore, CheckpointId)>,
}

/// The savepoint a run starts from: the configured one while the job's storage holds no
/// completed checkpoint (`complete`); once it does, those win, as after a failover.
fn starting_savepoint(
    cfg: &CheckpointConfig,
    complete: &[CheckpointId],
) -> Result<Option<(SavepointRestore, CheckpointId)>> {
    let Some(sp) = &cfg.from_savepoint else {
        return Ok(None);
    };
    if let Some(latest) = complete.last() {
        tracing::warn!(
            savepoint = %sp.storage.describe(),
            checkpoint = latest.get(),
            "the job's checkpoint storage holds completed checkpoints: restoring the latest of them, not the savepoint \
             (use empty checkpoint storage to start from the savepoint)"
        );
        return Ok(None);
    }
    let id = find_savepoint(sp.storage.as_ref())?;
    Ok(Some((sp.clone(), id)))
}

impl Coordinator {
    /// Takes ownership of the storage, scans it; snapshots are staged in `staging`.
    ///
    /// # Errors
    /// `Config` naming the owner when another process owns the storage.
    pub(crate) fn new(cfg: CheckpointConfig, job: &str, max_parallelism: usize, staging: StagingArea) -> Result<Self> {
        Self::with_pointer(cfg, job, max_parallelism, staging, Arc::new(StorageListing))
    }

    /// As [`new`](Self::new), with the latest-checkpoint pointer, the id counter and the
    /// storage's ownership kept by `pointer`.
    ///
    /// # Errors
    /// `Config` when the pointer names a checkpoint the storage does not hold complete (never
    /// a fresh start over an earlier run).
    pub(crate) fn with_pointer(
        cfg: CheckpointConfig,
        job: &str,
        max_parallelism: usize,
        staging: StagingArea,
        pointer: Arc<dyn CheckpointPointer>,
    ) -> Result<Self> {
        cfg.validate()?;
        // Before anything is read or written: what is listed must not change under us.
        let lease = pointer.take_ownership(cfg.storage.as_ref(), &OwnerInfo::this_process(job))?;
        let storage = cfg.storage.as_ref();
        let scan = || format!("scanning checkpoint storage {}", storage.describe());
        let listed = with_retries(READ_RETRY, &scan, || storage.list())?;
        let next_id = listed
            .iter()
            .map(|(id, _)| *id)
            .max()
            .map_or(CheckpointId::FIRST, CheckpointId::next);
        let latest = pointer.latest()?;
        if let Some(latest) = latest {
            if !listed.contains(&(latest, true)) {
                return Err(Error::config(format!(
                    "{} names checkpoint {latest} as the job's latest completed checkpoint, but checkpoint \
                     storage {} holds no completed checkpoint {latest}: is it the job's storage?",
                    pointer.describe(),
                    storage.describe()
                )));
            }
        }
        // A checkpoint completed in storage after the pointer's latest was published by a
        // writer fenced before it could move the pointer: it is not part of the job.
        let retained: BTreeMap<CheckpointId, Option<CheckpointMetadata>> = listed
            .iter()
            .filter(|(id, c)| *c && latest.is_none_or(|l| *id <= l))
            .map(|(id, _)| (*id, None))
            .collect();
        let complete: Vec<CheckpointId> = retained.keys().copied().collect();
        let savepoint = starting_savepoint(&cfg, &complete)?;
        // A savepoint raises the ids: the job's sinks name their output by checkpoint id.
        let next_id = match &savepoint {
            Some((_, id)) => next_id.max(id.next()),
            None => next_id,
        };
        let found = with_retries(READ_RETRY, &scan, || JobIdentity::read(storage))?;
        // Starting from a savepoint is a deliberate start: storage without checkpoints is fine.
        let mode = if savepoint.is_some() {
            RestoreMode::Fresh
        } else {
            cfg.restore
        };
        let identity = match check_identity(
            found.as_ref(),
            job,
            &storage.describe(),
            &complete,
            mode,
            crate::wall_clock::now_ms(),
        )? {
            IdentityAction::Keep => found,
            IdentityAction::Write(record) => {
                record
                    .write(storage)
                    .context("writing the job identity record into checkpoint storage")?;
                Some(record)
            }
            IdentityAction::WriteAtFirstCompletion => None,
        };
        if let RestoreMode::Checkpoint(id) = cfg.restore {
            if !listed.iter().any(|(i, c)| *i == id && *c) {
                return Err(Error::config(format!(
                    "checkpoint {id} to restore is not a completed checkpoint in {}",
                    cfg.storage.describe()
                )));
            }
        }
        let replicator = match &cfg.replication {
            None => None,
            Some(r) => {
                let replicator = Replicator::start(
                    cfg.storage.clone(),
                    r,
                    cfg.retained,
                    &OwnerInfo::this_process(job),
                    staging.dir().join("replication"),
                )?;
                // Catch up: the newest checkpoint of an earlier run may not be in the replica.
                if let Some(&newest) = retained.keys().next_back() {
                    let meta = with_retries(READ_RETRY, &scan, || read_metadata(storage, newest))?;
                    replicator.offer(&meta);
                }
                Some(replicator)
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("weir-checkpoint-io")
            .build()
            .map_err(|e| Error::io("starting the checkpoint I/O runtime", e))?;
        Ok(Coordinator {
            cfg,
            job: job.to_string(),
            max_parallelism,
            next_id,
            retained,
            lineage: Vec::new(),
            staging_root: staging.dir().to_path_buf(),
            materialize: true,
            _staging: staging,
            runtime,
            completed: Vec::new(),
            identity,
            restore_warnings: SharedRestoreWarnings::default(),
            lease,
            pointer,
            fail_points: FailPoints::process_wide(),
            replicator,
            savepoint,
        })
    }

    /// Fallbacks to older checkpoints in this run (only ever with the user's opt-in).
    pub(crate) fn restore_warnings(&self) -> Vec<RestoreWarning> {
        self.restore_warnings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records in the identity record that the job completed checkpoint `id`, the first time.
    /// A failure is logged, not fatal: the checkpoint itself shows the job ran.
    fn record_first_completion(&mut self, id: CheckpointId) {
        if self
            .identity
            .as_ref()
            .is_some_and(|r| r.first_completed_checkpoint.is_some())
        {
            return;
        }
        let record = match &self.identity {
            Some(r) => JobIdentity {
                first_completed_checkpoint: Some(id),
                ..r.clone()
            },
            None => JobIdentity {
                job: self.job.clone(),
                created_at_ms: crate::wall_clock::now_ms(),
                first_completed_checkpoint: Some(id),
            },
        };
        match record.write(self.cfg.storage.as_ref()) {
            Ok(()) => self.identity = Some(record),
            Err(e) => tracing::warn!(
                error = %e,
                checkpoint = id.get(),
                "recording the first completed checkpoint in the job identity record failed"
            ),
        }
    }

    /// The id of the next checkpoint, reserved in storage so no later run reuses it.
    pub(crate) fn take_id(&mut self) -> Result<CheckpointId> {
        let id = self.pointer.take_id(self.next_id)?;
        self.next_id = id.next();
        self.cfg.storage.reserve(id, &self.lease)?;
        Ok(id)
    }

    /// Where subtasks stage their snapshots.
    pub(crate) fn staging_root(&self) -> PathBuf {
        self.staging_root.join("staging")
    }

    /// Removes snapshots a failed attempt staged but never uploaded.
    pub(crate) fn clear_staging(&self) {
        let _ = std::fs::remove_dir_all(self.staging_root());
    }

    /// Removes what subtasks staged for checkpoint `id`, which was aborted before its upload;
    /// call only once no subtask writes below it any more (all acknowledged it).
    pub(crate) fn discard_staged(&self, id: CheckpointId) {
        let _ = std::fs::remove_dir_all(self.staging_root().join(format!("chk-{id}")));
    }

    /// Restores the checkpoint the next attempt starts from: the latest of the current lineage
    /// or, before any, the one the configured restore mode names.
    pub(crate) fn restore(&mut self, parallelism: &HashMap<String, usize>) -> Result<Option<Restored>> {
        if self.lineage.is_empty() {
            if let Some((sp, id)) = self.savepoint.clone() {
                return self.restore_savepoint(&sp, id, parallelism).map(Some);
            }
        }
        let candidates: Vec<CheckpointId> = if !self.lineage.is_empty() {
            self.lineage.iter().rev().copied().collect()
        } else {
            match self.cfg.restore {
                RestoreMode::Latest => self.retained.keys().rev().copied().collect(),
                RestoreMode::Checkpoint(id) => vec![id],
                RestoreMode::Fresh => Vec::new(),
            }
        };
        let dir = self.staging_root.join("restore");
        let policy = RestorePolicy {
            fallback_allowed: self.cfg.fallback_to_older_checkpoint_reproducing_output,
            state_elsewhere: !self.materialize,
        };
        self.fail_points.hit(fail::DURING_RESTORE)?;
        let found = restore_from(
            self.cfg.storage.as_ref(),
            &candidates,
            &self.job,
            self.max_parallelism,
            parallelism,
            &dir,
            &policy,
        )?;
        if let Some(outcome) = &found {
            self.await_replica(outcome.metadata.id)?;
        }
        Ok(found.map(|outcome| {
            let (metadata, mut input) = (outcome.metadata, outcome.input);
            if let Some(w) = outcome.fell_back {
                self.restore_warnings.lock().unwrap_or_else(|e| e.into_inner()).push(w);
            }
            input.restore_warnings = Some(self.restore_warnings.clone());
            // Checkpoints newer than the restored one are not part of the lineage any more.
            self.lineage.retain(|&id| id <= metadata.id);
            if self.lineage.last() != Some(&metadata.id) {
                self.lineage.push(metadata.id);
            }
            self.retained.insert(metadata.id, Some(metadata.clone()));
            Restored { metadata, input, dir }
        }))
    }

    /// Restores savepoint `id` of `sp`: its files stay where they are (the job's first
    /// checkpoint stores everything anew), and it never joins the job's lineage or retention.
    fn restore_savepoint(
        &mut self,
        sp: &SavepointRestore,
        id: CheckpointId,
        parallelism: &HashMap<String, usize>,
    ) -> Result<Restored> {
        let storage = sp.storage.as_ref();
        let location = storage.describe();
        let meta = with_retries(READ_RETRY, &|| format!("savepoint {id} in {location}"), || {
            read_metadata(storage, id)
        })?;
        check_non_restored_state(&meta, parallelism, sp.allow_non_restored_state, &location)?;
        let dir = self.staging_root.join("restore");
        // On a cluster, each worker fetches its subtasks' state from the savepoint itself.
        let policy = RestorePolicy {
            fallback_allowed: false,
            state_elsewhere: !self.materialize,
        };
        self.fail_points.hit(fail::DURING_RESTORE)?;
        let outcome = restore_from(
            storage,
            &[id],
            &self.job,
            self.max_parallelism,
            parallelism,
            &dir,
            &policy,
        )
        .map_err(|e| e.context(format!("starting from the savepoint in {location}")))?
        .ok_or_else(|| Error::config(format!("no savepoint in {location}")))?;
        let mut input = outcome.input;
        input.restore_warnings = Some(self.restore_warnings.clone());
        tracing::info!(savepoint = id.get(), %location, "starting from a savepoint");
        Ok(Restored {
            metadata: outcome.metadata,
            input,
            dir,
        })
    }

    /// The savepoint this run starts from, while it has no checkpoint of its own.
    pub(crate) fn starting_savepoint(&self) -> Option<(String, CheckpointId)> {
        self.savepoint.as_ref().map(|(sp, id)| (sp.storage.describe(), *id))
    }

    /// Copies completed checkpoint `id` into `target` as a savepoint (see
    /// [`savepoint`](super::savepoint)); published last, so a crash leaves no savepoint.
    pub(crate) fn write_savepoint(&mut self, id: CheckpointId, target: &dyn CheckpointStorage) -> Result<Savepoint> {
        let meta = self.metadata(id)?;
        let scratch = self.staging_root.join(format!("savepoint-{id}"));
        let started = Instant::now();
        let sp = write_savepoint(self.cfg.storage.as_ref(), &meta, target, &scratch)
            .with_context(|| format!("writing savepoint {id} into {}", target.describe()))?;
        tracing::info!(
            savepoint = id.get(),
            location = %sp.location,
            files = sp.files,
            bytes = sp.bytes,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "savepoint written"
        );
        Ok(sp)
    }

    /// Checkpoint `id`, which the current attempt restored, turned out corrupt where it was
    /// fetched (a cluster's worker found a file failing its checksum): with the fallback
    /// allowed, it leaves the lineage and the next restore takes the previous retained
    /// checkpoint (recorded as a restore warning); without, the job must stop.
    ///
    /// # Errors
    /// The `Config` error that ends the job, as for a checkpoint found corrupt in this process.
    pub(crate) fn reject_restored(&mut self, id: CheckpointId, error: &Error) -> Result<()> {
        let older: Vec<CheckpointId> = self.retained.keys().copied().filter(|&c| c < id).collect();
        let policy = RestorePolicy {
            fallback_allowed: self.cfg.fallback_to_older_checkpoint_reproducing_output,
            state_elsewhere: !self.materialize,
        };
        if let Some(stop) =
            super::restore::on_corrupt(id, error, !older.is_empty(), &policy, &self.cfg.storage.describe())
        {
            return Err(stop);
        }
        self.lineage.retain(|&c| c < id);
        self.retained.remove(&id);
        let restored = self.lineage.last().copied().or_else(|| older.last().copied());
        let message = format!(
            "checkpoint {id} is corrupt where a worker fetched it ({error}); restoring an older one as \
             fallback_to_older_checkpoint_reproducing_output allows: output committed after it is produced again"
        );
        tracing::warn!(checkpoint = %id, "{message}");
        if let Some(restored) = restored {
            self.restore_warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(RestoreWarning {
                    restored,
                    newer: id,
                    message,
                });
        }
        Ok(())
    }

    /// Whether sinks may commit checkpoint `id` now: always without a replica, or when the
    /// replica is [`ReplicationMode::Async`]; with [`ReplicationMode::BeforeCommit`] once the
    /// replica holds `id`.
    pub(crate) fn may_commit(&self, id: CheckpointId) -> bool {
        match (&self.replicator, &self.cfg.replication) {
            (Some(r), Some(c)) if c.mode == ReplicationMode::BeforeCommit => r.replicated() >= Some(id),
            _ => true,
        }
    }

    /// The replica's state, if there is one.
    pub(crate) fn replication_status(&self) -> Option<ReplicationStatus> {
        self.replicator.as_ref().map(Replicator::status)
    }

    /// With [`ReplicationMode::BeforeCommit`], waits until the replica holds checkpoint `id`,
    /// which is about to be restored: the sinks commit a restored checkpoint's output at once,
    /// and committed output must never be ahead of the replica.
    ///
    /// # Errors
    /// `External { retryable: true }` when the replica does not hold it within the checkpoint
    /// timeout (the restart strategy tries again).
    fn await_replica(&self, id: CheckpointId) -> Result<()> {
        if self.may_commit(id) {
            return Ok(());
        }
        let started = Instant::now();
        tracing::info!(
            checkpoint = id.get(),
            "waiting for the replica to hold the restored checkpoint before its output is committed"
        );
        while !self.may_commit(id) {
            if started.elapsed() > self.cfg.timeout {
                let last = self.replication_status().and_then(|s| s.last_error).unwrap_or_default();
                return Err(Error::external(
                    true,
                    format!(
                        "the checkpoint replica does not hold checkpoint {id} after {:?}, and sinks commit only \
                         replicated checkpoints{}",
                        self.cfg.timeout,
                        if last.is_empty() {
                            String::new()
                        } else {
                            format!(" (last replication error: {last})")
                        }
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    fn metadata(&mut self, id: CheckpointId) -> Result<CheckpointMetadata> {
        if let Some(Some(m)) = self.retained.get(&id) {
            return Ok(m.clone());
        }
        let m = read_metadata(self.cfg.storage.as_ref(), id)?;
        self.retained.insert(id, Some(m.clone()));
        Ok(m)
    }

    /// Whether a restore fetches the operator subtasks' state into this process (the default):
    /// a cluster's master only chooses and checks the checkpoint, each worker fetches its own.
    pub(crate) fn materializing(mut self, materialize: bool) -> Self {
        self.materialize = materialize;
        self
    }

    /// Checks `fail_points` (the job's) in the upload, after-metadata and restore phases.
    pub(crate) fn with_fail_points(mut self, fail_points: FailPoints) -> Self {
        self.fail_points = fail_points;
        self
    }

    /// Starts the asynchronous phase of checkpoint `barrier.id`; `done` receives the result.
    pub(crate) fn start_upload(
        &mut self,
        barrier: Barrier,
        acks: Vec<CheckpointAck>,
        parallelism: Arc<HashMap<String, usize>>,
        base_source_records: u64,
        done: impl FnOnce(Result<CheckpointMetadata>) + Send + 'static,
    ) {
        // RocksDB never reuses a file number nor revives a deleted file, so every SST a new
        // snapshot can share is referenced by the latest completed checkpoint of the lineage.
        let mut reusable = HashMap::new();
        if let Some(&latest) = self.lineage.last() {
            if let Ok(m) = self.metadata(latest) {
                reusable = reusable_files(&m);
            }
        }
        let job = UploadJob {
            owner_epoch: self.lease.epoch(),
            storage: self.cfg.storage.clone(),
            job: self.job.clone(),
            max_parallelism: self.max_parallelism,
            barrier,
            acks,
            staging: self.staging_root().join(format!("chk-{}", barrier.id)),
            reusable: Arc::new(reusable),
            parallelism,
            base_source_records,
            fail_points: self.fail_points.clone(),
        };
        let staging = job.staging.clone();
        self.runtime.spawn(async move {
            let result = tokio::task::spawn_blocking(move || upload(job))
                .await
                .unwrap_or_else(|e| Err(Error::internal(format!("checkpoint upload task failed: {e}"))));
            let _ = tokio::fs::remove_dir_all(&staging).await;
            done(result);
        });
    }

    /// Publishes an uploaded checkpoint: it is complete when this returns `Ok`. The caller
    /// tells the sinks to commit, then calls [`apply_retention`](Self::apply_retention).
    ///
    /// # Errors
    /// `Config` when another owner took over the storage (nothing is published); the error of
    /// the [`BEFORE_METADATA`](fail::BEFORE_METADATA) fail point before publishing and of the
    /// [`AFTER_METADATA`](fail::AFTER_METADATA) fail point after.
    pub(crate) fn complete(&mut self, mut meta: CheckpointMetadata, trigger: Instant) -> Result<CheckpointStats> {
        meta.stats.total_ms = trigger.elapsed().as_secs_f64() * 1e3;
        self.fail_points.hit(fail::BEFORE_METADATA)?;
        self.pointer
            .verify(self.cfg.storage.as_ref(), &self.lease)
            .with_context(|| format!("publishing checkpoint {}", meta.id))?;
        publish(self.cfg.storage.as_ref(), &meta)?;
        self.pointer
            .publish(meta.id)
            .with_context(|| format!("naming checkpoint {} the latest", meta.id))?;
        self.record_first_completion(meta.id);
        if let Some(r) = &self.replicator {
            r.offer(&meta);
        }
        let stats = meta.stats.clone();
        let id = meta.id;
        self.retained.insert(id, Some(meta));
        self.lineage.push(id);
        // From now on the job restores its own checkpoints, never the savepoint again.
        self.savepoint = None;
        self.completed.push(stats.clone());
        tracing::info!(
            checkpoint = id.get(),
            sync_ms = stats.sync_ms,
            async_ms = stats.async_ms,
            alignment_ms = stats.alignment_ms,
            state_bytes = stats.state_bytes,
            uploaded_bytes = stats.uploaded_bytes,
            "checkpoint complete"
        );
        self.fail_points.hit(fail::AFTER_METADATA)?;
        Ok(stats)
    }

    /// Applies retention after checkpoint `newest` completed and its sinks were told to
    /// commit. A failure is logged and leaves old files for the next time.
    pub(crate) fn apply_retention(&mut self, newest: CheckpointId) {
        if let Err(e) = self.retain(newest) {
            tracing::warn!(error = %e, "checkpoint retention failed; old files are kept");
        }
    }

    /// Deletes checkpoints beyond the retained count or older than the retained age (never the
    /// newest), incomplete ones older than `newest`, and shared files no retained checkpoint
    /// references and no checkpoint in flight is storing (see [`retention`](super::retention)).
    fn retain(&mut self, newest: CheckpointId) -> Result<()> {
        let storage = self.cfg.storage.clone();
        // Only the current owner deletes: a process fenced out by a newer owner (a paused
        // old master, a double-scheduled pod) must not remove files the new owner's
        // checkpoints reference.
        self.pointer
            .verify(storage.as_ref(), &self.lease)
            .context("checking ownership before deleting old checkpoints")?;
        let mut completed = Vec::with_capacity(self.retained.len());
        for id in self.retained.keys().copied().collect::<Vec<_>>() {
            let m = self.metadata(id)?;
            completed.push(Completed {
                id,
                completed_at_ms: m.stats.triggered_at_ms + m.stats.total_ms as u64,
            });
        }
        let policy = RetentionPolicy {
            count: self.cfg.retained,
            max_age: self.cfg.retained_max_age,
        };
        for old in expired(&completed, policy, crate::wall_clock::now_ms()) {
            storage.delete_checkpoint(old)?;
            self.retained.remove(&old);
            self.lineage.retain(|&id| id != old);
        }
        for (id, complete) in storage.list()? {
            if !complete && id < newest {
                storage.delete_checkpoint(id)?;
            }
        }
        let mut referenced: HashSet<String> = HashSet::new();
        for id in self.retained.keys().copied().collect::<Vec<_>>() {
            let m = self.metadata(id)?;
            referenced.extend(m.files().map(|f| f.key.clone()));
        }
        let newest_completed = self.retained.keys().next_back().copied().unwrap_or(newest).max(newest);
        for key in unreferenced_shared(storage.list_shared()?, &referenced, newest_completed) {
            storage.delete(&key)?;
        }
        Ok(())
    }

    /// Deletes every checkpoint of the job, complete or not, and every shared file: what
    /// [`OnCancel::Delete`](super::OnCancel::Delete) asks for once the user cancelled the job
    /// and no attempt runs any more. The job identity record stays.
    ///
    /// # After a crash
    /// Each checkpoint's metadata goes first, so a checkpoint half deleted is never complete;
    /// shared files go last, once no complete checkpoint references them.
    pub(crate) fn delete_all_checkpoints(&mut self) -> Result<()> {
        let storage = self.cfg.storage.clone();
        self.cfg
            .storage
            .verify_lease(&self.lease)
            .context("deleting the checkpoints of a cancelled job")?;
        for (id, _) in storage.list()? {
            storage.delete_checkpoint(id)?;
        }
        for key in storage.list_shared()? {
            storage.delete(&key)?;
        }
        self.retained.clear();
        self.lineage.clear();
        tracing::info!(storage = %storage.describe(), "deleted the checkpoints of the cancelled job (on_cancel = Delete)");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{CheckpointStats, OperatorState, StoredFile, SubtaskState, FORMAT_VERSION};
    use crate::checkpoint::storage::LocalDirStorage;
    use crate::message::BarrierKind;
    use crate::state::KeyGroupRange;

    fn metadata(id: CheckpointId, files: Vec<StoredFile>) -> CheckpointMetadata {
        CheckpointMetadata {
            version: FORMAT_VERSION,
            job: "j".into(),
            id,
            owner_epoch: Some(1),
            kind: BarrierKind::Checkpoint,
            max_parallelism: 128,
            sources: Vec::new(),
            operators: vec![OperatorState {
                name: "count".into(),
                parallelism: 1,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    key_groups: KeyGroupRange::for_subtask(0, 1, 128),
                    keyed_files: files,
                    operator_state: None,
                }],
            }],
            stats: CheckpointStats {
                id,
                triggered_at_ms: crate::wall_clock::now_ms(),
                ..CheckpointStats::default()
            },
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        storage: Arc<LocalDirStorage>,
        coordinator: Coordinator,
    }

    fn setup(tune: impl FnOnce(&mut CheckpointConfig)) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalDirStorage::new(dir.path().join("chk")));
        let mut cfg = CheckpointConfig::with_storage(storage.clone());
        tune(&mut cfg);
        let staging = StagingArea::create(&dir.path().join("staging"), "run").unwrap();
        let coordinator = Coordinator::new(cfg, "j", 128, staging).unwrap();
        Setup {
            dir,
            storage,
            coordinator,
        }
    }

    impl Setup {
        /// Stores an SST for checkpoint `id` as a worker would: under `shared/`.
        fn store_sst(&self, id: CheckpointId, name: &str) -> StoredFile {
            let local = self.dir.path().join(name);
            std::fs::write(&local, name.as_bytes()).unwrap();
            self.storage
                .put_file(&local, &format!("shared/count/0/{id}-{name}"), name)
                .unwrap()
        }
    }

    /// In a cluster, workers store the files of checkpoint n+1 while the master applies
    /// retention after n: those files are not referenced by any completed checkpoint yet, and
    /// must survive.
    #[test]
    fn retention_keeps_the_shared_files_of_a_checkpoint_in_flight() {
        let mut s = setup(|c| c.retained = 1);
        let one = s.coordinator.take_id().unwrap();
        let a = s.store_sst(one, "000007.sst");
        s.coordinator
            .complete(metadata(one, vec![a.clone()]), Instant::now())
            .unwrap();
        // Checkpoint 2 is in flight: a worker stored its SST, its metadata is not published.
        let two = s.coordinator.take_id().unwrap();
        let b = s.store_sst(two, "000009.sst");
        s.coordinator.retain(one).unwrap();
        let shared = s.storage.list_shared().unwrap();
        assert!(
            shared.contains(&b.key),
            "the in-flight checkpoint's file was deleted: {shared:?}"
        );
        assert!(shared.contains(&a.key));
        // Once 2 completed (not referencing 1's file), 1 and its file go.
        s.coordinator
            .complete(metadata(two, vec![b.clone()]), Instant::now())
            .unwrap();
        s.coordinator.retain(two).unwrap();
        assert_eq!(s.storage.list_shared().unwrap(), vec![b.key]);
        assert_eq!(s.storage.list().unwrap(), vec![(two, true)]);
    }

    #[test]
    fn retention_by_age_deletes_old_checkpoints_but_never_the_newest() {
        let mut s = setup(|c| {
            c.retained = 10;
            c.retained_max_age = Some(std::time::Duration::from_secs(60));
        });
        let mut ids = Vec::new();
        for (i, age_s) in [(0, 600u64), (1, 120), (2, 30)] {
            let id = s.coordinator.take_id().unwrap();
            let f = s.store_sst(id, &format!("00000{i}.sst"));
            let mut m = metadata(id, vec![f]);
            m.stats.triggered_at_ms -= age_s * 1_000;
            s.coordinator.complete(m, Instant::now()).unwrap();
            ids.push(id);
        }
        s.coordinator.retain(ids[2]).unwrap();
        assert_eq!(s.storage.list().unwrap(), vec![(ids[2], true)]);
        assert_eq!(s.storage.list_shared().unwrap().len(), 1);
    }

    #[test]
    fn deleting_on_cancel_removes_every_checkpoint_and_keeps_the_identity_record() {
        let mut s = setup(|c| c.on_cancel = super::super::OnCancel::Delete);
        let one = s.coordinator.take_id().unwrap();
        let a = s.store_sst(one, "000007.sst");
        s.coordinator.complete(metadata(one, vec![a]), Instant::now()).unwrap();
        let two = s.coordinator.take_id().unwrap();
        s.store_sst(two, "000009.sst");
        s.coordinator.delete_all_checkpoints().unwrap();
        assert!(s.storage.list().unwrap().is_empty());
        assert!(s.storage.list_shared().unwrap().is_empty());
        let identity = JobIdentity::read(s.storage.as_ref()).unwrap().unwrap();
        assert_eq!(identity.first_completed_checkpoint, Some(one));
    }
}
