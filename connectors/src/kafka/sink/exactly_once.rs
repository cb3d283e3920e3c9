//! Exactly-once delivery: epochs written ahead into checkpoints, produced after completion in
//! transactions that also commit the epoch marker. The protocol and its crash windows are
//! described in the [module documentation](super).

use super::epoch::{EpochBuffer, EpochRecords};
use super::lingering::Fencing;
use super::marker::EpochMarker;
use super::record::{send, RecordShape};
use super::{KafkaCommittable, FAIL_AFTER_TXN_COMMIT, FAIL_BEFORE_TXN_COMMIT, FAIL_MID_EPOCH};
use crate::kafka::client::{kafka_error, KafkaConnection, REQUEST_TIMEOUT};
use crate::kafka::delivery::DeliveryTracker;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use std::time::{Duration, Instant};
use weir_engine::connector::CheckpointId;
use weir_engine::connector::Record;
use weir_engine::connector::SinkWriter;
use weir_engine::connector::{Error, Result};

/// What the writer needs beyond the record shape.
pub(crate) struct Settings {
    pub(crate) conn: KafkaConnection,
    pub(crate) topic: String,
    pub(crate) transactional_id: String,
    /// Transactional ids are `<prefix>-<subtask>`.
    pub(crate) prefix: String,
    pub(crate) subtask: usize,
    pub(crate) parallelism: usize,
    pub(crate) transaction_timeout: Duration,
    /// No checkpoint was restored for this sink: earlier markers belong to another run.
    pub(crate) fresh_start: bool,
    pub(crate) sink: String,
    /// The restore rules the marker found at start is checked against.
    pub(crate) ctx: weir_engine::connector::SinkContext,
    /// Fence the ids of the subtasks above the parallelism that this subtask owns (module
    /// `lingering`); false for the writer of a subtask taken over, which its owner fenced.
    pub(crate) fence_removed: bool,
}

/// One sink subtask's transactional writer.
///
/// # After a crash
/// The constructor fences every older producer of the same transactional id (aborting what
/// it left open) before reading the marker, so the marker it reads is final: epochs at or
/// below it were committed exactly once, epochs above it not at all. Subtask `j` of `p` first
/// fences the ids of the subtasks `k >= p` with `k mod p == j` that ran before (module
/// `lingering`), aborting what they left open; after a rescale it produces the restored
/// epochs of such a subtask under that subtask's id and marker, with a writer of its own.
pub(crate) struct ExactlyOnceWriter<T> {
    producer: BaseProducer<DeliveryTracker>,
    marker: EpochMarker,
    settings: Settings,
    shape: RecordShape<T>,
    /// Records written since the last barrier.
    buffer: EpochBuffer,
    /// Highest epoch known to be committed.
    done: CheckpointId,
    /// Subtask 0: the fencing of subtasks above the parallelism, done before the first epoch.
    fencing: Fencing,
    subtask: String,
    session: String,
}

impl<T: 'static> ExactlyOnceWriter<T> {
    pub(crate) fn new(settings: Settings, shape: RecordShape<T>) -> Result<Self> {
        let timeout_ms = settings.transaction_timeout.as_millis().to_string();
        let producer: BaseProducer<DeliveryTracker> = settings
            .conn
            .client_config(
                &[("linger.ms", "5"), ("partitioner", "murmur2_random")],
                &[
                    ("transactional.id", &settings.transactional_id),
                    ("transaction.timeout.ms", &timeout_ms),
                    ("enable.idempotence", "true"),
                    ("acks", "all"),
                ],
            )?
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| kafka_error("creating the Kafka sink's transactional producer", e))?;
        let what = format!(
            "Kafka sink {} (transactional id {})",
            settings.sink, settings.transactional_id
        );
        // Fences older producers of this id and aborts their open transaction.
        producer
            .init_transactions(REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(format!("{what}: initializing transactions"), e))?;
        let fencing = if settings.fence_removed {
            Fencing::start(
                settings.conn.clone(),
                settings.topic.clone(),
                settings.prefix.clone(),
                (settings.subtask, settings.parallelism),
                settings.sink.clone(),
            )?
        } else {
            Fencing::default()
        };
        let marker = EpochMarker::new(&settings.conn, &settings.topic, &settings.transactional_id)?;
        let (subtask, session) = shape.epoch_headers.clone().unwrap_or_default();
        let mut w = ExactlyOnceWriter {
            producer,
            marker,
            settings,
            shape,
            buffer: EpochBuffer::default(),
            done: CheckpointId::new(0),
            fencing,
            subtask,
            session,
        };
        // The marker is evidence of committed output: checked before a fresh start resets it.
        let marker = w.marker.read().map_err(|e| e.context(what.clone()))?;
        let found = format!(
            "the epoch marker of group {} on topic {}",
            w.settings.transactional_id, w.settings.topic
        );
        w.settings.ctx.check_committed_output(marker, &found)?;
        if w.settings.fresh_start {
            w.run_transaction(CheckpointId::new(0), &EpochRecords::default())
                .map_err(|e| e.context(format!("{what}: resetting the epoch marker for a fresh start")))?;
        } else {
            w.done = marker;
        }
        tracing::debug!(sink = %w.settings.sink, txn = %w.settings.transactional_id, done = w.done.get(), "exactly-once Kafka writer ready");
        Ok(w)
    }

    /// Produces `records` as epoch `epoch` in one transaction that also moves the marker to
    /// `epoch`. On failure the transaction is aborted if it can be (a fenced producer cannot:
    /// the newer one already aborted it).
    fn run_transaction(&mut self, epoch: CheckpointId, records: &EpochRecords) -> Result<()> {
        let started = Instant::now();
        let result = self.try_transaction(epoch, records);
        if let Err(e) = &result {
            let abortable = !matches!(e.source_kafka(), Some(k) if is_fatal(k));
            if abortable {
                if let Err(a) = self.producer.abort_transaction(REQUEST_TIMEOUT) {
                    tracing::warn!(error = %a, epoch = epoch.get(), "aborting the Kafka transaction failed");
                }
            }
        } else {
            tracing::debug!(
                epoch = epoch.get(),
                records = records.len(),
                ms = started.elapsed().as_millis() as u64,
                "epoch produced"
            );
        }
        result
    }

    fn try_transaction(&mut self, epoch: CheckpointId, records: &EpochRecords) -> Result<()> {
        let topic = self.settings.topic.clone();
        let txn = |e: KafkaError| kafka_error(format!("Kafka transaction for epoch {epoch} on {topic}"), e);
        self.producer.begin_transaction().map_err(txn)?;
        let epoch_text = epoch.to_string();
        let headers = self
            .shape
            .epoch_headers
            .as_ref()
            .map(|_| (self.subtask.as_str(), epoch_text.as_str(), self.session.as_str()));
        let half = records.len() / 2;
        for (i, r) in records.iter().enumerate() {
            if i == half && self.settings.ctx.fail_points.is_armed(FAIL_MID_EPOCH) {
                // Make the first half reach the broker, so the crash leaves real data behind.
                self.producer.flush(REQUEST_TIMEOUT).map_err(txn)?;
                self.settings.ctx.fail_points.hit(FAIL_MID_EPOCH)?;
            }
            send(&self.producer, &topic, &r?, headers, &self.settings.ctx.cancellation)?;
        }
        let offsets = self.marker.offsets(epoch)?;
        let group = self.marker.group_metadata()?;
        self.producer
            .send_offsets_to_transaction(&offsets, &group, REQUEST_TIMEOUT)
            .map_err(txn)?;
        // Fail points count epoch transactions only, not the marker reset of a fresh start.
        let epoch_txn = !records.is_empty();
        if epoch_txn && self.settings.ctx.fail_points.is_armed(FAIL_BEFORE_TXN_COMMIT) {
            // Make the records reach the broker, so the crash leaves an open transaction.
            self.producer.flush(REQUEST_TIMEOUT).map_err(txn)?;
            self.settings.ctx.fail_points.hit(FAIL_BEFORE_TXN_COMMIT)?;
        }
        self.producer.commit_transaction(REQUEST_TIMEOUT).map_err(txn)?;
        if let Some((n, first)) = self.producer.context().take_failures() {
            // Cannot happen after a successful commit; refuse to believe it silently.
            return Err(Error::internal(format!(
                "Kafka committed epoch {epoch} but reported {n} failed deliveries: {first}"
            )));
        }
        self.done = epoch;
        if epoch_txn {
            self.settings.ctx.fail_points.hit(FAIL_AFTER_TXN_COMMIT)?;
        }
        Ok(())
    }
}

/// Whether a transactional error leaves the producer unusable (fenced, or otherwise fatal).
fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        other => matches!(
            other.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::Fenced)
                | Some(rdkafka::types::RDKafkaErrorCode::ProducerFenced)
                | Some(rdkafka::types::RDKafkaErrorCode::InvalidProducerEpoch)
        ),
    }
}

/// Finds the Kafka error behind a Weir error, if there is one.
trait SourceKafka {
    fn source_kafka(&self) -> Option<&KafkaError>;
}

impl SourceKafka for Error {
    fn source_kafka(&self) -> Option<&KafkaError> {
        std::error::Error::source(self).and_then(|s| s.downcast_ref::<KafkaError>())
    }
}

impl<T: Send + 'static> SinkWriter<T, KafkaCommittable> for ExactlyOnceWriter<T> {
    fn write(&mut self, records: Vec<Record<T>>) -> Result<()> {
        for r in &records {
            self.buffer.push(&self.shape.encode(r)?)?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<Option<KafkaCommittable>> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        Ok(Some(KafkaCommittable {
            records: self.buffer.take(),
        }))
    }

    fn commit(&mut self, mut committables: Vec<(CheckpointId, KafkaCommittable)>) -> Result<()> {
        self.fencing
            .finish()
            .map_err(|e| e.context(format!("Kafka sink {}", self.settings.sink)))?;
        committables.sort_by_key(|(id, _)| *id);
        for (epoch, c) in committables {
            if epoch <= self.done {
                tracing::debug!(
                    epoch = epoch.get(),
                    done = self.done.get(),
                    "epoch already committed; skipped"
                );
                continue;
            }
            self.run_transaction(epoch, &c.records)?;
        }
        Ok(())
    }

    /// Produces the restored epochs of subtask `subtask` (above the parallelism, taken over
    /// after a rescale) under its own transactional id, checked against and moving its own
    /// marker, exactly as that subtask's writer would after a restore: its `init_transactions`
    /// fences every older producer of the id first, so the marker read is final. This
    /// writer's fencing, which covers that id, is finished before.
    fn commit_taken_over(&mut self, subtask: usize, committables: Vec<(CheckpointId, KafkaCommittable)>) -> Result<()> {
        self.fencing
            .finish()
            .map_err(|e| e.context(format!("Kafka sink {}", self.settings.sink)))?;
        let s = &self.settings;
        let settings = Settings {
            conn: s.conn.clone(),
            topic: s.topic.clone(),
            transactional_id: format!("{}-{subtask}", s.prefix),
            prefix: s.prefix.clone(),
            subtask,
            parallelism: s.parallelism,
            transaction_timeout: s.transaction_timeout,
            fresh_start: false,
            sink: s.sink.clone(),
            ctx: s.ctx.clone(),
            fence_removed: false,
        };
        let shape = RecordShape {
            serializer: self.shape.serializer.clone(),
            key: self.shape.key.clone(),
            partitioner: self.shape.partitioner.clone(),
            headers: self.shape.headers.clone(),
            partitions: self.shape.partitions,
            fixed_partition: self.shape.fixed_partition,
            epoch_headers: self
                .shape
                .epoch_headers
                .as_ref()
                .map(|_| (subtask.to_string(), super::record::new_session())),
        };
        tracing::info!(sink = %s.sink, subtask = s.subtask, taken_over = subtask, epochs = committables.len(), "producing the restored epochs of a sink subtask above the parallelism");
        ExactlyOnceWriter::new(settings, shape)?.commit(committables)
    }

    fn abort(&mut self) -> Result<()> {
        // Unproduced records stay in the checkpoint that holds them; nothing is open here
        // between transactions.
        self.buffer.clear();
        Ok(())
    }
}
