//! Broadcast state: a stream of threshold rules, broadcast to every subtask of a keyed step,
//! checkpointed once, restored at the same parallelism and rescaled (2 → 2 → 3 → 1), on both
//! backends; the committed output is compared with a sequential model.
//!
//! The rules take effect by event time (a rule applies from its timestamp on), and the keyed
//! step decides a transaction when the watermark passes the transaction's time, so every rule
//! in force by then has arrived: the output does not depend on how the two inputs interleave.
//! The rules' source ends before the first stop, so later stages get the rules only from the
//! checkpointed broadcast state (a subtask that lost them would decide with the default).
//! The step counts per account with no deduplication: a transaction decided twice or lost
//! changes the committed counts.

use std::path::Path;
use std::time::Duration;
use weir::prelude::*;

use crate::common::threshold_rules::{Decision, Rule, Txn, Workload, DEFAULT_LIMIT};
use crate::common::{wait_until, within, Backend};

const WORKLOAD: Workload = Workload {
    events: 4_000,
    accounts: 16,
    rules: 24,
    txn_seed: 0xB40AD,
    rule_seed: 0x7E1E5,
};
/// Events per second while a stage runs until it is stopped; the last stage runs fast.
const SLOW: f64 = 400.0;
const FAST: f64 = 100_000.0;

#[derive(Clone)]
struct Flag;

impl KeyedBroadcastProcess<u64, Txn, Rule> for Flag {
    type Out = Decision;
    type StateKey = i64;
    type StateValue = i64;

    fn process(
        &mut self,
        t: Txn,
        _: &BroadcastState<i64, i64>,
        ctx: &mut KeyedContext<'_, u64, Decision>,
    ) -> Result<()> {
        ctx.register_event_time_timer(t.ts)?;
        ctx.map_state::<u64, Txn>("pending").put(&t.id, &t)
    }

    fn process_broadcast(
        &mut self,
        r: Rule,
        state: &mut BroadcastState<i64, i64>,
        _: &mut BroadcastContext<'_, Decision>,
    ) -> Result<()> {
        state.insert(r.from, r.limit);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        state: &BroadcastState<i64, i64>,
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
            let limit = state.range(..=t.ts).next_back().map_or(DEFAULT_LIMIT, |(_, l)| *l);
            ctx.emit(Decision {
                id: t.id,
                account: t.account,
                flagged: t.cents > limit,
                count: n,
            });
        }
        Ok(())
    }
}

fn pipeline(dir: &Path, backend: Backend, parallelism: usize, rate: f64) -> Pipeline {
    let mut p = Pipeline::new("broadcast-rules")
        .parallelism(parallelism)
        .batch_size(32)
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(30));
    p = match backend {
        Backend::Memory => p.state_backend(MemoryBackend::new()),
        Backend::Rocks => p.state_dir(dir.join("state")),
    };
    WORKLOAD
        .connect(&p, rate)
        .process("flag", Flag)
        .sink("decisions", FileSink::exactly_once(dir.join("decisions")));
    p
}

/// Runs the stages at `shapes`, each but the last cancelled after it completed a new
/// checkpoint, the next restoring it; returns the checkpoint each restored stage started from.
fn run_stages(dir: &Path, backend: Backend, shapes: &[usize]) -> Vec<Option<CheckpointId>> {
    let mut restored = Vec::new();
    let mut after = 0u64;
    for (n, &p) in shapes.iter().enumerate() {
        let last = n + 1 == shapes.len();
        let handle = pipeline(dir, backend, p, if last { FAST } else { SLOW })
            .start()
            .unwrap();
        if last {
            restored.push(handle.join().unwrap().restored_from);
            break;
        }
        wait_until("the stage decided records and completed a checkpoint", 90, || {
            let pr = handle.progress();
            handle.is_finished()
                || pr.source_records >= (n as u64 + 1) * WORKLOAD.events / 8
                    && pr.last_checkpoint.is_some_and(|(id, _)| id.get() > after)
        });
        assert!(!handle.is_finished(), "stage {n} ended before it was stopped");
        handle.cancel();
        let report = handle.join().unwrap();
        assert!(report.cancelled, "stage {n} was cancelled before its input ended");
        restored.push(report.restored_from);
        after = report.checkpoints.iter().map(|c| c.id.get()).max().unwrap_or(after);
    }
    restored
}

fn restored_through(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let shapes = [2, 2, 3, 1];
    let restored = run_stages(dir.path(), backend, &shapes);
    assert!(restored[0].is_none());
    assert!(
        restored[1..].iter().all(Option::is_some),
        "{backend:?}: every later stage restored a checkpoint: {restored:?}"
    );
    WORKLOAD.check(dir.path(), &format!("{backend:?} through {shapes:?}"));
}

#[test]
fn broadcast_rules_survive_restores_and_rescales_in_memory() {
    within(300, || restored_through(Backend::Memory));
}

#[test]
fn broadcast_rules_survive_restores_and_rescales_on_rocksdb() {
    within(300, || restored_through(Backend::Rocks));
}

/// A plain stream connected to a broadcast stream: every main record sees the rules that
/// arrived; with the rules' source ended before the main one starts deciding, each record is
/// decided by the full rule set.
#[test]
fn a_non_keyed_stream_reads_the_broadcast_state() {
    #[derive(Clone)]
    struct Tag;
    impl BroadcastProcess<u64, Rule> for Tag {
        type Out = (u64, usize);
        type StateKey = i64;
        type StateValue = i64;
        fn process(
            &mut self,
            v: u64,
            s: &BroadcastState<i64, i64>,
            ctx: &mut BroadcastContext<'_, (u64, usize)>,
        ) -> Result<()> {
            ctx.emit((v, s.len()));
            Ok(())
        }
        fn process_broadcast(
            &mut self,
            r: Rule,
            s: &mut BroadcastState<i64, i64>,
            _: &mut BroadcastContext<'_, (u64, usize)>,
        ) -> Result<()> {
            s.insert(r.from, r.limit);
            Ok(())
        }
    }
    let out = within(120, || {
        let p = Pipeline::new("broadcast-plain").parallelism(2);
        let rules = p.source(
            "rules",
            GeneratorSource::new(|j| WORKLOAD.rule(j))
                .bounded(WORKLOAD.rules)
                .splits(1),
        );
        let sink = CollectSink::new();
        p.source("numbers", GeneratorSource::new(|i| i).bounded(2_000).splits(2))
            .connect_broadcast(&rules)
            .process("tag", Tag)
            .sink("out", sink.clone());
        p.run().unwrap();
        sink.records()
    });
    assert_eq!(out.len(), 2_000);
    let mut seen: Vec<u64> = out.iter().map(|(v, _)| *v).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..2_000).collect::<Vec<_>>());
    assert!(out.iter().all(|(_, n)| *n <= WORKLOAD.rules as usize));
}
