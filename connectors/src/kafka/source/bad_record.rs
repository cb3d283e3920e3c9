//! Records the deserializer rejects: fail the job, skip and count them, or send them to a
//! dead-letter topic.
//!
//! # Dead letters after a crash
//! Dead letters produced while reading are flushed (and every delivery checked) before the
//! poll that read them returns, so a checkpoint's positions never cover a bad record whose
//! dead letter the broker has not acknowledged. Dead-lettering is at-least-once: after a
//! failure the records after the restored checkpoint are read again and their bad records
//! dead-lettered again. The `weir.dlq.*` headers (source topic, partition, offset) identify
//! such duplicates.

use crate::kafka::client::{kafka_error, KafkaConnection, REQUEST_TIMEOUT};
use crate::kafka::delivery::{send_waiting, DeliveryTracker};
use crate::kafka::format::KafkaMessage;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_engine::connector::{Error, Result};

/// Header naming the topic a dead letter was read from.
pub const DLQ_TOPIC_HEADER: &str = "weir.dlq.topic";
/// Header naming the partition a dead letter was read from.
pub const DLQ_PARTITION_HEADER: &str = "weir.dlq.partition";
/// Header naming the offset a dead letter was read from.
pub const DLQ_OFFSET_HEADER: &str = "weir.dlq.offset";
/// Header with the deserializer's reason for rejecting the record.
pub const DLQ_ERROR_HEADER: &str = "weir.dlq.error";

/// At most one warning about skipped records per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What happens to a record the deserializer rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecordPolicy {
    /// Fail the job with a `Data` error naming the record (without restarting: the same
    /// record would fail again).
    Fail,
    /// Skip it and count it ([`SourceCounters::skipped`]), with a rate-limited warning.
    Skip,
    /// Produce its raw key and value to this dead-letter topic, with `weir.dlq.*` headers
    /// naming where it came from and why it was rejected, and count it
    /// ([`SourceCounters::dead_lettered`]). At-least-once: see the module documentation.
    DeadLetter {
        /// The dead-letter topic (it must exist).
        topic: String,
    },
}

/// Counts of bad records, shared by every reader of a source and readable while it runs.
/// Replays after a failure count their bad records again.
#[derive(Debug, Default)]
pub struct SourceCounters {
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
}

impl SourceCounters {
    /// Bad records skipped.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Bad records sent to the dead-letter topic (and acknowledged by the broker).
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// Applies the policy in one reader.
pub(super) struct BadRecords {
    policy: BadRecordPolicy,
    conn: KafkaConnection,
    counters: Arc<SourceCounters>,
    dead_letters: Option<DeadLetters>,
    last_warning: Option<Instant>,
    unreported: u64,
}

impl BadRecords {
    pub(super) fn new(policy: BadRecordPolicy, conn: KafkaConnection, counters: Arc<SourceCounters>) -> Self {
        BadRecords {
            policy,
            conn,
            counters,
            dead_letters: None,
            last_warning: None,
            unreported: 0,
        }
    }

    /// Handles record `m`, rejected for `reason`.
    pub(super) fn handle(&mut self, m: &KafkaMessage<'_>, reason: &str) -> Result<()> {
        match &self.policy {
            BadRecordPolicy::Fail => Err(Error::data(format!(
                "bad record in Kafka topic {} partition {} offset {}: {reason}",
                m.topic, m.partition, m.offset
            ))),
            BadRecordPolicy::Skip => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                self.warn(m, reason, "skipped");
                Ok(())
            }
            BadRecordPolicy::DeadLetter { topic } => {
                if self.dead_letters.is_none() {
                    self.dead_letters = Some(DeadLetters::open(&self.conn, topic)?);
                }
                self.dead_letters.as_mut().expect("opened above").send(m, reason)?;
                self.warn(m, reason, "sent to the dead-letter topic");
                Ok(())
            }
        }
    }

    /// Waits until every dead letter sent so far is acknowledged.
    ///
    /// # Errors
    /// A retryable `External` error if any was not: the records are read (and dead-lettered)
    /// again after the restart.
    /// Returns how many dead letters this call saw acknowledged.
    pub(super) fn flush(&mut self) -> Result<u64> {
        if let Some(d) = &mut self.dead_letters {
            let n = d.flush()?;
            self.counters.dead_lettered.fetch_add(n, Ordering::Relaxed);
            return Ok(n);
        }
        Ok(0)
    }

    fn warn(&mut self, m: &KafkaMessage<'_>, reason: &str, what: &str) {
        let now = Instant::now();
        if self.last_warning.is_some_and(|t| now.duration_since(t) < WARN_INTERVAL) {
            self.unreported += 1;
            return;
        }
        tracing::warn!(
            topic = m.topic,
            partition = m.partition,
            offset = m.offset,
            reason,
            earlier_unreported = self.unreported,
            "bad Kafka record {what}"
        );
        self.last_warning = Some(now);
        self.unreported = 0;
    }
}

/// An idempotent producer into the dead-letter topic.
struct DeadLetters {
    producer: BaseProducer<DeliveryTracker>,
    topic: String,
    unflushed: u64,
}

impl DeadLetters {
    fn open(conn: &KafkaConnection, topic: &str) -> Result<Self> {
        let producer = conn
            .client_config(
                &[("linger.ms", "5")],
                &[("enable.idempotence", "true"), ("acks", "all")],
            )?
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| kafka_error("creating the dead-letter producer", e))?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_string(),
            unflushed: 0,
        })
    }

    fn send(&mut self, m: &KafkaMessage<'_>, reason: &str) -> Result<()> {
        let partition = m.partition.to_string();
        let offset = m.offset.to_string();
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: DLQ_TOPIC_HEADER,
                value: Some(m.topic.as_bytes()),
            })
            .insert(Header {
                key: DLQ_PARTITION_HEADER,
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: DLQ_OFFSET_HEADER,
                value: Some(offset.as_bytes()),
            })
            .insert(Header {
                key: DLQ_ERROR_HEADER,
                value: Some(reason.as_bytes()),
            });
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(k) = m.key {
            record = record.key(k);
        }
        if let Some(v) = m.payload {
            record = record.payload(v);
        }
        if let Some(ts) = m.timestamp {
            record = record.timestamp(ts);
        }
        send_waiting(&self.producer, record, Some(Instant::now() + REQUEST_TIMEOUT), None)
            .map_err(|e| kafka_error(format!("producing a dead letter to {}", self.topic), e))?;
        self.unflushed += 1;
        Ok(())
    }

    /// Flushes and returns how many dead letters were acknowledged since the last flush.
    fn flush(&mut self) -> Result<u64> {
        if self.unflushed == 0 {
            return Ok(0);
        }
        self.producer
            .flush(REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(format!("flushing dead letters to {}", self.topic), e))?;
        if let Some((failed, first)) = self.producer.context().take_failures() {
            return Err(Error::external(
                true,
                format!("{failed} dead letters to {} were not acknowledged: {first}", self.topic),
            ));
        }
        Ok(std::mem::take(&mut self.unflushed))
    }
}
