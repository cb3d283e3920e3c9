//! Broadcast state schema evolution across checkpoints and failures.
//!
//! A keyed step flags transactions above the limit in force at their event time; the limits
//! come from a broadcast stream of rules and live in the step's broadcast state. The rules'
//! source ends before the first run is cancelled, so the run that restores has the rules only
//! from the checkpointed broadcast state. The restored job's value type of the broadcast state
//! differs from the one that wrote the checkpoint:
//! - renamed, with a field added with `#[serde(default)]`, at another parallelism and with a
//!   failure in the restored run: every transaction is decided once with the right rule
//!   (compared with a sequential model);
//! - a field whose type changed, without a new version and a migration: the restore fails with
//!   a `Config` error naming the step and the state, and the checkpoint still restores into a
//!   compatible job.

use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;
use weir::engine::data::Data;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::prelude::*;

use crate::common::threshold_rules::{Decision, Rule, Txn, Workload, DEFAULT_LIMIT};
use crate::common::{wait_until, within};

const WORKLOAD: Workload = Workload {
    events: 3_000,
    accounts: 12,
    rules: 20,
    txn_seed: 0xE701B,
    rule_seed: 0x7E1E6,
};
const SLOW: f64 = 500.0;
const FAST: f64 = 100_000.0;

/// A value type of the broadcast state: made from a rule, read as a limit.
trait LimitValue: Data {
    fn of(rule: &Rule) -> Self;
    fn limit(&self) -> i64;
}

/// The value type of the job that writes the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LimitV1 {
    limit: i64,
}

impl LimitValue for LimitV1 {
    fn of(rule: &Rule) -> Self {
        LimitV1 { limit: rule.limit }
    }
    fn limit(&self) -> i64 {
        self.limit
    }
}

/// The next version: renamed, and a field more with a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Limit {
    limit: i64,
    #[serde(default)]
    source: Option<String>,
}

impl LimitValue for Limit {
    fn of(rule: &Rule) -> Self {
        Limit {
            limit: rule.limit,
            source: Some("rules".into()),
        }
    }
    fn limit(&self) -> i64 {
        self.limit
    }
}

/// An incompatible change: the limit became text, without a new version or a migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LimitText {
    limit: String,
}

impl LimitValue for LimitText {
    fn of(rule: &Rule) -> Self {
        LimitText {
            limit: rule.limit.to_string(),
        }
    }
    fn limit(&self) -> i64 {
        self.limit.parse().unwrap_or(DEFAULT_LIMIT)
    }
}

/// Holds each transaction until the watermark passes its time (so every rule in force then
/// has arrived), then decides it with the limit in force at its time.
struct Flag<V>(PhantomData<fn() -> V>);

impl<V> Clone for Flag<V> {
    fn clone(&self) -> Self {
        Flag(PhantomData)
    }
}

fn flag<V>() -> Flag<V> {
    Flag(PhantomData)
}

impl<V: LimitValue> KeyedBroadcastProcess<u64, Txn, Rule> for Flag<V> {
    type Out = Decision;
    type StateKey = i64;
    type StateValue = V;

    fn process(&mut self, t: Txn, _: &BroadcastState<i64, V>, ctx: &mut KeyedContext<'_, u64, Decision>) -> Result<()> {
        ctx.register_event_time_timer(t.ts)?;
        ctx.map_state::<u64, Txn>("pending").put(&t.id, &t)
    }

    fn process_broadcast(
        &mut self,
        r: Rule,
        state: &mut BroadcastState<i64, V>,
        _: &mut BroadcastContext<'_, Decision>,
    ) -> Result<()> {
        state.insert(r.from, V::of(&r));
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        state: &BroadcastState<i64, V>,
        ctx: &mut KeyedContext<'_, u64, Decision>,
    ) -> Result<()> {
        let mut due: Vec<Txn> = ctx
            .map_state::<u64, Txn>("pending")
            .entries()?
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.ts <= timer.time)
            .collect();
        due.sort_by_key(|t| (t.ts, t.id));
        for t in due {
            ctx.map_state::<u64, Txn>("pending").remove(&t.id)?;
            let mut count = ctx.value_state::<u64>("count");
            let n = count.get()?.unwrap_or(0) + 1;
            count.set(&n)?;
            let limit = state
                .range(..=t.ts)
                .next_back()
                .map_or(DEFAULT_LIMIT, |(_, l)| l.limit());
            ctx.emit(Decision {
                id: t.id,
                account: t.account,
                flagged: t.cents > limit,
                count: n,
            });
        }
        Ok(())
    }

    fn broadcast_state(&self) -> BroadcastStateDescriptor<i64, V> {
        BroadcastStateDescriptor::new("limits")
    }
}

fn pipeline<V: LimitValue>(dir: &Path, parallelism: usize, rate: f64) -> Pipeline {
    let p = Pipeline::new("broadcast-evolution")
        .parallelism(parallelism)
        .batch_size(32)
        .state_dir(dir.join("state"))
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(30));
    WORKLOAD
        .connect(&p, rate)
        .process("flag", flag::<V>())
        .sink("decisions", FileSink::exactly_once(dir.join("decisions")));
    p
}

/// Runs the first version at parallelism 2 until it decided a quarter of the input and
/// completed a checkpoint, then cancels it.
fn run_first_version(dir: &Path) {
    let handle = pipeline::<LimitV1>(dir, 2, SLOW).start().unwrap();
    wait_until("the first version made progress and checkpointed", 90, || {
        let p = handle.progress();
        handle.is_finished() || p.source_records >= WORKLOAD.events / 4 && p.last_checkpoint.is_some()
    });
    assert!(!handle.is_finished(), "the first version ended before it was cancelled");
    handle.cancel();
    let report = handle.join().unwrap();
    assert!(report.cancelled);
}

fn committed(dir: &Path) -> Vec<Decision> {
    weir::engine::sink::read_committed_lines(dir.join("decisions"))
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_broadcast_value_that_gained_a_field_restores_at_another_parallelism_through_a_failure() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run_first_version(dir);
        let points = FailPoints::new();
        points.arm(fail::PROCESS_RECORD, 40, FailAction::Error);
        let report = pipeline::<Limit>(dir, 3, FAST)
            .fail_points(points)
            .restart_strategy(RestartStrategy::FixedDelay {
                max_attempts: 5,
                delay: Duration::from_millis(1),
            })
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert!(
            report.restored_from.is_some(),
            "the second version restored the checkpoint"
        );
        assert_eq!(report.restarts, 1, "the injected failure restarted the job");
        WORKLOAD.check(dir, "the second version");
    });
}

#[test]
fn a_broadcast_value_whose_field_type_changed_fails_the_restore_naming_step_and_state() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run_first_version(dir);
        let before = committed(dir).len();
        let e = pipeline::<LimitText>(dir, 2, FAST)
            .start()
            .and_then(|h| h.join())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("step \"flag"), "the error names the step: {msg}");
        assert!(
            msg.contains("broadcast state \"limits\""),
            "the error names the state: {msg}"
        );
        assert_eq!(committed(dir).len(), before, "the refused job committed nothing");
        // The checkpoint is intact: a compatible version restores it.
        pipeline::<Limit>(dir, 2, FAST).start().unwrap().join().unwrap();
        WORKLOAD.check(dir, "the second version");
    });
}
