//! Savepoints: self-contained, relocatable copies of a completed checkpoint.
//!
//! A savepoint is taken as a checkpoint of the job (barrier kind
//! [`Savepoint`](crate::message::BarrierKind::Savepoint) or
//! [`StopWithSavepoint`](crate::message::BarrierKind::StopWithSavepoint)); once that checkpoint
//! is complete in the job's storage, every file it references (its own and the shared SST files
//! of earlier checkpoints) is copied into the savepoint's storage, verified on read, and the
//! metadata is rewritten to name the copies. The savepoint's storage is any
//! [`CheckpointStorage`] whose root is the savepoint's root; it holds exactly one checkpoint:
//!
//! ```text
//! <savepoint root>/chk-<id>/_metadata                      published last
//! <savepoint root>/chk-<id>/<operator>/<subtask>/<file>    every file the metadata names
//! ```
//!
//! Keys are relative to the savepoint's root, so the directory (or bucket prefix) can be
//! copied anywhere and restored from there ([`SavepointRestore`](super::SavepointRestore)).
//! Nothing in a savepoint refers to another checkpoint, and retention never lists a
//! savepoint's storage: savepoints are deleted only by people.
//!
//! # After a crash
//! The metadata is published with [`CheckpointStorage::write_metadata`] after every file was
//! stored (the same single point of completion as a checkpoint): a savepoint either has its
//! metadata and every file it names, or it has no metadata and is not a savepoint (a later
//! savepoint into the same location removes the leftovers).

use super::metadata::{encode_metadata, CheckpointMetadata, StoredFile};
use super::restore::{with_retries, READ_RETRY};
use super::storage::CheckpointStorage;
use crate::message::CheckpointId;
use crate::state::backend::dir_name;
use crate::{Error, Result, ResultExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// A savepoint that was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Savepoint {
    /// Its id: the id of the job's checkpoint it copies.
    pub id: CheckpointId,
    /// Where it is: the description of its storage (a path or URL).
    pub location: String,
    /// Files it holds (besides its metadata).
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Whether the job stopped after it ([`JobHandle::stop_with_savepoint`](crate::runtime::JobHandle::stop_with_savepoint)).
    pub stopped_job: bool,
}

/// Where `file` of operator `op`'s subtask `subtask` goes in savepoint `id`.
fn savepoint_key(id: CheckpointId, op: &str, subtask: usize, name: &str) -> String {
    format!("chk-{id}/{}/{subtask}/{name}", dir_name(op))
}

/// `meta` with every file named at its place in a savepoint, and the copies to make:
/// (the file in the job's storage, its key in the savepoint). Pure.
pub(crate) fn relocate(meta: &CheckpointMetadata) -> (CheckpointMetadata, Vec<(StoredFile, String)>) {
    let mut out = meta.clone();
    let mut copies = Vec::new();
    for op in &mut out.operators {
        for st in &mut op.subtasks {
            for f in st.keyed_files.iter_mut().chain(st.operator_state.iter_mut()) {
                let key = savepoint_key(meta.id, &op.name, st.subtask, &f.name);
                copies.push((f.clone(), key.clone()));
                f.key = key;
            }
        }
    }
    (out, copies)
}

/// Checks that a savepoint can be written into `target`: it can be created and written, and
/// holds no completed savepoint or checkpoint (a savepoint's root holds one).
///
/// # Errors
/// `Config` saying what is wrong with the location.
pub(crate) fn check_target(target: &dyn CheckpointStorage) -> Result<()> {
    target.validate()?;
    if let Some((id, _)) = target.list()?.into_iter().find(|(_, complete)| *complete) {
        return Err(Error::config(format!(
            "savepoint location {} already holds savepoint or checkpoint {id}: a savepoint needs a location of \
             its own",
            target.describe()
        )));
    }
    Ok(())
}

/// Copies completed checkpoint `meta` of `source` into `target` as a savepoint; `scratch` is a
/// local directory for files in transit (removed afterwards).
///
/// # Errors
/// `Config` when `target` already holds a completed checkpoint or savepoint (a savepoint's
/// root holds one); `Checkpoint` when a file of the checkpoint is missing or fails its
/// checksum; `External` when a storage cannot be read or written.
pub(crate) fn write_savepoint(
    source: &dyn CheckpointStorage,
    meta: &CheckpointMetadata,
    target: &dyn CheckpointStorage,
    scratch: &Path,
) -> Result<Savepoint> {
    check_target(target)?;
    for (id, _) in target.list()? {
        // What a savepoint that never completed left behind (complete ones were refused).
        target.delete_checkpoint(id)?;
    }
    let (relocated, copies) = relocate(meta);
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| {
        Error::io(
            format!("creating the savepoint scratch directory {}", scratch.display()),
            e,
        )
    })?;
    let result = copy_files(source, target, &copies, scratch);
    let _ = std::fs::remove_dir_all(scratch);
    let (files, bytes) = result?;
    target
        .write_metadata(meta.id, &encode_metadata(&relocated)?)
        .with_context(|| format!("publishing savepoint {} in {}", meta.id, target.describe()))?;
    Ok(Savepoint {
        id: meta.id,
        location: target.describe(),
        files,
        bytes,
        stopped_job: meta.kind == crate::message::BarrierKind::StopWithSavepoint,
    })
}

/// Copies each `(file, key)` from `source` to `key` in `target`, verifying what is read and
/// what was stored; returns the number of files and bytes.
fn copy_files(
    source: &dyn CheckpointStorage,
    target: &dyn CheckpointStorage,
    copies: &[(StoredFile, String)],
    scratch: &Path,
) -> Result<(usize, u64)> {
    let mut bytes = 0u64;
    for (i, (file, key)) in copies.iter().enumerate() {
        let what = || format!("copying {} into a savepoint", file.key);
        let local = scratch.join(i.to_string());
        with_retries(READ_RETRY, &what, || source.fetch_verified(file, &local))?;
        let stored = target.put_file(&local, key, &file.name).with_context(what)?;
        let _ = std::fs::remove_file(&local);
        if stored.size != file.size || stored.crc32c != file.crc32c {
            return Err(Error::checkpoint(format!(
                "the savepoint's copy {key} of {} differs from it (size {} crc {:08x}, expected size {} crc {:08x})",
                file.key, stored.size, stored.crc32c, file.size, file.crc32c
            )));
        }
        bytes += file.size;
    }
    Ok((copies.len(), bytes))
}

/// The id of the one savepoint in `storage`.
///
/// # Errors
/// `Config` when `storage` holds no completed checkpoint or several (then it is a job's
/// checkpoint storage, not a savepoint); `External` when it cannot be listed.
pub(crate) fn find_savepoint(storage: &dyn CheckpointStorage) -> Result<CheckpointId> {
    let what = || format!("looking for the savepoint in {}", storage.describe());
    let complete: Vec<CheckpointId> = with_retries(READ_RETRY, &what, || storage.list())?
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(id, _)| id)
        .collect();
    match complete.as_slice() {
        [id] => Ok(*id),
        [] => Err(Error::config(format!(
            "no savepoint in {}: it holds no completed savepoint (chk-<id>/_metadata)",
            storage.describe()
        ))),
        several => Err(Error::config(format!(
            "{} holds {} completed checkpoints, a savepoint's root holds one: name the savepoint's own \
             directory or prefix",
            storage.describe(),
            several.len()
        ))),
    }
}

/// Checks that every step with state in savepoint `meta` is in the job (`steps`: the job's
/// steps by name). State of a step the job no longer has is refused, unless `allow` drops
/// it; returns the steps whose state is dropped.
///
/// # Errors
/// `Config` naming the steps, and the option that allows dropping their state.
pub(crate) fn check_non_restored_state(
    meta: &CheckpointMetadata,
    steps: &HashMap<String, usize>,
    allow: bool,
    location: &str,
) -> Result<Vec<String>> {
    let mut missing: Vec<String> = meta
        .operators
        .iter()
        .filter(|o| !o.subtasks.is_empty())
        .map(|o| &o.name)
        .chain(meta.sources.iter().filter(|s| !s.positions.is_empty()).map(|s| &s.name))
        .filter(|name| !steps.contains_key(*name))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Ok(missing);
    }
    let named = missing
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    if !allow {
        return Err(Error::config(format!(
            "savepoint {} in {location} holds state of step {named}, which the job no longer has: starting would \
             drop that state. Restore the step (same name), or allow dropping its state with \
             SavepointRestore::allow_non_restored_state (--allow-non-restored-state)",
            meta.id
        )));
    }
    tracing::warn!(savepoint = meta.id.get(), steps = %named, "dropping the savepoint's state of steps the job no longer has, as allow_non_restored_state allows");
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{CheckpointStats, OperatorState, SourceState, SubtaskState, FORMAT_VERSION};
    use crate::checkpoint::storage::LocalDirStorage;
    use crate::checkpoint::upload::read_metadata;
    use crate::message::BarrierKind;
    use crate::source::SplitPosition;
    use crate::state::KeyGroupRange;

    fn file(key: &str, name: &str) -> StoredFile {
        StoredFile {
            name: name.into(),
            key: key.into(),
            size: 0,
            crc32c: 0,
        }
    }

    fn meta(files: Vec<StoredFile>, state: Option<StoredFile>) -> CheckpointMetadata {
        CheckpointMetadata {
            version: FORMAT_VERSION,
            job: "j".into(),
            id: CheckpointId::new(9),
            owner_epoch: Some(1),
            kind: BarrierKind::Savepoint,
            max_parallelism: 128,
            sources: vec![SourceState {
                name: "txns".into(),
                positions: vec![SplitPosition {
                    split: "0".into(),
                    offset: 5,
                    event_time: None,
                    state: None,
                }],
            }],
            operators: vec![OperatorState {
                name: "tally step".into(),
                parallelism: 1,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    key_groups: KeyGroupRange::for_subtask(0, 1, 128),
                    keyed_files: files,
                    operator_state: state,
                }],
            }],
            stats: CheckpointStats::default(),
        }
    }

    #[test]
    fn a_savepoint_names_every_file_under_its_own_root() {
        let m = meta(
            vec![
                file("shared/tally_step/0/3-000007.sst", "000007.sst"),
                file("chk-9/tally_step/0/MANIFEST-000005", "MANIFEST-000005"),
            ],
            Some(file("chk-9/tally_step/0/operator-state", "operator-state")),
        );
        let (relocated, copies) = relocate(&m);
        let keys: Vec<&str> = relocated.files().map(|f| f.key.as_str()).collect();
        let dir = dir_name("tally step");
        assert_eq!(
            keys,
            vec![
                format!("chk-9/{dir}/0/000007.sst"),
                format!("chk-9/{dir}/0/MANIFEST-000005"),
                format!("chk-9/{dir}/0/operator-state"),
            ]
        );
        assert!(relocated.files().all(|f| !f.key.starts_with("shared/")));
        assert_eq!(copies.len(), 3);
        assert_eq!(copies[0].0.key, "shared/tally_step/0/3-000007.sst");
        assert_eq!(relocated.sources[0].positions[0].offset, 5);
    }

    #[test]
    fn a_savepoint_is_written_verified_and_found_again_after_being_moved() {
        let d = tempfile::tempdir().unwrap();
        let job = LocalDirStorage::new(d.path().join("job"));
        job.validate().unwrap();
        let local = d.path().join("staged");
        std::fs::write(&local, b"sst bytes").unwrap();
        let sst = job
            .put_file(&local, "shared/tally_step/0/3-000007.sst", "000007.sst")
            .unwrap();
        let state = job
            .put_bytes("chk-9/tally_step/0/operator-state", "operator-state", b"committables")
            .unwrap();
        let m = meta(vec![sst], Some(state));
        let sp = LocalDirStorage::new(d.path().join("sp"));
        let written = write_savepoint(&job, &m, &sp, &d.path().join("scratch")).unwrap();
        assert_eq!(
            (written.id, written.files, written.bytes),
            (CheckpointId::new(9), 2, 21)
        );
        assert!(!written.stopped_job);
        // A second savepoint into the same place is refused.
        let e = write_savepoint(&job, &m, &sp, &d.path().join("scratch")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
        // Moved elsewhere, with the job's storage gone, it is complete and verifies.
        std::fs::rename(d.path().join("sp"), d.path().join("moved")).unwrap();
        std::fs::remove_dir_all(d.path().join("job")).unwrap();
        let moved = LocalDirStorage::new(d.path().join("moved"));
        let id = find_savepoint(&moved).unwrap();
        let back = read_metadata(&moved, id).unwrap();
        let bytes: Vec<Vec<u8>> = back.files().map(|f| moved.read_verified(f).unwrap()).collect();
        assert_eq!(bytes, vec![b"sst bytes".to_vec(), b"committables".to_vec()]);
        // A corrupt file in the job's storage is never copied into a savepoint.
        let job = LocalDirStorage::new(d.path().join("job2"));
        let sst = job
            .put_file(&local, "shared/tally_step/0/3-000007.sst", "000007.sst")
            .unwrap();
        std::fs::write(d.path().join("job2/shared/tally_step/0/3-000007.sst"), b"sst bytez").unwrap();
        let e = write_savepoint(
            &job,
            &meta(vec![sst], None),
            &LocalDirStorage::new(d.path().join("sp2")),
            &d.path().join("scratch"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Checkpoint, "{e}");
        assert!(find_savepoint(&LocalDirStorage::new(d.path().join("sp2"))).is_err());
    }

    #[test]
    fn state_of_a_step_the_job_no_longer_has_is_refused_unless_allowed() {
        let m = meta(Vec::new(), Some(file("k", "operator-state")));
        let all: HashMap<String, usize> = [("txns".to_string(), 1), ("tally step".to_string(), 1)].into();
        assert!(check_non_restored_state(&m, &all, false, "sp").unwrap().is_empty());
        let without: HashMap<String, usize> = [("txns".to_string(), 1), ("out".to_string(), 1)].into();
        let e = check_non_restored_state(&m, &without, false, "sp").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("\"tally step\""), "{e}");
        assert!(e.to_string().contains("allow_non_restored_state"), "{e}");
        assert_eq!(
            check_non_restored_state(&m, &without, true, "sp").unwrap(),
            vec!["tally step".to_string()]
        );
    }
}
