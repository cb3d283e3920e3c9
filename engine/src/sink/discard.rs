//! A sink that drops every record: for benchmarks and for steps whose output is unwanted.

use super::{Sink, SinkContext, SinkWriter};
use crate::data::{Data, Record};
use crate::message::CheckpointId;
use crate::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Drops records, counting them.
#[derive(Debug, Clone, Default)]
pub struct DiscardSink {
    count: Arc<AtomicU64>,
}

impl DiscardSink {
    /// A new sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records received so far (by all clones).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl<T: Data> Sink<T> for DiscardSink {
    type Committable = ();

    fn create_writer(&self, _ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T, ()>>> {
        Ok(Box::new(DiscardWriter {
            count: self.count.clone(),
        }))
    }
}

struct DiscardWriter {
    count: Arc<AtomicU64>,
}

impl<T: Data> SinkWriter<T, ()> for DiscardWriter {
    fn write(&mut self, records: Vec<Record<T>>) -> Result<()> {
        self.count.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<Option<()>> {
        Ok(None)
    }
    fn commit(&mut self, _c: Vec<(CheckpointId, ())>) -> Result<()> {
        Ok(())
    }
}
