//! A deterministic, seeded generator of payment and refund requests.
//!
//! Event `i` is a pure function of `(seed, i)`, so a replay after a failure, the sequential
//! model and a later audit all see exactly the same input. The generator has a fixed number of
//! splits ([`SPLITS`], independent of the job's parallelism); split `k` produces the events
//! `i ≡ k (mod SPLITS)`, and every customer belongs to one split, so each customer's events
//! arrive in one deterministic order whatever the parallelism and whatever fails.
//!
//! Traffic shape: one request every [`STEP_MS`] of simulated event time. About 3% of requests
//! are client retries of a recent payment (same idempotency key, sometimes a new payment id),
//! up to [`MAX_LATENESS_MS`] late; some originals are late too. About 6% are refunds of an
//! earlier payment (a quarter of them partial), and a few are retried refunds, second refunds
//! of an already refunded payment and refunds of payments that never existed. Some customers
//! have bursts of payments (the velocity rule), a few amounts are spikes, a few payments are
//! in a currency the acquirer does not settle.

use super::domain::{EventTime, PaymentEvent, PaymentRequested, RefundRequested};
use serde::{Deserialize, Serialize};
use weir_engine::prelude::GeneratorSource;
use weir_engine::source::generator::mix;

/// Splits of the source: fixed, so the input does not depend on the parallelism.
pub const SPLITS: u64 = 8;
/// Customers per split (customer `c` lives on split `c % SPLITS`).
pub const CUSTOMERS_PER_SPLIT: u64 = 250;
/// Merchants (five of them get half of the traffic).
pub const MERCHANTS: u64 = 40;
/// Event time of the first request: 2026-01-01 09:00:00 UTC.
pub const START_MS: EventTime = 1_767_258_000_000;
/// Simulated event time between two consecutive requests.
pub const STEP_MS: EventTime = 20;
/// The most a request's event time lags behind its arrival (retries and late originals).
/// Below the pipeline's watermark bound, so that no window ever drops a record.
pub const MAX_LATENESS_MS: EventTime = 3_000;

/// What to generate: the number of events and the seed. Written next to the output
/// (`workload.json`) so that the output can be audited later without the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub events: u64,
    pub seed: u64,
}

impl Workload {
    /// Every event, in index order (the order of arrival; per customer, the order the job sees).
    pub fn events(&self) -> impl Iterator<Item = PaymentEvent> + '_ {
        (0..self.events).map(|i| event(self.seed, i))
    }

    /// The job's source: `SPLITS` splits, optionally rate-limited (events per second in total).
    pub fn source(&self, rate: Option<f64>) -> GeneratorSource<PaymentEvent> {
        let seed = self.seed;
        let source = GeneratorSource::new(move |i| event(seed, i))
            .bounded(self.events)
            .splits(SPLITS as usize);
        match rate {
            Some(r) => source.rate_per_second(r),
            None => source,
        }
    }
}

/// What event `i` is (before the fields are filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Payment,
    /// A client retry of the payment at this index.
    PaymentRetry(u64),
    /// A refund of the payment at this index.
    Refund(u64),
    /// A retry (same refund id) of the refund at this index.
    RefundRetry(u64),
    /// Another refund request for the payment refunded at this index.
    SecondRefund(u64),
    /// A refund of a payment that never existed.
    PhantomRefund,
}

/// The event time at which request `i` arrives.
fn arrival(i: u64) -> EventTime {
    START_MS + i as EventTime * STEP_MS
}

/// The kind drawn for `i`, without checking what it refers to.
fn drawn_kind(seed: u64, i: u64) -> Kind {
    let r = mix(seed, i);
    let pick = r >> 10;
    let back = |base: u64, spread: u64| i.checked_sub(SPLITS * (base + pick % spread));
    let k = match r % 1000 {
        0..30 => back(1, 40).map(Kind::PaymentRetry),
        30..90 => back(50, 350).map(Kind::Refund),
        90..93 => back(1, 25).map(Kind::RefundRetry),
        93..96 => back(1, 100).map(Kind::SecondRefund),
        96..99 => Some(Kind::PhantomRefund),
        _ => Some(Kind::Payment),
    };
    k.unwrap_or(Kind::Payment)
}

/// The refunded payment, if event `j` is a valid refund.
fn refunded_payment(seed: u64, j: u64) -> Option<u64> {
    match drawn_kind(seed, j) {
        Kind::Refund(k) if drawn_kind(seed, k) == Kind::Payment => Some(k),
        _ => None,
    }
}

/// The nearest refund at or before `j` in its split (looking back at most 100 requests).
fn refund_at_or_before(seed: u64, j: u64) -> Option<u64> {
    (0..100)
        .map_while(|k| j.checked_sub(SPLITS * k))
        .find(|&r| refunded_payment(seed, r).is_some())
}

/// The kind of event `i`: what it refers to must exist, otherwise it is a fresh payment.
/// References always go back a multiple of `SPLITS`: to the same split, the same customers.
fn kind(seed: u64, i: u64) -> Kind {
    match drawn_kind(seed, i) {
        Kind::PaymentRetry(j) | Kind::Refund(j) if drawn_kind(seed, j) != Kind::Payment => Kind::Payment,
        Kind::RefundRetry(j) => refund_at_or_before(seed, j).map_or(Kind::Payment, Kind::RefundRetry),
        Kind::SecondRefund(j) => refund_at_or_before(seed, j).map_or(Kind::Payment, Kind::SecondRefund),
        k => k,
    }
}

/// The customer of the fresh payment at `j`: usually a random customer of its split; within
/// 2% of blocks of 64 split-local requests, one customer makes every fourth payment (a burst).
fn customer_of(seed: u64, j: u64) -> u32 {
    let split = j % SPLITS;
    let local = j / SPLITS;
    let block = mix(
        seed ^ 0xB0B5,
        split.wrapping_mul(1_000_000_007).wrapping_add(local / 64),
    );
    let slot = if block % 100 < 2 && local.is_multiple_of(4) {
        (block >> 8) % CUSTOMERS_PER_SPLIT
    } else {
        mix(seed ^ 0xC057, j) % CUSTOMERS_PER_SPLIT
    };
    (split + SPLITS * slot) as u32
}

/// The fresh payment request at index `j`.
fn payment(seed: u64, j: u64) -> PaymentRequested {
    let m = mix(seed ^ 0x3E3C, j);
    let merchant = if m.is_multiple_of(2) {
        (m >> 8) % 5
    } else {
        (m >> 8) % MERCHANTS
    };
    let a = mix(seed ^ 0xA307, j);
    let base = 300 + (a % 9_700) as i64;
    let amount = if (a >> 32) % 1000 < 7 { base * 20 } else { base };
    let currency = if (a >> 48) % 1000 < 4 { "USD" } else { "EUR" };
    let l = mix(seed ^ 0x1A7E, j);
    let lateness = if l % 100 < 3 {
        (l >> 8) % MAX_LATENESS_MS as u64
    } else {
        (l >> 8) % 150
    };
    PaymentRequested {
        payment_id: format!("pay_{j:09}"),
        idempotency_key: format!("idk_{:016x}", mix(seed ^ 0x1D, j)),
        customer: customer_of(seed, j),
        merchant: merchant as u32,
        amount_cents: amount,
        currency: currency.to_string(),
        event_time: arrival(j) - lateness as EventTime,
    }
}

/// The refund request at index `i`, a refund of the payment at `j`.
fn refund(seed: u64, i: u64, j: u64) -> RefundRequested {
    let p = payment(seed, j);
    let r = mix(seed ^ 0x4EF0, i);
    let amount = if r.is_multiple_of(4) {
        (p.amount_cents / 2).max(1)
    } else {
        p.amount_cents
    };
    RefundRequested {
        refund_id: format!("ref_{i:09}"),
        payment_id: p.payment_id,
        customer: p.customer,
        amount_cents: amount,
        event_time: arrival(i) - ((r >> 8) % 150) as EventTime,
    }
}

/// Event `i` of the workload with this seed.
pub fn event(seed: u64, i: u64) -> PaymentEvent {
    let r = mix(seed ^ 0x5EED, i);
    let late = (r % MAX_LATENESS_MS as u64) as EventTime;
    match kind(seed, i) {
        Kind::Payment => PaymentEvent::Payment(payment(seed, i)),
        Kind::PaymentRetry(j) => {
            let original = payment(seed, j);
            PaymentEvent::Payment(PaymentRequested {
                // Half of the clients send a new payment id with the same idempotency key.
                payment_id: if (r >> 20).is_multiple_of(2) {
                    original.payment_id.clone()
                } else {
                    format!("pay_{i:09}")
                },
                event_time: (arrival(i) - late).max(original.event_time + 1),
                ..original
            })
        }
        Kind::Refund(j) => PaymentEvent::Refund(refund(seed, i, j)),
        Kind::RefundRetry(j) => {
            let original = refund(seed, j, refunded_payment(seed, j).expect("checked by kind()"));
            PaymentEvent::Refund(RefundRequested {
                event_time: (arrival(i) - late).max(original.event_time + 1),
                ..original
            })
        }
        Kind::SecondRefund(j) => {
            let p = payment(seed, refunded_payment(seed, j).expect("checked by kind()"));
            PaymentEvent::Refund(RefundRequested {
                refund_id: format!("ref_{i:09}"),
                payment_id: p.payment_id,
                customer: p.customer,
                amount_cents: p.amount_cents,
                event_time: arrival(i) - ((r >> 8) % 150) as EventTime,
            })
        }
        Kind::PhantomRefund => PaymentEvent::Refund(RefundRequested {
            refund_id: format!("ref_{i:09}"),
            payment_id: format!("pay_ext_{:08x}", r >> 32),
            customer: (i % SPLITS + SPLITS * ((r >> 12) % CUSTOMERS_PER_SPLIT)) as u32,
            amount_cents: 100 + ((r >> 24) % 5_000) as i64,
            event_time: arrival(i) - ((r >> 8) % 150) as EventTime,
        }),
    }
}
