//! Where a fresh start begins: each start position resolved to a concrete offset per
//! partition when the reader is created, so a checkpoint taken before the first record is
//! read already stores a real offset (not "earliest" or "latest", which would move).
//!
//! A resolved start that can move (`Latest`, group offsets, a timestamp) is durable only once
//! a checkpoint holding it completed. Until then the reader hands out nothing, and the
//! resolved offsets are kept in the source ([`ResolvedStarts`]), so an attempt that restarts
//! in this process before the first checkpoint completed starts where the first attempt did
//! instead of resolving `Latest` again and skipping what was produced meanwhile.

use super::super::client::{kafka_error, REQUEST_TIMEOUT};
use super::split_id;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use weir_engine::connector::SplitId;
use weir_engine::connector::{Error, Result};

/// Where a fresh start (no checkpoint) begins reading each partition. A restored split always
/// continues at its checkpointed offset instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained record.
    Earliest,
    /// After the newest record at start.
    Latest,
    /// The first record with a timestamp at or after this one (ms since the Unix epoch);
    /// partitions without such a record start at their end.
    Timestamp(i64),
    /// The consumer group's committed offsets (the source's group id); partitions without one
    /// start at `fallback`. A committed offset outside the retained range is clamped into it.
    GroupOffsets {
        /// Where partitions without a committed offset start.
        fallback: Box<StartPosition>,
    },
}

impl StartPosition {
    /// The group's committed offsets, falling back to `fallback` where there is none.
    pub fn group_offsets_or(fallback: StartPosition) -> Self {
        StartPosition::GroupOffsets {
            fallback: Box::new(fallback),
        }
    }

    /// Whether resolving this position needs a consumer group id.
    pub(super) fn needs_group(&self) -> bool {
        match self {
            StartPosition::GroupOffsets { .. } => true,
            StartPosition::Earliest | StartPosition::Latest | StartPosition::Timestamp(_) => false,
        }
    }

    /// Whether resolving this position again later can give a later offset than now, so that
    /// records produced in between would be skipped (`Earliest` moves only by retention).
    pub(super) fn can_move(&self) -> bool {
        *self != StartPosition::Earliest
    }
}

/// The fresh starts this source resolved that no completed checkpoint holds yet, by split.
/// Shared by every reader of one source object (that is, of one job in this process).
#[derive(Debug, Clone, Default)]
pub(crate) struct ResolvedStarts(Arc<Mutex<HashMap<SplitId, Start>>>);

impl ResolvedStarts {
    /// The starts of `partitions` at `start`: those an earlier attempt resolved, the others
    /// resolved now and kept.
    pub(super) fn get_or_resolve(
        &self,
        consumer: &BaseConsumer,
        start: &StartPosition,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Start>> {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let missing: Vec<(String, i32)> = partitions
            .iter()
            .filter(|(t, p)| !known.contains_key(&split_id(t, *p)))
            .cloned()
            .collect();
        for ((t, p), s) in missing.iter().zip(resolve(consumer, start, &missing)?) {
            known.insert(split_id(t, *p), s);
        }
        Ok(partitions.iter().map(|(t, p)| known[&split_id(t, *p)]).collect())
    }

    /// A checkpoint holding the positions of `splits` completed: restores start there now.
    pub(super) fn forget<'a>(&self, splits: impl IntoIterator<Item = &'a str>) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !known.is_empty() {
            for s in splits {
                known.remove(s);
            }
        }
    }
}

/// The retained offset range `[low, high)` of a partition (with `read_committed`, `high` is the
/// last stable offset).
pub(super) fn offset_range(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64)> {
    consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(format!("reading the offsets of {topic}:{partition}"), e))
}

/// A fresh start of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Start {
    /// The first offset to read.
    pub(super) offset: i64,
    /// For a timestamp start: records before the first one at or after this timestamp are
    /// skipped (brokers may resolve a timestamp to the start of a batch, not the record).
    pub(super) skip_before: Option<i64>,
}

/// The concrete start of each of `partitions` for a fresh start at `start`.
pub(super) fn resolve(
    consumer: &BaseConsumer,
    start: &StartPosition,
    partitions: &[(String, i32)],
) -> Result<Vec<Start>> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let ranges = partitions
        .iter()
        .map(|(t, p)| offset_range(consumer, t, *p))
        .collect::<Result<Vec<_>>>()?;
    resolve_with(consumer, start, partitions, &ranges)
}

fn resolve_with(
    consumer: &BaseConsumer,
    start: &StartPosition,
    partitions: &[(String, i32)],
    ranges: &[(i64, i64)],
) -> Result<Vec<Start>> {
    let at = |offset: i64| Start {
        offset,
        skip_before: None,
    };
    match start {
        StartPosition::Earliest => Ok(ranges.iter().map(|r| at(r.0)).collect()),
        StartPosition::Latest => Ok(ranges.iter().map(|r| at(r.1)).collect()),
        StartPosition::Timestamp(ts) => {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in partitions {
                tpl.add_partition_offset(t, *p, Offset::Offset(*ts))
                    .map_err(|e| kafka_error("building an offset look-up", e))?;
            }
            let found = consumer
                .offsets_for_times(tpl, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(format!("looking up offsets for timestamp {ts}"), e))?;
            partitions
                .iter()
                .zip(ranges)
                .map(
                    |((t, p), (low, high))| match found.find_partition(t, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Ok(Start {
                            offset: o.clamp(*low, *high),
                            skip_before: Some(*ts),
                        }),
                        // No record at or after the timestamp: start at the end.
                        Some(Offset::End) | Some(Offset::Invalid) | None => Ok(at(*high)),
                        Some(other) => Err(Error::external(
                            true,
                            format!("offset look-up for timestamp {ts} on {t}:{p} returned {other:?}"),
                        )),
                    },
                )
                .collect()
        }
        StartPosition::GroupOffsets { fallback } => {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in partitions {
                tpl.add_partition(t, *p);
            }
            let committed = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error("reading the consumer group's committed offsets", e))?;
            let mut out = vec![None; partitions.len()];
            let mut missing = Vec::new();
            for (i, ((t, p), (low, high))) in partitions.iter().zip(ranges).enumerate() {
                match committed.find_partition(t, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => out[i] = Some(at(o.clamp(*low, *high))),
                    _ => missing.push(i),
                }
            }
            if !missing.is_empty() {
                let parts: Vec<(String, i32)> = missing.iter().map(|&i| partitions[i].clone()).collect();
                let rs: Vec<(i64, i64)> = missing.iter().map(|&i| ranges[i]).collect();
                let resolved = resolve_with(consumer, fallback, &parts, &rs)?;
                for (i, o) in missing.into_iter().zip(resolved) {
                    out[i] = Some(o);
                }
            }
            Ok(out.into_iter().map(|o| o.expect("every partition resolved")).collect())
        }
    }
}
