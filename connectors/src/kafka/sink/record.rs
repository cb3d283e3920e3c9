//! A record on its way to Kafka: encoded when written (an exactly-once writer then appends it
//! to its epoch buffer, see [`super::epoch`]) and sent from a view of those bytes.

use super::epoch::RecordView;
use crate::kafka::client::kafka_error;
use crate::kafka::delivery::send_waiting;
use crate::kafka::format::KafkaSerializer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use std::sync::Arc;
use weir_engine::connector::Cancellation;
use weir_engine::connector::Record;
use weir_engine::connector::{Error, Result};

/// Header naming the sink subtask that produced a record (exactly-once mode).
pub const SUBTASK_HEADER: &str = "weir.subtask";
/// Header naming the epoch (checkpoint id) a record belongs to (exactly-once mode).
pub const EPOCH_HEADER: &str = "weir.epoch";
/// Header naming the producer session that produced a record: of the copies of one epoch a
/// sink subtask produced, only the latest session's transaction committed.
pub const SESSION_HEADER: &str = "weir.session";

/// An encoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingRecord {
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) timestamp: Option<i64>,
}

impl PendingRecord {
    /// The record as [`send`] takes it.
    pub(crate) fn view(&self) -> RecordView<'_> {
        RecordView {
            partition: self.partition,
            key: self.key.as_deref(),
            value: &self.value,
            headers: self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect(),
            timestamp: self.timestamp,
        }
    }
}

/// Chooses a record's key.
pub(crate) type KeyFn<T> = Arc<dyn Fn(&T) -> Option<Vec<u8>> + Send + Sync>;
/// Chooses a record's partition from the value and the partition count.
pub(crate) type PartitionFn<T> = Arc<dyn Fn(&T, i32) -> i32 + Send + Sync>;
/// Chooses a record's headers.
pub(crate) type HeadersFn<T> = Arc<dyn Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// How values become records: the sink's serializer, key, partitioner and headers.
pub(crate) struct RecordShape<T> {
    pub(crate) serializer: Arc<dyn KafkaSerializer<T>>,
    pub(crate) key: Option<KeyFn<T>>,
    pub(crate) partitioner: Option<PartitionFn<T>>,
    pub(crate) headers: Option<HeadersFn<T>>,
    pub(crate) partitions: i32,
    /// The one partition this subtask writes to, if the sink partitions per subtask.
    pub(crate) fixed_partition: Option<i32>,
    /// `(subtask, session)` when records carry Weir's epoch headers.
    pub(crate) epoch_headers: Option<(String, String)>,
}

impl<T: 'static> RecordShape<T> {
    /// Encodes one record.
    ///
    /// # Errors
    /// `Data` if the value cannot be serialized or the partitioner returns a partition the
    /// topic does not have.
    pub(crate) fn encode(&self, r: &Record<T>) -> Result<PendingRecord> {
        let value = self
            .serializer
            .serialize(&r.value)
            .map_err(|e| Error::data(format!("Kafka sink cannot encode a record: {e}")))?;
        let partition = match &self.partitioner {
            _ if self.fixed_partition.is_some() => self.fixed_partition,
            Some(f) => {
                let p = f(&r.value, self.partitions);
                if !(0..self.partitions).contains(&p) {
                    return Err(Error::data(format!(
                        "the Kafka sink's partitioner chose partition {p}; the topic has {}",
                        self.partitions
                    )));
                }
                Some(p)
            }
            None => None,
        };
        Ok(PendingRecord {
            partition,
            key: self.key.as_ref().and_then(|f| f(&r.value)),
            value,
            headers: self.headers.as_ref().map(|f| f(&r.value)).unwrap_or_default(),
            timestamp: r.timestamp,
        })
    }
}

/// A session id that orders producer sessions by start time.
pub(crate) fn new_session() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:020}-{}", std::process::id())
}

/// Sends one record, waiting (and serving delivery reports) while the producer's queue is
/// full, until `cancellation` is raised. `epoch` adds Weir's epoch headers.
pub(crate) fn send<C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    topic: &str,
    r: &RecordView<'_>,
    epoch: Option<(&str, &str, &str)>,
    cancellation: &Cancellation,
) -> Result<()> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 3);
    for &(k, v) in &r.headers {
        headers = headers.insert(Header { key: k, value: Some(v) });
    }
    if let Some((subtask, epoch, session)) = epoch {
        headers = headers
            .insert(Header {
                key: SUBTASK_HEADER,
                value: Some(subtask),
            })
            .insert(Header {
                key: EPOCH_HEADER,
                value: Some(epoch),
            })
            .insert(Header {
                key: SESSION_HEADER,
                value: Some(session),
            });
    }
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(r.value).headers(headers);
    if let Some(k) = r.key {
        record = record.key(k);
    }
    if let Some(p) = r.partition {
        record = record.partition(p);
    }
    if let Some(ts) = r.timestamp {
        record = record.timestamp(ts);
    }
    send_waiting(producer, record, None, Some(cancellation)).map_err(|e| match e {
        KafkaError::Canceled => Error::external(
            true,
            format!("producing to {topic}: the attempt was cancelled while the producer's queue was full"),
        ),
        e => kafka_error(format!("producing to {topic}"), e),
    })
}
