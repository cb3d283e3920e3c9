//! Delivery reports: which produced records the broker did not acknowledge.

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_engine::connector::Cancellation;

/// Sends `record`, waiting while the producer's queue is full and serving delivery reports
/// meanwhile; with `give_up_at`, a queue still full then is an error. A raised `cancellation`
/// ends the wait with [`KafkaError::Canceled`], so a failed attempt's sink does not hold up
/// failover while the broker is unreachable.
pub(crate) fn send_waiting<'a, C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    give_up_at: Option<Instant>,
    cancellation: Option<&Cancellation>,
) -> Result<(), KafkaError>
where
    C: ProducerContext,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if cancellation.is_some_and(Cancellation::is_cancelled) =>
            {
                return Err(KafkaError::Canceled)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;

    /// A producer whose queue holds one message and whose broker does not answer, so the
    /// queue stays full.
    fn stuck_producer() -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("queue.buffering.max.messages", "1")
            .set("message.timeout.ms", "600000")
            .create()
            .expect("creating a producer needs no broker")
    }

    #[test]
    fn a_cancelled_attempt_stops_waiting_for_a_full_queue() {
        let producer = stuck_producer();
        send_waiting(&producer, BaseRecord::<(), str>::to("t").payload("1"), None, None).expect("first fits");
        let cancellation = Cancellation::new();
        let canceller = {
            let c = cancellation.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                c.cancel();
            })
        };
        // Without the cancellation this would wait as long as the broker stays away.
        let r = send_waiting(
            &producer,
            BaseRecord::<(), str>::to("t").payload("2"),
            None,
            Some(&cancellation),
        );
        canceller.join().unwrap();
        assert!(matches!(r, Err(KafkaError::Canceled)), "{r:?}");
    }

    #[test]
    fn a_deadline_ends_the_wait_with_queue_full() {
        let producer = stuck_producer();
        send_waiting(&producer, BaseRecord::<(), str>::to("t").payload("1"), None, None).expect("first fits");
        let r = send_waiting(
            &producer,
            BaseRecord::<(), str>::to("t").payload("2"),
            Some(Instant::now() + Duration::from_millis(50)),
            Some(&Cancellation::new()),
        );
        assert!(
            matches!(r, Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))),
            "{r:?}"
        );
    }
}
