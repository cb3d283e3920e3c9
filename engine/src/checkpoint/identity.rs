//! The job identity record: how a job knows, from its checkpoint storage alone, that it has
//! run there before.
//!
//! `<root>/_job` names the job and when it first started in this storage, and, once the job
//! completed a checkpoint there, the first one it completed. It is written durably (temporary
//! file, fsync, rename, directory fsync) on the first start and once more at the first
//! completed checkpoint (in a storage that an older Weir filled without a record: only then);
//! it is never deleted by retention.
//!
//! # After a crash
//! The record is either absent, the first-start record, or the record with the first
//! completed checkpoint. A crash between publishing the first checkpoint and recording it
//! leaves the first-start record: the checkpoint itself then proves the earlier run.

use super::config::RestoreMode;
use super::storage::{CheckpointStorage, JOB_IDENTITY_FILE};
use crate::message::CheckpointId;
use crate::{Error, Reason, Result};
use serde::{Deserialize, Serialize};

/// What `_job` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    /// The job's name.
    pub job: String,
    /// When the job first started with this storage, ms since the epoch.
    pub created_at_ms: u64,
    /// The first checkpoint the job completed in this storage, once it has.
    pub first_completed_checkpoint: Option<CheckpointId>,
}

impl JobIdentity {
    /// Reads the record of `storage`, if there is one.
    ///
    /// # Errors
    /// `External { retryable: true }` if it cannot be read; `Config` if it does not parse
    /// (the storage holds something that is not Weir's, or was damaged: a person must look).
    pub fn read(storage: &dyn CheckpointStorage) -> Result<Option<JobIdentity>> {
        let Some(bytes) = storage.read_identity()? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::config(format!(
                "the job identity record {JOB_IDENTITY_FILE} in checkpoint storage {} does not parse; \
                 check that this is the job's checkpoint storage",
                storage.describe()
            ))
            .with_source(e)
        })
    }

    /// Writes the record durably.
    ///
    /// # Errors
    /// `External` if the storage cannot be written.
    pub fn write(&self, storage: &dyn CheckpointStorage) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| Error::internal("encoding the job identity").with_source(e))?;
        storage.write_identity(&bytes)
    }
}

/// What the coordinator must do with the identity record at start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IdentityAction {
    /// The record is as it should be.
    Keep,
    /// Write this record (the first start in this storage).
    Write(JobIdentity),
    /// Write the record when this run completes its first checkpoint: the storage holds
    /// checkpoints but no record (written by an older Weir), and only a successful restore or
    /// a completed checkpoint shows that they are this job's.
    WriteAtFirstCompletion,
}

/// Decides, from the record found, the checkpoints in storage and the restore mode, whether
/// the start may go on. Pure: no I/O.
///
/// # Errors
/// `Config` when the storage belongs to another job, or when the job completed checkpoints
/// in this storage before but none is there now and the restore mode is not
/// [`RestoreMode::Fresh`]: starting from scratch would produce all output again.
pub(crate) fn check_identity(
    found: Option<&JobIdentity>,
    job: &str,
    storage: &str,
    complete: &[CheckpointId],
    mode: RestoreMode,
    now_ms: u64,
) -> Result<IdentityAction> {
    let Some(id) = found else {
        if !complete.is_empty() {
            return Ok(IdentityAction::WriteAtFirstCompletion);
        }
        return Ok(IdentityAction::Write(JobIdentity {
            job: job.to_string(),
            created_at_ms: now_ms,
            first_completed_checkpoint: None,
        }));
    };
    if id.job != job {
        return Err(Error::config(format!(
            "checkpoint storage {storage} belongs to job \"{}\" (its {JOB_IDENTITY_FILE} record), not \"{job}\": \
             use a separate checkpoint directory per job",
            id.job
        ))
        .with_reason(Reason::OtherJob));
    }
    if let (Some(first), true, RestoreMode::Latest) = (id.first_completed_checkpoint, complete.is_empty(), mode) {
        return Err(Error::config(format!(
            "checkpoint storage {storage} holds no completed checkpoint, but its {JOB_IDENTITY_FILE} record says job \
             \"{job}\" completed checkpoint {first} there (first started at {} ms since the epoch): its checkpoints \
             were deleted or lost, and starting from scratch would produce all output again. Restore the \
             checkpoints, or start over deliberately with RestoreMode::Fresh",
            id.created_at_ms
        ))
        .with_reason(Reason::EarlierRunFound));
    }
    if id.first_completed_checkpoint.is_none() {
        if let Some(&first) = complete.first() {
            return Ok(IdentityAction::Write(JobIdentity {
                first_completed_checkpoint: Some(first),
                ..id.clone()
            }));
        }
    }
    Ok(IdentityAction::Keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(job: &str, first: Option<CheckpointId>) -> JobIdentity {
        JobIdentity {
            job: job.into(),
            created_at_ms: 5,
            first_completed_checkpoint: first,
        }
    }

    #[test]
    fn first_start_writes_the_record() {
        let a = check_identity(None, "j", "s", &[], RestoreMode::Latest, 9).unwrap();
        assert_eq!(a, IdentityAction::Write(rec("j", None).with_created(9)));
        // Checkpoints without a record: whose they are shows only once one is restored.
        let a = check_identity(
            None,
            "j",
            "s",
            &[CheckpointId::new(3), CheckpointId::new(4)],
            RestoreMode::Latest,
            9,
        )
        .unwrap();
        assert_eq!(a, IdentityAction::WriteAtFirstCompletion);
    }

    #[test]
    fn a_job_that_completed_checkpoints_needs_them_or_fresh() {
        let r = rec("j", Some(CheckpointId::new(2)));
        let e = check_identity(Some(&r), "j", "s", &[], RestoreMode::Latest, 9).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("RestoreMode::Fresh"), "{e}");
        assert_eq!(
            check_identity(Some(&r), "j", "s", &[], RestoreMode::Fresh, 9).unwrap(),
            IdentityAction::Keep
        );
        assert_eq!(
            check_identity(Some(&r), "j", "s", &[CheckpointId::new(7)], RestoreMode::Latest, 9).unwrap(),
            IdentityAction::Keep
        );
    }

    #[test]
    fn a_job_that_never_completed_a_checkpoint_starts_fresh() {
        let r = rec("j", None);
        assert_eq!(
            check_identity(Some(&r), "j", "s", &[], RestoreMode::Latest, 9).unwrap(),
            IdentityAction::Keep
        );
        assert_eq!(
            check_identity(Some(&r), "j", "s", &[CheckpointId::new(4)], RestoreMode::Latest, 9).unwrap(),
            IdentityAction::Write(rec("j", Some(CheckpointId::new(4))))
        );
    }

    #[test]
    fn another_jobs_storage_is_refused() {
        let e = check_identity(Some(&rec("other", None)), "j", "s", &[], RestoreMode::Fresh, 9).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("other"), "{e}");
    }

    impl JobIdentity {
        fn with_created(mut self, at: u64) -> Self {
            self.created_at_ms = at;
            self
        }
    }
}
