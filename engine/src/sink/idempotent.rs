//! Idempotent sinks: write records as they arrive under ids derived from the records, so that
//! a replay after a failure overwrites what the failed attempt wrote instead of adding to it.
//!
//! This is the alternative to two-phase commit for destinations with upsert semantics (a
//! key-value store, a table with a primary key): no committable, no commit, and lower latency,
//! at the price that output of an abandoned attempt is visible until replay overwrites it.
//!
//! Implement [`IdempotentSink`] for the destination and plug it into a pipeline with the
//! [`Idempotent`] adapter; [`UpsertMap`] is an in-memory implementation for tests.
//!
//! ```no_run
//! use weir_engine::prelude::*;
//! use weir_engine::sink::idempotent::UpsertMap;
//!
//! let totals = UpsertMap::new(|(account, _): &(String, i64)| account.clone());
//! let p = Pipeline::new("totals").checkpoint_storage("/tmp/chk");
//! p.source("transfers", VecSource::new(vec![("alice".to_string(), 5i64), ("alice".into(), 7)]))
//!     .key_by("by-account", |(a, _)| a.clone())
//!     .reduce("total", |(a, x), (_, y)| (a, x + y))
//!     .sink("totals", Idempotent::new(totals.clone()));
//! p.run().unwrap();
//! assert_eq!(totals.get("alice"), Some(("alice".to_string(), 12)));
//! ```

use super::{Sink, SinkContext, SinkWriter};
use crate::data::{Data, Record};
use crate::message::CheckpointId;
use crate::Result;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A destination with upsert semantics: writing a value under an id replaces any earlier value
/// under that id.
///
/// # Checkpointing
/// Records are written as they arrive, before their checkpoint completes. After a failure the
/// job restores checkpoint `r` and replays everything after it; each replayed record is written
/// again under the same id, so once replay has passed the failure point the destination holds,
/// per id, the value of the latest record, exactly as without the failure. This requires
/// `id` to be a deterministic function of the record (never a counter, a clock or a random
/// number), and the pipeline to produce the same records on replay. Until replay catches up,
/// readers may see values the failed attempt wrote after `r`.
pub trait IdempotentSink<T>: Send + Sync + 'static {
    /// Called once per sink subtask and attempt, before its first write, with the subtask's
    /// context (default: nothing to do). One instance serves every subtask of the process.
    ///
    /// # Errors
    /// `Config` or `External` if the destination cannot be used.
    fn open(&self, ctx: &crate::functions::RuntimeContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called once per sink subtask when its attempt ends, normally or not. Must not panic.
    fn close(&self, ctx: &crate::functions::RuntimeContext) {
        let _ = ctx;
    }

    /// The id `record` is stored under: a deterministic function of the record.
    fn id(&self, record: &T) -> String;

    /// Writes a batch of (id, record), in order: a later entry with the same id wins.
    ///
    /// # Errors
    /// `External` if the destination fails (the job restarts and replays).
    ///
    /// # Checkpointing
    /// Writes must be durable when this returns, or [`flush`](Self::flush) must make them so.
    fn upsert(&self, batch: Vec<(String, T)>) -> Result<()>;

    /// Makes every write durable; called on every checkpoint barrier (default: nothing to do).
    ///
    /// # Errors
    /// `External` if the destination fails (the checkpoint and the attempt fail).
    ///
    /// # Checkpointing
    /// The barrier's checkpoint can only complete after this returned `Ok`, so a checkpoint
    /// never covers records whose writes could still be lost.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Turns an [`IdempotentSink`] into a [`Sink`] (with no committable) for
/// [`Stream::sink`](crate::api::Stream::sink).
///
/// # Checkpointing
/// See [`IdempotentSink`]: writes happen as records arrive; on each barrier the adapter calls
/// [`flush`](IdempotentSink::flush); nothing is stored in checkpoints and commit does nothing.
#[derive(Debug)]
pub struct Idempotent<S> {
    inner: Arc<S>,
}

impl<S> Clone for Idempotent<S> {
    fn clone(&self) -> Self {
        Idempotent {
            inner: self.inner.clone(),
        }
    }
}

impl<S> Idempotent<S> {
    /// Adapts `sink`.
    ///
    /// # Checkpointing
    /// As for [`Idempotent`].
    pub fn new(sink: S) -> Self {
        Idempotent { inner: Arc::new(sink) }
    }

    /// The adapted sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<T: Data, S: IdempotentSink<T>> Sink<T> for Idempotent<S> {
    type Committable = ();

    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T, ()>>> {
        let runtime = ctx.runtime();
        self.inner.open(&runtime)?;
        Ok(Box::new(IdempotentWriter {
            sink: self.inner.clone(),
            runtime,
        }))
    }
}

struct IdempotentWriter<S> {
    sink: Arc<S>,
    runtime: crate::functions::RuntimeContext,
}

impl<T: Data, S: IdempotentSink<T>> SinkWriter<T, ()> for IdempotentWriter<S> {
    fn write(&mut self, records: Vec<Record<T>>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = records.into_iter().map(|r| (self.sink.id(&r.value), r.value)).collect();
        self.sink.upsert(batch)
    }

    fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<Option<()>> {
        self.sink.flush()?;
        Ok(None)
    }

    fn commit(&mut self, _committables: Vec<(CheckpointId, ())>) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) {
        IdempotentSink::<T>::close(&*self.sink, &self.runtime);
    }
}

/// What an [`UpsertMap`] holds.
#[derive(Debug)]
pub struct UpsertState<T> {
    /// The latest value per id.
    pub entries: BTreeMap<String, T>,
    /// Every write, overwrites included.
    pub writes: u64,
    /// Writes that replaced an existing value under the same id (updates and replays).
    pub overwrites: u64,
}

/// An in-memory key-value destination for tests: an [`IdempotentSink`] that keeps the latest
/// value per id and counts writes. Clones share the map; like an external store, it outlives
/// the job's attempts.
///
/// # Checkpointing
/// Every upsert is "durable" (in memory) when it returns. After any failure and replay the map
/// holds, per id, the latest value, as [`IdempotentSink`] explains.
pub struct UpsertMap<T> {
    id: Arc<dyn Fn(&T) -> String + Send + Sync>,
    state: Arc<Mutex<UpsertState<T>>>,
}

impl<T> std::fmt::Debug for UpsertMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpsertMap").finish_non_exhaustive()
    }
}

impl<T> Clone for UpsertMap<T> {
    fn clone(&self) -> Self {
        UpsertMap {
            id: self.id.clone(),
            state: self.state.clone(),
        }
    }
}

impl<T: Clone> UpsertMap<T> {
    /// An empty map storing each record under `id(record)`.
    pub fn new(id: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        UpsertMap {
            id: Arc::new(id),
            state: Arc::new(Mutex::new(UpsertState {
                entries: BTreeMap::new(),
                writes: 0,
                overwrites: 0,
            })),
        }
    }

    /// The map's content and counters.
    pub fn state(&self) -> MutexGuard<'_, UpsertState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `id`.
    pub fn get(&self, id: &str) -> Option<T> {
        self.state().entries.get(id).cloned()
    }

    /// A copy of every (id, value).
    pub fn entries(&self) -> BTreeMap<String, T> {
        self.state().entries.clone()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether no id was written.
    pub fn is_empty(&self) -> bool {
        self.state().entries.is_empty()
    }
}

impl<T: Data> IdempotentSink<T> for UpsertMap<T> {
    fn id(&self, record: &T) -> String {
        (self.id)(record)
    }

    fn upsert(&self, batch: Vec<(String, T)>) -> Result<()> {
        let mut st = self.state();
        for (id, value) in batch {
            st.writes += 1;
            if st.entries.insert(id, value).is_some() {
                st.overwrites += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SinkContext {
        SinkContext {
            job: "test".into(),
            name: "out".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            attempt: 1,
            restored_checkpoint: None,
            checkpoint_timing: None,
            committed_output: Default::default(),
            cancellation: Default::default(),
            fail_points: crate::fail::FailPoints::new(),
        }
    }

    #[test]
    fn a_replayed_batch_leaves_each_id_once_with_the_latest_value() {
        let map = UpsertMap::new(|(k, _): &(String, u64)| k.clone());
        let sink = Idempotent::new(map.clone());
        let mut w = sink.create_writer(&ctx()).unwrap();
        let batch = |vals: &[(&str, u64)]| vals.iter().map(|(k, v)| Record::new((k.to_string(), *v))).collect();
        w.write(batch(&[("a", 1), ("b", 2)])).unwrap();
        assert_eq!(w.pre_commit(CheckpointId::new(1)).unwrap(), None);
        w.commit(Vec::new()).unwrap();
        w.write(batch(&[("a", 3), ("c", 4)])).unwrap();
        // Failure: the attempt restarts from checkpoint 1 and replays what followed it.
        drop(w);
        let mut w = sink.create_writer(&ctx()).unwrap();
        w.write(batch(&[("a", 3), ("c", 4), ("a", 5)])).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("a"), Some(("a".to_string(), 5)));
        assert_eq!(map.get("b"), Some(("b".to_string(), 2)));
        assert_eq!(map.get("c"), Some(("c".to_string(), 4)));
        let st = map.state();
        assert_eq!((st.writes, st.overwrites), (7, 4));
    }

    #[test]
    fn flush_runs_on_every_barrier() {
        struct Counting(Mutex<u32>);
        impl IdempotentSink<u64> for Counting {
            fn id(&self, record: &u64) -> String {
                record.to_string()
            }
            fn upsert(&self, _batch: Vec<(String, u64)>) -> Result<()> {
                Ok(())
            }
            fn flush(&self) -> Result<()> {
                *self.0.lock().unwrap() += 1;
                Ok(())
            }
        }
        let sink = Idempotent::new(Counting(Mutex::new(0)));
        let mut w = sink.create_writer(&ctx()).unwrap();
        w.write(vec![Record::new(1)]).unwrap();
        w.pre_commit(CheckpointId::new(1)).unwrap();
        w.pre_commit(CheckpointId::new(2)).unwrap();
        assert_eq!(*sink.inner().0.lock().unwrap(), 2);
    }
}
