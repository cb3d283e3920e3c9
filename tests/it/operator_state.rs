//! Operator lists of function steps (Flink's operator state): a split list buffering records
//! into batches and a union list of tallies, through an injected failure, a restore at the
//! same parallelism and rescales (2 → 2 → 3 → 1), compared with a sequential model.
//!
//! `batcher` holds records in its split list until a batch of `BATCH` is full, so at every
//! checkpoint most records after the last full batch exist only in that list: a restore that
//! lost or repeated them loses or repeats ids in the committed output (nothing deduplicates).
//! `tally` counts records into tallies kept in a union list; after a restore every subtask
//! sees every tally and adopts those whose origin maps to it, so the final tallies add up to
//! the number of records only if each subtask restored all of them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::prelude::*;

use crate::common::{wait_until, within};

const EVENTS: u64 = 6_000;
const BATCH: usize = 64;
const SLOW: f64 = 600.0;
const FAST: f64 = 100_000.0;

const PENDING: OperatorListDescriptor<u64> = OperatorListDescriptor::new("pending");
const TALLIES: OperatorListDescriptor<Tally> = OperatorListDescriptor::new("tallies").union();

/// Emits records in batches of `BATCH`; the batch being filled is operator state.
#[derive(Clone, Default)]
struct Batcher {
    pending: Option<OperatorListState<u64>>,
}

impl FlatMapFunction<u64> for Batcher {
    type Out = Vec<u64>;

    fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()> {
        self.pending = Some(state.list_state(&PENDING)?);
        Ok(())
    }

    fn flat_map(&mut self, v: u64, out: &mut Vec<Vec<u64>>) -> Result<()> {
        let pending = self.pending.as_ref().expect("initialized");
        pending.add(v);
        if pending.len() >= BATCH {
            out.push(pending.take());
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Vec<u64>>) -> Result<()> {
        let rest = self.pending.as_ref().expect("initialized").take();
        if !rest.is_empty() {
            out.push(rest);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    origin: u64,
    count: u64,
}

/// What one subtask of `tally` restored from the union list.
#[derive(Debug, Clone)]
struct Seen {
    subtask: usize,
    parallelism: usize,
    origins: BTreeSet<u64>,
}

/// Counts the records it passes on into one of the tallies it owns; at the end emits them.
#[derive(Clone, Default)]
struct Counter {
    list: Option<OperatorListState<Tally>>,
    mine: Vec<Tally>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FlatMapFunction<u64> for Counter {
    type Out = Out;

    fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()> {
        let list = state.list_state(&TALLIES)?;
        let (subtask, parallelism) = (state.runtime().subtask, state.runtime().parallelism);
        let all = list.get();
        if state.is_restored() {
            self.seen.lock().unwrap().push(Seen {
                subtask,
                parallelism,
                origins: all.iter().map(|t| t.origin).collect(),
            });
        }
        self.mine = all
            .into_iter()
            .filter(|t| t.origin % parallelism as u64 == subtask as u64)
            .collect();
        if self.mine.is_empty() {
            self.mine.push(Tally {
                origin: subtask as u64,
                count: 0,
            });
        }
        self.list = Some(list);
        Ok(())
    }

    fn flat_map(&mut self, v: u64, out: &mut Vec<Out>) -> Result<()> {
        self.mine[0].count += 1;
        out.push(Out::Id(v));
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<()> {
        self.list.as_ref().expect("initialized").update(self.mine.clone());
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Out>) -> Result<()> {
        out.extend(self.mine.drain(..).map(Out::Tally));
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Out {
    Id(u64),
    Tally(Tally),
}

fn pipeline(dir: &Path, parallelism: usize, rate: f64, points: &FailPoints, seen: &Arc<Mutex<Vec<Seen>>>) -> Pipeline {
    let p = Pipeline::new("operator-lists")
        .parallelism(parallelism)
        .batch_size(16)
        .fail_points(points.clone())
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 3,
            delay: Duration::from_millis(1),
        })
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(30));
    p.source(
        "ids",
        GeneratorSource::new(|i| i)
            .bounded(EVENTS)
            .splits(4)
            .rate_per_second(rate),
    )
    .rebalance()
    .flat_map_function("batcher", Batcher::default())
    .flat_map("unbatch", |batch: Vec<u64>| batch)
    .flat_map_function(
        "tally",
        Counter {
            seen: seen.clone(),
            ..Counter::default()
        },
    )
    .sink("out", FileSink::exactly_once(dir.join("out")));
    p
}

/// Runs the stages at `shapes`, each but the last cancelled after it completed a new
/// checkpoint; a failure is injected in the second. Returns each stage's report.
fn run_stages(dir: &Path, shapes: &[usize], seen: &Arc<Mutex<Vec<Seen>>>) -> Vec<JobReport> {
    let mut reports = Vec::new();
    let mut after = 0u64;
    for (n, &p) in shapes.iter().enumerate() {
        let last = n + 1 == shapes.len();
        let points = FailPoints::new();
        if n == 1 {
            points.arm(fail::PROCESS_RECORD, 300, FailAction::Panic);
        }
        let handle = pipeline(dir, p, if last { FAST } else { SLOW }, &points, seen)
            .start()
            .unwrap();
        if last {
            reports.push(handle.join().unwrap());
            break;
        }
        wait_until("the stage processed records and completed a checkpoint", 90, || {
            let pr = handle.progress();
            handle.is_finished()
                || pr.source_records >= (n as u64 + 1) * EVENTS / 6
                    && pr.last_checkpoint.is_some_and(|(id, _)| id.get() > after)
                    && !points.is_armed(fail::PROCESS_RECORD)
                    && pr.restarts == u32::from(n == 1)
        });
        assert!(!handle.is_finished(), "stage {n} ended before it was stopped");
        handle.cancel();
        let report = handle.join().unwrap();
        assert!(report.cancelled, "stage {n} was cancelled before its input ended");
        after = report.checkpoints.iter().map(|c| c.id.get()).max().unwrap_or(after);
        reports.push(report);
    }
    reports
}

#[test]
fn operator_lists_survive_a_failure_restores_and_rescales_exactly_once() {
    let shapes = [2, 2, 3, 1];
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let dir = tempfile::tempdir().unwrap();
    let (d, s) = (dir.path().to_path_buf(), seen.clone());
    let reports = within(300, move || run_stages(&d, &shapes, &s));

    assert_eq!(reports[1].restarts, 1, "the injected failure restarted stage 1");
    for (n, r) in reports.iter().enumerate().skip(1) {
        assert!(r.restored_from.is_some(), "stage {n} restored a checkpoint");
        let restored = r
            .operator("batcher")
            .and_then(|o| o.counters.get("operator_list_restored_elements").copied())
            .unwrap_or(0);
        assert!(
            restored > 0,
            "stage {n}: the checkpoint held records buffered in the split list"
        );
    }

    // Every id exactly once; the tallies count every record once.
    let mut ids: BTreeMap<u64, u32> = BTreeMap::new();
    let mut tallies = Vec::new();
    for line in weir::engine::sink::read_committed_lines(dir.path().join("out")).unwrap() {
        match serde_json::from_str::<Out>(&line).unwrap() {
            Out::Id(i) => *ids.entry(i).or_default() += 1,
            Out::Tally(t) => tallies.push(t),
        }
    }
    let repeated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(repeated.is_empty(), "ids committed more than once: {repeated:?}");
    let missing: Vec<u64> = (0..EVENTS).filter(|i| !ids.contains_key(i)).take(5).collect();
    assert!(missing.is_empty(), "ids never committed: {missing:?}");
    assert_eq!(ids.len() as u64, EVENTS);
    let origins: BTreeSet<u64> = tallies.iter().map(|t| t.origin).collect();
    assert_eq!(origins.len(), tallies.len(), "each tally is owned once: {tallies:?}");
    assert_eq!(
        tallies.iter().map(|t| t.count).sum::<u64>(),
        EVENTS,
        "the tallies count every record once: {tallies:?}"
    );

    // Every restored subtask of a stage saw the same, complete union list.
    let seen = seen.lock().unwrap().clone();
    let mut by_shape: BTreeMap<usize, Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        by_shape.entry(s.parallelism).or_default().push(s);
    }
    for (p, subtasks) in &by_shape {
        let first = &subtasks[0].origins;
        assert!(!first.is_empty(), "parallelism {p}: the union list held tallies");
        for s in subtasks {
            assert_eq!(&s.origins, first, "subtask {} of {p} saw another union list", s.subtask);
        }
    }
    assert!(
        seen.iter().any(|s| s.parallelism == 3 && s.subtask == 2),
        "the new subtask of the 2 → 3 rescale restored the union list: {seen:?}"
    );
}

/// The harness runs a function step alone: its snapshot holds the operator lists, a restore at
/// the same parallelism gives each subtask its own, one at another splits them.
#[test]
fn the_harness_snapshots_operator_lists_and_splits_them_on_a_rescale() {
    use weir::engine::testing::harness::HarnessBuilder;
    let harness = |subtask: usize, parallelism: usize, from: &[_]| {
        HarnessBuilder::new()
            .step("batcher")
            .subtask(subtask, parallelism)
            .restore_from_all(from)
            .flat_map_function(Batcher::default())
            .unwrap()
    };
    let mut snapshots = Vec::new();
    for s in 0..2u64 {
        let mut h = harness(s as usize, 2, &[]);
        for v in 0..BATCH as u64 + 10 {
            h.process_element(s * 1_000 + v, 1).unwrap();
        }
        assert_eq!(
            h.output_values(),
            vec![(s * 1_000..s * 1_000 + BATCH as u64).collect::<Vec<_>>()]
        );
        snapshots.push(h.snapshot().unwrap());
    }
    let pending = |s: u64| s * 1_000 + BATCH as u64..s * 1_000 + BATCH as u64 + 10;

    let mut h = harness(1, 2, &snapshots);
    assert_eq!(h.counters().get("operator_list_restored_elements"), Some(&10));
    h.finish().unwrap();
    assert_eq!(h.output_values(), vec![pending(1).collect::<Vec<_>>()]);

    let mut all = Vec::new();
    for s in 0..3 {
        let mut h = harness(s, 3, &snapshots);
        h.finish().unwrap();
        let got: Vec<u64> = h.output_values().into_iter().flatten().collect();
        assert!(
            (6..=7).contains(&got.len()),
            "subtask {s} of 3 got an even share: {got:?}"
        );
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, pending(0).chain(pending(1)).collect::<Vec<_>>());
}
