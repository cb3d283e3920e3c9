//! The asynchronous phase of a checkpoint: moving each subtask's staged snapshot into
//! checkpoint storage, incrementally, and building the metadata.
//!
//! RocksDB SST files are immutable and their names unique within one store's lineage, so an
//! SST with the same name and size as one referenced by the latest completed checkpoint of the
//! current lineage (the restored checkpoint and those completed since) is referenced, not stored
//! again. Everything else is stored under the checkpoint's own directory.

use super::ack::{CheckpointAck, StoredSubtask};
use super::metadata::{
    decode_metadata, encode_metadata, CheckpointMetadata, CheckpointStats, OperatorState, SourceState, StoredFile,
    SubtaskState, FORMAT_VERSION,
};
use super::storage::CheckpointStorage;
use crate::fail::{self, FailPoints};
use crate::message::{Barrier, CheckpointId};
use crate::state::backend::dir_name;
use crate::state::KeyGroupRange;
use crate::{Error, Result, ResultExt};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Everything the upload of one checkpoint needs.
pub(crate) struct UploadJob {
    pub(crate) storage: Arc<dyn CheckpointStorage>,
    pub(crate) job: String,
    /// The epoch of the storage owner taking the checkpoint.
    pub(crate) owner_epoch: u64,
    pub(crate) max_parallelism: usize,
    pub(crate) barrier: Barrier,
    pub(crate) acks: Vec<CheckpointAck>,
    /// Staging directory of this checkpoint (`<op>/<subtask>/<files>` below it).
    pub(crate) staging: PathBuf,
    /// SST files of the lineage's latest completed checkpoint.
    pub(crate) reusable: Arc<HashMap<StagedFileKey, StoredFile>>,
    pub(crate) parallelism: Arc<HashMap<String, usize>>,
    pub(crate) base_source_records: u64,
    /// The job's fail points ([`UPLOAD`](fail::UPLOAD) is checked before anything is stored).
    pub(crate) fail_points: FailPoints,
}

/// A file of one operator subtask's snapshot, by its name in the staging directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StagedFileKey {
    pub(crate) operator: String,
    pub(crate) subtask: usize,
    pub(crate) file: String,
}

/// Stores every staged file and returns the metadata to publish (not yet published).
pub(crate) fn upload(job: UploadJob) -> Result<CheckpointMetadata> {
    let started = Instant::now();
    let id = job.barrier.id;
    job.fail_points.hit(fail::UPLOAD)?;
    let mut operators: BTreeMap<String, Vec<SubtaskState>> = BTreeMap::new();
    let mut sources = Vec::new();
    let (mut state_bytes, mut uploaded_bytes) = (0u64, 0u64);
    let (mut sync_ms, mut alignment_ms, mut source_records) = (0f64, 0f64, job.base_source_records);
    for ack in &job.acks {
        sync_ms = sync_ms.max(ack.sync_duration.as_secs_f64() * 1e3);
        alignment_ms = alignment_ms.max(ack.alignment.as_secs_f64() * 1e3);
        if let Some(src) = &ack.source {
            source_records += src.records_read;
            match sources.iter_mut().find(|s: &&mut SourceState| s.name == src.source) {
                Some(s) => s.positions.extend(src.positions.iter().cloned()),
                None => sources.push(SourceState {
                    name: src.source.clone(),
                    positions: src.positions.clone(),
                }),
            }
        }
        for s in &ack.operators {
            let (op, subtask) = (&s.operator, s.subtask);
            let stored = match &s.stored {
                Some(stored) => stored.clone(),
                None => {
                    if s.snapshot.keyed_files.is_empty() && s.snapshot.operator_state.is_none() {
                        continue;
                    }
                    let staged = job.staging.join(dir_name(op)).join(subtask.to_string());
                    store_subtask(
                        job.storage.as_ref(),
                        id,
                        op,
                        subtask,
                        &s.snapshot,
                        &staged,
                        &job.reusable,
                    )?
                }
            };
            if stored.keyed_files.is_empty() && stored.operator_state.is_none() {
                continue;
            }
            uploaded_bytes += stored.uploaded_bytes;
            state_bytes += stored.keyed_files.iter().map(|f| f.size).sum::<u64>();
            state_bytes += stored.operator_state.as_ref().map_or(0, |f| f.size);
            let p = job.parallelism.get(op).copied().unwrap_or(1);
            operators.entry(op.clone()).or_default().push(SubtaskState {
                subtask,
                key_groups: KeyGroupRange::for_subtask(subtask, p, job.max_parallelism),
                keyed_files: stored.keyed_files,
                operator_state: stored.operator_state,
            });
        }
    }
    for s in &mut sources {
        s.positions.sort_by(|a, b| a.split.cmp(&b.split));
    }
    let operators = operators
        .into_iter()
        .map(|(name, mut subtasks)| {
            subtasks.sort_by_key(|s| s.subtask);
            OperatorState {
                parallelism: job.parallelism.get(&name).copied().unwrap_or(subtasks.len()),
                name,
                subtasks,
            }
        })
        .collect();
    let async_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(CheckpointMetadata {
        version: FORMAT_VERSION,
        job: job.job,
        id,
        owner_epoch: Some(job.owner_epoch),
        kind: job.barrier.kind,
        max_parallelism: job.max_parallelism,
        sources,
        operators,
        stats: CheckpointStats {
            id,
            triggered_at_ms: job.barrier.triggered_at_ms,
            sync_ms,
            alignment_ms,
            async_ms,
            total_ms: 0.0,
            state_bytes,
            uploaded_bytes,
            source_records,
        },
    })
}

/// Stores one operator subtask's snapshot of checkpoint `id`, staged in `staged`: keyed files
/// found in `reusable` (same name and size, an SST) are referenced, everything else is put.
///
/// # After a crash
/// Files put for a checkpoint that never completes are unreferenced; retention removes them.
pub(crate) fn store_subtask(
    storage: &dyn CheckpointStorage,
    id: CheckpointId,
    op: &str,
    subtask: usize,
    snap: &crate::operator::OperatorSnapshot,
    staged: &std::path::Path,
    reusable: &HashMap<StagedFileKey, StoredFile>,
) -> Result<StoredSubtask> {
    let dir_name = dir_name(op);
    let mut out = StoredSubtask::default();
    for f in &snap.keyed_files {
        let name = f.to_string_lossy().into_owned();
        let local = staged.join(f);
        let size = std::fs::metadata(&local)
            .map_err(|e| Error::io(format!("reading staged snapshot file {}", local.display()), e))?
            .len();
        let reuse = reusable
            .get(&StagedFileKey {
                operator: op.to_string(),
                subtask,
                file: name.clone(),
            })
            .filter(|s| name.ends_with(".sst") && s.size == size);
        let stored = match reuse {
            Some(s) => s.clone(),
            None => {
                let key = if name.ends_with(".sst") {
                    format!("shared/{dir_name}/{subtask}/{id}-{name}")
                } else {
                    format!("chk-{id}/{dir_name}/{subtask}/{name}")
                };
                let s = storage.put_file(&local, &key, &name)?;
                out.uploaded_bytes += s.size;
                s
            }
        };
        out.keyed_files.push(stored);
    }
    if let Some(bytes) = &snap.operator_state {
        let key = format!("chk-{id}/{dir_name}/{subtask}/operator-state");
        let s = storage.put_bytes(&key, "operator-state", bytes)?;
        out.uploaded_bytes += s.size;
        out.operator_state = Some(s);
    }
    Ok(out)
}

/// The keyed files of checkpoint `meta` by operator subtask and name: what a later snapshot
/// of the same lineage references instead of storing again.
pub(crate) fn reusable_files(meta: &CheckpointMetadata) -> HashMap<StagedFileKey, StoredFile> {
    let mut reusable = HashMap::new();
    for op in &meta.operators {
        for st in &op.subtasks {
            for f in &st.keyed_files {
                let key = StagedFileKey {
                    operator: op.name.clone(),
                    subtask: st.subtask,
                    file: f.name.clone(),
                };
                reusable.insert(key, f.clone());
            }
        }
    }
    reusable
}

/// Publishes `meta`: from now on checkpoint `meta.id` is complete.
pub(crate) fn publish(storage: &dyn CheckpointStorage, meta: &CheckpointMetadata) -> Result<()> {
    let bytes = encode_metadata(meta)?;
    storage
        .write_metadata(meta.id, &bytes)
        .with_context(|| format!("publishing checkpoint {}", meta.id))
}

/// Reads, verifies (its checksum) and decodes checkpoint `id`'s metadata.
///
/// # Errors
/// `Checkpoint` if the metadata is missing or corrupt; `External { retryable: true }` if the
/// storage could not be read (try again); `Config` for another format version.
pub fn read_metadata(storage: &dyn CheckpointStorage, id: CheckpointId) -> Result<CheckpointMetadata> {
    let bytes = storage.read_metadata(id)?;
    decode_metadata(id, &bytes)
}
