//! A Nexmark source: the online-auction event stream of the Nexmark benchmark (persons,
//! auctions and bids in the proportions 1 : 3 : 46), generated deterministically.
//!
//! Event `n` is a pure function of the seed and `n` ([`NexmarkGenerator::event`]), so the
//! source splits like [`GeneratorSource`](super::GeneratorSource): split `k` of `s` produces
//! the events `k, k + s, k + 2s, …` and its offset counts the events it has read. Each record
//! carries the event's `date_time` as its timestamp.
//!
//! # Checkpointing
//! A split's position is the number of its events handed out; a reader created at that
//! position after a crash produces exactly the events not yet handed out, identical to the
//! first time. (`tests/nexmark.rs` stops a windowed query after a checkpoint and resumes it.)
//!
//! ```no_run
//! use weir_engine::prelude::*;
//! use weir_engine::source::nexmark::{Event, NexmarkConfig, NexmarkSource};
//!
//! let p = Pipeline::new("bids").parallelism(2);
//! p.source("nexmark", NexmarkSource::new(NexmarkConfig::with_seed(7)).bounded(1_000_000).splits(2))
//!     .flat_map("bids", Event::into_bid)
//!     .sink("out", DiscardSink::new());
//! p.run().unwrap();
//! ```

mod config;
mod generator;
mod model;
mod random;

pub use config::*;
pub use generator::NexmarkGenerator;
pub use model::{Auction, Bid, Event, EventKind, Person};

use super::indexed::IndexedSplits;
use super::{AssignedSplit, ReadStatus, Source, SourceReader, SplitId, SplitPosition, SubtaskInfo};
use crate::data::Record;
use crate::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// The Nexmark event stream as a source, bounded or unbounded, in any number of splits.
#[derive(Debug, Clone)]
pub struct NexmarkSource {
    config: NexmarkConfig,
    count: Option<u64>,
    splits: usize,
}

impl NexmarkSource {
    /// An unbounded stream in one split.
    pub fn new(config: NexmarkConfig) -> Self {
        NexmarkSource {
            config,
            count: None,
            splits: 1,
        }
    }

    /// Stops after `count` events in total.
    pub fn bounded(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Divides the stream into `n` splits (at least 1); give it the source's parallelism.
    pub fn splits(mut self, n: usize) -> Self {
        self.splits = n.max(1);
        self
    }

    fn split_name(&self, k: usize) -> String {
        format!("nexmark-{k}-of-{}", self.splits)
    }
}

impl Source for NexmarkSource {
    type Out = Event;

    fn splits(&self) -> Result<Vec<SplitId>> {
        self.config.validate().map_err(Error::config)?;
        Ok((0..self.splits).map(|k| self.split_name(k)).collect())
    }

    fn create_reader(&self, splits: Vec<AssignedSplit>, _subtask: SubtaskInfo) -> Result<Box<dyn SourceReader<Event>>> {
        self.config.validate().map_err(Error::config)?;
        let mut owned = Vec::with_capacity(splits.len());
        for AssignedSplit { id, offset, .. } in splits {
            let k = (0..self.splits)
                .find(|&k| self.split_name(k) == id)
                .ok_or_else(|| Error::config(format!("split {id} does not belong to this Nexmark source")))?;
            owned.push((id, k as u64, offset.unwrap_or(0)));
        }
        Ok(Box::new(NexmarkReader {
            generator: Arc::new(NexmarkGenerator::new(self.config.clone())),
            count: self.count,
            splits: IndexedSplits::new(owned, self.splits as u64),
        }))
    }
}

struct NexmarkReader {
    generator: Arc<NexmarkGenerator>,
    count: Option<u64>,
    splits: IndexedSplits,
}

impl SourceReader<Event> for NexmarkReader {
    fn poll(&mut self, out: &mut Vec<Record<Event>>, max: usize) -> Result<ReadStatus> {
        if self.splits.len() == 0 {
            return Ok(if self.count.is_some() {
                ReadStatus::Finished
            } else {
                ReadStatus::Pending(Duration::from_millis(100))
            });
        }
        let generator = &self.generator;
        Ok(self.splits.poll(max, self.count, |i| {
            let event = generator.event(i);
            let ts = event.date_time();
            out.push(Record::with_timestamp(event, ts));
        }))
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits.positions()
    }
}
