//! The Weir job: deduplicate, authorize (with fraud rules and refunds), settle per merchant and
//! window, and commit every output exactly once.
//!
//! ```text
//! payment-requests (generator, 8 splits) ─ watermarks (5 s out of order)
//!   ─hash(customer)▶ dedupe      MapState of idempotency keys, event-time TTL
//!        ├─ side output RETRIES ────────────────────────────────▶ retries-out      (FileSink)
//!        └─ fresh requests ─hash(customer)▶ authorize   ValueState account, MapState payments; rules.rs
//! fraud-rules (generator, 1 split) ─broadcast──────▶ authorize   broadcast state: rule changes
//!        ├─ decisions (main output) ────────────────────────────▶ decisions-out    (FileSink)
//!        ├─ side output REFUNDS ────────────────────────────────▶ refunds-out      (FileSink)
//!        ├─ side output FRAUD_ALERTS ───────────────────────────▶ alerts-out       (FileSink)
//!        └─ side output MOVEMENTS ─hash(merchant)▶ settle (1-minute tumbling windows)
//!                                    ├─ settlement ─────────────▶ settlements-out  (FileSink)
//!                                    └─ late records ───────────▶ late-out         (FileSink, stays empty)
//! ```
//!
//! Each side output is a stream of its own (`stream.side_output(&TAG)`), committed exactly
//! once like the main output: it is part of the same step and its same checkpoints.
//!
//! Determinism: each customer's events come from one source split, in order, and both keyed
//! steps are keyed by customer, so each customer's requests reach `dedupe` and `authorize` in
//! the same order in every run and after every restore. Settlement sums per merchant window
//! (commutative), so the interleaving of customers there does not matter; the watermark bound
//! (5 s) exceeds the input's lateness (3 s), so no record is late for its window.

use super::domain::{
    CustomerId, Decision, DroppedRetry, EventTime, FraudAlert, MerchantId, Movement, PaymentEvent, RefundResult,
    Settlement, SettlementTotals, ALERTS_DIR, DECISIONS_DIR, LATE_DIR, REFUNDS_DIR, RETRIES_DIR, SETTLEMENTS_DIR,
};
use super::fraud_rules::{self, FraudRules, RuleChange};
use super::generator::Workload;
use super::kafka::KafkaSettings;
use super::model::SETTLEMENT_WINDOW_MS;
use super::rules::{self, Account, PaymentEntry};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_engine::checkpoint::replication::ReplicationConfig;
use weir_engine::checkpoint::{CheckpointConfig, CheckpointStorage};
use weir_engine::config::layered::Configuration;
use weir_engine::data::Data;
use weir_engine::prelude::*;

/// How far event time may run ahead of a record (the watermark bound).
pub const OUT_OF_ORDERNESS: Duration = Duration::from_secs(5);
/// How long (event time) an idempotency key is remembered. Expiry follows the watermark, which
/// differs from run to run, but it cannot change a result: client retries come within seconds
/// (at most ~20 s of event time in the generator), far inside these ten minutes.
pub const DEDUPE_TTL: Duration = Duration::from_secs(10 * 60);

/// How to run the job.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub workload: Workload,
    pub parallelism: usize,
    /// Events per second in total (default: as fast as possible).
    pub rate: Option<f64>,
    /// Fraud rule changes per second on the rules stream (default: the whole schedule at once).
    pub rules_rate: Option<f64>,
    /// Where checkpoints live, as the user wrote it: a directory or an object store URL
    /// (`s3://bucket/prefix`); drill children get the same location.
    pub checkpoint_location: String,
    /// The checkpoint storage at `checkpoint_location`.
    pub checkpoint_storage: Arc<dyn CheckpointStorage>,
    /// A second site's storage that completed checkpoints are replicated to (sinks commit
    /// only replicated checkpoints), as written and opened.
    pub replica: Option<(String, Arc<dyn CheckpointStorage>)>,
    pub checkpoint_interval: Duration,
    pub output_dir: PathBuf,
    /// RocksDB state directory; `None` keeps state in memory.
    pub state_dir: Option<PathBuf>,
    /// Read requests from and commit outputs to Kafka instead of the generator and files.
    pub kafka: Option<KafkaSettings>,
    /// Run on a master and this many worker processes (the drill's children launch them).
    pub workers: Option<u32>,
    /// Start from the savepoint in this directory while the checkpoint directory holds no
    /// completed checkpoint.
    pub from_savepoint: Option<PathBuf>,
    /// With `from_savepoint`: drop the savepoint's state of steps this job does not have.
    pub allow_non_restored_state: bool,
    /// Savepoints the run takes on request.
    pub savepoints: super::savepoints::SavepointPlan,
    /// Stop the job gracefully at a final checkpoint once it has read this far (the rescale
    /// drill's segments).
    pub stop_at_position: Option<u64>,
    /// Where the process that runs the job's master serves its status page and API.
    pub status_addr: Option<std::net::SocketAddr>,
    /// The `--config` file, which drill children read again.
    pub config_file: Option<PathBuf>,
    /// Configuration keys the job applies over its own settings (those the flags did not take).
    pub configuration: Configuration,
    /// Where the job's processes serve their metrics (`None`: nowhere).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Client retries deduplication dropped (committed as such, so that the audit counts them).
pub const RETRIES: OutputTag<DroppedRetry> = OutputTag::new("retries");
/// Results of refunds, from authorization.
pub const REFUNDS: OutputTag<RefundResult> = OutputTag::new("refunds");
/// Fraud alerts raised by authorization.
pub const FRAUD_ALERTS: OutputTag<FraudAlert> = OutputTag::new("fraud-alerts");
/// The movements on merchants' ledgers that approved payments and accepted refunds cause.
pub const MOVEMENTS: OutputTag<Movement> = OutputTag::new("movements");

/// Passes on the first request with each idempotency key of a customer; drops the others,
/// emitting a [`DroppedRetry`] for each to the side output [`RETRIES`].
#[derive(Clone)]
pub struct Dedupe;

impl KeyedProcess<CustomerId, PaymentEvent> for Dedupe {
    type Out = PaymentEvent;

    fn process(&mut self, event: PaymentEvent, ctx: &mut KeyedContext<'_, CustomerId, PaymentEvent>) -> Result<()> {
        let key = event.idempotency_key();
        // Per idempotency key: the retries dropped so far.
        let mut seen = ctx
            .map_state::<String, u32>("idempotency-keys")
            .with_ttl(Ttl::event_time(DEDUPE_TTL));
        match seen.get(&key)? {
            Some(retries) => {
                seen.put(&key, &(retries + 1))?;
                ctx.count("duplicates", 1);
                ctx.output(&RETRIES, DroppedRetry::of(&event, retries + 1))?;
            }
            None => {
                seen.put(&key, &0)?;
                ctx.emit(event);
            }
        }
        Ok(())
    }
}

/// Authorizes payments and carries out refunds against the customer's account, with the fraud
/// rules of the broadcast rules stream: decisions are its main output; refund results, fraud
/// alerts and merchant movements its side outputs [`REFUNDS`], [`FRAUD_ALERTS`] and
/// [`MOVEMENTS`].
///
/// The broadcast state maps each rule change's `effective_from` to the change. A payment at
/// event time `t` is decided with the change in force at `t`, once the rules are published
/// through `t`; a request that comes before that, or behind one held back, waits in the
/// customer's `held-back` list (in arrival order) until an event-time timer at its time finds
/// the rules published (the step's watermark is the minimum of both inputs', so it passes `t`
/// only after the rules stream has). After a crash the held-back requests, the rules and the
/// timers are restored from the checkpoint with everything else.
#[derive(Clone)]
pub struct Authorize;

/// The rules of the broadcast state in force at `t`, if they are published through `t`.
fn rules_in_force(rules: &BroadcastState<EventTime, RuleChange>, t: EventTime) -> Option<FraudRules> {
    let (_, latest) = rules.range(..).next_back()?;
    if latest.published_through < t {
        return None;
    }
    rules.range(..=t).next_back().map(|(_, c)| c.rules)
}

impl Authorize {
    /// Handles one request whose rules are known (`fraud` is `None` only for refunds).
    fn decide(
        &self,
        event: PaymentEvent,
        fraud: Option<&FraudRules>,
        ctx: &mut KeyedContext<'_, CustomerId, Decision>,
    ) -> Result<()> {
        let customer = *ctx.key();
        // Outputs carry the request's event time, also when a timer released it.
        let t = event.event_time();
        let mut account = ctx
            .value_state::<Account>("account")
            .get()?
            .unwrap_or_else(|| Account::open(customer));
        match (event, fraud) {
            (PaymentEvent::Payment(p), Some(fraud)) => {
                let (decision, alert) = rules::authorize(&mut account, &p, fraud);
                // Kept without a TTL: a refund may come long after its payment.
                ctx.map_state::<String, PaymentEntry>("payments")
                    .put(&p.payment_id, &PaymentEntry::of(&decision))?;
                let counter = if decision.reason.is_none() {
                    "approved"
                } else {
                    "declined"
                };
                ctx.count(counter, 1);
                if let Some(m) = Movement::of_decision(&decision) {
                    ctx.output_at(&MOVEMENTS, m, t)?;
                }
                ctx.emit_at(decision, t);
                if let Some(alert) = alert {
                    ctx.count("fraud_alerts", 1);
                    ctx.output_at(&FRAUD_ALERTS, alert, t)?;
                }
            }
            (PaymentEvent::Payment(p), None) => {
                return Err(Error::internal(format!(
                    "payment {} decided without fraud rules",
                    p.payment_id
                )))
            }
            (PaymentEvent::Refund(r), _) => {
                let mut payments = ctx.map_state::<String, PaymentEntry>("payments");
                let mut entry = payments.get(&r.payment_id)?;
                let result = rules::refund(&mut account, entry.as_mut(), &r);
                if let (Some(e), true) = (entry, result.reason.is_none()) {
                    payments.put(&r.payment_id, &e)?;
                }
                let counter = if result.reason.is_none() {
                    "refunds_accepted"
                } else {
                    "refunds_rejected"
                };
                ctx.count(counter, 1);
                if let Some(m) = Movement::of_refund(&result) {
                    ctx.output_at(&MOVEMENTS, m, t)?;
                }
                ctx.output_at(&REFUNDS, result, t)?;
            }
        }
        ctx.value_state::<Account>("account").set(&account)
    }

    /// Decides the held-back requests of the current customer from the oldest on, as long as
    /// their rules are published; keeps the rest, in order.
    fn release(
        &self,
        rules: &BroadcastState<EventTime, RuleChange>,
        ctx: &mut KeyedContext<'_, CustomerId, Decision>,
    ) -> Result<()> {
        let held = ctx.list_state::<PaymentEvent>("held-back").get()?;
        let mut released = 0;
        for event in &held {
            match event {
                PaymentEvent::Payment(p) => match rules_in_force(rules, p.event_time) {
                    Some(fraud) => self.decide(event.clone(), Some(&fraud), ctx)?,
                    None => break,
                },
                PaymentEvent::Refund(_) => self.decide(event.clone(), None, ctx)?,
            }
            released += 1;
        }
        if released > 0 {
            ctx.count("released", released as u64);
            ctx.list_state::<PaymentEvent>("held-back").update(&held[released..])?;
        }
        Ok(())
    }
}

impl KeyedBroadcastProcess<CustomerId, PaymentEvent, RuleChange> for Authorize {
    type Out = Decision;
    type StateKey = EventTime;
    type StateValue = RuleChange;

    fn process(
        &mut self,
        event: PaymentEvent,
        rules: &BroadcastState<EventTime, RuleChange>,
        ctx: &mut KeyedContext<'_, CustomerId, Decision>,
    ) -> Result<()> {
        // Nothing held back: the common case, decided at once when the rules are known.
        let held = ctx.list_state::<PaymentEvent>("held-back").get()?;
        if held.is_empty() {
            match &event {
                PaymentEvent::Refund(_) => return self.decide(event, None, ctx),
                PaymentEvent::Payment(p) => {
                    if let Some(fraud) = rules_in_force(rules, p.event_time) {
                        return self.decide(event, Some(&fraud), ctx);
                    }
                }
            }
        }
        ctx.count("held_back", 1);
        ctx.register_event_time_timer(event.event_time())?;
        ctx.list_state::<PaymentEvent>("held-back").add(&event)
    }

    fn process_broadcast(
        &mut self,
        change: RuleChange,
        rules: &mut BroadcastState<EventTime, RuleChange>,
        _ctx: &mut BroadcastContext<'_, Decision>,
    ) -> Result<()> {
        rules.insert(change.effective_from, change);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timer: Timer,
        rules: &BroadcastState<EventTime, RuleChange>,
        ctx: &mut KeyedContext<'_, CustomerId, Decision>,
    ) -> Result<()> {
        self.release(rules, ctx)
    }
}

/// Adds up a merchant's movements in a window.
pub struct Settle;

impl AggregateFunction<Movement> for Settle {
    type Acc = SettlementTotals;
    type Out = SettlementTotals;

    fn create(&self) -> SettlementTotals {
        SettlementTotals::default()
    }

    fn add(&self, acc: &mut SettlementTotals, m: &Movement) {
        acc.add(m);
    }

    fn merge(&self, acc: &mut SettlementTotals, other: SettlementTotals) {
        acc.merge(&other);
    }

    fn result(&self, acc: &SettlementTotals) -> SettlementTotals {
        *acc
    }
}

/// The job, ready to start.
pub fn build(s: &JobSettings) -> weir_engine::Result<Pipeline> {
    let mut p = Pipeline::new("payments")
        .parallelism(s.parallelism)
        .checkpointing(checkpoint_config(s))
        .checkpoint_interval(s.checkpoint_interval)
        // Small batches and channels: less data in flight ahead of a barrier, so checkpoints
        // complete sooner (and less is replayed after a failure) at about the same throughput.
        .batch_size(256)
        .channel_capacity(8)
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 50,
            delay: Duration::from_millis(20),
        });
    if let Some(addr) = s.status_addr {
        p = p.status_addr(addr);
    }
    if let Some(addr) = s.metrics_addr {
        p = p.metrics_addr(addr);
    }
    if let Some(dir) = &s.from_savepoint {
        p = p.from_savepoint(SavepointRestore::dir(dir).allow_non_restored_state(s.allow_non_restored_state));
    }
    p = match &s.state_dir {
        Some(dir) => p.state_dir(dir),
        None => p.state_backend(MemoryBackend::new()),
    };
    let requests = match &s.kafka {
        // Event time per Kafka partition: each is in arrival order up to OUT_OF_ORDERNESS.
        Some(k) => p.source("payment-requests", k.source()),
        None => p
            .source("payment-requests", s.workload.source(s.rate))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::bounded_out_of_orderness(OUT_OF_ORDERNESS)
                    .with_timestamp_assigner(|e: &PaymentEvent| e.event_time()),
            ),
    };
    let fresh = requests
        .key_by("by-customer", PaymentEvent::customer)
        .process("dedupe", Dedupe);
    commit(s, &fresh.side_output(&RETRIES), "retries-out", RETRIES_DIR);
    let rule_changes = p
        .source("fraud-rules", fraud_rules::source(&s.workload, s.rules_rate))
        // The rules stream's watermark stays OUT_OF_ORDERNESS behind the time the rules are
        // published through. A request held back behind an earlier one whose rules are not
        // published yet is at most MAX_LATENESS_MS older than it, so it is still ahead of the
        // step's watermark when it is released: its movement is never late for settlement.
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::monotonous().with_timestamp_assigner(|c: &RuleChange| {
                c.published_through
                    .saturating_sub(OUT_OF_ORDERNESS.as_millis() as EventTime)
                    + 1
            }),
        );
    let decisions = fresh
        .key_by("by-customer-account", PaymentEvent::customer)
        .connect_broadcast(&rule_changes)
        .process("authorize", Authorize);
    commit(s, &decisions, "decisions-out", DECISIONS_DIR);
    commit(s, &decisions.side_output(&REFUNDS), "refunds-out", REFUNDS_DIR);
    commit(s, &decisions.side_output(&FRAUD_ALERTS), "alerts-out", ALERTS_DIR);

    let (settlements, late) = decisions
        .side_output(&MOVEMENTS)
        .key_by("by-merchant", Movement::merchant)
        .window(TumblingEventTime::of(Duration::from_millis(
            SETTLEMENT_WINDOW_MS as u64,
        )))
        .aggregate_with_late("settle", Settle);
    let settled = settlements.map(
        "settlement",
        |w: Windowed<MerchantId, SettlementTotals>| -> Settlement {
            w.value.settlement(w.key, w.window.start, w.window.end)
        },
    );
    commit(s, &settled, "settlements-out", SETTLEMENTS_DIR);
    commit(s, &late, "late-out", LATE_DIR);
    // Last: the configuration file's keys win over the example's own settings.
    p.configure(&s.configuration)
}

/// Commits `stream` to `output` exactly once: a file sink under the output directory, or the
/// Kafka sink into the output's topic.
fn commit<T: Data + Serialize>(s: &JobSettings, stream: &Stream<T>, name: &str, output: &str) {
    match &s.kafka {
        Some(k) => stream.sink(name, k.sink::<T>(output)),
        None => stream.sink(name, FileSink::exactly_once(s.output_dir.join(output))),
    };
}

/// Checkpoints in the job's storage, replicated to the second site's when there is one.
fn checkpoint_config(s: &JobSettings) -> CheckpointConfig {
    let mut config = CheckpointConfig::with_storage(s.checkpoint_storage.clone());
    config.replication = s.replica.as_ref().map(|(_, r)| ReplicationConfig::new(r.clone()));
    config
}

/// The id and position (source records) of the latest completed checkpoint in `storage`,
/// where a (re)started job resumes.
pub fn latest_checkpoint(storage: &dyn CheckpointStorage) -> Option<(CheckpointId, u64)> {
    use weir_engine::checkpoint::read_metadata;
    let mut complete: Vec<CheckpointId> = storage
        .list()
        .ok()?
        .into_iter()
        .filter(|(_, done)| *done)
        .map(|(id, _)| id)
        .collect();
    complete.sort_unstable();
    complete
        .iter()
        .rev()
        .find_map(|&id| read_metadata(storage, id).ok().map(|m| (id, m.stats.source_records)))
}
