//! The Kafka sink: at-least-once or exactly-once into one topic.
//!
//! # Exactly-once: write-ahead epochs and an "epoch done" marker
//!
//! A fresh librdkafka producer's `init_transactions` aborts any open transaction of its
//! `transactional.id`, so a transaction cannot be resumed after a crash. Weir therefore never
//! leaves data in a transaction across a checkpoint:
//!
//! 1. Records written between barriers `n-1` and `n` are buffered; at barrier `n` they become
//!    the committable of epoch `n`, stored in checkpoint `n` (write-ahead).
//! 2. Only when checkpoint `n` is complete does the sink produce epoch `n`, in one transaction
//!    that also commits the offset `n` of a marker group named after the sink subtask
//!    (`send_offsets_to_transaction`): records and "epoch `n` done" become visible atomically.
//! 3. After any failure the writer first calls `init_transactions` (fencing every older
//!    producer of its id, aborting what it left open), then reads the marker, and produces
//!    again only the restored epochs above it.
//!
//! What holds in each crash window:
//! - before checkpoint `n` completes: nothing of epoch `n` was produced; the restored
//!   checkpoint predates it and replay writes it again;
//! - after `n` completes, before or while its transaction is produced: the transaction is
//!   open or was never begun; the new producer aborts it and produces epoch `n` again in full;
//! - after the transaction committed, before Weir noticed: the marker says `n` is done; it is
//!   skipped;
//! - a zombie (an older producer of the same id still running): fenced by the newer
//!   `init_transactions`; its commits fail, its open transaction is aborted.
//!
//! In normal operation no transaction that carries data is ever aborted. The one inherent
//! abort of data is a crash in the middle of producing an epoch; brokers with correct
//! `read_committed` hide those records. Each record carries headers naming its sink subtask,
//! epoch and producer session ([`EPOCH_HEADER`] and friends), so a reader can also tell an
//! aborted copy from the committed one on a broker that does not filter aborted records.
//!
//! Transactional ids are `<prefix>-<subtask>`: one per sink subtask, stable across restarts,
//! bounded by the parallelism. A fresh start (no restored checkpoint) resets the subtask's
//! marker, so checkpoint numbering of an earlier job cannot hide new epochs; before that, the
//! marker found is checked against the restore rules
//! ([`SinkContext::check_committed_output`]): a marker above the restored checkpoint, or any
//! marker when nothing was restored and the restore mode is not `RestoreMode::Fresh`, stops
//! the start and leaves the marker as it was.
//! marker, so checkpoint numbering of an earlier job cannot hide new epochs. At every start
//! subtask `j` of `p` also fences the ids of subtasks `k >= p` with `k mod p == j` that an
//! earlier run had (their markers record that they ran), aborting what they left open (module
//! `lingering`). After a restore at a lower parallelism it takes over those subtasks' restored
//! epochs and produces them as they would have: under their ids, checked against and moving
//! their markers.

mod at_least_once;
#[cfg(test)]
mod barrier_memory;
mod epoch;
mod exactly_once;
mod lingering;
mod marker;
mod record;

use super::client::{metadata_consumer, partition_count, KafkaConnection};
use super::format::KafkaSerializer;
use epoch::EpochRecords;
use record::{HeadersFn, KeyFn, PartitionFn, RecordShape};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use weir_engine::connector::{CheckpointId, Data};
use weir_engine::connector::{Error, Result};
use weir_engine::connector::{Sink, SinkContext, SinkWriter};

pub use record::{EPOCH_HEADER, SESSION_HEADER, SUBTASK_HEADER};

/// Fail point (checked on the job's [`FailPoints`](weir_engine::fail::FailPoints), see
/// [`SinkContext::fail_points`]): in the middle of producing a completed epoch's transaction
/// (half its records sent and flushed to the broker, the transaction still open). Simulates a
/// crash that leaves an open transaction with real data for the broker to abort.
pub const FAIL_MID_EPOCH: &str = "kafka-sink-mid-epoch";
/// Fail point: every record and the marker of an epoch sent, before `commit_transaction`.
/// Simulates a crash just before the commit: the restored sink must produce the epoch again.
pub const FAIL_BEFORE_TXN_COMMIT: &str = "kafka-sink-before-txn-commit";
/// Fail point: right after `commit_transaction` returned, before the sink records it.
/// Simulates a crash after the commit: the restored sink must find the marker and not
/// produce the epoch twice.
pub const FAIL_AFTER_TXN_COMMIT: &str = "kafka-sink-after-txn-commit";

/// The default transaction timeout: long enough for any epoch of the default checkpoint
/// settings (1 s interval, 60 s timeout), within Kafka's default maximum of 15 minutes.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// How a [`KafkaSink`] delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Records are produced as they arrive with an idempotent producer and flushed at every
    /// checkpoint: after a failure, records after the restored checkpoint are produced again.
    AtLeastOnce,
    /// Records become visible once, in transactions, after the checkpoint holding them
    /// completed (see the module documentation).
    ExactlyOnce,
}

/// What an exactly-once sink subtask pre-commits at a barrier: the epoch's records, written
/// ahead into the checkpoint. The records are encoded once into one buffer that clones share,
/// so the engine's copy of the pending committables for a snapshot copies no record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KafkaCommittable {
    records: EpochRecords,
}

impl KafkaCommittable {
    /// Records in the epoch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the epoch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Writes records of type `T` to a Kafka topic.
pub struct KafkaSink<T> {
    conn: KafkaConnection,
    topic: String,
    guarantee: DeliveryGuarantee,
    serializer: Arc<dyn KafkaSerializer<T>>,
    key: Option<KeyFn<T>>,
    partitioner: Option<PartitionFn<T>>,
    headers: Option<HeadersFn<T>>,
    transactional_id_prefix: Option<String>,
    transaction_timeout: Duration,
    epoch_headers: bool,
    partition_per_subtask: bool,
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.conn.brokers)
            .field("topic", &self.topic)
            .field("guarantee", &self.guarantee)
            .finish_non_exhaustive()
    }
}

impl<T: Data> KafkaSink<T> {
    /// An exactly-once sink into `topic`, encoding values with `format`.
    pub fn exactly_once(
        conn: impl Into<KafkaConnection>,
        topic: impl Into<String>,
        format: impl KafkaSerializer<T>,
    ) -> Self {
        Self::new(
            conn.into(),
            topic.into(),
            DeliveryGuarantee::ExactlyOnce,
            Arc::new(format),
        )
    }

    /// An at-least-once sink into `topic`, encoding values with `format`.
    pub fn at_least_once(
        conn: impl Into<KafkaConnection>,
        topic: impl Into<String>,
        format: impl KafkaSerializer<T>,
    ) -> Self {
        Self::new(
            conn.into(),
            topic.into(),
            DeliveryGuarantee::AtLeastOnce,
            Arc::new(format),
        )
    }

    fn new(
        conn: KafkaConnection,
        topic: String,
        guarantee: DeliveryGuarantee,
        serializer: Arc<dyn KafkaSerializer<T>>,
    ) -> Self {
        KafkaSink {
            conn,
            topic,
            guarantee,
            serializer,
            key: None,
            partitioner: None,
            headers: None,
            transactional_id_prefix: None,
            transaction_timeout: DEFAULT_TRANSACTION_TIMEOUT,
            epoch_headers: true,
            partition_per_subtask: false,
        }
    }

    /// Each record's key (default: none). Without a partitioner, Kafka's murmur2 partitioner
    /// places equal keys in one partition, as Java clients do.
    pub fn key(mut self, f: impl Fn(&T) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(f));
        self
    }

    /// Chooses each record's partition from the value and the topic's partition count.
    pub fn partitioner(mut self, f: impl Fn(&T, i32) -> i32 + Send + Sync + 'static) -> Self {
        self.partitioner = Some(Arc::new(f));
        self
    }

    /// Each sink subtask writes every record to partition `subtask % partitions` (a fixed
    /// partitioner; keys still go with the records, but do not choose partitions): with as many partitions as
    /// sink subtasks, each partition has one producer and keeps its subtask's order.
    pub fn partition_per_subtask(mut self) -> Self {
        self.partition_per_subtask = true;
        self
    }

    /// Headers for each record, carried to Kafka as given.
    pub fn headers(mut self, f: impl Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync + 'static) -> Self {
        self.headers = Some(Arc::new(f));
        self
    }

    /// The transactional id prefix (default `weir-<job>-<sink step>`). Ids are
    /// `<prefix>-<subtask>`; two jobs must never share a prefix.
    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = Some(prefix.into());
        self
    }

    /// The Kafka transaction timeout (default 5 minutes). It must be at least the checkpoint
    /// interval plus the checkpoint timeout: one transaction carries an epoch, the records
    /// between two barriers, which can be that far apart.
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// Leaves out the `weir.*` headers that name each record's sink subtask, epoch and
    /// producer session (exactly-once mode only).
    pub fn without_epoch_headers(mut self) -> Self {
        self.epoch_headers = false;
        self
    }

    /// An extra librdkafka property for the producer.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.conn.properties.insert(key.into(), value.into());
        self
    }

    /// The transactional id prefix in effect for a job and sink step.
    fn prefix(&self, ctx: &SinkContext) -> String {
        self.transactional_id_prefix
            .clone()
            .unwrap_or_else(|| format!("weir-{}-{}", ctx.job, ctx.name))
    }

    /// Checks the configuration against the job's checkpointing.
    fn validate(&self, ctx: &SinkContext) -> Result<()> {
        self.conn.validate()?;
        if self.topic.trim().is_empty() {
            return Err(Error::config("the Kafka sink's topic must not be empty"));
        }
        if self.partition_per_subtask && self.partitioner.is_some() {
            return Err(Error::config(format!(
                "Kafka sink {}: choose either a partitioner or one partition per subtask, not both",
                ctx.name
            )));
        }
        if self.guarantee == DeliveryGuarantee::ExactlyOnce {
            if self.prefix(ctx).trim().is_empty() {
                return Err(Error::config(
                    "the Kafka sink's transactional id prefix must not be empty",
                ));
            }
            if let Some(t) = ctx.checkpoint_timing {
                let needed = t.interval + t.timeout;
                if self.transaction_timeout < needed {
                    return Err(Error::config(format!(
                        "Kafka sink {}: transaction timeout {:?} is shorter than the checkpoint interval {:?} \
                         plus the checkpoint timeout {:?}; one transaction carries the records between two \
                         barriers, so raise the transaction timeout to at least {:?} or shorten checkpoints",
                        ctx.name, self.transaction_timeout, t.interval, t.timeout, needed
                    )));
                }
            } else {
                tracing::warn!(
                    sink = %ctx.name,
                    "exactly-once Kafka sink in a job without checkpointing: records become visible only when a bounded job ends"
                );
            }
        }
        Ok(())
    }

    fn shape(&self, partitions: i32, ctx: &SinkContext, session: &str) -> RecordShape<T> {
        RecordShape {
            serializer: self.serializer.clone(),
            key: self.key.clone(),
            partitioner: self.partitioner.clone(),
            headers: self.headers.clone(),
            partitions,
            fixed_partition: self
                .partition_per_subtask
                .then(|| (ctx.subtask % partitions as usize) as i32),
            epoch_headers: (self.guarantee == DeliveryGuarantee::ExactlyOnce && self.epoch_headers)
                .then(|| (ctx.subtask.to_string(), session.to_string())),
        }
    }
}

impl<T: Data> Sink<T> for KafkaSink<T> {
    type Committable = KafkaCommittable;

    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T, KafkaCommittable>>> {
        self.validate(ctx)?;
        let probe = metadata_consumer(&self.conn)?;
        let partitions =
            partition_count(&probe, &self.topic).map_err(|e| e.context(format!("Kafka sink {}", ctx.name)))?;
        let session = record::new_session();
        let shape = self.shape(partitions, ctx, &session);
        match self.guarantee {
            DeliveryGuarantee::AtLeastOnce => Ok(Box::new(at_least_once::AtLeastOnceWriter::new(
                &self.conn,
                &self.topic,
                shape,
                ctx.cancellation.clone(),
            )?)),
            DeliveryGuarantee::ExactlyOnce => {
                let prefix = self.prefix(ctx);
                Ok(Box::new(exactly_once::ExactlyOnceWriter::new(
                    exactly_once::Settings {
                        conn: self.conn.clone(),
                        topic: self.topic.clone(),
                        transactional_id: format!("{prefix}-{}", ctx.subtask),
                        prefix,
                        subtask: ctx.subtask,
                        parallelism: ctx.parallelism,
                        transaction_timeout: self.transaction_timeout,
                        fresh_start: ctx.restored_checkpoint.is_none(),
                        sink: ctx.name.clone(),
                        ctx: ctx.clone(),
                        fence_removed: true,
                    },
                    shape,
                )?))
            }
        }
    }
}

/// The highest epoch (checkpoint id) that the exactly-once sink subtask with this
/// transactional id has committed to `topic` since its last fresh start (0: none). For
/// monitoring and audits: the marker is what a restarted writer reads.
pub fn committed_epoch(conn: impl Into<KafkaConnection>, topic: &str, transactional_id: &str) -> Result<CheckpointId> {
    marker::EpochMarker::new(&conn.into(), topic, transactional_id)?.read()
}
