//! Choosing and materializing the checkpoint a job (re)starts from.
//!
//! Every file of a candidate checkpoint is verified (size and CRC-32C) before anything is
//! used, and so is the metadata itself. Two failures are told apart:
//! - **could not read** (`External { retryable: true }` from the storage): the read is retried
//!   with bounded backoff ([`READ_RETRY`]); if it still fails, the start fails with an error
//!   naming the checkpoint and the file. Never a fallback: the checkpoint may be fine, and
//!   restoring an older one would produce committed output again.
//! - **corrupt** (`Checkpoint`): the start fails with a `Config` error that names the
//!   checkpoint and how to opt in, unless the user set
//!   [`fallback_to_older_checkpoint_reproducing_output`](super::CheckpointConfig::fallback_to_older_checkpoint_reproducing_output);
//!   then the previous candidate is tried, and the fallback is reported through `tracing` and
//!   in the job report. If no candidate verifies, the restore fails: a job never starts from
//!   scratch silently while checkpoints exist.

use super::metadata::{CheckpointMetadata, StoredFile};
use super::storage::CheckpointStorage;
use super::upload::read_metadata;
use crate::message::CheckpointId;
use crate::recovery::RestoreWarning;
use crate::source::{SplitId, SplitPosition};
use crate::state::backend::dir_name;
use crate::state::KeyGroupRange;
use crate::{Error, ErrorKind, Reason, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One subtask of a step: what per-subtask state is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SubtaskKey {
    /// The step's name.
    pub(crate) step: String,
    /// The subtask index.
    pub(crate) subtask: usize,
}

impl SubtaskKey {
    pub(crate) fn new(step: &str, subtask: usize) -> Self {
        SubtaskKey {
            step: step.to_string(),
            subtask,
        }
    }
}

/// What a restore hands to the plan: source positions by split and snapshot dirs by store.
///
/// State is keyed by the subtasks of the checkpoint: when a step's parallelism changed, the
/// plan redistributes it (see [`state::rescale`](crate::state::rescale) and
/// [`reassign`](super::reassign)).
#[derive(Default, Debug, Clone)]
pub(crate) struct RestoreInput {
    /// The checkpoint restored (`None`: nothing was).
    pub(crate) checkpoint: Option<CheckpointId>,
    /// Each step's parallelism in the checkpoint, by step name.
    pub(crate) parallelism: HashMap<String, usize>,
    /// Positions per source step name, then split.
    pub(crate) positions: HashMap<String, HashMap<SplitId, SplitPosition>>,
    /// Keyed-state snapshot directory per operator subtask of the checkpoint.
    pub(crate) keyed: HashMap<SubtaskKey, PathBuf>,
    /// Operator state per operator subtask of the checkpoint.
    pub(crate) operator_state: HashMap<SubtaskKey, Vec<u8>>,
    /// Where sinks report fallbacks the user allowed (the job report's restore warnings).
    pub(crate) restore_warnings: Option<crate::recovery::SharedRestoreWarnings>,
}

/// How often and how patiently a read that failed with an I/O error is tried again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadRetry {
    /// Tries in all (the first included).
    pub(crate) attempts: u32,
    /// Pause after the first failure; doubled after each further one.
    pub(crate) initial: Duration,
    /// Longest pause.
    pub(crate) max: Duration,
}

/// The restore's read retry: 5 tries over about 1.5 s.
pub(crate) const READ_RETRY: ReadRetry = ReadRetry {
    attempts: 5,
    initial: Duration::from_millis(100),
    max: Duration::from_millis(800),
};

/// Whether `e` says the storage could not be read (as opposed to: what it read is corrupt).
fn could_not_read(e: &Error) -> bool {
    e.kind() == ErrorKind::External { retryable: true }
}

/// Runs `read`, retrying it per `retry` while it fails because storage could not be read.
pub(crate) fn with_retries<T>(
    retry: ReadRetry,
    what: &dyn Fn() -> String,
    mut read: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut pause = retry.initial;
    let mut tries = 1;
    loop {
        match read() {
            Err(e) if could_not_read(&e) && tries < retry.attempts => {
                tracing::warn!(error = %e, tries, ?pause, "{}: could not read checkpoint storage; trying again", what());
                std::thread::sleep(pause);
                pause = (pause * 2).min(retry.max);
                tries += 1;
            }
            Err(e) if could_not_read(&e) => {
                return Err(e.context(format!(
                    "{}: checkpoint storage could not be read after {tries} tries (the checkpoint is not \
                     skipped: fix the storage and start again)",
                    what()
                )))
            }
            other => return other,
        }
    }
}

/// What the user allows a restore to do.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RestorePolicy {
    /// `fallback_to_older_checkpoint_reproducing_output`.
    pub(crate) fallback_allowed: bool,
    /// Operator state is fetched elsewhere (by a cluster's workers): only choose and check
    /// the checkpoint, take its source positions.
    pub(crate) state_elsewhere: bool,
}

/// What to do when candidate `id` turned out corrupt. Pure: the decision only.
pub(crate) fn on_corrupt(
    id: CheckpointId,
    error: &Error,
    older_left: bool,
    policy: &RestorePolicy,
    storage: &str,
) -> Option<Error> {
    if policy.fallback_allowed && older_left {
        return None;
    }
    if policy.fallback_allowed {
        return Some(
            Error::config(format!(
                "no retained checkpoint in {storage} can be restored, refusing to start from scratch; the oldest, \
             checkpoint {id}, is corrupt: {error}"
            ))
            .with_reason(Reason::NoUsableCheckpoint),
        );
    }
    Some(
        Error::config(format!(
            "checkpoint {id} in {storage} is corrupt: {error}. Weir does not restore an older checkpoint on its own: \
         sinks may have committed the output of checkpoint {id} already, and restoring an older one produces \
         it again (append-only sinks such as FileSink and the Kafka sink would hold it twice). Repair the \
         checkpoint's files, restore another one deliberately with RestoreMode::Checkpoint(id), or allow the \
         fallback with CheckpointConfig::fallback_to_older_checkpoint_reproducing_output = true"
        ))
        .with_reason(Reason::NoUsableCheckpoint),
    )
}

/// A restored checkpoint.
pub(crate) struct RestoreOutcome {
    pub(crate) metadata: CheckpointMetadata,
    pub(crate) input: RestoreInput,
    /// Set when a newer complete checkpoint was skipped (only with the opt-in).
    pub(crate) fell_back: Option<RestoreWarning>,
}

/// Checks that `meta` fits the job; a mismatch is a configuration error (never a fallback).
/// A step's parallelism may differ from the checkpoint's: its state is redistributed (on a
/// cluster, each worker fetches the old subtasks its new ones take).
fn check_compatible(
    meta: &CheckpointMetadata,
    job: &str,
    max_parallelism: usize,
    parallelism: &HashMap<String, usize>,
) -> Result<()> {
    if meta.job != job {
        return Err(Error::config(format!(
            "checkpoint {} belongs to job \"{}\", not \"{job}\": use a separate checkpoint directory per job",
            meta.id, meta.job
        ))
        .with_reason(Reason::OtherJob));
    }
    if meta.max_parallelism != max_parallelism {
        return Err(Error::config(format!(
            "checkpoint {} was taken with max parallelism {}, the job now has {max_parallelism}; the number of key groups cannot change",
            meta.id, meta.max_parallelism
        ))
        .with_reason(Reason::MaxParallelismChanged));
    }
    for op in &meta.operators {
        match parallelism.get(&op.name) {
            Some(&p) if op.parallelism == 0 || op.parallelism > max_parallelism => {
                return Err(Error::checkpoint(format!(
                    "checkpoint {}: step \"{}\" has parallelism {} with max parallelism {max_parallelism} (now {p})",
                    meta.id, op.name, op.parallelism
                )))
            }
            Some(&p) if p != op.parallelism => {
                // Its state is redistributed by key-group ranges: they must be the ones the
                // checkpoint's parallelism gives.
                let stray = op.subtasks.iter().find(|st| {
                    st.subtask >= op.parallelism
                        || st.key_groups != KeyGroupRange::for_subtask(st.subtask, op.parallelism, max_parallelism)
                });
                if let Some(st) = stray {
                    return Err(Error::checkpoint(format!(
                        "checkpoint {}: subtask {} of step \"{}\" (parallelism {}) lists key groups {}..={}, \
                         which are not its own",
                        meta.id, st.subtask, op.name, op.parallelism, st.key_groups.start, st.key_groups.end
                    )));
                }
                tracing::info!(
                    step = %op.name,
                    checkpoint = meta.id.get(),
                    from = op.parallelism,
                    to = p,
                    "rescaling the step's state"
                );
            }
            Some(_) => {}
            None => tracing::warn!(
                operator = %op.name,
                checkpoint = meta.id.get(),
                "checkpointed state of a step that is no longer in the job is ignored"
            ),
        }
    }
    Ok(())
}

/// Which operator subtasks' state a restore fetches: all of them in one process, only its own
/// on a worker, none on a master whose workers fetch their own.
pub(crate) type SubtaskFilter<'a> = &'a dyn Fn(&SubtaskKey) -> bool;

/// Where a worker still has its own copy of an operator subtask's snapshot of the checkpoint
/// being restored (local recovery), by step name and subtask.
pub(crate) type LocalCopies<'a> = &'a dyn Fn(&str, usize) -> Option<PathBuf>;

/// Takes `f` from `local` into `dest` when the local copy has `f`'s size and checksum;
/// false when there is no such copy (the caller fetches it from storage).
fn take_local_copy(local: &Path, f: &StoredFile, dest: &Path) -> bool {
    let src = local.join(&f.name);
    match super::storage::checksum_io(&src) {
        Ok((size, crc)) if size == f.size && crc == f.crc32c => {
            if let Some(parent) = dest.parent() {
                if std::fs::create_dir_all(parent).is_err() {
                    return false;
                }
            }
            let _ = std::fs::remove_file(dest);
            std::fs::hard_link(&src, dest).is_ok() || std::fs::copy(&src, dest).is_ok()
        }
        _ => false,
    }
}

/// Files verified (and fetched) at once during a restore: reading and checksumming large
/// snapshots is most of a restore, and the files are independent.
const FETCH_THREADS: usize = 4;

/// One keyed-state file a restore lays out: where it goes, and the local copy to try first.
struct FileFetch<'m> {
    file: &'m StoredFile,
    dest: PathBuf,
    local: Option<PathBuf>,
}

/// Verifies and lays out `fetches`, on up to [`FETCH_THREADS`] threads. Returns how many were
/// taken from local copies and how many fetched; on failure, the error of the first failed
/// file in `fetches` order (so that the error a restore reports does not depend on timing).
fn fetch_all(
    storage: &dyn CheckpointStorage,
    id: CheckpointId,
    retry: ReadRetry,
    fetches: &[FileFetch<'_>],
) -> Result<(usize, usize)> {
    let one = |f: &FileFetch<'_>| -> Result<bool> {
        if f.local.as_ref().is_some_and(|c| take_local_copy(c, f.file, &f.dest)) {
            return Ok(true);
        }
        with_retries(retry, &|| format!("checkpoint {id}, file {}", f.file.key), || {
            storage.fetch_verified(f.file, &f.dest)
        })?;
        Ok(false)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, FETCH_THREADS)
        .min(fetches.len().max(1));
    let results: Vec<Result<bool>> = if threads <= 1 {
        fetches.iter().map(one).collect()
    } else {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<Result<bool>>>> =
            fetches.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = fetches.get(i) else { break };
                    let r = one(f);
                    let failed = r.is_err();
                    *slots[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                    if failed {
                        // Later files are not needed: let the other threads run out.
                        next.fetch_add(fetches.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        slots
            .into_iter()
            .filter_map(|m| m.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
            .collect()
    };
    let (mut local, mut fetched) = (0, 0);
    for r in results {
        if r? {
            local += 1;
        } else {
            fetched += 1;
        }
    }
    Ok((local, fetched))
}

/// Verifies every file of `meta` that `wanted` selects and lays its keyed state out under
/// `dir` (several files at once); source positions are always all taken.
pub(crate) fn materialize(
    storage: &dyn CheckpointStorage,
    meta: &CheckpointMetadata,
    dir: &Path,
    retry: ReadRetry,
    wanted: SubtaskFilter<'_>,
    local: LocalCopies<'_>,
) -> Result<RestoreInput> {
    let mut input = RestoreInput {
        checkpoint: Some(meta.id),
        parallelism: meta.operators.iter().map(|o| (o.name.clone(), o.parallelism)).collect(),
        ..RestoreInput::default()
    };
    for src in &meta.sources {
        for p in &src.positions {
            input
                .positions
                .entry(src.name.clone())
                .or_default()
                .insert(p.split.clone(), p.clone());
        }
    }
    let id = meta.id;
    let mut fetches = Vec::new();
    for op in &meta.operators {
        for st in &op.subtasks {
            if !wanted(&SubtaskKey::new(&op.name, st.subtask)) {
                continue;
            }
            if !st.keyed_files.is_empty() {
                let d = dir.join(dir_name(&op.name)).join(st.subtask.to_string());
                let copy = local(&op.name, st.subtask);
                fetches.extend(st.keyed_files.iter().map(|f| FileFetch {
                    file: f,
                    dest: d.join(&f.name),
                    local: copy.clone(),
                }));
                input.keyed.insert(SubtaskKey::new(&op.name, st.subtask), d);
            }
            if let Some(f) = &st.operator_state {
                // Small, and read into memory: always from storage.
                let bytes = with_retries(retry, &|| format!("checkpoint {id}, file {}", f.key), || {
                    storage.read_verified(f)
                })?;
                input
                    .operator_state
                    .insert(SubtaskKey::new(&op.name, st.subtask), bytes);
            }
        }
    }
    let (taken_locally, fetched) = fetch_all(storage, id, retry, &fetches)?;
    if taken_locally > 0 {
        tracing::info!(checkpoint = %id, taken_locally, fetched, "restored keyed state from local copies where they verified");
    }
    Ok(input)
}

/// Restores from the first usable checkpoint among `candidates` (newest first), laying its
/// keyed state out under `dir`. `Ok(None)` only when there is no candidate at all.
///
/// # Errors
/// See the [module documentation](self): a candidate that could not be read fails the
/// restore (`External`), a corrupt one fails it (`Config`) unless `policy` allows the fallback.
pub(crate) fn restore_from(
    storage: &dyn CheckpointStorage,
    candidates: &[CheckpointId],
    job: &str,
    max_parallelism: usize,
    parallelism: &HashMap<String, usize>,
    dir: &Path,
    policy: &RestorePolicy,
) -> Result<Option<RestoreOutcome>> {
    let retry = READ_RETRY;
    let mut skipped: Vec<(CheckpointId, String)> = Vec::new();
    for (i, &id) in candidates.iter().enumerate() {
        let attempt = with_retries(retry, &|| format!("checkpoint {id}, file chk-{id}/_metadata"), || {
            read_metadata(storage, id)
        })
        .and_then(|meta| {
            check_compatible(&meta, job, max_parallelism, parallelism)?;
            let _ = std::fs::remove_dir_all(dir);
            let input = if policy.state_elsewhere {
                materialize(storage, &meta, dir, retry, &|_| false, &|_, _| None)?
            } else {
                materialize(storage, &meta, dir, retry, &|_| true, &|_, _| None)?
            };
            Ok((meta, input))
        });
        match attempt {
            Ok((metadata, input)) => {
                let fell_back = skipped.first().map(|(newer, _)| {
                    let reasons: Vec<String> = skipped.iter().map(|(_, r)| r.clone()).collect();
                    let message = format!(
                        "restored checkpoint {id} instead of the newer complete checkpoint {newer} ({}): output \
                         that sinks committed after checkpoint {id} is produced again (idempotent sinks absorb \
                         it; append-only sinks hold it twice)",
                        reasons.join("; ")
                    );
                    tracing::warn!(
                        event = "fallback",
                        checkpoint = id.get(),
                        newer = newer.get(),
                        "{message}"
                    );
                    RestoreWarning {
                        restored: id,
                        newer: *newer,
                        message,
                    }
                });
                return Ok(Some(RestoreOutcome {
                    metadata,
                    input,
                    fell_back,
                }));
            }
            Err(e) if e.kind() == ErrorKind::Checkpoint => {
                let older_left = i + 1 < candidates.len();
                if let Some(stop) = on_corrupt(id, &e, older_left, policy, &storage.describe()) {
                    return Err(stop);
                }
                tracing::warn!(
                    event = "fallback",
                    checkpoint = id.get(),
                    error = %e,
                    "checkpoint is corrupt; falling back to the previous retained checkpoint as allowed by \
                     fallback_to_older_checkpoint_reproducing_output"
                );
                skipped.push((id, format!("checkpoint {id}: {e}")));
            }
            Err(e) => return Err(e.context(format!("restoring checkpoint {id}"))),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_checkpoint_stops_without_the_opt_in_and_falls_back_with_it() {
        let e = Error::checkpoint("file x is corrupt");
        let strict = RestorePolicy::default();
        let stop = on_corrupt(CheckpointId::new(7), &e, true, &strict, "s").unwrap();
        assert_eq!(stop.kind(), ErrorKind::Config);
        assert!(stop
            .to_string()
            .contains("fallback_to_older_checkpoint_reproducing_output"));
        let lenient = RestorePolicy {
            fallback_allowed: true,
            ..RestorePolicy::default()
        };
        assert!(on_corrupt(CheckpointId::new(7), &e, true, &lenient, "s").is_none());
        let last = on_corrupt(CheckpointId::new(7), &e, false, &lenient, "s").unwrap();
        assert!(last.to_string().contains("refusing to start from scratch"), "{last}");
    }

    #[test]
    fn reads_are_retried_only_when_storage_could_not_be_read() {
        let quick = ReadRetry {
            attempts: 3,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let mut n = 0;
        let r = with_retries(quick, &|| "x".into(), || {
            n += 1;
            if n < 3 {
                Err(Error::external(true, "EIO"))
            } else {
                Ok(n)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let mut n = 0;
        let e = with_retries(quick, &|| "checkpoint 4, file f".into(), || -> Result<()> {
            n += 1;
            Err(Error::external(true, "EIO"))
        })
        .unwrap_err();
        assert_eq!(n, 3);
        assert!(e.to_string().contains("checkpoint 4, file f"), "{e}");
        let mut n = 0;
        let e = with_retries(quick, &|| "x".into(), || -> Result<()> {
            n += 1;
            Err(Error::checkpoint("corrupt"))
        })
        .unwrap_err();
        assert_eq!((n, e.kind()), (1, ErrorKind::Checkpoint));
    }

    /// A step at another parallelism is restored in one process (its state redistributed) and
    /// refused where workers fetch their own subtasks' state; ranges that are not the ones of
    /// the checkpoint's parallelism make it corrupt, and a change of max parallelism is refused.
    #[test]
    fn another_parallelism_is_restored_in_one_process_and_refused_on_workers() {
        use super::super::metadata::{CheckpointStats, OperatorState, SubtaskState, FORMAT_VERSION};
        use crate::message::BarrierKind;
        let mut meta = CheckpointMetadata {
            owner_epoch: Some(1),
            version: FORMAT_VERSION,
            job: "j".into(),
            id: CheckpointId::new(3),
            kind: BarrierKind::Checkpoint,
            max_parallelism: 128,
            sources: Vec::new(),
            operators: vec![OperatorState {
                name: "count".into(),
                parallelism: 2,
                subtasks: (0..2)
                    .map(|subtask| SubtaskState {
                        subtask,
                        key_groups: KeyGroupRange::for_subtask(subtask, 2, 128),
                        keyed_files: Vec::new(),
                        operator_state: None,
                    })
                    .collect(),
            }],
            stats: CheckpointStats::default(),
        };
        let now: HashMap<String, usize> = [("count".to_string(), 3)].into_iter().collect();
        check_compatible(&meta, "j", 128, &now).unwrap();
        let e = check_compatible(&meta, "j", 64, &now).unwrap_err();
        assert_eq!(e.reason(), Some(Reason::MaxParallelismChanged), "{e}");
        meta.operators[0].subtasks[1].key_groups = KeyGroupRange { start: 0, end: 127 };
        let e = check_compatible(&meta, "j", 128, &now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
        // Without a change of parallelism the ranges are not looked at (as before).
        let same: HashMap<String, usize> = [("count".to_string(), 2)].into_iter().collect();
        check_compatible(&meta, "j", 128, &same).unwrap();
    }

    /// Local recovery: a worker's own copy of a subtask's snapshot is used when it verifies
    /// (so a storage that lost the file does not matter), and a copy that differs from the
    /// checkpoint is not: the file is fetched from storage instead.
    #[test]
    fn a_local_copy_serves_a_restore_only_when_it_verifies() {
        use super::super::metadata::{CheckpointStats, OperatorState, SubtaskState, FORMAT_VERSION};
        use super::super::storage::LocalDirStorage;
        use crate::message::BarrierKind;
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalDirStorage::new(dir.path().join("chk"));
        let staged = dir.path().join("staged");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("000007.sst"), b"the keyed state of subtask 0").unwrap();
        let stored = storage
            .put_file(&staged.join("000007.sst"), "shared/count/0/3-000007.sst", "000007.sst")
            .unwrap();
        let meta = CheckpointMetadata {
            owner_epoch: Some(1),
            version: FORMAT_VERSION,
            job: "j".into(),
            id: CheckpointId::new(3),
            kind: BarrierKind::Checkpoint,
            max_parallelism: 128,
            sources: Vec::new(),
            operators: vec![OperatorState {
                name: "count".into(),
                parallelism: 1,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    key_groups: crate::state::KeyGroupRange::for_subtask(0, 1, 128),
                    keyed_files: vec![stored.clone()],
                    operator_state: None,
                }],
            }],
            stats: CheckpointStats::default(),
        };
        let restored = |into: &str, local: LocalCopies<'_>| {
            let d = dir.path().join(into);
            materialize(&storage, &meta, &d, READ_RETRY, &|_| true, local)
                .map(|input| std::fs::read(input.keyed[&SubtaskKey::new("count", 0)].join("000007.sst")).unwrap())
        };
        // The object in storage is gone: only the local copy can serve, and it does.
        let stored_path = dir.path().join("chk").join(&stored.key);
        let kept = std::fs::read(&stored_path).unwrap();
        std::fs::remove_file(&stored_path).unwrap();
        let local = |_: &str, _: usize| Some(staged.clone());
        assert_eq!(restored("r1", &local).unwrap(), b"the keyed state of subtask 0");
        // Without a local copy the restore fails: the storage has nothing.
        assert!(restored("r2", &|_, _| None).is_err());
        // A local copy that differs from the checkpoint is not used: the storage's file is.
        std::fs::write(&stored_path, &kept).unwrap();
        std::fs::write(staged.join("000007.sst"), b"the keyed state of subtask X").unwrap();
        assert_eq!(restored("r3", &local).unwrap(), b"the keyed state of subtask 0");
    }
}
