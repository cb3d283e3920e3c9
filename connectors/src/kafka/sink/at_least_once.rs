//! At-least-once delivery: produce as records arrive, flush at every barrier.

use super::record::{send, RecordShape};
use super::KafkaCommittable;
use crate::kafka::client::{kafka_error, KafkaConnection, REQUEST_TIMEOUT};
use crate::kafka::delivery::DeliveryTracker;
use rdkafka::producer::{BaseProducer, Producer};
use std::time::Duration;
use weir_engine::connector::Cancellation;
use weir_engine::connector::CheckpointId;
use weir_engine::connector::Record;
use weir_engine::connector::SinkWriter;
use weir_engine::connector::{Error, Result};

/// Produces each record when written with an idempotent producer (no duplicates from
/// the producer's own retries) and flushes at every barrier.
///
/// # After a crash
/// Every record written before the restored checkpoint's barrier was acknowledged by the
/// broker (the barrier waited for the flush). Records written after it are produced again by
/// the replay: at least once, possibly twice.
pub(crate) struct AtLeastOnceWriter<T> {
    producer: BaseProducer<DeliveryTracker>,
    topic: String,
    shape: RecordShape<T>,
    cancellation: Cancellation,
}

impl<T: 'static> AtLeastOnceWriter<T> {
    pub(crate) fn new(
        conn: &KafkaConnection,
        topic: &str,
        shape: RecordShape<T>,
        cancellation: Cancellation,
    ) -> Result<Self> {
        let producer = conn
            .client_config(
                &[("linger.ms", "5"), ("partitioner", "murmur2_random")],
                &[("enable.idempotence", "true"), ("acks", "all")],
            )?
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| kafka_error("creating the Kafka sink's producer", e))?;
        Ok(AtLeastOnceWriter {
            producer,
            topic: topic.to_string(),
            shape,
            cancellation,
        })
    }

    fn check_deliveries(&self) -> Result<()> {
        match self.producer.context().take_failures() {
            None => Ok(()),
            Some((n, first)) => Err(Error::external(
                true,
                format!(
                    "{n} records to Kafka topic {} were not delivered; first error: {first}",
                    self.topic
                ),
            )),
        }
    }
}

impl<T: Send + 'static> SinkWriter<T, KafkaCommittable> for AtLeastOnceWriter<T> {
    fn write(&mut self, records: Vec<Record<T>>) -> Result<()> {
        for r in &records {
            let pending = self.shape.encode(r)?;
            send(&self.producer, &self.topic, &pending.view(), None, &self.cancellation)?;
        }
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<Option<KafkaCommittable>> {
        self.producer
            .flush(REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(format!("flushing records to {}", self.topic), e))?;
        self.check_deliveries()?;
        Ok(None)
    }

    fn commit(&mut self, _committables: Vec<(CheckpointId, KafkaCommittable)>) -> Result<()> {
        Ok(())
    }
}
