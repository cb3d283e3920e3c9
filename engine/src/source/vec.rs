//! A source over an in-memory vector: for tests and small examples.

use super::indexed::IndexedSplits;
use super::{AssignedSplit, ReadStatus, Source, SourceReader, SplitId, SplitPosition, SubtaskInfo};
use crate::data::{Data, Record, Timestamp};
use crate::Result;
use std::sync::Arc;

/// A bounded source of the given values, split into `splits` interleaved slices (element `i`
/// belongs to split `i % splits`), so its output is the same at every parallelism.
#[derive(Debug, Clone)]
pub struct VecSource<T> {
    items: Arc<Vec<(T, Option<Timestamp>)>>,
    splits: usize,
}

impl<T: Data> VecSource<T> {
    /// One split over `items`, without timestamps.
    pub fn new(items: Vec<T>) -> Self {
        VecSource {
            items: Arc::new(items.into_iter().map(|v| (v, None)).collect()),
            splits: 1,
        }
    }

    /// One split over `(value, event time)` pairs.
    pub fn with_timestamps(items: Vec<(T, Timestamp)>) -> Self {
        VecSource {
            items: Arc::new(items.into_iter().map(|(v, t)| (v, Some(t))).collect()),
            splits: 1,
        }
    }

    /// Divides the values into `n` interleaved splits (at least 1).
    pub fn splits(mut self, n: usize) -> Self {
        self.splits = n.max(1);
        self
    }
}

impl<T: Data + Sync> Source for VecSource<T> {
    type Out = T;

    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok((0..self.splits).map(|i| format!("vec-{i}")).collect())
    }

    fn create_reader(&self, splits: Vec<AssignedSplit>, _subtask: SubtaskInfo) -> Result<Box<dyn SourceReader<T>>> {
        let splits = splits
            .into_iter()
            .map(|AssignedSplit { id, offset: off, .. }| {
                let index: usize = id
                    .strip_prefix("vec-")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| crate::Error::config(format!("unknown split {id} for a vector source")))?;
                Ok((id, index as u64, off.unwrap_or(0)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(VecReader {
            items: self.items.clone(),
            splits: IndexedSplits::new(splits, self.splits as u64),
        }))
    }
}

struct VecReader<T> {
    items: Arc<Vec<(T, Option<Timestamp>)>>,
    splits: IndexedSplits,
}

impl<T: Data + Sync> SourceReader<T> for VecReader<T> {
    fn poll(&mut self, out: &mut Vec<Record<T>>, max: usize) -> Result<ReadStatus> {
        let items = &self.items;
        Ok(self.splits.poll(max, Some(items.len() as u64), |i| {
            let (v, t) = &items[i as usize];
            out.push(Record {
                value: v.clone(),
                timestamp: *t,
            });
        }))
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits.positions()
    }
}
