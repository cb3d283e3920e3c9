//! One subtask's reader: one consumer per topic with manually assigned partitions (one
//! consumer per topic so that an end-of-partition event, which names only the partition
//! number, is unambiguous).

use super::super::format::KafkaMessage;
use super::bad_record::BadRecords;
use super::discovery::Discovery;
use super::lag::LagReporter;
use super::start::{offset_range, resolve, Start, StartPosition};
use super::watermark::PartitionWatermarks;
use super::{parse_split_id, split_id, SourceSettings, DEFAULT_GROUP_ID};
use crate::kafka::client::kafka_error;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_engine::connector::{
    AssignedSplit, ReadStatus, SourceReader, SourceWatermark, SplitId, SplitPosition, SubtaskInfo,
};
use weir_engine::connector::{CheckpointId, Data, Record, Timestamp};
use weir_engine::connector::{Error, OperatorMetrics, Result};

/// How long one poll waits for a record when none is buffered.
const POLL_WAIT: Duration = Duration::from_millis(20);

/// One assigned partition.
struct Partition {
    split: SplitId,
    topic: String,
    partition: i32,
    /// Offset of the next record to hand out: the split's position.
    next: i64,
    /// Bounded reading reached the partition's end.
    done: bool,
    /// A fresh timestamp start: records before the first at or after it are skipped.
    skip_before: Option<i64>,
}

/// The consumer of one topic.
struct TopicConsumer {
    topic: String,
    consumer: BaseConsumer,
}

pub(super) struct KafkaReader<T> {
    consumers: Vec<TopicConsumer>,
    state: ReadState<T>,
    /// Which consumer the next poll starts with (round robin).
    turn: usize,
    /// A fresh start at a position that can move: nothing is handed out until a checkpoint
    /// holding the resolved positions has completed.
    awaiting_durable_start: bool,
    /// Named counters (dead letters) and the lag per partition, once the engine attached them.
    metrics: Option<(OperatorMetrics, Option<LagReporter>)>,
}

/// Everything but the consumers (so a message borrowed from a consumer can update it).
struct ReadState<T> {
    settings: SourceSettings<T>,
    partitions: Vec<Partition>,
    /// topic → partition number → index in `partitions`.
    index: HashMap<String, HashMap<i32, usize>>,
    watermarks: Option<PartitionWatermarks>,
    bad: BadRecords,
    discovery: Option<Discovery>,
}

/// A consumer for the reader: manual assignment only, nothing committed automatically.
fn consumer(settings: &SourceSettings<impl Sized>) -> Result<BaseConsumer> {
    let isolation = if settings.read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let group = settings.group_id.as_deref().unwrap_or(DEFAULT_GROUP_ID);
    settings
        .conn
        .client_config(
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
        splits: Vec<AssignedSplit>,
        subtask: SubtaskInfo,
        listed: Arc<BTreeSet<SplitId>>,
    ) -> Result<Self> {
        let mut topics: Vec<String> = Vec::new();
        for t in &settings.topics {
            if !topics.contains(t) {
                topics.push(t.clone());
            }
        }
        let consumers = topics
            .iter()
            .map(|t| {
                Ok(TopicConsumer {
                    topic: t.clone(),
                    consumer: consumer(&settings)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let parsed = splits
            .iter()
            .map(|s| parse_split_id(&s.id))
            .collect::<Result<Vec<_>>>()?;
        let fresh: Vec<(String, i32)> = parsed
            .iter()
            .zip(&splits)
            .filter(|(_, s)| s.offset.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        // After a restore, a split without a position is new since the checkpoint: all of its
        // records come after it.
        let awaiting_durable_start = !subtask.restored && !fresh.is_empty() && settings.start.can_move();
        let mut fresh_offsets = if subtask.restored {
            resolve(&consumers[0].consumer, &StartPosition::Earliest, &fresh)?
        } else if awaiting_durable_start {
            settings
                .resolved
                .get_or_resolve(&consumers[0].consumer, &settings.start, &fresh)?
        } else {
            resolve(&consumers[0].consumer, &settings.start, &fresh)?
        }
        .into_iter();
        if awaiting_durable_start {
            tracing::debug!(
                subtask = subtask.index,
                "fresh start: reading begins once a checkpoint holds the start positions"
            );
        }
        let bad = BadRecords::new(
            settings.bad_records.clone(),
            settings.conn.clone(),
            settings.counters.clone(),
        );
        let discovery = match settings.discovery {
            Some(interval) if !settings.bounded => Some(Discovery::new(interval, topics, listed, subtask)),
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
        let mut added = Vec::new();
        for (
            (topic, partition),
            AssignedSplit {
                id, offset, event_time, ..
            },
        ) in parsed.into_iter().zip(splits)
        {
            let start = match offset {
                Some(o) => Start {
                    offset: i64::try_from(o)
                        .map_err(|_| Error::checkpoint(format!("restored offset {o} of split {id} is out of range")))?,
                    skip_before: None,
                },
                None => fresh_offsets.next().expect("one resolved offset per fresh split"),
            };
            added.push(state.add(topic, partition, start, event_time));
        }
        let reader = KafkaReader {
            consumers,
            state,
            turn: 0,
            awaiting_durable_start,
            metrics: None,
        };
        reader.assign(&added)?;
        Ok(reader)
    }

    /// Starts fetching partitions `indices` at their positions.
    fn assign(&self, indices: &[usize]) -> Result<()> {
        for c in &self.consumers {
            let mut tpl = TopicPartitionList::new();
            for &i in indices {
                let p = &self.state.partitions[i];
                if p.topic == c.topic {
                    tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))
                        .map_err(|e| kafka_error("assigning Kafka partitions", e))?;
                }
            }
            if tpl.count() > 0 {
                c.consumer
                    .incremental_assign(&tpl)
                    .map_err(|e| kafka_error(format!("assigning partitions of {}", c.topic), e))?;
            }
        }
        Ok(())
    }

    fn discover(&mut self) -> Result<()> {
        let Some(d) = &mut self.state.discovery else {
            return Ok(());
        };
        let new = d.poll(&self.consumers[0].consumer, Instant::now());
        if new.is_empty() {
            return Ok(());
        }
        let mut indices = Vec::new();
        for (topic, partition) in new {
            let earliest = offset_range(&self.consumers[0].consumer, &topic, partition)?.0;
            indices.push(self.state.add(
                topic,
                partition,
                Start {
                    offset: earliest,
                    skip_before: None,
                },
                None,
            ));
        }
        self.assign(&indices)
    }
}

impl<T: Data> ReadState<T> {
    /// Tracks a partition starting at `start`, whose records before it had timestamps up to
    /// `event_time`; returns its index.
    fn add(&mut self, topic: String, partition: i32, start: Start, event_time: Option<Timestamp>) -> usize {
        let i = self.partitions.len();
        self.index.entry(topic.clone()).or_default().insert(partition, i);
        self.partitions.push(Partition {
            split: split_id(&topic, partition),
            topic,
            partition,
            next: start.offset,
            done: false,
            skip_before: start.skip_before,
        });
        if let Some(w) = &mut self.watermarks {
            w.add_partition(Instant::now(), event_time);
        }
        i
    }

    fn lookup(&self, topic: &str, partition: i32) -> Option<usize> {
        self.index.get(topic)?.get(&partition).copied()
    }

    /// Hands out message `m` (or applies the bad-record policy); true if a record was added.
    fn on_message(&mut self, m: &BorrowedMessage<'_>, out: &mut Vec<Record<T>>) -> Result<bool> {
        let Some(i) = self.lookup(m.topic(), m.partition()) else {
            return Ok(false);
        };
        let offset = m.offset();
        let p = &self.partitions[i];
        if p.done || offset < p.next {
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
        if let Some(from) = p.skip_before {
            if message.timestamp.is_some_and(|ts| ts < from) {
                self.partitions[i].next = offset + 1;
                return Ok(false);
            }
            self.partitions[i].skip_before = None;
        }
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
        self.partitions[i].next = offset + 1;
        Ok(added)
    }

    /// Bounded reading: partition `number` of `topic` reached its end. Its position moves to
    /// the consumer's (past trailing transaction markers, which are never handed out).
    fn on_end(&mut self, consumer: &BaseConsumer, topic: &str, number: i32) -> Result<()> {
        if !self.settings.bounded {
            return Ok(());
        }
        let Some(i) = self.lookup(topic, number) else {
            return Ok(());
        };
        let positions = consumer
            .position()
            .map_err(|e| kafka_error("reading the Kafka consumer's positions", e))?;
        let p = &mut self.partitions[i];
        if p.done {
            return Ok(());
        }
        tracing::debug!(split = %p.split, next = p.next, "end of partition (bounded reading)");
        if let Some(Offset::Offset(pos)) = positions.find_partition(topic, number).map(|e| e.offset()) {
            p.next = p.next.max(pos);
        }
        p.done = true;
        if let Some(w) = &mut self.watermarks {
            w.finish(i);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, number);
        if let Err(e) = consumer.pause(&tpl) {
            tracing::debug!(split = %p.split, error = %e, "pausing a finished Kafka partition");
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.settings.bounded && self.partitions.iter().all(|p| p.done)
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
        if self.awaiting_durable_start {
            return Ok(ReadStatus::Pending(POLL_WAIT));
        }
        self.discover()?;
        if self.state.finished() {
            return Ok(ReadStatus::Finished);
        }
        let budget = max.max(1);
        let mut handled = 0;
        let n = self.consumers.len();
        // Each consumer in turn, without waiting, until the budget is used or all are drained.
        let mut drained = 0;
        while handled < budget && drained < n {
            let c = &self.consumers[self.turn % n];
            let wait = if n == 1 && handled == 0 {
                POLL_WAIT
            } else {
                Duration::ZERO
            };
            match c.consumer.poll(wait) {
                None => {
                    drained += 1;
                    self.turn += 1;
                }
                Some(Ok(m)) => {
                    drained = 0;
                    self.state.on_message(&m, out)?;
                    handled += 1;
                }
                Some(Err(KafkaError::PartitionEOF(number))) => {
                    self.state.on_end(&c.consumer, &c.topic, number)?;
                    if self.state.finished() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    if let Some(err) = consumer_error(e) {
                        return Err(err);
                    }
                    drained += 1;
                    self.turn += 1;
                }
            }
        }
        // A checkpoint may cover these records from now on: their dead letters must be durable.
        let dead_letters = self.state.bad.flush()?;
        if let Some((metrics, lag)) = &mut self.metrics {
            if dead_letters > 0 {
                metrics.count("dead_letters", dead_letters);
            }
            if let Some(lag) = lag {
                lag.maybe_report(
                    self.state
                        .partitions
                        .iter()
                        .map(|p| (p.topic.as_str(), p.partition, p.next)),
                );
            }
        }
        Ok(if self.state.finished() {
            ReadStatus::Finished
        } else if handled > 0 {
            ReadStatus::More
        } else if n == 1 {
            ReadStatus::Pending(Duration::ZERO)
        } else {
            ReadStatus::Pending(Duration::from_millis(5))
        })
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.state
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| SplitPosition {
                split: p.split.clone(),
                offset: p.next.max(0) as u64,
                event_time: self.state.watermarks.as_ref().and_then(|w| w.max_timestamp(i)),
                state: None,
            })
            .collect()
    }

    fn attach_metrics(&mut self, metrics: &OperatorMetrics) {
        let lag = if metrics.is_exported() {
            match consumer(&self.state.settings) {
                Ok(c) => LagReporter::start(metrics, c),
                Err(e) => {
                    tracing::warn!(error = %e, "the Kafka source cannot report its lag: no consumer");
                    None
                }
            }
        } else {
            None
        };
        self.metrics = Some((metrics.clone(), lag));
    }

    fn watermark(&mut self) -> SourceWatermark {
        match &mut self.state.watermarks {
            Some(w) => w.current(Instant::now()),
            None => SourceWatermark::Untracked,
        }
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId, positions: &[SplitPosition]) -> Result<()> {
        if self.awaiting_durable_start {
            tracing::debug!(
                checkpoint = id.get(),
                "fresh-start positions are in a completed checkpoint; reading begins"
            );
            self.awaiting_durable_start = false;
        }
        self.state
            .settings
            .resolved
            .forget(positions.iter().map(|p| p.split.as_str()));
        if !self.state.settings.commit_offsets || positions.is_empty() {
            return Ok(());
        }
        for c in &self.consumers {
            let mut tpl = TopicPartitionList::new();
            for pos in positions {
                let (topic, partition) = parse_split_id(&pos.split)?;
                if topic != c.topic {
                    continue;
                }
                let offset = i64::try_from(pos.offset).unwrap_or(i64::MAX);
                if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
                    tracing::warn!(split = %pos.split, error = %e, "cannot commit a Kafka offset");
                }
            }
            if tpl.count() == 0 {
                continue;
            }
            // For lag monitoring only: a failed commit costs nothing but a stale lag figure.
            if let Err(e) = c.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(checkpoint = id.get(), error = %e, "committing Kafka source offsets to the group failed");
            }
        }
        Ok(())
    }
}
