//! The latest-checkpoint pointer and the checkpoint-id counter of a highly available job, in
//! etcd, moved only by the leader of the current term.
//!
//! # After a crash
//! The pointer moves after the checkpoint's metadata is durable in the storage and only in a
//! transaction fenced by the leader's term, so it names a complete checkpoint of the job and no
//! fenced leader ever moves it. The id counter is written, fenced, before an id is used: a new
//! leader never hands out an id an earlier leader used, even for a checkpoint that never
//! completed.

use super::etcd::Leadership;
use super::term::PointerRecord;
use crate::checkpoint::pointer::CheckpointPointer;
use crate::checkpoint::storage::CheckpointStorage;
use crate::message::CheckpointId;
use crate::ownership::{OwnerInfo, OwnerLease};
use crate::{Error, Result};
use std::sync::{Arc, Mutex};

/// The pointer and counter in etcd, written under `leadership`'s term.
#[derive(Debug)]
pub(crate) struct EtcdPointer {
    leadership: Arc<Leadership>,
    /// The counter's value as this leader last wrote or read it (only the leader writes it).
    next_id: Mutex<Option<u64>>,
}

impl EtcdPointer {
    pub(crate) fn new(leadership: Arc<Leadership>) -> Self {
        EtcdPointer {
            leadership,
            next_id: Mutex::new(None),
        }
    }

    fn counter(&self) -> Result<u64> {
        let mut cached = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = *cached {
            return Ok(n);
        }
        let etcd = self.leadership.etcd();
        let n = match etcd.get(&etcd.keys.next_id())? {
            Some(kv) => kv.value.trim().parse::<u64>().map_err(|_| {
                Error::config(format!(
                    "etcd at {} holds {:?} under {}, not a checkpoint id",
                    etcd.endpoints(),
                    kv.value,
                    etcd.keys.next_id()
                ))
            })?,
            None => 0,
        };
        *cached = Some(n);
        Ok(n)
    }
}

impl CheckpointPointer for EtcdPointer {
    fn describe(&self) -> String {
        let etcd = self.leadership.etcd();
        format!("etcd at {} (key {})", etcd.endpoints(), etcd.keys.latest())
    }

    /// The term is the owner epoch; no lock is taken in the storage, so a frozen former leader
    /// cannot keep this one out.
    fn take_ownership(&self, storage: &dyn CheckpointStorage, owner: &OwnerInfo) -> Result<OwnerLease> {
        storage.validate()?;
        self.leadership.check()?;
        tracing::info!(storage = %storage.describe(), term = self.leadership.term(), "took the checkpoint storage as the job's leader");
        Ok(OwnerLease::new(self.leadership.term(), owner.clone()))
    }

    fn verify(&self, _: &dyn CheckpointStorage, lease: &OwnerLease) -> Result<()> {
        debug_assert_eq!(lease.epoch(), self.leadership.term());
        self.leadership.check()
    }

    fn latest(&self) -> Result<Option<CheckpointId>> {
        let etcd = self.leadership.etcd();
        let Some(kv) = etcd.get(&etcd.keys.latest())? else {
            return Ok(None);
        };
        let v = kv.value;
        let record: PointerRecord = serde_json::from_str(&v).map_err(|e| {
            Error::config(format!(
                "etcd at {} holds {v:?} under {}, not a checkpoint pointer: {e}",
                etcd.endpoints(),
                etcd.keys.latest()
            ))
        })?;
        Ok(Some(CheckpointId::new(record.checkpoint)))
    }

    fn take_id(&self, candidate: CheckpointId) -> Result<CheckpointId> {
        let id = candidate.get().max(self.counter()?);
        let etcd = self.leadership.etcd();
        self.leadership
            .fenced_put(vec![(etcd.keys.next_id(), (id + 1).to_string())])?;
        *self.next_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id + 1);
        Ok(CheckpointId::new(id))
    }

    fn publish(&self, id: CheckpointId) -> Result<()> {
        let etcd = self.leadership.etcd();
        let record = PointerRecord {
            checkpoint: id.get(),
            term: self.leadership.term(),
        };
        let value =
            serde_json::to_string(&record).map_err(|e| Error::internal(format!("encoding the pointer: {e}")))?;
        self.leadership.fenced_put(vec![(etcd.keys.latest(), value)])
    }
}
