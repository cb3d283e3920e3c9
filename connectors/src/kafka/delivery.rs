//! Delivery reports: which produced records the broker did not acknowledge.

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sends `record`, waiting while the producer's queue is full and serving delivery reports
/// meanwhile; with `give_up_at`, a queue still full then is an error.
pub(crate) fn send_waiting<'a, C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    give_up_at: Option<Instant>,
) -> Result<(), KafkaError>
where
    C: ProducerContext,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if give_up_at.is_none_or(|t| Instant::now() < t) =>
            {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Counts failed deliveries and keeps the first error.
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl DeliveryTracker {
    /// Failures since the last call, with the first error, and resets both.
    pub(crate) fn take_failures(&self) -> Option<(u64, String)> {
        let n = self.failed.swap(0, Ordering::SeqCst);
        let e = self.first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        (n > 0).then(|| (n, e.unwrap_or_default()))
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            let mut g = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                *g = Some(e.to_string());
            }
        }
    }
}
