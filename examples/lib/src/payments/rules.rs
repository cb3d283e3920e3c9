//! The business rules, as pure functions over one customer's account: authorization with
//! credit limits and fraud rules (whose parameters change over time, see
//! [`fraud_rules`](super::fraud_rules)), and refunds. The Weir job (`pipeline.rs`) keeps the account
//! in keyed state and calls these; the sequential model (`model.rs`) keeps it in a `HashMap`
//! and calls the same functions, so a difference in the committed output can only come from
//! how the events were delivered: lost, duplicated or reordered.

use super::domain::{
    Cents, CustomerId, Decision, DeclineReason, EventTime, FraudAlert, FraudRule, MerchantId, PaymentRequested,
    RefundRejection, RefundRequested, RefundResult, RefundStatus, Status, SETTLEMENT_CURRENCY,
};
use super::fraud_rules::FraudRules;
use serde::{Deserialize, Serialize};
use weir_engine::source::generator::mix;

/// The sliding event-time window of the velocity rule.
pub const VELOCITY_WINDOW_MS: i64 = 60_000;
/// The customer pays the statement (the outstanding balance) at every cycle boundary.
pub const STATEMENT_CYCLE_MS: i64 = 10 * 60_000;
/// Approved payments older than this (relative to the newest request) are forgotten.
const RECENT_KEEP_MS: i64 = 2 * VELOCITY_WINDOW_MS;

/// A customer's credit limit, derived from the customer id alone: €200 to €1,850.
pub fn credit_limit(customer: CustomerId) -> Cents {
    20_000 + (mix(0x011A_17ED, customer as u64) % 12) as Cents * 15_000
}

/// One customer's account: credit, the current statement and the history the fraud rules use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub limit_cents: Cents,
    /// Charged in the current statement cycle minus refunds (negative: a credit).
    pub outstanding_cents: Cents,
    /// The current statement cycle (event time / cycle length).
    pub cycle: i64,
    /// Approved payments ever, and their sum (the running average of the spike rule).
    pub approved: u64,
    pub approved_sum_cents: Cents,
    /// Recently approved payments: (event time, amount).
    pub recent: Vec<(EventTime, Cents)>,
}

impl Account {
    /// A new account with the customer's credit limit.
    pub fn open(customer: CustomerId) -> Account {
        Account {
            limit_cents: credit_limit(customer),
            outstanding_cents: 0,
            cycle: i64::MIN,
            approved: 0,
            approved_sum_cents: 0,
            recent: Vec::new(),
        }
    }

    /// Credit available now.
    pub fn available(&self) -> Cents {
        self.limit_cents - self.outstanding_cents
    }

    /// Moves the account to the statement cycle of `t` (never back): a new cycle starts with
    /// the previous statement paid.
    fn advance(&mut self, t: EventTime) {
        let cycle = t.div_euclid(STATEMENT_CYCLE_MS);
        if cycle > self.cycle {
            self.cycle = cycle;
            self.outstanding_cents = self.outstanding_cents.min(0);
        }
    }
}

/// What the account remembers of a decided payment, for refunds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEntry {
    pub merchant: MerchantId,
    pub amount_cents: Cents,
    pub approved: bool,
    pub refunded_cents: Cents,
}

impl PaymentEntry {
    pub fn of(d: &Decision) -> PaymentEntry {
        PaymentEntry {
            merchant: d.merchant,
            amount_cents: d.amount_cents,
            approved: d.status == Status::Approved,
            refunded_cents: 0,
        }
    }
}

/// Decides a (deduplicated) payment request against the customer's account: currency, fraud
/// rules (velocity in a sliding minute of event time, amount spike) with the parameters in
/// force at the payment's event time, then available credit.
pub fn authorize(account: &mut Account, p: &PaymentRequested, fraud: &FraudRules) -> (Decision, Option<FraudAlert>) {
    let t = p.event_time;
    account.advance(t);
    account.recent.retain(|(at, _)| *at > t - RECENT_KEEP_MS);
    let mut alert = None;
    let reason = if p.currency != SETTLEMENT_CURRENCY {
        Some(DeclineReason::UnsupportedCurrency)
    } else {
        let in_window = account
            .recent
            .iter()
            .filter(|(at, _)| *at > t - VELOCITY_WINDOW_MS && *at <= t)
            .count();
        let average = account.approved_sum_cents / account.approved.max(1) as Cents;
        let suspicion = if in_window >= fraud.velocity_max_approved {
            Some((FraudRule::Velocity, in_window as i64))
        } else if account.approved >= fraud.spike_min_history && p.amount_cents > fraud.spike_factor * average {
            Some((FraudRule::AmountSpike, average))
        } else {
            None
        };
        match suspicion {
            Some((rule, observed)) => {
                alert = Some(FraudAlert {
                    payment_id: p.payment_id.clone(),
                    customer: p.customer,
                    merchant: p.merchant,
                    amount_cents: p.amount_cents,
                    rule,
                    rules_version: fraud.version,
                    observed,
                    event_time: t,
                });
                Some(DeclineReason::SuspectedFraud)
            }
            None if p.amount_cents > account.available() => Some(DeclineReason::InsufficientFunds),
            None => None,
        }
    };
    if reason.is_none() {
        account.outstanding_cents += p.amount_cents;
        account.approved += 1;
        account.approved_sum_cents += p.amount_cents;
        account.recent.push((t, p.amount_cents));
    }
    let decision = Decision {
        payment_id: p.payment_id.clone(),
        idempotency_key: p.idempotency_key.clone(),
        customer: p.customer,
        merchant: p.merchant,
        amount_cents: p.amount_cents,
        currency: p.currency.clone(),
        event_time: t,
        status: if reason.is_none() {
            Status::Approved
        } else {
            Status::Declined
        },
        reason,
        available_after_cents: account.available(),
    };
    (decision, alert)
}

/// Carries out or rejects a (deduplicated) refund request. `payment` is what the customer's
/// account remembers of the refunded payment, updated when the refund is accepted: the
/// customer is credited back, and the merchant is charged (in settlement).
pub fn refund(account: &mut Account, payment: Option<&mut PaymentEntry>, r: &RefundRequested) -> RefundResult {
    account.advance(r.event_time);
    let (status, reason, merchant, refunded_total) = match payment {
        None => (RefundStatus::Rejected, Some(RefundRejection::UnknownPayment), None, 0),
        Some(e) if !e.approved => (
            RefundStatus::Rejected,
            Some(RefundRejection::PaymentDeclined),
            Some(e.merchant),
            0,
        ),
        Some(e) if e.refunded_cents >= e.amount_cents => (
            RefundStatus::Rejected,
            Some(RefundRejection::AlreadyRefunded),
            Some(e.merchant),
            e.refunded_cents,
        ),
        Some(e) if r.amount_cents <= 0 || r.amount_cents > e.amount_cents - e.refunded_cents => (
            RefundStatus::Rejected,
            Some(RefundRejection::ExceedsRemaining),
            Some(e.merchant),
            e.refunded_cents,
        ),
        Some(e) => {
            e.refunded_cents += r.amount_cents;
            account.outstanding_cents -= r.amount_cents;
            (RefundStatus::Accepted, None, Some(e.merchant), e.refunded_cents)
        }
    };
    RefundResult {
        refund_id: r.refund_id.clone(),
        payment_id: r.payment_id.clone(),
        customer: r.customer,
        merchant,
        amount_cents: r.amount_cents,
        event_time: r.event_time,
        status,
        reason,
        refunded_total_cents: refunded_total,
    }
}
