//! The "epoch done" marker: the committed offset of a consumer group named after the sink
//! subtask, written in the same transaction as the epoch's records.

use crate::kafka::client::{kafka_error, KafkaConnection, REQUEST_TIMEOUT};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::connector::CheckpointId;
use weir_engine::connector::{Error, Result};

/// Text stored with the marker offset, so the group is recognisable in monitoring.
const MARKER_METADATA: &str = "weir exactly-once sink: highest epoch produced";

/// A sink subtask's marker: group `group`, offset of partition 0 of the sink's topic.
pub(crate) struct EpochMarker {
    consumer: BaseConsumer,
    topic: String,
    group: String,
}

impl EpochMarker {
    pub(crate) fn new(conn: &KafkaConnection, topic: &str, group: &str) -> Result<Self> {
        // read_committed makes the offset fetch wait for pending transactional commits.
        Self::with_isolation(conn, topic, group, "read_committed")
    }

    /// Whether the sink subtask of marker group `group` ever committed a marker (that is, it
    /// ran). Reads without waiting for a transaction the subtask may have left open.
    pub(crate) fn was_written(conn: &KafkaConnection, topic: &str, group: &str) -> Result<bool> {
        Ok(Self::with_isolation(conn, topic, group, "read_uncommitted")?
            .read_if_written()?
            .is_some())
    }

    fn with_isolation(conn: &KafkaConnection, topic: &str, group: &str, isolation: &str) -> Result<Self> {
        let consumer: BaseConsumer = conn
            .client_config(
                &[],
                &[
                    ("group.id", group),
                    ("enable.auto.commit", "false"),
                    ("isolation.level", isolation),
                ],
            )?
            .create()
            .map_err(|e| kafka_error("creating the Kafka sink's marker client", e))?;
        Ok(EpochMarker {
            consumer,
            topic: topic.to_string(),
            group: group.to_string(),
        })
    }

    /// The group's metadata, for `send_offsets_to_transaction`.
    pub(crate) fn group_metadata(&self) -> Result<ConsumerGroupMetadata> {
        self.consumer
            .group_metadata()
            .ok_or_else(|| Error::internal(format!("no group metadata for marker group {}", self.group)))
    }

    /// The offsets that mark epoch `epoch` done.
    pub(crate) fn offsets(&self, epoch: CheckpointId) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        let mut elem = tpl.add_partition(&self.topic, 0);
        elem.set_offset(Offset::Offset(epoch.get() as i64))
            .map_err(|e| kafka_error("building the epoch marker", e))?;
        elem.set_metadata(MARKER_METADATA);
        Ok(tpl)
    }

    /// The highest epoch whose transaction committed (0: none since the last fresh start).
    pub(crate) fn read(&self) -> Result<CheckpointId> {
        Ok(self.read_if_written()?.unwrap_or(CheckpointId::new(0)))
    }

    /// The marker, or `None` if this sink subtask never committed one (it never ran).
    fn read_if_written(&self) -> Result<Option<CheckpointId>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        let got = self
            .consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(format!("reading the epoch marker of group {}", self.group), e))?;
        match got.find_partition(&self.topic, 0).map(|p| p.offset()) {
            Some(Offset::Offset(n)) if n >= 0 => Ok(Some(CheckpointId::new(n as u64))),
            _ => Ok(None),
        }
    }
}
