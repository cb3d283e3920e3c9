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
//!
//! Because the ledger deduplicates first, it cannot see an event processed twice. The second
//! part of this file (see "count-sensitive pipeline" below) has no deduplication: a running
//! count and sum per key that every replayed or doubled event changes, run in child processes
//! that fail points end with `abort` (as `kill -9` would), with late events within allowed
//! lateness in a variant. `WEIR_EO_ABORT_SEEDS=n` runs more seeds there (default 1).

use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::generator::mix;
use weir::prelude::*;

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

/// Whether a RocksDB run keeps the memtable at barriers (the write-ahead log in its
/// snapshots) rather than flushing it: every other seed, so that both kinds of snapshot go
/// through the same failures.
fn log_at_barrier(seed: u64) -> bool {
    seed.is_multiple_of(2)
}

/// A RocksDB backend working in `dir`, keeping the memtable at barriers when `log`.
fn rocks_backend(dir: &Path, log: bool) -> RocksDbBackend {
    let at_barrier = if log {
        MemtableAtBarrier::Log
    } else {
        MemtableAtBarrier::Flush
    };
    RocksDbBackend::new(dir).memtable_at_barrier(at_barrier)
}

fn run(r: &Run) -> (Outputs, JobReport) {
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    for (p, n, a) in &r.failures {
        points.arm(p, *n, *a);
    }
    let seed = r.seed;
    let mut p = Pipeline::new("exactly-once")
        .fail_points(points)
        .parallelism(r.parallelism)
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(15))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        });
    if r.rocks {
        p = p.state_backend(rocks_backend(&dir.path().join("state"), log_at_barrier(r.seed)));
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
                    "seed {seed} p{parallelism} rocks={rocks} log_at_barrier={} failures {failures:?} restarts {}",
                    rocks && log_at_barrier(seed),
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

// ---- count-sensitive pipeline, process aborts -------------------------------------------------
//
// The ledger above deduplicates by payment id as its first stateful step: a source that rewinds
// too far, or an exchange that delivers a batch twice, would produce the same output there.
// The pipeline below has no deduplication: its first stateful step keeps a running count and sum
// per region, fed by every split (so the order of a region's events differs from run to run,
// but not their number). Every event is committed as `(region, event id, count, sum)`, so the
// committed output of a region must hold each of its events once and exactly the counts
// `1..=n`, with the model's sum at count `n`: an event processed twice or lost shows.
//
// The job runs in child processes (this test binary, re-executed with `CHILD_SPEC` set) so that
// `FailAction::Abort` can end the process, as `kill -9` would; the parent restarts the child
// after each abort, and checks that every planned fail point fired: the abort by the child's
// exit status (SIGABRT) and the fail point named in its log, the others by the child's report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable that makes this binary a child running one attempt of a job.
const CHILD_SPEC: &str = "WEIR_EO_CHILD_SPEC";
/// The test that runs the child role (and does nothing without `CHILD_SPEC`).
const CHILD_TEST: &str = "exactly_once::count_sensitive_child_process";

const TALLY_EVENTS: u64 = 6_000;
const REGIONS: u64 = 5;
/// Event time of a late event: this far behind its neighbours (the watermark allows 500 ms).
const LATE_BY_MS: i64 = 6_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Txn {
    id: u64,
    region: u64,
    cents: i64,
    ts: i64,
}

/// Event `i`: no duplicates (every event counts). With `late`, every 40th event is
/// `LATE_BY_MS` behind: late for its window, but within the allowed lateness.
fn txn(seed: u64, i: u64, late: bool) -> Txn {
    let r = mix(seed ^ 0xC0C0, i);
    let mut ts = 1_000_000 + 2 * i as i64 + (r >> 24) as i64 % 200 - 100;
    if late && r.is_multiple_of(40) {
        ts -= LATE_BY_MS;
    }
    Txn {
        id: i,
        region: (r >> 8) % REGIONS,
        cents: 1 + ((r >> 16) % 1000) as i64,
        ts,
    }
}

/// What the tally step commits per event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Tallied {
    region: u64,
    id: u64,
    cents: i64,
    /// The region's event count after this event.
    count: u64,
    /// The region's sum after this event.
    sum: i64,
}

/// Running count and sum per region: no deduplication, so every event processed counts.
#[derive(Clone)]
struct Tally;

impl KeyedProcess<u64, Txn> for Tally {
    type Out = Tallied;
    fn process(&mut self, t: Txn, ctx: &mut KeyedContext<'_, u64, Tallied>) -> Result<()> {
        let mut state = ctx.value_state::<(u64, i64)>("count-and-sum");
        let (count, sum) = state.get()?.unwrap_or((0, 0));
        let (count, sum) = (count + 1, sum + t.cents);
        state.set(&(count, sum))?;
        ctx.emit_at(
            Tallied {
                region: t.region,
                id: t.id,
                cents: t.cents,
                count,
                sum,
            },
            t.ts,
        );
        Ok(())
    }
}

/// Count and sum of the amounts `(region, cents)` in a window.
struct WindowTotals;
impl AggregateFunction<(u64, i64)> for WindowTotals {
    type Acc = (u64, i64);
    type Out = (u64, i64);
    fn create(&self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (u64, i64), e: &(u64, i64)) {
        acc.0 += 1;
        acc.1 += e.1;
    }
    fn merge(&self, acc: &mut (u64, i64), o: (u64, i64)) {
        acc.0 += o.0;
        acc.1 += o.1;
    }
    fn result(&self, acc: &(u64, i64)) -> (u64, i64) {
        *acc
    }
}

/// One attempt of a job, as the parent hands it to a child process.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildSpec {
    seed: u64,
    parallelism: usize,
    rocks: bool,
    /// With `rocks`: RocksDB keeps the memtable at barriers (its log is in the snapshots).
    #[serde(default)]
    log_at_barrier: bool,
    late: bool,
    dir: PathBuf,
    /// Fail points armed in this attempt: (name, nth hit, "error" | "panic" | "abort").
    arm: Vec<(String, u64, String)>,
    /// Run on a master and this many worker processes: every process of the cluster arms
    /// `arm` when it first starts (an abort ends that process, as `kill -9` would, and the
    /// launcher starts it again, unarmed).
    #[serde(default)]
    workers: Option<u32>,
    /// Checkpoints in this S3 bucket instead of `dir/checkpoints`.
    #[serde(default)]
    s3: Option<S3Target>,
    /// Events per second [default 5 000].
    #[serde(default)]
    rate: Option<f64>,
    /// Completed checkpoints are replicated here; sinks commit only replicated ones.
    #[serde(default)]
    replica: Option<S3Target>,
    /// With `workers`: two masters that elect their leader in the etcd at this endpoint (every
    /// master arms `arm` when it first starts, so each aborts once when it leads).
    #[serde(default)]
    etcd: Option<String>,
}

/// Checkpoint storage on an S3-compatible server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct S3Target {
    endpoint: String,
    bucket: String,
    prefix: String,
}

impl S3Target {
    fn storage(&self) -> std::sync::Arc<dyn weir::engine::checkpoint::CheckpointStorage> {
        weir::object_storage::testing::storage_at(&self.endpoint, &self.bucket, &self.prefix).unwrap()
    }
}

/// What a child that finished its job reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildReport {
    /// Armed fail points that never fired.
    unfired: Vec<String>,
    restarts: u32,
}

fn action(name: &str) -> FailAction {
    match name {
        "error" => FailAction::Error,
        "panic" => FailAction::Panic,
        "abort" => FailAction::Abort,
        other => panic!("unknown fail action {other}"),
    }
}

fn fail_point(name: &str) -> &'static str {
    fail::ALL
        .iter()
        .copied()
        .find(|p| *p == name)
        .unwrap_or_else(|| panic!("unknown fail point {name}"))
}

/// The job of one child attempt: resumes from the checkpoints in `spec.dir`.
fn tally_job(spec: &ChildSpec) -> Pipeline {
    let (seed, late) = (spec.seed, spec.late);
    let mut p = Pipeline::new("count-sensitive")
        .parallelism(spec.parallelism)
        .batch_size(32);
    p = match &spec.s3 {
        Some(s3) => {
            let mut config = weir::engine::checkpoint::CheckpointConfig::with_storage(s3.storage());
            config.replication = spec
                .replica
                .as_ref()
                .map(|r| weir::engine::checkpoint::replication::ReplicationConfig::new(r.storage()));
            p.checkpointing(config)
        }
        None => p.checkpoint_storage(spec.dir.join("checkpoints")),
    };
    p = p
        .checkpoint_interval(Duration::from_millis(20))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        });
    p = if spec.rocks {
        p.state_backend(rocks_backend(&spec.dir.join("state"), spec.log_at_barrier))
    } else {
        p.state_backend(MemoryBackend::new())
    };
    let tallied = p
        .source(
            "txns",
            GeneratorSource::new(move |i| txn(seed, i, late))
                .bounded(TALLY_EVENTS)
                .splits(SPLITS as usize)
                .rate_per_second(spec.rate.unwrap_or(5_000.0)),
        )
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(500))
                .with_timestamp_assigner(|t: &Txn| t.ts),
        )
        .key_by("by-region", |t: &Txn| t.region)
        .process("tally", Tally);
    tallied.sink("tallied-out", FileSink::exactly_once(spec.dir.join("tallied")));
    if spec.late {
        tallied
            .map("amounts", |t: Tallied| (t.region, t.cents))
            .key_by("amounts-by-region", |(r, _): &(u64, i64)| *r)
            .window(TumblingEventTime::of(Duration::from_secs(1)))
            .allowed_lateness(Duration::from_secs(3_600))
            .aggregate("per-region-second", WindowTotals)
            .sink("windows-out", FileSink::exactly_once(spec.dir.join("windows")));
    }
    p
}

/// The child role: runs one attempt of the job described by `CHILD_SPEC`, with its fail points
/// armed, and writes a [`ChildReport`] unless a fail point aborts the process first.
#[test]
fn count_sensitive_child_process() {
    let Ok(spec) = std::env::var(CHILD_SPEC) else {
        return; // not a child: nothing to do
    };
    let spec: ChildSpec = serde_json::from_str(&spec).unwrap();
    // The fail point's warning (it names the point) reaches the parent through stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    // The child runs this one job: it arms the process-wide fail points, which a job whose
    // configuration names none uses (the way the payment example's drill arms its worker).
    let points = FailPoints::process_wide();
    points.disarm_all();
    // On a cluster, the master and workers arm the failures (the first time each starts);
    // the launching process only runs the launcher.
    let arms = match spec.workers {
        None => true,
        Some(_) => {
            std::env::var_os("WEIR_ROLE").is_some()
                && std::env::var(weir::engine::cluster::INCARNATION_ENV).as_deref() == Ok("0")
        }
    };
    for (point, nth, a) in spec.arm.iter().filter(|_| arms) {
        points.arm(fail_point(point), *nth, action(a));
    }
    let report = tally_job(&spec).run().unwrap_or_else(|e| panic!("the job failed: {e}"));
    let unfired = spec
        .arm
        .iter()
        .filter(|(p, _, _)| points.is_armed(p))
        .map(|(p, _, _)| p.clone())
        .collect();
    points.disarm_all();
    let out = ChildReport {
        unfired,
        restarts: report.restarts,
    };
    std::fs::write(spec.dir.join("child-report.json"), serde_json::to_string(&out).unwrap()).unwrap();
}

/// Runs one attempt in a child process; returns its exit status and stderr.
fn run_child(spec: &ChildSpec) -> (std::process::ExitStatus, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_SPEC, serde_json::to_string(spec).unwrap())
        .env_remove("WEIR_ROLE")
        .env_remove("WEIR_WORKERS");
    if let Some(n) = spec.workers {
        c.env("WEIR_WORKERS", n.to_string())
            .env("WEIR_SLOTS", "2")
            .env("WEIR_HEARTBEAT_MS", "100")
            .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000");
    }
    if let Some(endpoint) = &spec.etcd {
        c.env("WEIR_MASTERS", "2")
            .env("WEIR_ETCD_ENDPOINTS", endpoint)
            .env("WEIR_HA_LEASE_MS", "1000");
    }
    let out = c.output().expect("starting the child process");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The failures of one run: attempts 1 and 2 each abort the process at one fail point (the
/// first after a checkpoint completed, so that every restart has one to resume from); attempt 3
/// fails in-process with errors and panics (restarted by the restart strategy) and finishes.
fn abort_plan(seed: u64, salt: u64) -> Vec<Vec<(String, u64, String)>> {
    let r = |k: u64| mix(seed ^ 0xAB07, salt * 7 + k);
    let first = [fail::AFTER_METADATA, fail::DURING_COMMIT][(r(0) % 2) as usize];
    let second_choices = [
        fail::PROCESS_RECORD,
        fail::SNAPSHOT_SYNC,
        fail::UPLOAD,
        fail::AFTER_PRE_COMMIT,
        fail::AFTER_METADATA,
        fail::DURING_COMMIT,
        fail::DURING_RESTORE,
    ];
    let second = second_choices[(r(1) % second_choices.len() as u64) as usize];
    // Early hits, so that each fires while the job still has most of its input ahead.
    let nth = |point: &str, k: u64| match point {
        fail::DURING_RESTORE => 1, // the restore at the start of the attempt
        fail::PROCESS_RECORD => 10 + r(k) % 40,
        _ => 1 + r(k) % 2,
    };
    let mut third = Vec::new();
    for k in 0..2 {
        let point = [
            fail::PROCESS_RECORD,
            fail::SNAPSHOT_SYNC,
            fail::UPLOAD,
            fail::AFTER_PRE_COMMIT,
            fail::AFTER_METADATA,
            fail::DURING_COMMIT,
        ][(r(10 + k) % 6) as usize];
        if third.iter().any(|(p, _, _): &(String, u64, String)| p == point) {
            continue;
        }
        let act = if r(20 + k).is_multiple_of(2) { "error" } else { "panic" };
        third.push((point.to_string(), nth(point, 30 + k), act.to_string()));
    }
    vec![
        vec![(first.to_string(), nth(first, 2), "abort".to_string())],
        vec![(second.to_string(), nth(second, 3), "abort".to_string())],
        third,
    ]
}

/// Runs the job through the attempts of `plan` in child processes, checks that every planned
/// fail point fired, and checks the committed output against the model.
fn run_with_aborts(seed: u64, parallelism: usize, rocks: bool, late: bool, plan: &[Vec<(String, u64, String)>]) {
    run_with_aborts_on(seed, parallelism, rocks, late, plan, None);
}

/// [`run_with_aborts`] with checkpoints on S3 when `s3` is given.
fn run_with_aborts_on(
    seed: u64,
    parallelism: usize,
    rocks: bool,
    late: bool,
    plan: &[Vec<(String, u64, String)>],
    s3: Option<S3Target>,
) {
    let dir = tempfile::tempdir().unwrap();
    let on = s3
        .as_ref()
        .map(|t| format!(" on s3://{}/{}", t.bucket, t.prefix))
        .unwrap_or_default();
    let log = log_at_barrier(seed + parallelism as u64);
    let ctx = format!("seed {seed} p{parallelism} rocks={rocks} log_at_barrier={log} late={late}{on} plan {plan:?}");
    for (n, arm) in plan.iter().enumerate() {
        let spec = ChildSpec {
            seed,
            parallelism,
            rocks,
            log_at_barrier: log,
            late,
            dir: dir.path().to_path_buf(),
            arm: arm.clone(),
            workers: None,
            s3: s3.clone(),
            rate: None,
            replica: None,
            etcd: None,
        };
        let (status, stderr) = run_child(&spec);
        let aborts: Vec<&String> = arm.iter().filter(|(_, _, a)| a == "abort").map(|(p, _, _)| p).collect();
        if let [point] = aborts.as_slice() {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(6),
                "{ctx}: attempt {n} must end by the abort at {point} (SIGABRT), got {status:?}\n{stderr}"
            );
            assert!(
                stderr.contains("injected failure") && stderr.contains(point.as_str()),
                "{ctx}: attempt {n}: the log must name the fail point {point}\n{stderr}"
            );
        } else {
            assert!(status.success(), "{ctx}: attempt {n} failed: {status:?}\n{stderr}");
            let report: ChildReport =
                serde_json::from_str(&std::fs::read_to_string(dir.path().join("child-report.json")).unwrap()).unwrap();
            assert!(
                report.unfired.is_empty(),
                "{ctx}: attempt {n}: planned fail points that never fired: {:?} ({} restarts)",
                report.unfired,
                report.restarts
            );
        }
    }
    check_tallied(seed, late, dir.path(), &ctx);
    if late {
        check_windows(seed, dir.path(), &ctx);
    }
}

/// The committed tally against a sequential model: per region, each event once, the counts
/// exactly `1..=n`, and the model's sum at `n`.
fn check_tallied(seed: u64, late: bool, dir: &Path, ctx: &str) {
    let mut committed: BTreeMap<u64, Vec<Tallied>> = BTreeMap::new();
    for line in weir::engine::sink::read_committed_lines(dir.join("tallied")).unwrap() {
        let t: Tallied = serde_json::from_str(&line).unwrap();
        committed.entry(t.region).or_default().push(t);
    }
    let mut model: BTreeMap<u64, (Vec<u64>, i64)> = BTreeMap::new();
    for i in 0..TALLY_EVENTS {
        let t = txn(seed, i, late);
        let m = model.entry(t.region).or_default();
        m.0.push(t.id);
        m.1 += t.cents;
    }
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        model.keys().collect::<Vec<_>>(),
        "{ctx}: regions"
    );
    for (region, (ids, sum)) in &model {
        let got = &committed[region];
        let mut got_ids: Vec<u64> = got.iter().map(|t| t.id).collect();
        got_ids.sort_unstable();
        let mut counts: Vec<u64> = got.iter().map(|t| t.count).collect();
        counts.sort_unstable();
        let n = ids.len() as u64;
        assert_eq!(
            got.len(),
            ids.len(),
            "{ctx}: region {region}: {} records committed for {} events (an event processed twice or lost)",
            got.len(),
            ids.len()
        );
        assert!(got_ids == *ids, "{ctx}: region {region}: committed event ids differ");
        assert!(
            counts == (1..=n).collect::<Vec<_>>(),
            "{ctx}: region {region}: the running counts must be exactly 1..={n}"
        );
        let last = got.iter().find(|t| t.count == n).expect("count n");
        assert_eq!(last.sum, *sum, "{ctx}: region {region}: final sum");
    }
}

/// The committed window results (with late firings): per region and window, the counts of its
/// firings strictly increase (each firing after at least one new event), and the last firing
/// holds the model's count and sum of the window. Returns the number of late firings.
fn check_windows(seed: u64, dir: &Path, ctx: &str) -> usize {
    let mut firings: BTreeMap<(u64, i64), Vec<(u64, i64)>> = BTreeMap::new();
    for line in weir::engine::sink::read_committed_lines(dir.join("windows")).unwrap() {
        let w: Windowed<u64, (u64, i64)> = serde_json::from_str(&line).unwrap();
        firings.entry((w.key, w.window.start)).or_default().push(w.value);
    }
    let mut model: BTreeMap<(u64, i64), (u64, i64)> = BTreeMap::new();
    for i in 0..TALLY_EVENTS {
        let t = txn(seed, i, true);
        let w = model.entry((t.region, t.ts - t.ts.rem_euclid(1_000))).or_default();
        w.0 += 1;
        w.1 += t.cents;
    }
    assert_eq!(
        firings.keys().collect::<Vec<_>>(),
        model.keys().collect::<Vec<_>>(),
        "{ctx}: windows"
    );
    let mut late_firings = 0;
    for (w, expected) in &model {
        let mut got = firings[w].clone();
        got.sort_unstable();
        late_firings += got.len() - 1;
        assert!(
            got.windows(2).all(|p| p[0].0 < p[1].0),
            "{ctx}: window {w:?}: a firing repeated or a count that does not grow: {got:?}"
        );
        assert_eq!(
            got.last(),
            Some(expected),
            "{ctx}: window {w:?}: the last firing must hold every event of the window once: {got:?}"
        );
    }
    late_firings
}

#[test]
fn count_sensitive_output_is_exact_across_process_aborts() {
    let seeds: u64 = std::env::var("WEIR_EO_ABORT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in 1..=seeds {
        for parallelism in [1, 2, 4] {
            for rocks in [false, true] {
                let plan = abort_plan(seed, parallelism as u64 * 2 + rocks as u64);
                run_with_aborts(seed, parallelism, rocks, false, &plan);
            }
        }
    }
}

/// The same with an event-time window with allowed lateness after the tally step, fed late
/// events: after a restore, late events must update their windows as in a failure-free run
/// (watermarks must be part of the checkpoint).
#[test]
fn late_events_within_allowed_lateness_are_exact_across_process_aborts() {
    // Without failures, late events fire their windows again.
    let dir = tempfile::tempdir().unwrap();
    let spec = ChildSpec {
        seed: 77,
        parallelism: 2,
        rocks: false,
        log_at_barrier: false,
        late: true,
        dir: dir.path().to_path_buf(),
        arm: vec![],
        workers: None,
        s3: None,
        rate: None,
        replica: None,
        etcd: None,
    };
    assert!(run_child(&spec).0.success());
    let late_firings = check_windows(77, dir.path(), "failure-free");
    assert!(
        late_firings > 10,
        "the input must cause late firings, got {late_firings}"
    );
    let seeds: u64 = std::env::var("WEIR_EO_ABORT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // Every parallelism and both backends, in three runs (the file's run time is bounded).
    for seed in 1..=seeds {
        for (parallelism, rocks) in [(1, true), (2, false), (4, true)] {
            let plan = abort_plan(seed + 100, parallelism as u64 * 2 + rocks as u64);
            run_with_aborts(seed + 100, parallelism, rocks, true, &plan);
        }
    }
}

/// The count-sensitive pipeline, with its late events and window, on a master and 3 worker
/// processes: every process arms seeded aborts (each ends its process as `kill -9` would) at
/// fail points of the checkpoint path (a worker while processing, in its synchronous
/// snapshot, after a sink's pre-commit or during a commit; the master during the upload,
/// after the metadata, or during the restore after the worker's abort); the launcher starts
/// each process again, unarmed, and the job recovers. Every armed point must fire, and the
/// committed output must equal the sequential model.
#[test]
fn count_sensitive_output_is_exact_on_a_cluster_across_process_aborts() {
    let seeds: u64 = std::env::var("WEIR_EO_ABORT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in 1..=seeds {
        for parallelism in [2, 4] {
            let r = |k: u64| mix(seed ^ 0xC7A5, parallelism as u64 * 100 + k);
            let on_worker = [
                fail::PROCESS_RECORD,
                fail::SNAPSHOT_SYNC,
                fail::AFTER_PRE_COMMIT,
                fail::DURING_COMMIT,
            ][(r(0) % 4) as usize];
            let on_master = [fail::UPLOAD, fail::AFTER_METADATA][(r(1) % 2) as usize];
            let nth = |point: &str, k: u64| match point {
                fail::PROCESS_RECORD => 50 + r(k) % 200,
                _ => 2 + r(k) % 3,
            };
            // The master's process is armed once: at parallelism 2 it dies in the restore after
            // the worker's abort (its second restore), at 4 in the checkpoint path.
            let master = match parallelism {
                2 => (fail::DURING_RESTORE.to_string(), 2, "abort".to_string()),
                _ => (on_master.to_string(), nth(on_master, 3), "abort".to_string()),
            };
            let arm = vec![(on_worker.to_string(), nth(on_worker, 2), "abort".to_string()), master];
            let dir = tempfile::tempdir().unwrap();
            let spec = ChildSpec {
                seed,
                parallelism,
                rocks: true,
                log_at_barrier: parallelism == 4,
                late: true,
                dir: dir.path().to_path_buf(),
                arm: arm.clone(),
                workers: Some(3),
                s3: None,
                rate: None,
                replica: None,
                etcd: None,
            };
            let ctx = format!("cluster seed {seed} p{parallelism} arm {arm:?}");
            let (status, stderr) = run_child(&spec);
            assert!(status.success(), "{ctx}: the job failed: {status:?}\n{stderr}");
            for (point, _, _) in &arm {
                assert!(
                    stderr.contains("injected failure") && stderr.contains(point.as_str()),
                    "{ctx}: the fail point {point} never fired\n{stderr}"
                );
            }
            check_tallied(seed, true, dir.path(), &ctx);
            check_windows(seed, dir.path(), &ctx);
        }
    }
}

/// The count-sensitive pipeline with its late events and window on 2 masters (a leader and a
/// standby, elected through a real etcd) and 3 workers: every master aborts (`kill -9`-like)
/// once it leads, mid-checkpoint (during the upload, the checkpoint never completes) in one run
/// and mid-commit (after the checkpoint's metadata and etcd's pointer, before any sink was told
/// to commit) in the other, and a worker aborts at a sink point. Each time the other master
/// leads with the next term, restores the checkpoint etcd names, and re-commits what the
/// dead leader had not told the sinks to commit; the committed output equals the model.
#[test]
fn count_sensitive_output_is_exact_when_the_leader_master_aborts_mid_checkpoint_and_mid_commit() {
    let etcd = super::etcd::TestEtcd::start();
    for (run, on_master) in [fail::UPLOAD, fail::AFTER_METADATA].into_iter().enumerate() {
        let on_worker = [fail::AFTER_PRE_COMMIT, fail::DURING_COMMIT][run];
        let arm = vec![
            (on_worker.to_string(), 3, "abort".to_string()),
            (on_master.to_string(), 3, "abort".to_string()),
        ];
        // One etcd, one job name: the second run's storage is new, so its etcd keys must be too.
        etcd.ctl(&["del", "/weir/jobs/count-sensitive/", "--prefix"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spec = ChildSpec {
            seed: 11 + run as u64,
            parallelism: 2,
            rocks: true,
            log_at_barrier: false,
            late: true,
            dir: dir.path().to_path_buf(),
            arm: arm.clone(),
            workers: Some(3),
            etcd: Some(etcd.endpoint()),
            s3: None,
            rate: None,
            replica: None,
        };
        let ctx = format!("HA run {run} arm {arm:?}");
        let (status, stderr) = run_child(&spec);
        assert!(status.success(), "{ctx}: the job failed: {status:?}\n{stderr}");
        for (point, _, _) in &arm {
            assert!(
                stderr.contains("injected failure") && stderr.contains(point.as_str()),
                "{ctx}: the fail point {point} never fired\n{stderr}"
            );
        }
        let term = etcd
            .get_json("/weir/jobs/count-sensitive/term")
            .and_then(|t| t.as_u64())
            .unwrap_or(0);
        assert!(term >= 2, "{ctx}: a standby took over (term {term})");
        check_tallied(spec.seed, true, dir.path(), &ctx);
        check_windows(spec.seed, dir.path(), &ctx);
    }
}

/// The checks of the count-sensitive suite see what they claim to: an event processed twice
/// (its record counted again), a batch delivered twice to the sink (a repeated record) and a
/// lost record each fail them.
#[test]
fn the_count_sensitive_checks_see_a_doubled_and_a_lost_event() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    let spec = ChildSpec {
        seed: 5,
        parallelism: 2,
        rocks: false,
        log_at_barrier: false,
        late: false,
        dir: clean.clone(),
        arm: vec![],
        workers: None,
        s3: None,
        rate: None,
        replica: None,
        etcd: None,
    };
    std::fs::create_dir_all(&clean).unwrap();
    let (status, stderr) = run_child(&spec);
    assert!(status.success(), "{stderr}");
    check_tallied(5, false, &clean, "clean");

    type Edit = fn(&mut Vec<String>);
    let edits: [(&str, Edit); 4] = [
        ("an unchanged copy", |_| {}),
        ("an event processed twice", |lines| {
            let t: Tallied = serde_json::from_str(&lines[0]).unwrap();
            let again = Tallied {
                count: t.count + 1_000_000,
                sum: t.sum + t.cents,
                ..t
            };
            lines.push(serde_json::to_string(&again).unwrap());
        }),
        ("a record committed twice", |lines| {
            let first = lines[0].clone();
            lines.push(first);
        }),
        ("a record lost", |lines| {
            lines.pop();
        }),
    ];
    for (what, edit) in edits {
        let broken = dir.path().join(what.replace(' ', "-"));
        let files = weir::engine::sink::file::committed_files(clean.join("tallied")).unwrap();
        std::fs::create_dir_all(broken.join("tallied")).unwrap();
        for (i, f) in files.iter().enumerate() {
            let target = broken.join("tallied").join(f.path.file_name().unwrap());
            if i == 0 {
                let mut lines: Vec<String> = std::fs::read_to_string(&f.path)
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect();
                edit(&mut lines);
                std::fs::write(&target, lines.join("\n") + "\n").unwrap();
            } else {
                std::fs::copy(&f.path, &target).unwrap();
            }
        }
        let caught = std::panic::catch_unwind(|| check_tallied(5, false, &broken, what));
        if what == "an unchanged copy" {
            assert!(caught.is_ok(), "the copy itself must pass the check");
        } else {
            assert!(caught.is_err(), "the tally check must fail on {what}");
        }
    }
}

/// Checkpoints on an S3-compatible server (moto on loopback): processes die before the upload
/// (`upload`), after every file is stored but before the metadata PUT that completes the
/// checkpoint (`before-metadata`), and after it (`after-metadata`); the restarted job finds
/// the latest checkpoint whose metadata exists and the output stays exact.
#[test]
fn count_sensitive_output_is_exact_with_s3_checkpoints_across_process_aborts() {
    let server = weir::object_storage::testing::S3Server::start().unwrap();
    for (parallelism, rocks) in [(2, true), (3, false)] {
        let s3 = S3Target {
            endpoint: server.endpoint(),
            bucket: server.create_bucket("eo").unwrap(),
            prefix: "jobs/count-sensitive".into(),
        };
        let second = if rocks { fail::AFTER_METADATA } else { fail::UPLOAD };
        let plan = vec![
            vec![(fail::BEFORE_METADATA.to_string(), 2, "abort".to_string())],
            vec![(second.to_string(), 2, "abort".to_string())],
            vec![
                (fail::BEFORE_METADATA.to_string(), 2, "error".to_string()),
                (fail::DURING_COMMIT.to_string(), 1, "panic".to_string()),
            ],
        ];
        run_with_aborts_on(7, parallelism, rocks, true, &plan, Some(s3.clone()));
        // The aborted checkpoints' files are gone: every stored object belongs to a retained
        // checkpoint (or is its reservation, identity or owner record).
        let storage = s3.storage();
        let complete: Vec<_> = storage.list().unwrap().into_iter().filter(|(_, c)| *c).collect();
        assert!(!complete.is_empty(), "p{parallelism}: no completed checkpoint on S3");
        let mut referenced = std::collections::HashSet::new();
        for (id, _) in &complete {
            let meta = weir::engine::checkpoint::read_metadata(storage.as_ref(), *id).unwrap();
            referenced.extend(meta.files().map(|f| f.key.clone()));
        }
        for key in storage.list_shared().unwrap() {
            assert!(
                referenced.contains(&key),
                "p{parallelism}: shared file {key} outlived its checkpoint"
            );
        }
    }
}

/// A cluster (master and three worker processes) checkpointing to S3: workers upload their own
/// files, processes abort at every phase, the output stays exact.
#[test]
fn count_sensitive_output_is_exact_on_a_cluster_with_s3_checkpoints() {
    let server = weir::object_storage::testing::S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Target {
        endpoint: server.endpoint(),
        bucket: server.create_bucket("cluster").unwrap(),
        prefix: "count-sensitive".into(),
    };
    let arm = vec![
        (fail::SNAPSHOT_SYNC.to_string(), 3, "abort".to_string()),
        (fail::BEFORE_METADATA.to_string(), 3, "abort".to_string()),
    ];
    let spec = ChildSpec {
        seed: 3,
        parallelism: 3,
        rocks: true,
        log_at_barrier: false,
        late: true,
        dir: dir.path().to_path_buf(),
        arm: arm.clone(),
        workers: Some(3),
        s3: Some(s3),
        rate: None,
        replica: None,
        etcd: None,
    };
    let ctx = format!("cluster on s3 arm {arm:?}");
    let (status, stderr) = run_child(&spec);
    assert!(status.success(), "{ctx}: the job failed: {status:?}\n{stderr}");
    for (point, _, _) in &arm {
        assert!(
            stderr.contains("injected failure") && stderr.contains(point.as_str()),
            "{ctx}: the fail point {point} never fired\n{stderr}"
        );
    }
    check_tallied(3, true, dir.path(), &ctx);
    check_windows(3, dir.path(), &ctx);
}

/// The S3 server stops answering for a while (connections cut, then requests that hang) while
/// the job checkpoints: checkpoints fail or wait, the job goes on or restarts, and the
/// committed output is exact.
#[test]
fn count_sensitive_output_is_exact_through_an_s3_outage() {
    use weir::object_storage::testing::{FaultProxy, ProxyMode, S3Server};
    let server = S3Server::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ChildSpec {
        seed: 11,
        parallelism: 2,
        rocks: true,
        log_at_barrier: false,
        late: false,
        dir: dir.path().to_path_buf(),
        arm: vec![],
        workers: None,
        s3: Some(S3Target {
            endpoint: proxy.endpoint(),
            bucket: server.create_bucket("outage").unwrap(),
            prefix: "p".into(),
        }),
        rate: Some(1_500.0),
        replica: None,
        etcd: None,
    };
    let job = tally_job(&spec);
    // About 4 s of input: checkpoints complete before the outage, fail or wait through it,
    // and complete after it.
    let outage = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1_000));
        proxy.set(ProxyMode::Drop);
        std::thread::sleep(Duration::from_millis(700));
        proxy.set(ProxyMode::Stall);
        std::thread::sleep(Duration::from_millis(1_500));
        proxy.set(ProxyMode::Pass);
        proxy
    });
    let report = job
        .run()
        .unwrap_or_else(|e| panic!("the job failed through the outage: {e}"));
    let proxy = outage.join().unwrap();
    assert!(proxy.faults() > 0, "the outage must have hit requests");
    assert!(
        report.checkpoints.len() >= 3,
        "checkpoints before and after the outage: {:?}",
        report.checkpoints
    );
    println!(
        "through the outage: {} connections cut or stalled, {} checkpoints completed, {} restarts",
        proxy.faults(),
        report.checkpoints.len(),
        report.restarts
    );
    check_tallied(11, false, dir.path(), "s3 outage");
}

/// Cross-site disaster recovery: the job runs at site A with checkpoints in one bucket,
/// replicated to a second bucket (site B), and sinks committing only replicated checkpoints.
/// Mid-run every process of site A dies and site A's bucket is deleted; the job is started at
/// site B from the replica and its committed output is exact: nothing the sinks committed at
/// site A is ahead of the replica, and the source replays from the replicated positions.
#[test]
fn count_sensitive_output_is_exact_after_losing_site_a() {
    let server = weir::object_storage::testing::S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = |name: &str| S3Target {
        endpoint: server.endpoint(),
        bucket: server.create_bucket(name).unwrap(),
        prefix: "payments".into(),
    };
    let (a, b) = (site("site-a"), site("site-b"));
    let at_a = ChildSpec {
        seed: 5,
        parallelism: 2,
        rocks: true,
        log_at_barrier: false,
        late: true,
        dir: dir.path().to_path_buf(),
        arm: vec![],
        workers: None,
        s3: Some(a.clone()),
        rate: Some(2_000.0),
        replica: Some(b.clone()),
        etcd: None,
    };
    // The disaster: once the replica holds two checkpoints and site A completed a newer one
    // than the replica holds (the replica lags), every process of site A is killed (kill -9),
    // mid-stream.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_SPEC, serde_json::to_string(&at_a).unwrap())
        .env_remove("WEIR_ROLE")
        .env_remove("WEIR_WORKERS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (primary, replica) = (a.storage(), b.storage());
    let complete = |s: &dyn weir::engine::checkpoint::CheckpointStorage| -> Vec<_> {
        s.list()
            .unwrap()
            .into_iter()
            .filter(|(_, c)| *c)
            .map(|(id, _)| id)
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (replicated, newest_at_a) = loop {
        let done = complete(replica.as_ref());
        let at_a = complete(primary.as_ref());
        if done.len() >= 2 && at_a.last() > done.last() {
            break (done, at_a.last().copied());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never held two checkpoints"
        );
        assert!(child.try_wait().unwrap().is_none(), "site A ended before the disaster");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "disaster at site A: newest checkpoint there {newest_at_a:?}, newest in the replica {:?}",
        replicated.last()
    );
    assert!(
        !std::fs::read_dir(dir.path().join("tallied"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "site A committed no output before the disaster: the drill would prove nothing"
    );
    // Site A is gone: its bucket and its working state.
    weir::object_storage::testing::object_storage_at(&a.endpoint, &a.bucket, &a.prefix)
        .unwrap()
        .delete_everything()
        .unwrap();
    assert!(a.storage().list().unwrap().is_empty());
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    // Site B: the same job, its checkpoints in the replica, no replica of its own.
    let at_b = ChildSpec {
        arm: vec![],
        s3: Some(b),
        replica: None,
        etcd: None,
        ..at_a
    };
    let (status, stderr) = run_child(&at_b);
    assert!(status.success(), "the job at site B failed: {status:?}\n{stderr}");
    check_tallied(5, true, dir.path(), "site B");
    check_windows(5, dir.path(), "site B");
}
