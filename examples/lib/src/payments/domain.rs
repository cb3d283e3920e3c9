//! The payment domain: what comes in (payment and refund requests from clients) and what the
//! job commits (decisions, refund results, fraud alerts, settlements).
//!
//! Amounts are integers in minor units (cents). Every type here is plain data: `serde` for the
//! engine (state and records are bincode-encoded) and for the JSON lines of the output files.

use serde::{Deserialize, Serialize};

/// An amount in minor units (euro cents).
pub type Cents = i64;
/// A card holder.
pub type CustomerId = u32;
/// A merchant (the acquirer's client, who is paid and settled).
pub type MerchantId = u32;
/// Event time: milliseconds since the Unix epoch, set by the client.
pub type EventTime = i64;

/// Output subdirectories, one per exactly-once sink.
pub const DECISIONS_DIR: &str = "decisions";
pub const REFUNDS_DIR: &str = "refunds";
pub const ALERTS_DIR: &str = "fraud-alerts";
pub const SETTLEMENTS_DIR: &str = "settlements";
/// Records a settlement window dropped as late (the audit requires none).
pub const LATE_DIR: &str = "late";
/// One record per client retry the job dropped as a duplicate (see [`DroppedRetry`]).
pub const RETRIES_DIR: &str = "dropped-retries";
/// Every output, by directory (or, with `--kafka`, topic suffix).
pub const OUTPUTS: [&str; 6] = [
    DECISIONS_DIR,
    REFUNDS_DIR,
    ALERTS_DIR,
    SETTLEMENTS_DIR,
    LATE_DIR,
    RETRIES_DIR,
];

/// The only currency the acquirer settles in; payments in any other currency are declined.
pub const SETTLEMENT_CURRENCY: &str = "EUR";

/// A client asks to charge a customer's card in favour of a merchant.
///
/// Clients retry: a retry carries the same `idempotency_key` (possibly with a new
/// `payment_id`) and is the same logical payment, to be decided once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequested {
    pub payment_id: String,
    pub idempotency_key: String,
    pub customer: CustomerId,
    pub merchant: MerchantId,
    pub amount_cents: Cents,
    pub currency: String,
    pub event_time: EventTime,
}

/// A merchant asks to give (part of) an earlier payment back: a compensating transaction.
///
/// The request names the card holder whose payment it refunds (`customer`), as refunds on card
/// networks carry the card, so that it reaches the customer's account state. The `refund_id`
/// is the refund's idempotency key: a retried refund request carries the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequested {
    pub refund_id: String,
    pub payment_id: String,
    pub customer: CustomerId,
    pub amount_cents: Cents,
    pub event_time: EventTime,
}

/// The job's input: one stream of both request kinds, in arrival order per customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentEvent {
    Payment(PaymentRequested),
    Refund(RefundRequested),
}

impl PaymentEvent {
    /// The customer whose account the event touches (the key of deduplication and authorization).
    pub fn customer(&self) -> CustomerId {
        match self {
            PaymentEvent::Payment(p) => p.customer,
            PaymentEvent::Refund(r) => r.customer,
        }
    }

    /// When the client made the request.
    pub fn event_time(&self) -> EventTime {
        match self {
            PaymentEvent::Payment(p) => p.event_time,
            PaymentEvent::Refund(r) => r.event_time,
        }
    }

    /// What makes two requests the same logical request.
    pub fn idempotency_key(&self) -> String {
        match self {
            PaymentEvent::Payment(p) => p.idempotency_key.clone(),
            PaymentEvent::Refund(r) => format!("refund:{}", r.refund_id),
        }
    }
}

/// A request the job dropped because its idempotency key was used before: a client retry.
///
/// One is committed per dropped request, numbered per key. The deduplication step would hide
/// an input event that the engine delivered twice (a source that rewinds too far, an exchange
/// that repeats a batch); with this record it shows up in the audit as an extra dropped retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedRetry {
    pub customer: CustomerId,
    pub idempotency_key: String,
    /// 1 for the first retry dropped for this key, 2 for the second, ...
    pub retry: u32,
    /// The dropped request's own id (its payment id or refund id).
    pub request_id: String,
    pub event_time: EventTime,
}

impl DroppedRetry {
    /// The record of `event`, the `retry`-th request dropped for its idempotency key.
    pub fn of(event: &PaymentEvent, retry: u32) -> Self {
        let request_id = match event {
            PaymentEvent::Payment(p) => p.payment_id.clone(),
            PaymentEvent::Refund(r) => r.refund_id.clone(),
        };
        DroppedRetry {
            customer: event.customer(),
            idempotency_key: event.idempotency_key(),
            retry,
            request_id,
            event_time: event.event_time(),
        }
    }
}

/// Whether a payment was approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Approved,
    Declined,
}

/// Why a payment was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeclineReason {
    /// The amount exceeds the customer's available credit.
    InsufficientFunds,
    /// A fraud rule fired (see the fraud alert of the same payment).
    SuspectedFraud,
    /// The payment is not in the settlement currency.
    UnsupportedCurrency,
}

/// The decision on one logical payment: exactly one per idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub payment_id: String,
    pub idempotency_key: String,
    pub customer: CustomerId,
    pub merchant: MerchantId,
    pub amount_cents: Cents,
    pub currency: String,
    pub event_time: EventTime,
    pub status: Status,
    pub reason: Option<DeclineReason>,
    /// The customer's available credit after the decision.
    pub available_after_cents: Cents,
}

/// Which fraud rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FraudRule {
    /// Too many approved payments within a sliding minute of event time.
    Velocity,
    /// The amount is far above the customer's running average.
    AmountSpike,
}

/// A payment declined by a fraud rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudAlert {
    pub payment_id: String,
    pub customer: CustomerId,
    pub merchant: MerchantId,
    pub amount_cents: Cents,
    pub rule: FraudRule,
    /// The version of the rule set that fired (see `fraud_rules`).
    pub rules_version: u32,
    /// What the rule saw: approved payments in the last minute (velocity) or the running
    /// average in cents (amount spike).
    pub observed: i64,
    pub event_time: EventTime,
}

/// Whether a refund was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RefundStatus {
    Accepted,
    Rejected,
}

/// Why a refund was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RefundRejection {
    /// No payment with this id was decided for the customer.
    UnknownPayment,
    /// The payment was declined: nothing was charged.
    PaymentDeclined,
    /// The payment has been refunded in full already.
    AlreadyRefunded,
    /// The amount exceeds what is left to refund.
    ExceedsRemaining,
}

/// The result of one refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResult {
    pub refund_id: String,
    pub payment_id: String,
    pub customer: CustomerId,
    /// The merchant charged back (known when the payment is).
    pub merchant: Option<MerchantId>,
    pub amount_cents: Cents,
    pub event_time: EventTime,
    pub status: RefundStatus,
    pub reason: Option<RefundRejection>,
    /// Refunded on the payment so far, this refund included if accepted.
    pub refunded_total_cents: Cents,
}

/// What the merchant is owed for one event-time window: approved payments minus refunds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub merchant: MerchantId,
    pub currency: String,
    pub window_start: EventTime,
    pub window_end: EventTime,
    pub payments: u64,
    pub gross_cents: Cents,
    pub refunds: u64,
    pub refunded_cents: Cents,
    pub net_cents: Cents,
}

/// A movement on a merchant's ledger: what settlement adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Movement {
    /// An approved payment: the merchant is owed `cents`.
    Payment { merchant: MerchantId, cents: Cents },
    /// An accepted refund: `cents` are charged back to the merchant.
    Refund { merchant: MerchantId, cents: Cents },
}

impl Movement {
    /// An approved payment is owed to the merchant.
    pub fn of_decision(d: &Decision) -> Option<Movement> {
        (d.status == Status::Approved).then_some(Movement::Payment {
            merchant: d.merchant,
            cents: d.amount_cents,
        })
    }

    /// An accepted refund is charged back to the merchant.
    pub fn of_refund(r: &RefundResult) -> Option<Movement> {
        match (r.status, r.merchant) {
            (RefundStatus::Accepted, Some(merchant)) => Some(Movement::Refund {
                merchant,
                cents: r.amount_cents,
            }),
            _ => None,
        }
    }

    pub fn merchant(&self) -> MerchantId {
        match self {
            Movement::Payment { merchant, .. } | Movement::Refund { merchant, .. } => *merchant,
        }
    }
}

/// Running totals of one merchant's settlement window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementTotals {
    pub payments: u64,
    pub gross_cents: Cents,
    pub refunds: u64,
    pub refunded_cents: Cents,
}

impl SettlementTotals {
    pub fn add(&mut self, m: &Movement) {
        match *m {
            Movement::Payment { cents, .. } => {
                self.payments += 1;
                self.gross_cents += cents;
            }
            Movement::Refund { cents, .. } => {
                self.refunds += 1;
                self.refunded_cents += cents;
            }
        }
    }

    pub fn merge(&mut self, o: &SettlementTotals) {
        self.payments += o.payments;
        self.gross_cents += o.gross_cents;
        self.refunds += o.refunds;
        self.refunded_cents += o.refunded_cents;
    }

    /// The settlement record of `merchant` for the window `[start, end)`.
    pub fn settlement(&self, merchant: MerchantId, start: EventTime, end: EventTime) -> Settlement {
        Settlement {
            merchant,
            currency: SETTLEMENT_CURRENCY.to_string(),
            window_start: start,
            window_end: end,
            payments: self.payments,
            gross_cents: self.gross_cents,
            refunds: self.refunds,
            refunded_cents: self.refunded_cents,
            net_cents: self.gross_cents - self.refunded_cents,
        }
    }
}

/// Formats cents as euros with thousands separators: `1234567` → `€12,345.67`.
pub fn euros(cents: Cents) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}€{}.{:02}", thousands(c / 100), c % 100)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
