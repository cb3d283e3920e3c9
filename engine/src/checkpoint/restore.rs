//! Choosing and materializing the checkpoint a job (re)starts from.
//!
//! Every file of a candidate checkpoint is verified (size and CRC-32C) before anything is
//! used. A corrupt or missing file makes the restore fall back to the previous candidate with
//! a warning; if no candidate verifies, the restore fails: a job never starts from scratch
//! silently while checkpoints exist.

use super::fail;
use super::metadata::CheckpointMetadata;
use super::storage::CheckpointStorage;
use super::upload::read_metadata;
use crate::message::CheckpointId;
use crate::runtime::plan::RestoreInput;
use crate::state::backend::dir_name;
use crate::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::path::Path;

/// Checks that `meta` fits the job; a mismatch is a configuration error (never a fallback).
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
        )));
    }
    if meta.max_parallelism != max_parallelism {
        return Err(Error::config(format!(
            "checkpoint {} was taken with max parallelism {}, the job now has {max_parallelism}; the number of key groups cannot change",
            meta.id, meta.max_parallelism
        )));
    }
    for op in &meta.operators {
        match parallelism.get(&op.name) {
            // Keyed state and operator state (sink committables) are per subtask: a different
            // parallelism would drop or misplace them.
            Some(&p) if p != op.parallelism => {
                return Err(Error::config(format!(
                    "step \"{}\" had parallelism {} in checkpoint {}, now {p}: rescaling checkpointed state is not supported yet",
                    op.name, op.parallelism, meta.id
                )))
            }
            Some(_) => {}
            None => tracing::warn!(
                operator = %op.name,
                checkpoint = meta.id,
                "checkpointed state of a step that is no longer in the job is ignored"
            ),
        }
    }
    Ok(())
}

/// Verifies every file of `meta` and lays its keyed state out under `dir`.
fn materialize(storage: &dyn CheckpointStorage, meta: &CheckpointMetadata, dir: &Path) -> Result<RestoreInput> {
    let mut input = RestoreInput::default();
    for src in &meta.sources {
        for p in &src.positions {
            input.offsets.insert((src.name.clone(), p.split.clone()), p.offset);
        }
    }
    for op in &meta.operators {
        for st in &op.subtasks {
            if !st.keyed_files.is_empty() {
                let d = dir.join(dir_name(&op.name)).join(st.subtask.to_string());
                for f in &st.keyed_files {
                    storage.fetch_verified(f, &d.join(&f.name))?;
                }
                input.keyed.insert((op.name.clone(), st.subtask), d);
            }
            if let Some(f) = &st.operator_state {
                input
                    .operator_state
                    .insert((op.name.clone(), st.subtask), storage.read_verified(f)?);
            }
        }
    }
    Ok(input)
}

/// Restores from the first usable checkpoint among `candidates` (tried in order), laying its
/// keyed state out under `dir`. `Ok(None)` only when there is no candidate at all.
pub(crate) fn restore_from(
    storage: &dyn CheckpointStorage,
    candidates: &[CheckpointId],
    job: &str,
    max_parallelism: usize,
    parallelism: &HashMap<String, usize>,
    dir: &Path,
) -> Result<Option<(CheckpointMetadata, RestoreInput)>> {
    fail::hit(fail::DURING_RESTORE)?;
    let mut problems = Vec::new();
    for &id in candidates {
        let attempt = read_metadata(storage, id).and_then(|meta| {
            check_compatible(&meta, job, max_parallelism, parallelism)?;
            let _ = std::fs::remove_dir_all(dir);
            let input = materialize(storage, &meta, dir)?;
            Ok((meta, input))
        });
        match attempt {
            Ok(found) => {
                if !problems.is_empty() {
                    tracing::warn!(
                        checkpoint = id,
                        "restoring an older checkpoint because newer ones are unusable"
                    );
                    eprintln!(
                        "weir: WARNING: restoring checkpoint {id}, older than the latest completed one: output that sinks \
                         committed after checkpoint {id} will be produced again (idempotent sinks absorb it; \
                         append-only sinks will hold it twice)"
                    );
                }
                return Ok(Some(found));
            }
            Err(e) if e.kind() == ErrorKind::Checkpoint => {
                tracing::warn!(checkpoint = id, error = %e, "checkpoint unusable; falling back to the previous retained checkpoint");
                eprintln!("weir: WARNING: checkpoint {id} cannot be restored ({e}); falling back to the previous retained checkpoint");
                problems.push(format!("checkpoint {id}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(Error::checkpoint(format!(
            "no retained checkpoint can be restored, refusing to start from scratch: {}",
            problems.join("; ")
        )))
    }
}
