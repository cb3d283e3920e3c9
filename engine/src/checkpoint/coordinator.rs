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

use super::ack::CheckpointAck;
use super::config::{CheckpointConfig, RestoreMode};
use super::identity::{check_identity, IdentityAction, JobIdentity};
use super::metadata::{CheckpointMetadata, CheckpointStats};
use super::pointer::{CheckpointPointer, StorageListing};
use super::restore::RestoreInput;
use super::restore::{restore_from, with_retries, RestorePolicy, READ_RETRY};
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
        let found = with_retries(READ_RETRY, &scan, || JobIdentity::read(storage))?;
        let identity = match check_identity(
            found.as_ref(),
            job,
            &storage.describe(),
            &complete,
            cfg.restore,
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
    /// the [`AFTER_METADATA`](fail::AFTER_METADATA) fail point after publishing.
    pub(crate) fn complete(&mut self, mut meta: CheckpointMetadata, trigger: Instant) -> Result<CheckpointStats> {
        meta.stats.total_ms = trigger.elapsed().as_secs_f64() * 1e3;
        self.pointer
            .verify(self.cfg.storage.as_ref(), &self.lease)
            .with_context(|| format!("publishing checkpoint {}", meta.id))?;
        publish(self.cfg.storage.as_ref(), &meta)?;
        self.pointer
            .publish(meta.id)
            .with_context(|| format!("naming checkpoint {} the latest", meta.id))?;
        self.record_first_completion(meta.id);
        let stats = meta.stats.clone();
        let id = meta.id;
        self.retained.insert(id, Some(meta));
        self.lineage.push(id);
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

    /// Deletes checkpoints beyond the retained count, incomplete ones older than `newest`, and
    /// shared files no retained checkpoint references.
    fn retain(&mut self, newest: CheckpointId) -> Result<()> {
        let storage = self.cfg.storage.clone();
        while self.retained.len() > self.cfg.retained {
            let (&oldest, _) = self.retained.iter().next().expect("non-empty");
            storage.delete_checkpoint(oldest)?;
            self.retained.remove(&oldest);
            self.lineage.retain(|&id| id != oldest);
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
        for key in storage.list_shared()? {
            if !referenced.contains(&key) {
                storage.delete(&key)?;
            }
        }
        Ok(())
    }
}
