//! The payment job's deduplication run alone in Weir's test harness (the operator a pipeline
//! runs, fed by hand): its side output and TTL, through a snapshot and restore. (`authorize`
//! is a keyed broadcast function, which the harness does not run yet; the payment drill and
//! audit cover it.)

use super::domain::{PaymentEvent, PaymentRequested};
use super::pipeline::{Dedupe, DEDUPE_TTL, RETRIES};
use weir_engine::testing::harness::KeyedHarness;

const CUSTOMER: u32 = 42;
const T0: i64 = 1_700_000_000_000;

fn payment(id: &str, key: &str, cents: i64, currency: &str, t: i64) -> PaymentEvent {
    PaymentEvent::Payment(PaymentRequested {
        payment_id: id.into(),
        idempotency_key: key.into(),
        customer: CUSTOMER,
        merchant: 7,
        amount_cents: cents,
        currency: currency.into(),
        event_time: t,
    })
}

/// Feeds `event` at its event time.
fn feed<P: weir_engine::prelude::KeyedProcess<u32, PaymentEvent>>(
    h: &mut KeyedHarness<u32, PaymentEvent, P>,
    event: PaymentEvent,
) {
    let t = event.event_time();
    h.process_element(&CUSTOMER, event, t).unwrap();
}

#[test]
fn dedupe_passes_each_idempotency_key_once_and_reports_every_retry() {
    let mut h = KeyedHarness::new(Dedupe).unwrap();
    feed(&mut h, payment("p1", "k1", 500, "EUR", T0));
    feed(&mut h, payment("p1-retry", "k1", 500, "EUR", T0 + 1_000));
    feed(&mut h, payment("p2", "k2", 700, "EUR", T0 + 2_000));
    feed(&mut h, payment("p1-retry-2", "k1", 500, "EUR", T0 + 3_000));

    let passed: Vec<String> = h.output_values().iter().map(|e| e.idempotency_key()).collect();
    assert_eq!(passed, vec!["k1", "k2"]);
    let retries = h.side_output(&RETRIES).unwrap();
    let seen: Vec<(&str, u32, Option<i64>)> = retries
        .iter()
        .map(|r| (r.value.request_id.as_str(), r.value.retry, r.timestamp))
        .collect();
    assert_eq!(
        seen,
        vec![("p1-retry", 1, Some(T0 + 1_000)), ("p1-retry-2", 2, Some(T0 + 3_000))]
    );
    assert_eq!(h.counters().get("duplicates"), Some(&2));
    assert_eq!(
        h.map_state::<String, u32>(&CUSTOMER, "idempotency-keys").unwrap(),
        vec![("k1".to_string(), 2), ("k2".to_string(), 0)]
    );

    // A restored deduplicator still knows the keys: a retry after the restore is dropped.
    let snapshot = h.snapshot().unwrap();
    drop(h);
    let mut h = KeyedHarness::restore(Dedupe, &snapshot).unwrap();
    feed(&mut h, payment("p2-retry", "k2", 700, "EUR", T0 + 4_000));
    assert!(h.output().is_empty());
    assert_eq!(h.side_output(&RETRIES).unwrap()[0].value.retry, 1);

    // Keys expire DEDUPE_TTL of event time after their last sighting, once the watermark
    // passes: the same key is then a new request.
    let ttl = DEDUPE_TTL.as_millis() as i64;
    h.process_watermark(T0 + 4_000 + ttl).unwrap();
    feed(&mut h, payment("p3", "k1", 500, "EUR", T0 + 5_000 + ttl));
    assert_eq!(h.output_values().len(), 1, "k1 expired");
    assert_eq!(
        h.map_state::<String, u32>(&CUSTOMER, "idempotency-keys").unwrap(),
        vec![("k1".to_string(), 0)],
        "k2 expired and was cleaned up by its TTL timer"
    );
}
