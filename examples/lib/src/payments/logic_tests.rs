//! The payment job's keyed functions, each run alone in Weir's test harness (the operator a
//! pipeline runs, fed by hand): deduplication with its side output and TTL, authorization with
//! its account state and side outputs, both through a snapshot and restore.

use super::domain::{
    DeclineReason, Movement, PaymentEvent, PaymentRequested, RefundRejection, RefundRequested, RefundStatus, Status,
};
use super::pipeline::{Authorize, Dedupe, DEDUPE_TTL, FRAUD_ALERTS, MOVEMENTS, REFUNDS, RETRIES};
use super::rules::{Account, PaymentEntry};
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

fn refund(id: &str, payment_id: &str, cents: i64, t: i64) -> PaymentEvent {
    PaymentEvent::Refund(RefundRequested {
        refund_id: id.into(),
        payment_id: payment_id.into(),
        customer: CUSTOMER,
        amount_cents: cents,
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

#[test]
fn authorize_keeps_the_account_and_refunds_an_approved_payment_once() {
    let mut h = KeyedHarness::new(Authorize).unwrap();
    feed(&mut h, payment("p1", "k1", 5_000, "EUR", T0));
    feed(&mut h, payment("p2", "k2", 900, "USD", T0 + 1_000));
    let decisions = h.take_output();
    assert_eq!(decisions.len(), 2);
    assert_eq!(
        (decisions[0].value.status, decisions[0].timestamp),
        (Status::Approved, Some(T0))
    );
    assert_eq!(decisions[1].value.reason, Some(DeclineReason::UnsupportedCurrency));
    // Only the approved payment moves money to the merchant; no fraud rule fired.
    assert_eq!(
        h.take_side_output(&MOVEMENTS).unwrap()[0].value,
        Movement::Payment {
            merchant: 7,
            cents: 5_000
        }
    );
    assert!(h.side_output(&FRAUD_ALERTS).unwrap().is_empty());
    let account: Account = h.value_state(&CUSTOMER, "account").unwrap().unwrap();
    assert_eq!((account.outstanding_cents, account.approved), (5_000, 1));

    // Snapshot, crash, restore: the refund finds the payment in the restored state.
    let snapshot = h.snapshot().unwrap();
    drop(h);
    let mut h = KeyedHarness::restore(Authorize, &snapshot).unwrap();
    feed(&mut h, refund("r1", "p1", 5_000, T0 + 2_000));
    feed(&mut h, refund("r2", "p1", 1, T0 + 3_000));
    feed(&mut h, refund("r3", "p2", 900, T0 + 4_000));
    let results: Vec<_> = h
        .side_output(&REFUNDS)
        .unwrap()
        .into_iter()
        .map(|r| (r.value.status, r.value.reason))
        .collect();
    assert_eq!(
        results,
        vec![
            (RefundStatus::Accepted, None),
            (RefundStatus::Rejected, Some(RefundRejection::AlreadyRefunded)),
            (RefundStatus::Rejected, Some(RefundRejection::PaymentDeclined)),
        ]
    );
    assert_eq!(
        h.side_output(&MOVEMENTS).unwrap()[0].value,
        Movement::Refund {
            merchant: 7,
            cents: 5_000
        }
    );
    assert!(h.output().is_empty(), "refunds decide nothing on the main output");
    let account: Account = h.value_state(&CUSTOMER, "account").unwrap().unwrap();
    assert_eq!(account.outstanding_cents, 0);
    let p1 = h
        .map_state::<String, PaymentEntry>(&CUSTOMER, "payments")
        .unwrap()
        .into_iter()
        .find(|(id, _)| id == "p1")
        .unwrap()
        .1;
    assert_eq!(p1.refunded_cents, 5_000);
    assert_eq!(h.counters().get("refunds_accepted"), Some(&1));
    assert_eq!(h.counters().get("refunds_rejected"), Some(&2));
}
