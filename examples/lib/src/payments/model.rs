//! The sequential model: the same rules applied to the same seeded input by a plain loop with
//! hash maps, no engine involved. Its result is what the job must have committed, exactly.

use super::domain::{
    Decision, DroppedRetry, FraudAlert, Movement, PaymentEvent, RefundResult, Settlement, SettlementTotals,
};
use super::fraud_rules::rules_at;
use super::generator::Workload;
use super::rules::{self, Account, PaymentEntry};
use std::collections::{BTreeMap, HashMap};

/// Length of a settlement window (tumbling, event time).
pub const SETTLEMENT_WINDOW_MS: i64 = 60_000;

/// What the job must commit for a workload.
#[derive(Debug, Default)]
pub struct Expected {
    pub decisions: Vec<Decision>,
    pub refunds: Vec<RefundResult>,
    pub alerts: Vec<FraudAlert>,
    pub settlements: Vec<Settlement>,
    /// One record per request dropped as a client retry, numbered per idempotency key.
    pub retries: Vec<DroppedRetry>,
    /// Payment and refund requests dropped as duplicates (client retries of a request already
    /// seen: same idempotency key).
    pub payment_retries: u64,
    pub refund_retries: u64,
    /// Payment and refund requests in the input, retries included.
    pub payment_requests: u64,
    pub refund_requests: u64,
}

/// Runs the rules over the workload sequentially.
pub fn expected(w: &Workload) -> Expected {
    let mut out = Expected::default();
    // Requests seen per (customer, idempotency key).
    let mut seen: HashMap<(u32, String), u32> = HashMap::new();
    let mut accounts: HashMap<u32, Account> = HashMap::new();
    let mut payments: HashMap<(u32, String), PaymentEntry> = HashMap::new();
    let mut windows: BTreeMap<(u32, i64), SettlementTotals> = BTreeMap::new();
    let mut settle = |movement: Option<Movement>, t: i64| {
        if let Some(m) = movement {
            let start = t - t.rem_euclid(SETTLEMENT_WINDOW_MS);
            windows.entry((m.merchant(), start)).or_default().add(&m);
        }
    };
    for event in w.events() {
        match &event {
            PaymentEvent::Payment(_) => out.payment_requests += 1,
            PaymentEvent::Refund(_) => out.refund_requests += 1,
        }
        let customer = event.customer();
        let requests = seen.entry((customer, event.idempotency_key())).or_default();
        *requests += 1;
        if *requests > 1 {
            out.retries.push(DroppedRetry::of(&event, *requests - 1));
            match event {
                PaymentEvent::Payment(_) => out.payment_retries += 1,
                PaymentEvent::Refund(_) => out.refund_retries += 1,
            }
            continue;
        }
        let account = accounts.entry(customer).or_insert_with(|| Account::open(customer));
        match event {
            PaymentEvent::Payment(p) => {
                let (decision, alert) = rules::authorize(account, &p, &rules_at(w, p.event_time));
                payments.insert((customer, p.payment_id.clone()), PaymentEntry::of(&decision));
                settle(Movement::of_decision(&decision), p.event_time);
                out.decisions.push(decision);
                out.alerts.extend(alert);
            }
            PaymentEvent::Refund(r) => {
                let entry = payments.get_mut(&(customer, r.payment_id.clone()));
                let result = rules::refund(account, entry, &r);
                settle(Movement::of_refund(&result), r.event_time);
                out.refunds.push(result);
            }
        }
    }
    out.settlements = windows
        .into_iter()
        .map(|((merchant, start), totals)| totals.settlement(merchant, start, start + SETTLEMENT_WINDOW_MS))
        .collect();
    out
}
