//! The headline test: every input event affects the committed output exactly once, whatever
//! fails and wherever.
//!
//! Seeded input with client retries (duplicate events) and out-of-order timestamps flows
//! through a hash exchange into a keyed ledger (map state for deduplication, value state for
//! the balance, event-time timers), a two-input keyed join that buffers in list state, and a
//! tumbling event-time window. Each run injects several failures at randomly chosen fail
//! points (every phase of the checkpoint lifecycle, errors and panics), restarts from the latest
//! completed checkpoint, and must commit exactly what a failure-free run commits: no loss, no
//! duplicate. Runs cover parallelism 1, 2 and 4 and both state backends.
//!
//! `WEIR_EO_SEEDS=n` runs more seeds (default 9: 9 seeds x 3 parallelisms x 2 backends = 54 runs).

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use weir::engine::checkpoint::fail;
use weir::engine::source::generator::mix;
use weir::prelude::*;

/// Fail points are process-global: the runs of this file take turns.
static SERIAL: Mutex<()> = Mutex::new(());

const SPLITS: u64 = 4;
const ACCOUNTS: u64 = 24;
const EVENTS: u64 = 6_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Payment {
    id: u64,
    account: u64,
    cents: i64,
    ts: i64,
}

/// Event `i` of seed `seed`: fresh, or a retry of an earlier event of the same split.
fn payment(seed: u64, i: u64) -> Payment {
    let r = mix(seed, i);
    if r.is_multiple_of(17) {
        let back = SPLITS * (1 + r % 3);
        if i >= back {
            return payment(seed, i - back);
        }
    }
    Payment {
        id: i,
        // Accounts live on one split each, so each account's events keep their order.
        account: i % SPLITS + SPLITS * ((r >> 8) % (ACCOUNTS / SPLITS)),
        cents: 1 + ((r >> 16) % 1000) as i64,
        ts: 1_000_000 + 2 * i as i64 + ((r >> 24) % 800) as i64 - 400,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum LedgerOut {
    Posted {
        id: u64,
        account: u64,
        cents: i64,
        balance: i64,
        ts: i64,
    },
    Reminder {
        account: u64,
        at: i64,
    },
}

/// Deduplicates by payment id and keeps a running balance per account; an event-time timer
/// per account fires a reminder one second after its first payment.
#[derive(Clone)]
struct Ledger;

impl KeyedProcess<u64, Payment> for Ledger {
    type Out = LedgerOut;
    fn process(&mut self, p: Payment, ctx: &mut KeyedContext<'_, u64, LedgerOut>) -> Result<()> {
        let mut seen = ctx.map_state::<u64, bool>("seen");
        if seen.contains(&p.id)? {
            ctx.count("duplicates", 1);
            return Ok(());
        }
        seen.put(&p.id, &true)?;
        let mut balance = ctx.value_state::<i64>("balance");
        let b = balance.get()?.unwrap_or(0) + p.cents;
        balance.set(&b)?;
        let mut first = ctx.value_state::<bool>("reminded");
        if first.get()?.is_none() {
            first.set(&true)?;
            ctx.register_event_time_timer(p.ts + 1_000)?;
        }
        ctx.emit(LedgerOut::Posted {
            id: p.id,
            account: p.account,
            cents: p.cents,
            balance: b,
            ts: p.ts,
        });
        Ok(())
    }

    fn on_timer(&mut self, t: Timer, ctx: &mut KeyedContext<'_, u64, LedgerOut>) -> Result<()> {
        let account = *ctx.key();
        ctx.emit(LedgerOut::Reminder { account, at: t.time });
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Enriched {
    id: u64,
    tier: String,
    cents: i64,
    ts: i64,
}

/// Joins posted payments with account profiles, whichever arrives first.
#[derive(Clone)]
struct Enrich;

impl KeyedCoProcess<u64, (u64, i64, i64), (u64, String)> for Enrich {
    type Out = Enriched;
    fn process_first(
        &mut self,
        (id, cents, ts): (u64, i64, i64),
        ctx: &mut KeyedContext<'_, u64, Enriched>,
    ) -> Result<()> {
        match ctx.value_state::<String>("tier").get()? {
            Some(tier) => ctx.emit_at(Enriched { id, tier, cents, ts }, ts),
            None => ctx.list_state::<(u64, i64, i64)>("waiting").add(&(id, cents, ts))?,
        }
        Ok(())
    }
    fn process_second(&mut self, (_, tier): (u64, String), ctx: &mut KeyedContext<'_, u64, Enriched>) -> Result<()> {
        ctx.value_state::<String>("tier").set(&tier)?;
        let mut waiting = ctx.list_state::<(u64, i64, i64)>("waiting");
        let buffered = waiting.get()?;
        waiting.clear()?;
        for (id, cents, ts) in buffered {
            ctx.emit_at(
                Enriched {
                    id,
                    tier: tier.clone(),
                    cents,
                    ts,
                },
                ts,
            );
        }
        Ok(())
    }
}

struct SumCount;
impl AggregateFunction<Enriched> for SumCount {
    type Acc = (i64, u64);
    type Out = (i64, u64);
    fn create(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (i64, u64), e: &Enriched) {
        acc.0 += e.cents;
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (i64, u64), o: (i64, u64)) {
        acc.0 += o.0;
        acc.1 += o.1;
    }
    fn result(&self, acc: &(i64, u64)) -> (i64, u64) {
        *acc
    }
}

type Outputs = (Vec<LedgerOut>, Vec<Windowed<String, (i64, u64)>>);

struct Run {
    seed: u64,
    parallelism: usize,
    rocks: bool,
    failures: Vec<(&'static str, u64, FailAction)>,
}

fn run(r: &Run) -> (Outputs, JobReport) {
    let dir = tempfile::tempdir().unwrap();
    fail::disarm_all();
    for (p, n, a) in &r.failures {
        fail::arm(p, *n, *a);
    }
    let seed = r.seed;
    let mut p = Pipeline::new("exactly-once")
        .parallelism(r.parallelism)
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(15))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        });
    if r.rocks {
        p = p.state_dir(dir.path().join("state"));
    }
    let ledger_sink = CollectSink::new();
    let window_sink = CollectSink::new();
    let ledger = p
        .source(
            "payments",
            GeneratorSource::new(move |i| payment(seed, i))
                .bounded(EVENTS)
                .splits(SPLITS as usize)
                .rate_per_second(60_000.0),
        )
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(2))
                .with_timestamp_assigner(|p: &Payment| p.ts),
        )
        .key_by("by-account", |p: &Payment| p.account)
        .process("ledger", Ledger);
    ledger.sink("ledger-out", ledger_sink.clone());
    let posted = ledger.flat_map("posted", |o: LedgerOut| match o {
        LedgerOut::Posted {
            id, account, cents, ts, ..
        } => Some((account, (id, cents, ts))),
        LedgerOut::Reminder { .. } => None,
    });
    let profiles = p.source(
        "profiles",
        VecSource::new(
            (0..ACCOUNTS)
                .map(|a| (a, ["gold", "silver", "bronze"][(a % 3) as usize].to_string()))
                .collect(),
        ),
    );
    posted
        .key_by("posted-by-account", |(a, _): &(u64, (u64, i64, i64))| *a)
        .connect(&profiles.key_by("profile-by-account", |(a, _): &(u64, String)| *a))
        .process("enrich-in", EnrichAdapter)
        .key_by("by-tier", |e: &Enriched| e.tier.clone())
        .window(TumblingEventTime::of(Duration::from_secs(1)))
        .aggregate("per-tier-second", SumCount)
        .sink("windows-out", window_sink.clone());
    let report = match p.run() {
        Ok(rep) => rep,
        Err(e) => panic!(
            "seed {} p{} rocks={} failures {:?}: job failed: {e}",
            r.seed, r.parallelism, r.rocks, r.failures
        ),
    };
    fail::disarm_all();
    let mut l = ledger_sink.records();
    l.sort();
    let mut w = window_sink.records();
    w.sort_by(|a, b| (&a.key, a.window.start).cmp(&(&b.key, b.window.start)));
    ((l, w), report)
}

/// Adapts the `(account, payload)` pairs of the posted stream to [`Enrich`].
#[derive(Clone)]
struct EnrichAdapter;

impl KeyedCoProcess<u64, (u64, (u64, i64, i64)), (u64, String)> for EnrichAdapter {
    type Out = Enriched;
    fn process_first(
        &mut self,
        (_, v): (u64, (u64, i64, i64)),
        ctx: &mut KeyedContext<'_, u64, Enriched>,
    ) -> Result<()> {
        Enrich.process_first(v, ctx)
    }
    fn process_second(&mut self, v: (u64, String), ctx: &mut KeyedContext<'_, u64, Enriched>) -> Result<()> {
        Enrich.process_second(v, ctx)
    }
}

/// The committed output a plain sequential model predicts for the ledger.
fn model(seed: u64) -> Vec<LedgerOut> {
    let mut seen = std::collections::BTreeSet::new();
    let mut balance = std::collections::BTreeMap::<u64, i64>::new();
    let mut first = std::collections::BTreeMap::<u64, i64>::new();
    let mut out = Vec::new();
    for i in 0..EVENTS {
        let p = payment(seed, i);
        if !seen.insert(p.id) {
            continue;
        }
        let b = balance.entry(p.account).or_default();
        *b += p.cents;
        first.entry(p.account).or_insert(p.ts + 1_000);
        out.push(LedgerOut::Posted {
            id: p.id,
            account: p.account,
            cents: p.cents,
            balance: *b,
            ts: p.ts,
        });
    }
    out.extend(
        first
            .into_iter()
            .map(|(account, at)| LedgerOut::Reminder { account, at }),
    );
    out.sort();
    out
}

fn failure_plan(seed: u64, salt: u64) -> Vec<(&'static str, u64, FailAction)> {
    let n = 2 + mix(seed, salt) % 2;
    let mut plan: Vec<(&'static str, u64, FailAction)> = Vec::new();
    for k in 0..n {
        let r = mix(seed ^ 0xFA11, salt * 31 + k);
        let point = fail::ALL[(r % fail::ALL.len() as u64) as usize];
        if plan.iter().any(|(p, _, _)| *p == point) {
            continue;
        }
        // Restore runs once per attempt: its second hit is the first restore after a failure.
        let nth = if point == fail::DURING_RESTORE {
            2
        } else {
            1 + (r >> 8) % 4
        };
        let action = if (r >> 16).is_multiple_of(2) {
            FailAction::Error
        } else {
            FailAction::Panic
        };
        plan.push((point, nth, action));
    }
    plan
}

#[test]
fn committed_output_equals_the_failure_free_output_under_injected_failures() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seeds: u64 = std::env::var("WEIR_EO_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let mut runs = 0;
    let mut restarts = 0;
    for seed in 1..=seeds {
        let (expected, _) = run(&Run {
            seed,
            parallelism: 2,
            rocks: false,
            failures: vec![],
        });
        assert_eq!(
            expected.0,
            model(seed),
            "seed {seed}: failure-free ledger differs from the sequential model"
        );
        let tiers: i64 = expected.1.iter().map(|w| w.value.0).sum();
        let posted: i64 = expected
            .0
            .iter()
            .map(|o| {
                if let LedgerOut::Posted { cents, .. } = o {
                    *cents
                } else {
                    0
                }
            })
            .sum();
        assert_eq!(tiers, posted, "seed {seed}: windows must account for every posted cent");
        for parallelism in [1, 2, 4] {
            for rocks in [false, true] {
                let failures = failure_plan(seed, parallelism as u64 * 2 + rocks as u64);
                let r = Run {
                    seed,
                    parallelism,
                    rocks,
                    failures: failures.clone(),
                };
                let (got, report) = run(&r);
                runs += 1;
                restarts += report.restarts;
                let ctx = format!(
                    "seed {seed} p{parallelism} rocks={rocks} failures {failures:?} restarts {}",
                    report.restarts
                );
                assert_eq!(got.0.len(), expected.0.len(), "{ctx}: ledger record count");
                assert!(got.0 == expected.0, "{ctx}: ledger output differs");
                assert!(got.1 == expected.1, "{ctx}: window output differs");
            }
        }
    }
    println!("{runs} runs with injected failures, {restarts} restarts in total");
    assert!(
        restarts as usize >= runs,
        "the failure plans must actually cause restarts ({restarts} for {runs} runs)"
    );
}

#[test]
fn identical_output_at_every_parallelism_and_backend_without_failures() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (reference, _) = run(&Run {
        seed: 99,
        parallelism: 1,
        rocks: false,
        failures: vec![],
    });
    for parallelism in [1, 2, 4] {
        for rocks in [false, true] {
            let (got, report) = run(&Run {
                seed: 99,
                parallelism,
                rocks,
                failures: vec![],
            });
            assert_eq!(report.restarts, 0);
            assert!(got == reference, "p{parallelism} rocks={rocks} differs from p1 memory");
        }
    }
}
