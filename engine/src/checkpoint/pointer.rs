//! Where a job's latest-checkpoint pointer and checkpoint-id counter live, and who may move
//! them.
//!
//! By default both come from the storage itself ([`StorageListing`]): the latest completed
//! checkpoint is the highest one with metadata, the next id follows the highest id listed, and
//! ownership is the storage's own lease (for a local directory, an OS file lock). A highly
//! available cluster keeps them in a consensus store instead (the cluster's etcd pointer), so
//! that the elected leader's term, not a lock a frozen process may still hold, decides who
//! writes.
//!
//! # After a crash
//! An implementation moves the pointer only after the checkpoint's metadata is durable in the
//! storage, so the pointer never names an incomplete checkpoint. A checkpoint completed in the
//! storage but never named by the pointer (its writer was fenced between the two writes) is not
//! restored: the pointer decides.

use super::storage::CheckpointStorage;
use crate::message::CheckpointId;
use crate::ownership::{OwnerInfo, OwnerLease};
use crate::Result;

/// The latest-checkpoint pointer and the checkpoint-id counter of one job.
pub trait CheckpointPointer: Send + Sync + std::fmt::Debug {
    /// A description for messages.
    fn describe(&self) -> String;
    /// Takes ownership of `storage` for `owner`: nothing is written there without the lease.
    ///
    /// # Errors
    /// `Config` when another process owns it.
    fn take_ownership(&self, storage: &dyn CheckpointStorage, owner: &OwnerInfo) -> Result<OwnerLease>;
    /// Checks that `lease` still owns `storage`: no later owner took over.
    ///
    /// # Errors
    /// `Config` (reason `LostOwnership`) when this process has been fenced out.
    fn verify(&self, storage: &dyn CheckpointStorage, lease: &OwnerLease) -> Result<()>;
    /// The latest completed checkpoint the pointer names; `None` when it names none, and the
    /// storage's listing decides.
    fn latest(&self) -> Result<Option<CheckpointId>>;
    /// The id of the next checkpoint: `candidate` (one above every id in the storage) or
    /// higher, recorded durably so that no later owner hands it out again.
    fn take_id(&self, candidate: CheckpointId) -> Result<CheckpointId>;
    /// Names `id`, whose metadata is durable, as the latest completed checkpoint.
    fn publish(&self, id: CheckpointId) -> Result<()>;
}

/// Today's behaviour: the storage's listing is the pointer, the storage's lease the owner.
#[derive(Debug, Default, Clone, Copy)]
pub struct StorageListing;

impl CheckpointPointer for StorageListing {
    fn describe(&self) -> String {
        "the checkpoint storage's listing".to_string()
    }

    fn take_ownership(&self, storage: &dyn CheckpointStorage, owner: &OwnerInfo) -> Result<OwnerLease> {
        storage.acquire(owner)
    }

    fn verify(&self, storage: &dyn CheckpointStorage, lease: &OwnerLease) -> Result<()> {
        storage.verify_lease(lease)
    }

    fn latest(&self) -> Result<Option<CheckpointId>> {
        Ok(None)
    }

    fn take_id(&self, candidate: CheckpointId) -> Result<CheckpointId> {
        Ok(candidate)
    }

    fn publish(&self, _: CheckpointId) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::config::CheckpointConfig;
    use crate::checkpoint::coordinator::Coordinator;
    use crate::checkpoint::staging::StagingArea;
    use crate::{Error, ErrorKind};
    use std::sync::{Arc, Mutex};

    /// A pointer in memory: what it names, its counter, and whether its writer was fenced.
    #[derive(Debug, Default)]
    struct Fake {
        latest: Option<u64>,
        next: Mutex<u64>,
        fenced: Mutex<bool>,
        published: Mutex<Vec<u64>>,
    }

    impl CheckpointPointer for Fake {
        fn describe(&self) -> String {
            "the fake pointer".into()
        }
        fn take_ownership(&self, _: &dyn CheckpointStorage, owner: &OwnerInfo) -> Result<OwnerLease> {
            Ok(OwnerLease::new(7, owner.clone()))
        }
        fn verify(&self, _: &dyn CheckpointStorage, _: &OwnerLease) -> Result<()> {
            if *self.fenced.lock().unwrap() {
                return Err(Error::config("fenced"));
            }
            Ok(())
        }
        fn latest(&self) -> Result<Option<CheckpointId>> {
            Ok(self.latest.map(CheckpointId::new))
        }
        fn take_id(&self, candidate: CheckpointId) -> Result<CheckpointId> {
            if *self.fenced.lock().unwrap() {
                return Err(Error::config("fenced"));
            }
            let mut next = self.next.lock().unwrap();
            let id = candidate.get().max(*next);
            *next = id + 1;
            Ok(CheckpointId::new(id))
        }
        fn publish(&self, id: CheckpointId) -> Result<()> {
            self.published.lock().unwrap().push(id.get());
            Ok(())
        }
    }

    fn coordinator(dir: &tempfile::TempDir, run: &str, pointer: Arc<Fake>) -> Result<Coordinator> {
        let cfg = CheckpointConfig::new(dir.path().join("chk"));
        let staging = StagingArea::create(&dir.path().join("staging"), run)?;
        Coordinator::with_pointer(cfg, "j", 16, staging, pointer)
    }

    #[test]
    fn ids_continue_after_the_pointers_counter_and_take_no_storage_lock() {
        let dir = tempfile::tempdir().unwrap();
        let pointer = Arc::new(Fake {
            next: Mutex::new(10),
            ..Fake::default()
        });
        let mut c = coordinator(&dir, "first", pointer.clone()).unwrap();
        assert_eq!(c.take_id().unwrap(), CheckpointId::new(10));
        assert_eq!(c.take_id().unwrap(), CheckpointId::new(11));
        // The term owns the storage: a second coordinator (a standby that now leads) is not
        // kept out by an OS lock the first (frozen) one still holds.
        let mut second = coordinator(&dir, "second", pointer.clone()).unwrap();
        assert_eq!(second.take_id().unwrap(), CheckpointId::new(12));
        // A fenced writer reserves nothing.
        *pointer.fenced.lock().unwrap() = true;
        assert!(c.take_id().is_err());
        let listed = crate::checkpoint::storage::LocalDirStorage::new(dir.path().join("chk"))
            .list()
            .unwrap();
        assert_eq!(listed.iter().map(|(id, _)| id.get()).collect::<Vec<_>>(), [10, 11, 12]);
    }

    #[test]
    fn a_pointer_naming_a_checkpoint_the_storage_lacks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pointer = Arc::new(Fake {
            latest: Some(5),
            ..Fake::default()
        });
        let e = coordinator(&dir, "run", pointer).err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().contains("names checkpoint 5") && e.to_string().contains("the fake pointer"),
            "{e}"
        );
    }
}
