//! A sink that collects committed records in memory, for tests: it records every commit, so
//! tests can check that each record became visible exactly once.

use super::{Sink, SinkContext, SinkWriter};
use crate::data::{Data, Record};
use crate::message::CheckpointId;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the collect sink has committed, shared with the test that reads it. It plays the role
/// of an external system: it outlives job attempts within the process.
#[derive(Debug)]
pub struct Collected<T> {
    /// Committed records, in commit order.
    pub records: Vec<T>,
    /// Every commit that made records visible: (sink subtask, checkpoint, record count).
    pub commits: Vec<(usize, CheckpointId, usize)>,
    /// Commits of an already committed committable (ignored, as commit is idempotent).
    pub repeated_commits: usize,
    seen: BTreeSet<(usize, CheckpointId)>,
}

/// An in-memory exactly-once sink for tests.
#[derive(Debug)]
pub struct CollectSink<T> {
    state: Arc<Mutex<Collected<T>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink {
            state: self.state.clone(),
        }
    }
}

impl<T: Data> Default for CollectSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data> CollectSink<T> {
    /// An empty sink; clones share what it collects.
    pub fn new() -> Self {
        CollectSink {
            state: Arc::new(Mutex::new(Collected {
                records: Vec::new(),
                commits: Vec::new(),
                repeated_commits: 0,
                seen: BTreeSet::new(),
            })),
        }
    }

    /// What has been committed so far.
    pub fn collected(&self) -> MutexGuard<'_, Collected<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the committed records.
    pub fn records(&self) -> Vec<T> {
        self.collected().records.clone()
    }
}

/// Records pre-committed at one barrier (kept in the checkpoint: write-ahead).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectCommittable<T> {
    subtask: usize,
    records: Vec<T>,
}

impl<T: Data> Sink<T> for CollectSink<T> {
    type Committable = CollectCommittable<T>;

    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T, Self::Committable>>> {
        Ok(Box::new(CollectWriter {
            state: self.state.clone(),
            subtask: ctx.subtask,
            buffer: Vec::new(),
        }))
    }
}

struct CollectWriter<T> {
    state: Arc<Mutex<Collected<T>>>,
    subtask: usize,
    buffer: Vec<T>,
}

impl<T: Data> SinkWriter<T, CollectCommittable<T>> for CollectWriter<T> {
    fn write(&mut self, records: Vec<Record<T>>) -> Result<()> {
        self.buffer.extend(records.into_iter().map(|r| r.value));
        Ok(())
    }

    fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<Option<CollectCommittable<T>>> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        Ok(Some(CollectCommittable {
            subtask: self.subtask,
            records: std::mem::take(&mut self.buffer),
        }))
    }

    fn commit(&mut self, committables: Vec<(CheckpointId, CollectCommittable<T>)>) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (id, c) in committables {
            if !st.seen.insert((c.subtask, id)) {
                st.repeated_commits += 1;
                continue;
            }
            st.commits.push((c.subtask, id, c.records.len()));
            st.records.extend(c.records);
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        self.buffer.clear();
        Ok(())
    }
}
