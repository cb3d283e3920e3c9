//! The Kafka source: replayable reading of Kafka topics.
//!
//! # Splits and assignment
//! Every partition of every configured topic is a split with id `topic:partition` (`:` cannot
//! occur in a topic name). The engine assigns them to subtasks; each subtask reads its
//! partitions with one consumer using manual assignment: no consumer-group membership, no
//! rebalancing. Partitions added while the job runs are found by periodic discovery
//! ([`KafkaSource::discovery_interval`]).
//!
//! # What holds after a crash
//! A split's position is the offset of the next record to hand out; checkpoints store it and a
//! restore continues exactly there, so the records after the checkpoint are read again and
//! nothing is lost or counted twice in state. A fresh start resolves its [`StartPosition`] to
//! concrete offsets when the reader is created, so even a checkpoint taken before the first
//! record stores real offsets. When that position can move (anything but `Earliest`), the
//! reader hands out nothing until a checkpoint holding the resolved offsets has completed
//! (the engine takes the first checkpoint of a fresh start at once), and an attempt restarted
//! in the same process before that reuses them: a failure before the first checkpoint does
//! not resolve `Latest` again and skip what was produced since the job started. A partition
//! that the restored checkpoint does not hold (a topic added to the source since, a partition
//! created since) is read from its earliest offset, as partitions discovered while running
//! are. Committing offsets to a consumer group
//! ([`KafkaSource::commit_offsets_on_checkpoint`]) is for lag monitoring only: restores never
//! read them.
//!
//! # Isolation
//! `isolation.level=read_committed` by default: records of open transactions are held back
//! until committed, those of aborted ones are skipped (by brokers that implement it).

mod bad_record;
mod discovery;
mod lag;
mod reader;
mod start;
mod watermark;

pub use bad_record::{
    BadRecordPolicy, SourceCounters, DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_TOPIC_HEADER,
};
pub use start::StartPosition;
pub use watermark::WatermarkSettings;

use super::client::{metadata_consumer, partition_count, KafkaConnection};
use super::format::KafkaDeserializer;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_engine::connector::{AssignedSplit, Source, SourceReader, SplitId, SubtaskInfo};
use weir_engine::connector::{Data, Timestamp};
use weir_engine::connector::{Error, Result};

/// How often a running source looks for new partitions, unless configured otherwise.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

/// The consumer group id set when none is configured: librdkafka needs one for manual
/// assignment; nothing is committed to it and the consumer never joins it.
const DEFAULT_GROUP_ID: &str = "weir-source";

type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// The split id of a partition.
pub(crate) fn split_id(topic: &str, partition: i32) -> SplitId {
    format!("{topic}:{partition}")
}

/// The topic and partition of a split id.
pub(crate) fn parse_split_id(id: &str) -> Result<(String, i32)> {
    id.rsplit_once(':')
        .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)))
        .filter(|(t, p)| !t.is_empty() && *p >= 0)
        .ok_or_else(|| {
            Error::config(format!(
                "split {id} is not a Kafka partition (expected topic:partition)"
            ))
        })
}

/// Everything a reader needs, shared with it.
pub(crate) struct SourceSettings<T> {
    pub(crate) conn: KafkaConnection,
    pub(crate) topics: Vec<String>,
    pub(crate) format: Arc<dyn KafkaDeserializer<T>>,
    pub(crate) start: StartPosition,
    pub(crate) group_id: Option<String>,
    pub(crate) commit_offsets: bool,
    pub(crate) read_committed: bool,
    pub(crate) bounded: bool,
    pub(crate) watermarks: Option<WatermarkSettings>,
    pub(crate) timestamp: Option<TimestampFn<T>>,
    pub(crate) discovery: Option<Duration>,
    pub(crate) bad_records: BadRecordPolicy,
    pub(crate) counters: Arc<SourceCounters>,
    /// Fresh starts resolved but not yet held by a completed checkpoint.
    pub(crate) resolved: start::ResolvedStarts,
}

impl<T> Clone for SourceSettings<T> {
    fn clone(&self) -> Self {
        SourceSettings {
            conn: self.conn.clone(),
            topics: self.topics.clone(),
            format: self.format.clone(),
            start: self.start.clone(),
            group_id: self.group_id.clone(),
            commit_offsets: self.commit_offsets,
            read_committed: self.read_committed,
            bounded: self.bounded,
            watermarks: self.watermarks,
            timestamp: self.timestamp.clone(),
            discovery: self.discovery,
            bad_records: self.bad_records.clone(),
            counters: self.counters.clone(),
            resolved: self.resolved.clone(),
        }
    }
}

/// Reads records of type `T` from Kafka topics.
///
/// ```no_run
/// use weir_connectors::kafka::{Json, KafkaSource, StartPosition};
/// use std::time::Duration;
///
/// let source = KafkaSource::<(u64, i64)>::new("localhost:9092", ["payments"], Json::new())
///     .start_position(StartPosition::Earliest)
///     .watermarks(Duration::from_secs(2), Some(Duration::from_secs(30)));
/// ```
pub struct KafkaSource<T> {
    settings: SourceSettings<T>,
    /// The splits listed by the latest `splits()` call: readers tell partitions discovered
    /// later from these.
    listed: Mutex<Arc<BTreeSet<SplitId>>>,
}

impl<T> std::fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        f.debug_struct("KafkaSource")
            .field("brokers", &s.conn.brokers)
            .field("topics", &s.topics)
            .field("start", &s.start)
            .field("bounded", &s.bounded)
            .field("bad_records", &s.bad_records)
            .finish_non_exhaustive()
    }
}

impl<T: Data> KafkaSource<T> {
    /// Reads `topics` (every partition of each), decoding values with `format`. Defaults:
    /// earliest offsets on a fresh start, `read_committed`, unbounded, timestamps from the
    /// Kafka records, no watermarks, discovery every 30 s, bad records fail the job.
    pub fn new(
        conn: impl Into<KafkaConnection>,
        topics: impl IntoIterator<Item = impl Into<String>>,
        format: impl KafkaDeserializer<T>,
    ) -> Self {
        KafkaSource {
            settings: SourceSettings {
                conn: conn.into(),
                topics: topics.into_iter().map(Into::into).collect(),
                format: Arc::new(format),
                start: StartPosition::Earliest,
                group_id: None,
                commit_offsets: false,
                read_committed: true,
                bounded: false,
                watermarks: None,
                timestamp: None,
                discovery: Some(DEFAULT_DISCOVERY_INTERVAL),
                bad_records: BadRecordPolicy::Fail,
                counters: Arc::new(SourceCounters::default()),
                resolved: start::ResolvedStarts::default(),
            },
            listed: Mutex::new(Arc::new(BTreeSet::new())),
        }
    }

    /// Where a fresh start (no checkpoint) begins (default: earliest).
    pub fn start_position(mut self, start: StartPosition) -> Self {
        self.settings.start = start;
        self
    }

    /// The consumer group for [`StartPosition::GroupOffsets`] and
    /// [`commit_offsets_on_checkpoint`](Self::commit_offsets_on_checkpoint). The source never
    /// joins the group (partitions are assigned by Weir).
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.settings.group_id = Some(group.into());
        self
    }

    /// Commits each completed checkpoint's positions to the consumer group, for lag
    /// monitoring only (restores use the checkpoint, never these). Requires a group id.
    pub fn commit_offsets_on_checkpoint(mut self) -> Self {
        self.settings.commit_offsets = true;
        self
    }

    /// Also reads records of open and aborted transactions (`read_uncommitted`).
    pub fn read_uncommitted(mut self) -> Self {
        self.settings.read_committed = false;
        self
    }

    /// Reads each partition until the reader reaches its end (the end-of-partition event:
    /// records produced meanwhile are read until the reader catches up; under
    /// `read_committed` an open transaction at the end is not waited for), then finishes.
    /// Partitions discovered later are not read in this mode.
    pub fn bounded(mut self) -> Self {
        self.settings.bounded = true;
        self
    }

    /// Tracks a watermark per partition: its largest timestamp minus `out_of_orderness` minus
    /// 1 ms; the reader reports the minimum over partitions not idle. A partition without
    /// records for `idleness` does not hold the watermark back (with `None`, an empty
    /// partition holds it back until it has records).
    pub fn watermarks(mut self, out_of_orderness: Duration, idleness: Option<Duration>) -> Self {
        self.settings.watermarks = Some(WatermarkSettings {
            out_of_orderness,
            idleness,
        });
        self
    }

    /// Takes each record's event time from its value instead of the Kafka record timestamp.
    pub fn timestamps(mut self, f: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        self.settings.timestamp = Some(Arc::new(f));
        self
    }

    /// How often to look for new partitions (`None`: never). Default: 30 s.
    pub fn discovery_interval(mut self, interval: Option<Duration>) -> Self {
        self.settings.discovery = interval;
        self
    }

    /// What to do with records the format rejects (default: fail the job).
    pub fn bad_records(mut self, policy: BadRecordPolicy) -> Self {
        self.settings.bad_records = policy;
        self
    }

    /// An extra librdkafka consumer property (security settings, tuning). The properties the
    /// source's guarantees depend on (`enable.auto.commit`, `isolation.level`, ...) are refused.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.conn.properties.insert(key.into(), value.into());
        self
    }

    /// Counts of skipped and dead-lettered records, over every reader and attempt.
    pub fn counters(&self) -> Arc<SourceCounters> {
        self.settings.counters.clone()
    }

    fn validate(&self) -> Result<()> {
        let s = &self.settings;
        s.conn.validate()?;
        if s.topics.is_empty() {
            return Err(Error::config("Kafka source: no topics to read"));
        }
        for t in &s.topics {
            if t.trim().is_empty() {
                return Err(Error::config("Kafka source: a topic name is empty"));
            }
            if t.contains(':') {
                return Err(Error::config(format!(
                    "Kafka source: {t:?} is not a valid topic name (':' is not allowed)"
                )));
            }
        }
        if s.group_id.as_deref().is_some_and(|g| g.trim().is_empty()) {
            return Err(Error::config("Kafka source: the group id is empty"));
        }
        if s.start.needs_group() && s.group_id.is_none() {
            return Err(Error::config(
                "Kafka source: StartPosition::GroupOffsets needs a group id (KafkaSource::group_id)",
            ));
        }
        if let StartPosition::GroupOffsets { fallback } = &s.start {
            if fallback.needs_group() {
                return Err(Error::config(
                    "Kafka source: the fallback of StartPosition::GroupOffsets cannot be GroupOffsets",
                ));
            }
        }
        if s.commit_offsets && s.group_id.is_none() {
            return Err(Error::config(
                "Kafka source: committing offsets on checkpoints needs a group id (KafkaSource::group_id)",
            ));
        }
        if let BadRecordPolicy::DeadLetter { topic } = &s.bad_records {
            if topic.trim().is_empty() {
                return Err(Error::config("Kafka source: the dead-letter topic name is empty"));
            }
            if s.topics.contains(topic) {
                return Err(Error::config(format!(
                    "Kafka source: the dead-letter topic {topic} is also an input topic"
                )));
            }
        }
        Ok(())
    }
}

impl<T: Data> Source for KafkaSource<T> {
    type Out = T;

    fn splits(&self) -> Result<Vec<SplitId>> {
        self.validate()?;
        let consumer = metadata_consumer(&self.settings.conn)?;
        let mut splits = Vec::new();
        let mut seen = BTreeSet::new();
        for topic in &self.settings.topics {
            if !seen.insert(topic.as_str()) {
                continue;
            }
            let n = partition_count(&consumer, topic)?;
            splits.extend((0..n).map(|p| split_id(topic, p)));
        }
        if let BadRecordPolicy::DeadLetter { topic } = &self.settings.bad_records {
            partition_count(&consumer, topic)
                .map_err(|e| e.context(format!("Kafka source: the dead-letter topic {topic}")))?;
        }
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(splits.iter().cloned().collect());
        Ok(splits)
    }

    fn create_reader(&self, splits: Vec<AssignedSplit>, subtask: SubtaskInfo) -> Result<Box<dyn SourceReader<T>>> {
        let listed = self.listed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Box::new(reader::KafkaReader::open(
            self.settings.clone(),
            splits,
            subtask,
            listed,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ids_round_trip() {
        assert_eq!(
            parse_split_id(&split_id("pay.ments-1", 12)).unwrap(),
            ("pay.ments-1".to_string(), 12)
        );
        assert!(parse_split_id("gen-0-of-4").is_err());
        assert!(parse_split_id(":3").is_err());
    }
}
