//! One writer per durable resource (a checkpoint storage, a state directory, a file sink's
//! output directory): owners, owner epochs and leases, and the decisions that fence a second
//! writer out.
//!
//! A process takes a [`OwnerLease`] on a checkpoint storage before it writes anything there
//! ([`CheckpointStorage::acquire`](crate::checkpoint::storage::CheckpointStorage::acquire)). The storage
//! keeps an [`OwnerRecord`] durably: every new owner gets the next **owner epoch**. Every
//! checkpoint reservation carries the epoch of the lease it was made under, and before a
//! checkpoint is published the storage checks that the lease is still the current one
//! ([`check_fence`]). Local storage backs the lease with an exclusive file lock (released by the
//! OS when the process dies); storage without locks (an object store with create-only writes, a
//! lease in etcd) carries the same epochs and the same checks.
//!
//! This module holds the decisions only; the file I/O lives in
//! [`dir_lock`] and [`storage`](crate::checkpoint::storage).
//!
//! # After a crash
//! The owner record is written atomically (temporary file, rename, directory fsync), so it is
//! either the previous owner's or the new one's. Epochs only grow: a process that restarts
//! after `kill -9` takes the next epoch at once, and any writer still holding an older epoch
//! fails its next fence check.

pub mod dir_lock;

use crate::message::CheckpointId;
use crate::{Error, Reason, Result};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt;

/// Who holds (or held) a resource: a job in one process on one host, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerInfo {
    /// The job's name.
    pub job: String,
    /// The process id.
    pub pid: u32,
    /// The host name.
    pub host: String,
    /// When ownership was taken, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

impl OwnerInfo {
    /// This process, running job `job`, from now on.
    pub fn this_process(job: &str) -> Self {
        OwnerInfo {
            job: job.to_string(),
            pid: std::process::id(),
            host: host_name(),
            since_ms: crate::wall_clock::now_ms(),
        }
    }
}

impl fmt::Display for OwnerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let age_s = crate::wall_clock::now_ms().saturating_sub(self.since_ms) as f64 / 1e3;
        write!(
            f,
            "job \"{}\", pid {} on host {}, since {} ({age_s:.1} s ago)",
            self.job,
            self.pid,
            self.host,
            crate::wall_clock::utc_timestamp(self.since_ms)
        )
    }
}

/// What a storage records about its current owner: the owner and its epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// The owner epoch: 1 for the first owner, one more for every later one; 0 for locks
    /// without epochs (a state directory, a file sink subtask).
    pub epoch: u64,
    /// The owner.
    pub owner: OwnerInfo,
}

impl fmt::Display for OwnerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.epoch {
            0 => write!(f, "{}", self.owner),
            e => write!(f, "{} (owner epoch {e})", self.owner),
        }
    }
}

/// The exclusive right to write to one checkpoint storage, for as long as the value lives.
///
/// Dropping it releases whatever backs it (for local storage, the file lock). A lease is
/// never shared between processes; its [`epoch`](Self::epoch) is what fencing compares.
pub struct OwnerLease {
    record: OwnerRecord,
    /// Keeps the lock (or other resource) that backs the lease alive.
    _hold: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for OwnerLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerLease").field("record", &self.record).finish()
    }
}

impl OwnerLease {
    /// A lease of `epoch` held by `owner`.
    pub fn new(epoch: u64, owner: OwnerInfo) -> Self {
        OwnerLease {
            record: OwnerRecord { epoch, owner },
            _hold: None,
        }
    }

    /// The same lease, keeping `hold` (a lock guard, a keep-alive task) until it is dropped.
    pub fn holding(mut self, hold: impl Any + Send + Sync) -> Self {
        self._hold = Some(Box::new(hold));
        self
    }

    /// The owner epoch.
    pub fn epoch(&self) -> u64 {
        self.record.epoch
    }

    /// The owner.
    pub fn owner(&self) -> &OwnerInfo {
        &self.record.owner
    }

    /// The record a storage keeps for this lease.
    pub fn record(&self) -> &OwnerRecord {
        &self.record
    }
}

/// The epoch of the next owner after `recorded` (the first owner's epoch is 1).
pub fn next_epoch(recorded: Option<&OwnerRecord>) -> u64 {
    recorded.map_or(1, |r| r.epoch + 1)
}

/// The error for a resource another process holds: `Config` (a restart cannot fix it), naming
/// the holder when it is known.
pub fn held_by_another(resource: &str, holder: Option<&OwnerRecord>) -> Error {
    let who = match holder {
        Some(h) => format!("it is held by {h}"),
        None => "its holder has not recorded itself yet".to_string(),
    };
    Error::config(format!(
        "{resource} is in use by another process: {who}. One process of a job writes to it at a \
         time: stop the other process (or wait for it to end) before starting this one, or give \
         this job other directories"
    ))
    .with_reason(Reason::LostOwnership)
}

/// Checks that `lease` is the storage's current owner (`recorded`): no later owner took over.
///
/// # Errors
/// `Config` when another owner took over (this process must stop writing) or the record is
/// missing.
pub fn check_fence(resource: &str, recorded: Option<&OwnerRecord>, lease: &OwnerLease) -> Result<()> {
    match recorded {
        Some(r) if r.epoch == lease.epoch() && r.owner == *lease.owner() => Ok(()),
        Some(r) => Err(Error::config(format!(
            "{resource}: this process (owner epoch {}) has been fenced out by {r}; it must stop writing",
            lease.epoch()
        ))
        .with_reason(Reason::LostOwnership)),
        None => Err(Error::config(format!(
            "{resource}: the owner record of this process (owner epoch {}) is gone; it must stop writing",
            lease.epoch()
        ))
        .with_reason(Reason::LostOwnership)),
    }
}

/// The error for a checkpoint id that is already reserved: ids are never shared, so another
/// writer uses the storage (`reserved_by`, when its reservation could be read).
pub fn reservation_taken(
    resource: &str,
    id: CheckpointId,
    reserved_by: Option<&OwnerRecord>,
    lease: &OwnerLease,
) -> Error {
    let by = match reserved_by {
        Some(r) if r.epoch == lease.epoch() && r.owner == *lease.owner() => "this very lease".to_string(),
        Some(r) => r.to_string(),
        None => "an unknown writer".to_string(),
    };
    Error::config(format!(
        "{resource}: checkpoint {id} is already reserved (by {by}); owner epoch {} never shares a \
         checkpoint id: another process writes to this storage",
        lease.epoch()
    ))
    .with_reason(Reason::LostOwnership)
}

/// This host's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn owner(pid: u32) -> OwnerInfo {
        OwnerInfo {
            job: "j".into(),
            pid,
            host: "h".into(),
            since_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn epochs_start_at_one_and_grow_by_one_per_owner() {
        assert_eq!(next_epoch(None), 1);
        let r = OwnerRecord {
            epoch: 7,
            owner: owner(1),
        };
        assert_eq!(next_epoch(Some(&r)), 8);
    }

    #[test]
    fn the_current_lease_passes_the_fence_and_an_older_one_does_not() {
        let lease = OwnerLease::new(3, owner(10));
        assert!(check_fence("s", Some(lease.record()), &lease).is_ok());
        let newer = OwnerRecord {
            epoch: 4,
            owner: owner(11),
        };
        let e = check_fence("s", Some(&newer), &lease).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().contains("fenced out") && e.to_string().contains("pid 11"),
            "{e}"
        );
        // Same epoch, other owner (two processes raced without a lock): fenced too.
        let twin = OwnerRecord {
            epoch: 3,
            owner: owner(12),
        };
        assert!(check_fence("s", Some(&twin), &lease).is_err());
        assert!(check_fence("s", None, &lease).is_err());
    }

    #[test]
    fn errors_name_the_holder_and_are_not_retryable() {
        let holder = OwnerRecord {
            epoch: 5,
            owner: owner(4242),
        };
        let e = held_by_another("checkpoint storage /x", Some(&holder));
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        for part in [
            "/x",
            "pid 4242",
            "host h",
            "owner epoch 5",
            "since 2023-11-14T22:13:20.123Z",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        let lease = OwnerLease::new(6, owner(1));
        let e = reservation_taken("s", CheckpointId::new(9), Some(&holder), &lease);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().contains("checkpoint 9") && e.to_string().contains("pid 4242"),
            "{e}"
        );
    }

    #[test]
    fn a_lease_keeps_what_backs_it_until_dropped() {
        let alive = std::sync::Arc::new(());
        let lease = OwnerLease::new(1, owner(1)).holding(alive.clone());
        assert_eq!(std::sync::Arc::strong_count(&alive), 2);
        drop(lease);
        assert_eq!(std::sync::Arc::strong_count(&alive), 1);
    }
}
