//! A deterministic generator source: record `i` is a pure function of `i`, so replay after a
//! failure reproduces exactly the same records, at any parallelism.

use super::indexed::IndexedSplits;
use super::{AssignedSplit, ReadStatus, Source, SourceReader, SplitId, SplitPosition, SubtaskInfo};
use crate::data::{Data, Record, Timestamp};
use crate::{Error, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Mixes a seed and an index into a well-distributed 64-bit value (SplitMix64). Use it inside
/// a generator function to derive seeded pseudo-random fields from the record index.
pub fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type GenFn<T> = Arc<dyn Fn(u64) -> T + Send + Sync>;
type TsFn<T> = Arc<dyn Fn(u64, &T) -> Timestamp + Send + Sync>;

/// Generates record `i = 0, 1, 2, …` with a user function; bounded or unbounded, optionally
/// rate-limited. Split `k` of `n` produces the indices `k, k + n, k + 2n, …`, or with
/// [`contiguous`](Self::contiguous) (bounded only) a contiguous range of them, as Flink's data
/// generator does; a split's offset is how many of its indices were read.
pub struct GeneratorSource<T> {
    make: GenFn<T>,
    timestamp: Option<TsFn<T>>,
    count: Option<u64>,
    splits: usize,
    rate: Option<f64>,
    contiguous: bool,
}

impl<T> std::fmt::Debug for GeneratorSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratorSource")
            .field("count", &self.count)
            .field("splits", &self.splits)
            .field("rate", &self.rate)
            .finish()
    }
}

impl<T: Data> GeneratorSource<T> {
    /// An unbounded generator with one split.
    pub fn new(make: impl Fn(u64) -> T + Send + Sync + 'static) -> Self {
        GeneratorSource {
            make: Arc::new(make),
            timestamp: None,
            count: None,
            splits: 1,
            rate: None,
            contiguous: false,
        }
    }

    /// Each split owns a contiguous range of indices: with `count` records in `n` splits,
    /// split `k` produces `k·len .. min((k+1)·len, count)` where `len = ceil(count / n)` (Flink's
    /// data generator). The source must be [`bounded`](Self::bounded). Its split ids differ
    /// from the strided ones (`genc-k-of-n`), so a checkpoint of one layout never restores
    /// into the other.
    pub fn contiguous(mut self) -> Self {
        self.contiguous = true;
        self
    }

    fn split_prefix(&self) -> &'static str {
        if self.contiguous {
            "genc-"
        } else {
            "gen-"
        }
    }

    /// Stops after `count` records in total.
    pub fn bounded(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Divides the sequence into `n` splits (at least 1).
    pub fn splits(mut self, n: usize) -> Self {
        self.splits = n.max(1);
        self
    }

    /// Emits at most `events_per_second` records per second in total.
    pub fn rate_per_second(mut self, events_per_second: f64) -> Self {
        self.rate = Some(events_per_second);
        self
    }

    /// Sets each record's event time from its index and value.
    pub fn with_timestamps(mut self, f: impl Fn(u64, &T) -> Timestamp + Send + Sync + 'static) -> Self {
        self.timestamp = Some(Arc::new(f));
        self
    }
}

impl<T: Data> Source for GeneratorSource<T> {
    type Out = T;

    fn splits(&self) -> Result<Vec<SplitId>> {
        if let Some(r) = self.rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err(Error::config(format!(
                    "generator rate must be a positive number, got {r}"
                )));
            }
        }
        if self.contiguous && self.count.is_none() {
            return Err(Error::config(
                "a generator with contiguous splits must be bounded (GeneratorSource::bounded)",
            ));
        }
        Ok((0..self.splits)
            .map(|k| format!("{}{k}-of-{}", self.split_prefix(), self.splits))
            .collect())
    }

    fn create_reader(&self, splits: Vec<AssignedSplit>, _subtask: SubtaskInfo) -> Result<Box<dyn SourceReader<T>>> {
        let mut parsed = Vec::with_capacity(splits.len());
        for AssignedSplit { id, offset: off, .. } in splits {
            let k = id
                .strip_prefix(self.split_prefix())
                .and_then(|s| s.split("-of-").next())
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|_| id.ends_with(&format!("-of-{}", self.splits)))
                .ok_or_else(|| Error::config(format!("split {id} does not belong to this generator")))?;
            parsed.push((id, k, off.unwrap_or(0)));
        }
        let per_split_rate = self.rate.map(|r| r / self.splits as f64);
        Ok(Box::new(GeneratorReader {
            make: self.make.clone(),
            timestamp: self.timestamp.clone(),
            count: self.count,
            start: Instant::now(),
            start_read: parsed.iter().map(|p| p.2).sum(),
            rate: per_split_rate.map(|r| r * parsed.len() as f64),
            splits: match (self.contiguous, self.count) {
                (true, Some(count)) => IndexedSplits::contiguous(parsed, count.div_ceil(self.splits as u64)),
                _ => IndexedSplits::new(parsed, self.splits as u64),
            },
        }))
    }
}

struct GeneratorReader<T> {
    make: GenFn<T>,
    timestamp: Option<TsFn<T>>,
    count: Option<u64>,
    splits: IndexedSplits,
    rate: Option<f64>,
    start: Instant,
    start_read: u64,
}

impl<T: Data> SourceReader<T> for GeneratorReader<T> {
    fn poll(&mut self, out: &mut Vec<Record<T>>, max: usize) -> Result<ReadStatus> {
        if self.splits.len() == 0 {
            return Ok(if self.count.is_some() {
                ReadStatus::Finished
            } else {
                ReadStatus::Pending(Duration::from_millis(100))
            });
        }
        let mut budget = max;
        if let Some(rate) = self.rate {
            let read = self.splits.read() - self.start_read;
            let allowed = (self.start.elapsed().as_secs_f64() * rate) as u64;
            if read >= allowed {
                let wait = (read + 1) as f64 / rate - self.start.elapsed().as_secs_f64();
                return Ok(ReadStatus::Pending(Duration::from_secs_f64(wait.clamp(0.0005, 0.05))));
            }
            budget = budget.min((allowed - read) as usize);
        }
        let (make, timestamp) = (&self.make, &self.timestamp);
        Ok(self.splits.poll(budget, self.count, |i| {
            let value = make(i);
            let timestamp = timestamp.as_ref().map(|f| f(i, &value));
            out.push(Record { value, timestamp });
        }))
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits.positions()
    }
}
