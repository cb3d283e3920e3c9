//! The payment job's steps run alone in Weir's test harness (the operator a pipeline runs, fed
//! by hand): deduplication with its side output and TTL, and authorization with the fraud
//! rules of its broadcast input (a rule change published ahead of time applies from its
//! effective event time; a request whose rules are not published yet waits for the combined
//! watermark), each through a snapshot and restore.

use super::domain::{DeclineReason, PaymentEvent, PaymentRequested, Status};
use super::fraud_rules::{FraudRules, RuleChange};
use super::pipeline::{Authorize, Dedupe, DEDUPE_TTL, FRAUD_ALERTS, RETRIES};
use weir_engine::testing::harness::{KeyedBroadcastHarness, KeyedHarness};

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

/// A rule change: velocity limit `velocity` (approved payments a minute) from `from` on,
/// published through `through`; the spike rule is kept out of the way.
fn change(version: u32, velocity: usize, from: i64, through: i64) -> RuleChange {
    RuleChange {
        effective_from: from,
        published_through: through,
        rules: FraudRules {
            version,
            velocity_max_approved: velocity,
            spike_min_history: 1_000,
            spike_factor: 10,
        },
    }
}

type AuthorizeHarness = KeyedBroadcastHarness<u32, PaymentEvent, RuleChange, Authorize>;

/// Feeds a payment of 1 EUR at `t` to `authorize`.
fn pay(h: &mut AuthorizeHarness, id: &str, t: i64) {
    h.process_element(&CUSTOMER, payment(id, id, 100, "EUR", t), t).unwrap();
}

/// The decisions so far: payment id, approved, and the rules version of a fraud decline.
fn decided(h: &mut AuthorizeHarness) -> Vec<(String, bool, Option<u32>)> {
    let alerts = h.side_output(&FRAUD_ALERTS).unwrap();
    h.output_values()
        .into_iter()
        .map(|d| {
            let version = alerts
                .iter()
                .find(|a| a.value.payment_id == d.payment_id)
                .map(|a| a.value.rules_version);
            if version.is_some() {
                assert_eq!(d.reason, Some(DeclineReason::SuspectedFraud));
            }
            (d.payment_id, d.status == Status::Approved, version)
        })
        .collect()
}

fn row(id: &str, approved: bool, fraud_rules: Option<u32>) -> (String, bool, Option<u32>) {
    (id.to_string(), approved, fraud_rules)
}

#[test]
fn authorize_applies_a_rule_change_published_ahead_of_time_from_its_effective_event_time() {
    let t1 = T0 + 300_000;
    let published = T0 + 600_000;
    let mut h = AuthorizeHarness::new(Authorize).unwrap();
    // Both changes are published before any payment: two payments a minute until t1, one after.
    h.process_broadcast_element(change(1, 2, T0 - 60_000, published), T0 - 60_000)
        .unwrap();
    h.process_broadcast_element(change(2, 1, t1, published), T0 - 60_000)
        .unwrap();
    assert_eq!(h.broadcast_state().len(), 2);

    pay(&mut h, "p1", T0 + 1_000);
    pay(&mut h, "p2", T0 + 2_000);
    pay(&mut h, "p3", T0 + 3_000);
    // Under change 1, p5 is the second payment of its minute: approved, although change 2
    // (which would decline it) is already known.
    pay(&mut h, "p4", t1 - 70_000);
    pay(&mut h, "p5", t1 - 50_000);
    // From t1 on change 2 applies: p6 is the second payment of its minute, declined.
    pay(&mut h, "p6", t1 + 1_000);
    assert_eq!(
        decided(&mut h),
        vec![
            row("p1", true, None),
            row("p2", true, None),
            row("p3", false, Some(1)),
            row("p4", true, None),
            row("p5", true, None),
            row("p6", false, Some(2)),
        ]
    );

    // A payment beyond what the rules are published for waits, with a timer at its time.
    pay(&mut h, "p7", T0 + 700_000);
    assert_eq!(h.output_values().len(), 6);
    assert_eq!(h.list_state::<PaymentEvent>(&CUSTOMER, "held-back").unwrap().len(), 1);
    assert_eq!(h.num_timers().unwrap(), 1);
    let snapshot = h.snapshot().unwrap();

    // What follows, run twice: as it happened, and after a restore from the snapshot (a crash).
    let rest = |h: &mut AuthorizeHarness| {
        let c3 = change(3, 6, T0 + 650_000, T0 + 900_000);
        h.process_broadcast_element(c3, T0 + 650_000).unwrap();
        // The payments' watermark alone does not release p7: the rules' watermark is behind.
        h.process_main_watermark(T0 + 700_000).unwrap();
        assert!(decided(h).iter().all(|(id, _, _)| id != "p7"));
        h.process_broadcast_watermark(T0 + 700_000).unwrap();
        let last = decided(h).pop().unwrap();
        assert_eq!(last, row("p7", true, None));
        assert!(h.list_state::<PaymentEvent>(&CUSTOMER, "held-back").unwrap().is_empty());
        assert_eq!(h.num_timers().unwrap(), 0);
        assert_eq!(h.counters().get("released"), Some(&1));
        last
    };
    let first = rest(&mut h);
    drop(h);
    let mut restored = AuthorizeHarness::restore(Authorize, &snapshot).unwrap();
    assert_eq!(
        restored.broadcast_state().len(),
        2,
        "the rules came back with the snapshot"
    );
    assert_eq!(rest(&mut restored), first);
}
