//! One subtask's reader: a consumer with manually assigned partitions.

use super::super::client::{kafka_error, KafkaConnection};
use super::super::format::KafkaMessage;
use super::bad_record::BadRecords;
use super::discovery::Discovery;
use super::start::{offset_range, resolve};
use super::watermark::PartitionWatermarks;
use super::{parse_split_id, split_id, SourceSettings, DEFAULT_GROUP_ID};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_engine::data::{Data, Record};
use weir_engine::source::{ReadStatus, SourceReader, SourceWatermark, SplitId, SplitPosition, SubtaskInfo};
use weir_engine::{Error, Result};

/// How long one poll waits for a record when none is buffered.
const POLL_WAIT: Duration = Duration::from_millis(20);

/// One assigned partition.
struct Partition {
    split: SplitId,
    topic: String,
    partition: i32,
    /// Offset of the next record to hand out: the split's position.
    next: i64,
    /// Bounded reading: the offset at which the partition ends.
    stop: Option<i64>,
    /// Bounded reading reached `stop`.
    done: bool,
}

pub(super) struct KafkaReader<T> {
    consumer: BaseConsumer,
    state: ReadState<T>,
}

/// Everything but the consumer (so a message borrowed from the consumer can update it).
struct ReadState<T> {
    settings: SourceSettings<T>,
    partitions: Vec<Partition>,
    /// topic → partition number → index in `partitions`.
    index: HashMap<String, HashMap<i32, usize>>,
    watermarks: Option<PartitionWatermarks>,
    bad: BadRecords,
    discovery: Option<Discovery>,
}

/// The consumer of one reader: manual assignment only, nothing committed automatically.
fn consumer(settings: &SourceSettings<impl Sized>) -> Result<BaseConsumer> {
    let conn: &KafkaConnection = &settings.conn;
    let isolation = if settings.read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let group = settings.group_id.as_deref().unwrap_or(DEFAULT_GROUP_ID);
    conn.client_config(
        &[("group.id", group)],
        &[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", isolation),
            // Every start offset is concrete: one out of range means records were deleted
            // (retention) and silently jumping would lose them.
            ("auto.offset.reset", "error"),
        ],
    )?
    .create()
    .map_err(|e| kafka_error("creating the Kafka source consumer", e))
}

impl<T: Data> KafkaReader<T> {
    pub(super) fn open(
        settings: SourceSettings<T>,
        splits: Vec<(SplitId, Option<u64>)>,
        subtask: SubtaskInfo,
        listed: Arc<BTreeSet<SplitId>>,
    ) -> Result<Self> {
        let consumer = consumer(&settings)?;
        let parsed = splits
            .iter()
            .map(|(id, _)| parse_split_id(id))
            .collect::<Result<Vec<_>>>()?;
        let fresh: Vec<(String, i32)> = parsed
            .iter()
            .zip(&splits)
            .filter(|(_, (_, off))| off.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut fresh_offsets = resolve(&consumer, &settings.start, &fresh)?.into_iter();
        let bad = BadRecords::new(settings.bad_records.clone(), settings.conn.clone(), settings.counters.clone());
        let discovery = match settings.discovery {
            Some(interval) if !settings.bounded => Some(Discovery::new(
                interval,
                settings.topics.clone(),
                listed,
                subtask,
            )),
            _ => None,
        };
        let mut state = ReadState {
            watermarks: settings.watermarks.map(PartitionWatermarks::new),
            settings,
            partitions: Vec::new(),
            index: HashMap::new(),
            bad,
            discovery,
        };
        let mut assign = Vec::new();
        for ((topic, partition), (id, restored)) in parsed.into_iter().zip(splits) {
            let next = match restored {
                Some(o) => i64::try_from(o)
                    .map_err(|_| Error::checkpoint(format!("restored offset {o} of split {id} is out of range")))?,
                None => fresh_offsets.next().expect("one resolved offset per fresh split"),
            };
            assign.push(state.add(&consumer, topic, partition, next)?);
        }
        state.assign(&consumer, assign)?;
        Ok(KafkaReader { consumer, state })
    }
}

impl<T: Data> ReadState<T> {

    /// Tracks a partition starting at `next`; returns its index.
    fn add(&mut self, consumer: &BaseConsumer, topic: String, partition: i32, next: i64) -> Result<usize> {
        let stop = if self.settings.bounded {
            Some(offset_range(consumer, &topic, partition)?.1)
        } else {
            None
        };
        let i = self.partitions.len();
        self.index.entry(topic.clone()).or_default().insert(partition, i);
        self.partitions.push(Partition {
            split: split_id(&topic, partition),
            topic,
            partition,
            next,
            stop,
            done: false,
        });
        if let Some(w) = &mut self.watermarks {
            w.add_partition(Instant::now());
        }
        Ok(i)
    }

    /// Starts fetching the partitions `indices` at their positions (those already at their
    /// stop offset are finished at once and not fetched).
    fn assign(&mut self, consumer: &BaseConsumer, indices: Vec<usize>) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for i in indices {
            let p = &self.partitions[i];
            if p.stop.is_some_and(|s| p.next >= s) {
                self.finish(consumer, i);
                continue;
            }
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))
                .map_err(|e| kafka_error("assigning Kafka partitions", e))?;
        }
        if tpl.count() > 0 {
            consumer
                .incremental_assign(&tpl)
                .map_err(|e| kafka_error("assigning Kafka partitions", e))?;
        }
        Ok(())
    }

    /// Partition `i` reached its stop offset: every record before it was handed out.
    fn finish(&mut self, consumer: &BaseConsumer, i: usize) {
        let p = &mut self.partitions[i];
        if p.done {
            return;
        }
        p.done = true;
        if let Some(stop) = p.stop {
            // Offsets up to `stop` not handed out are transaction markers (or aborted records).
            p.next = p.next.max(stop);
        }
        if let Some(w) = &mut self.watermarks {
            w.finish(i);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.topic, p.partition);
        if let Err(e) = consumer.pause(&tpl) {
            tracing::debug!(split = %p.split, error = %e, "pausing a finished Kafka partition");
        }
    }

    fn lookup(&self, topic: &str, partition: i32) -> Option<usize> {
        self.index.get(topic)?.get(&partition).copied()
    }

    /// Hands out message `m` (or applies the bad-record policy); true if a record was added.
    fn on_message(&mut self, consumer: &BaseConsumer, m: &BorrowedMessage<'_>, out: &mut Vec<Record<T>>) -> Result<bool> {
        let Some(i) = self.lookup(m.topic(), m.partition()) else {
            return Ok(false);
        };
        let offset = m.offset();
        let p = &mut self.partitions[i];
        if p.done || offset < p.next {
            return Ok(false);
        }
        if p.stop.is_some_and(|s| offset >= s) {
            self.finish(consumer, i);
            return Ok(false);
        }
        let message = KafkaMessage {
            topic: m.topic(),
            partition: m.partition(),
            offset,
            key: m.key(),
            payload: m.payload(),
            timestamp: m.timestamp().to_millis(),
        };
        let added = match self.settings.format.deserialize(&message) {
            Ok(value) => {
                let timestamp = match &self.settings.timestamp {
                    Some(f) => Some(f(&value)),
                    None => message.timestamp,
                };
                if let Some(w) = &mut self.watermarks {
                    w.on_record(i, timestamp, Instant::now());
                }
                out.push(Record { value, timestamp });
                true
            }
            Err(reason) => {
                self.bad.handle(&message, &reason)?;
                if let Some(w) = &mut self.watermarks {
                    w.on_record(i, None, Instant::now());
                }
                false
            }
        };
        let p = &mut self.partitions[i];
        p.next = offset + 1;
        if p.stop.is_some_and(|s| p.next >= s) {
            self.finish(consumer, i);
        }
        Ok(added)
    }

    /// After an end-of-partition event: finishes every partition whose consumer position
    /// reached its stop offset (past trailing transaction markers, which are never handed out).
    fn check_ends(&mut self, consumer: &BaseConsumer) -> Result<()> {
        if !self.settings.bounded {
            return Ok(());
        }
        let positions = consumer
            .position()
            .map_err(|e| kafka_error("reading the Kafka consumer's positions", e))?;
        for e in positions.elements() {
            let Some(i) = self.lookup(e.topic(), e.partition()) else {
                continue;
            };
            let p = &self.partitions[i];
            if let (Offset::Offset(pos), Some(stop)) = (e.offset(), p.stop) {
                if !p.done && pos >= stop {
                    self.finish(consumer, i);
                }
            }
        }
        Ok(())
    }

    fn discover(&mut self, consumer: &BaseConsumer) -> Result<()> {
        let Some(d) = &mut self.discovery else {
            return Ok(());
        };
        let new = d.poll(consumer, Instant::now());
        if new.is_empty() {
            return Ok(());
        }
        let mut indices = Vec::new();
        for (topic, partition) in new {
            let earliest = offset_range(consumer, &topic, partition)?.0;
            indices.push(self.add(consumer, topic, partition, earliest)?);
        }
        self.assign(consumer, indices)
    }

    fn all_done(&self) -> bool {
        self.partitions.iter().all(|p| p.done)
    }
}

/// A consumer error: fatal ones fail the attempt, transient ones (librdkafka retries them
/// itself) are logged.
fn consumer_error(e: KafkaError) -> Option<Error> {
    match e {
        KafkaError::MessageConsumptionFatal(code) => {
            Some(Error::external(false, format!("Kafka source consumer failed: {code}")))
        }
        KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
            Some(Error::external(
                false,
                "Kafka source: a partition's position is out of its retained range (records deleted \
                 by retention before they were read?)",
            ))
        }
        KafkaError::MessageConsumption(
            code @ (RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition),
        ) => Some(Error::external(true, format!("Kafka source: {code}"))),
        other => {
            tracing::debug!(error = %other, "transient Kafka consumer error");
            None
        }
    }
}

impl<T: Data> SourceReader<T> for KafkaReader<T> {
    fn poll(&mut self, out: &mut Vec<Record<T>>, max: usize) -> Result<ReadStatus> {
        let (consumer, st) = (&self.consumer, &mut self.state);
        st.discover(consumer)?;
        if st.settings.bounded && st.all_done() {
            return Ok(ReadStatus::Finished);
        }
        let mut handled = 0;
        let mut wait = Duration::ZERO;
        while handled < max.max(1) {
            let Some(event) = consumer.poll(wait) else {
                if handled > 0 || !wait.is_zero() {
                    break;
                }
                wait = POLL_WAIT;
                continue;
            };
            wait = Duration::ZERO;
            match event {
                Ok(m) => {
                    st.on_message(consumer, &m, out)?;
                    handled += 1;
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    st.check_ends(consumer)?;
                    if st.settings.bounded && st.all_done() {
                        break;
                    }
                }
                Err(e) => {
                    if let Some(err) = consumer_error(e) {
                        return Err(err);
                    }
                    break;
                }
            }
        }
        // A checkpoint may cover these records from now on: their dead letters must be durable.
        st.bad.flush()?;
        Ok(if st.settings.bounded && st.all_done() {
            ReadStatus::Finished
        } else if handled == 0 {
            ReadStatus::Pending(Duration::ZERO)
        } else {
            ReadStatus::More
        })
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.state
            .partitions
            .iter()
            .map(|p| SplitPosition {
                split: p.split.clone(),
                offset: p.next.max(0) as u64,
            })
            .collect()
    }

    fn watermark(&mut self) -> SourceWatermark {
        match &self.state.watermarks {
            Some(w) => w.current(Instant::now()),
            None => SourceWatermark::Untracked,
        }
    }

    fn notify_checkpoint_complete(&mut self, id: u64, positions: &[SplitPosition]) -> Result<()> {
        if !self.state.settings.commit_offsets || positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for pos in positions {
            let (topic, partition) = parse_split_id(&pos.split)?;
            let offset = i64::try_from(pos.offset).unwrap_or(i64::MAX);
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
                tracing::warn!(split = %pos.split, error = %e, "cannot commit a Kafka offset");
            }
        }
        // For lag monitoring only: a failed commit costs nothing but a stale lag figure.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(checkpoint = id, error = %e, "committing Kafka source offsets to the group failed");
        }
        Ok(())
    }
}
