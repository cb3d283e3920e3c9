//! Joins and sorted map state through the public API.
//!
//! One job runs the three joins (interval join, window join, co-group) over the same two
//! seeded, out-of-order inputs; each join's committed output is compared with a nested-loop
//! model of the same input, at parallelism 1, 2 and 4 on both state backends, with failures
//! injected (restarts from the latest checkpoint), and across a rescale (stopped with a
//! savepoint at one parallelism, finished at another). The interval join's buffers are checked
//! to be empty once the watermark passed every record (its counters of buffered and expired
//! records). Sorted map state is checked against a `BTreeMap` model, with restores.

use crate::common::{sorted, wait_until, Backend, BACKENDS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::operator::join::interval::{BUFFERED_COUNTER, EXPIRED_COUNTER};
use weir::engine::source::generator::mix;
use weir::prelude::*;

const SPLITS: usize = 4;
const KEYS: u64 = 16;
/// Records per input.
const EVENTS: u64 = 3_000;
/// Interval join bounds: right `r` joins left `l` when `l + LOWER <= r <= l + UPPER`.
const LOWER: i64 = -30;
const UPPER: i64 = 20;
/// Window size of the window join and co-group.
const WINDOW_MS: i64 = 100;

/// A record of either input: its side's id, key and event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Ev {
    id: u64,
    key: u64,
    ts: i64,
}

/// Record `i` of the input seeded `seed`: timestamps rise by 2 ms per record with up to
/// ±400 ms of disorder, well within the watermarks' 2 s bound, so no record is late.
fn ev(seed: u64, i: u64) -> Ev {
    let r = mix(seed, i);
    Ev {
        id: i,
        key: (r >> 8) % KEYS,
        ts: 1_000_000 + 2 * i as i64 + ((r >> 24) % 800) as i64 - 400,
    }
}

fn input(seed: u64) -> Vec<Ev> {
    (0..EVENTS).map(|i| ev(seed, i)).collect()
}

/// A co-group result: key, window start, the ids of both sides (sorted).
type Group = (u64, i64, Vec<u64>, Vec<u64>);
/// A join result: left id, right id, and the result's timestamp-derived field.
type Pair = (u64, u64, i64);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outputs {
    interval: Vec<Pair>,
    window: Vec<Pair>,
    groups: Vec<Group>,
}

// ---------------------------------------------------------------------------------------------
// The model: nested loops over the whole input.

fn window_start(ts: i64) -> i64 {
    ts - ts.rem_euclid(WINDOW_MS)
}

fn model(left: &[Ev], right: &[Ev]) -> Outputs {
    let mut interval = Vec::new();
    let mut window = Vec::new();
    let mut groups: BTreeMap<(u64, i64), (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for l in left {
        for r in right {
            if l.key != r.key {
                continue;
            }
            if l.ts + LOWER <= r.ts && r.ts <= l.ts + UPPER {
                interval.push((l.id, r.id, l.ts.max(r.ts)));
            }
            let w = window_start(l.ts);
            if w == window_start(r.ts) {
                window.push((l.id, r.id, w + WINDOW_MS - 1));
            }
        }
        groups.entry((l.key, window_start(l.ts))).or_default().0.push(l.id);
    }
    for r in right {
        groups.entry((r.key, window_start(r.ts))).or_default().1.push(r.id);
    }
    Outputs {
        interval: sorted(interval),
        window: sorted(window),
        groups: groups
            .into_iter()
            .map(|((k, w), (a, b))| (k, w, sorted(a), sorted(b)))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// The job.

const LEFT_SEED: u64 = 11;
const RIGHT_SEED: u64 = 29;

struct Sinks {
    interval: CollectSink<Pair>,
    window: CollectSink<Pair>,
    groups: CollectSink<Group>,
}

impl Sinks {
    fn new() -> Self {
        Sinks {
            interval: CollectSink::new(),
            window: CollectSink::new(),
            groups: CollectSink::new(),
        }
    }

    fn outputs(&self) -> Outputs {
        Outputs {
            interval: sorted(self.interval.records()),
            window: sorted(self.window.records()),
            groups: sorted(self.groups.records()),
        }
    }
}

struct Job<'a> {
    dir: &'a Path,
    backend: Backend,
    parallelism: usize,
    failures: Vec<(&'static str, u64)>,
    rate: Option<f64>,
    checkpoints: std::path::PathBuf,
    from_savepoint: Option<std::path::PathBuf>,
}

impl Job<'_> {
    fn pipeline(&self, sinks: &Sinks) -> Pipeline {
        let points = FailPoints::new();
        for (p, n) in &self.failures {
            points.arm(p, *n, FailAction::Error);
        }
        let mut p = Pipeline::new("joins")
            .fail_points(points)
            .parallelism(self.parallelism)
            .max_parallelism(64)
            .batch_size(64)
            .checkpoint_storage(&self.checkpoints)
            .checkpoint_interval(Duration::from_millis(20))
            .restart_strategy(RestartStrategy::FixedDelay {
                max_attempts: 20,
                delay: Duration::from_millis(1),
            });
        p = match self.backend {
            Backend::Memory => p.state_backend(MemoryBackend::new()),
            Backend::Rocks => p.state_dir(self.dir.join("state")),
        };
        if let Some(sp) = &self.from_savepoint {
            p = p.from_savepoint(SavepointRestore::dir(sp));
        }
        let source = |name: &str, seed: u64| {
            let mut g = GeneratorSource::new(move |i| ev(seed, i))
                .bounded(EVENTS)
                .splits(SPLITS);
            if let Some(rate) = self.rate {
                g = g.rate_per_second(rate);
            }
            p.source(name, g).assign_timestamps_and_watermarks(
                WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(2))
                    .with_timestamp_assigner(|e: &Ev| e.ts),
            )
        };
        let left = source("left", LEFT_SEED);
        let right = source("right", RIGHT_SEED);

        left.key_by("left-by-key", |e: &Ev| e.key)
            .interval_join(&right.key_by("right-by-key", |e: &Ev| e.key))
            .between(LOWER, UPPER)
            .process("interval", |l: &Ev, r: &Ev, ctx| {
                assert_eq!((ctx.left_timestamp(), ctx.right_timestamp()), (l.ts, r.ts));
                assert_eq!(*ctx.key(), l.key);
                let ts = ctx.timestamp();
                ctx.emit((l.id, r.id, ts));
            })
            .sink("interval-out", sinks.interval.clone());

        left.join(&right)
            .where_(|e: &Ev| e.key)
            .equal_to(|e: &Ev| e.key)
            .window(TumblingEventTime::of(Duration::from_millis(WINDOW_MS as u64)))
            .process("window-join", |_, w, l: &Ev, r: &Ev| {
                Some((l.id, r.id, w.max_timestamp()))
            })
            .sink("window-out", sinks.window.clone());

        left.co_group(&right)
            .where_(|e: &Ev| e.key)
            .equal_to(|e: &Ev| e.key)
            .window(TumblingEventTime::of(Duration::from_millis(WINDOW_MS as u64)))
            .apply("co-group", |k: &u64, w, l: Vec<Ev>, r: Vec<Ev>| {
                let ids = |v: Vec<Ev>| sorted(v.into_iter().map(|e| e.id).collect::<Vec<_>>());
                vec![(*k, w.start, ids(l), ids(r))]
            })
            .sink("groups-out", sinks.groups.clone());
        p
    }
}

fn counter(report: &JobReport, step: &str, name: &str) -> u64 {
    report
        .operator(step)
        .unwrap_or_else(|| panic!("no step {step} in the report"))
        .counters
        .get(name)
        .copied()
        .unwrap_or(0)
}

fn check(got: &Outputs, want: &Outputs, ctx: &str) {
    assert!(
        !want.interval.is_empty() && !want.window.is_empty(),
        "the model joins nothing"
    );
    assert_eq!(got.interval.len(), want.interval.len(), "{ctx}: interval join pairs");
    assert_eq!(got.interval, want.interval, "{ctx}: interval join");
    assert_eq!(got.window.len(), want.window.len(), "{ctx}: window join pairs");
    assert_eq!(got.window, want.window, "{ctx}: window join");
    assert_eq!(got.groups, want.groups, "{ctx}: co-group");
}

fn expected() -> Outputs {
    model(&input(LEFT_SEED), &input(RIGHT_SEED))
}

fn run_once(backend: Backend, parallelism: usize, failures: Vec<(&'static str, u64)>) -> (Outputs, JobReport) {
    let dir = tempfile::tempdir().unwrap();
    let sinks = Sinks::new();
    let job = Job {
        dir: dir.path(),
        backend,
        parallelism,
        failures,
        rate: Some(60_000.0),
        checkpoints: dir.path().join("checkpoints"),
        from_savepoint: None,
    };
    let report = job.pipeline(&sinks).run().unwrap_or_else(|e| panic!("job failed: {e}"));
    (sinks.outputs(), report)
}

#[test]
fn joins_match_the_nested_loop_model_at_every_parallelism_on_both_backends() {
    let want = expected();
    for backend in BACKENDS {
        for p in [1, 2, 4] {
            let ctx = format!("{backend:?} p {p}");
            let (got, report) = run_once(backend, p, vec![]);
            check(&got, &want, &ctx);
            assert_eq!(counter(&report, "interval", "late_records"), 0, "{ctx}");
            // Every buffered record was removed by a clean-up timer once the watermark passed
            // it: the join's buffers end empty.
            let buffered = counter(&report, "interval", BUFFERED_COUNTER);
            assert_eq!(buffered, 2 * EVENTS, "{ctx}: every record is buffered once");
            assert_eq!(
                counter(&report, "interval", EXPIRED_COUNTER),
                buffered,
                "{ctx}: every buffered record expired"
            );
        }
    }
}

#[test]
fn joins_are_exactly_once_across_failures() {
    let want = expected();
    for (n, backend) in BACKENDS.into_iter().enumerate() {
        for p in [1, 2, 4] {
            let r = |k: u64| mix(p as u64 * 7 + n as u64, k);
            let failures = vec![
                (fail::PROCESS_RECORD, 30 + r(0) % 60),
                (
                    [fail::SNAPSHOT_SYNC, fail::AFTER_PRE_COMMIT, fail::DURING_COMMIT][(r(1) % 3) as usize],
                    2 + r(2) % 4,
                ),
            ];
            let ctx = format!("{backend:?} p {p} failures {failures:?}");
            let (got, report) = run_once(backend, p, failures);
            assert!(report.restarts >= 1, "{ctx}: no failure happened");
            check(&got, &want, &ctx);
        }
    }
}

#[test]
fn joins_are_exact_across_a_rescale() {
    let want = expected();
    for (backend, from, to) in [(Backend::Rocks, 2, 4), (Backend::Memory, 4, 1), (Backend::Rocks, 1, 3)] {
        let ctx = format!("{backend:?} {from} -> {to}");
        let dir = tempfile::tempdir().unwrap();
        let sinks = Sinks::new();
        let first = Job {
            dir: dir.path(),
            backend,
            parallelism: from,
            failures: vec![],
            rate: Some(2_000.0),
            checkpoints: dir.path().join("checkpoints-0"),
            from_savepoint: None,
        };
        let handle = first.pipeline(&sinks).start().unwrap();
        wait_until("the first run read records and completed a checkpoint", 90, || {
            let p = handle.progress();
            handle.is_finished() || p.source_records >= EVENTS / 2 && p.last_checkpoint.is_some()
        });
        assert!(
            !handle.is_finished(),
            "{ctx}: the first run ended before it was stopped"
        );
        let at = dir.path().join("savepoint");
        handle.stop_with_savepoint(Arc::new(LocalDirStorage::new(&at))).unwrap();
        handle.join().unwrap();
        let halfway = sinks.outputs();
        assert!(
            !halfway.interval.is_empty() && halfway.interval.len() < want.interval.len(),
            "{ctx}: the savepoint falls in the middle of the input ({} of {} pairs)",
            halfway.interval.len(),
            want.interval.len()
        );
        let second = Job {
            dir: dir.path(),
            backend,
            parallelism: to,
            failures: vec![],
            rate: None,
            checkpoints: dir.path().join("checkpoints-1"),
            from_savepoint: Some(at),
        };
        let report = second.pipeline(&sinks).run().unwrap();
        assert!(report.restored_from_savepoint.is_some(), "{ctx}: restored");
        check(&sinks.outputs(), &want, &ctx);
    }
}

#[test]
fn exclusive_bounds_and_negative_intervals_follow_the_bounds() {
    // Left at 100 (key 1) against rights at 90..=110 step 5.
    let cases: [(i64, i64, bool, bool, &[i64]); 4] = [
        (-10, 10, false, false, &[90, 95, 100, 105, 110]),
        (-10, 10, true, true, &[95, 100, 105]),
        (-10, -5, false, false, &[90, 95]),
        (0, 0, false, false, &[100]),
    ];
    for (lower, upper, lo_ex, up_ex, want) in cases {
        let sink = CollectSink::new();
        let p = Pipeline::new("bounds").state_backend(MemoryBackend::new());
        let strategy = || WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1));
        let left = p
            .source("left", VecSource::new(vec![(1u32, 100i64)]))
            .assign_timestamps_and_watermarks(strategy().with_timestamp_assigner(|e: &(u32, i64)| e.1))
            .key_by("l", |e: &(u32, i64)| e.0);
        let right = p
            .source(
                "right",
                VecSource::new((90..=110).step_by(5).map(|t| (1u32, t)).collect()),
            )
            .assign_timestamps_and_watermarks(strategy().with_timestamp_assigner(|e: &(u32, i64)| e.1))
            .key_by("r", |e: &(u32, i64)| e.0);
        let mut j = left.interval_join(&right).between(lower, upper);
        if lo_ex {
            j = j.lower_exclusive();
        }
        if up_ex {
            j = j.upper_exclusive();
        }
        j.process("j", |_, r: &(u32, i64), ctx| ctx.emit(r.1))
            .sink("out", sink.clone());
        p.run().unwrap();
        assert_eq!(
            sorted(sink.records()),
            want.to_vec(),
            "{lower}..{upper} {lo_ex} {up_ex}"
        );
    }
}

#[test]
fn an_empty_interval_is_a_configuration_error() {
    let p = Pipeline::new("bad-bounds").state_backend(MemoryBackend::new());
    let a = p.source("a", VecSource::new(vec![1u32])).key_by("ka", |v: &u32| *v);
    let b = p.source("b", VecSource::new(vec![1u32])).key_by("kb", |v: &u32| *v);
    a.interval_join(&b)
        .between(5, 5)
        .upper_exclusive()
        .process("empty", |a: &u32, _: &u32, ctx| ctx.emit(*a))
        .sink("out", DiscardSink::new());
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("\"empty\"") && err.contains("lower bound"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Sorted map state.

/// Sorted map commands for one user: put, remove a range, and dump.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Cmd {
    Put(u32, (i64, String), u64),
    RemoveBelow(u32, i64),
    Dump(u32, i64, i64),
}

impl Cmd {
    fn user(&self) -> u32 {
        match self {
            Cmd::Put(u, ..) | Cmd::RemoveBelow(u, _) | Cmd::Dump(u, ..) => *u,
        }
    }
}

type Entry = ((i64, String), u64);

/// What a dump reports: every entry, the entries in `[lo, hi)`, those from `lo` on, the first
/// and the last entry, and whether the map is empty.
type Dump = (
    u32,
    u64,
    Vec<Entry>,
    Vec<Entry>,
    Vec<Entry>,
    Option<Entry>,
    Option<Entry>,
    bool,
);

fn cmd(i: u64) -> (u64, Cmd) {
    let r = mix(5, i);
    let user = (r % 5) as u32;
    // Timestamps on both sides of zero and across the byte boundaries of varints.
    let t = [-70_000i64, -256, -255, -1, 0, 1, 250, 251, 256, 65_536, 1 << 33][((r >> 8) % 11) as usize];
    let name = ["", "a", "ab", "b", "a\0"][((r >> 16) % 5) as usize].to_string();
    let c = match (r >> 24) % 10 {
        0..=6 => Cmd::Put(user, (t, name), i),
        7 => Cmd::RemoveBelow(user, t),
        _ => Cmd::Dump(user, t.min(251), t.max(251)),
    };
    (i, c)
}

#[derive(Clone)]
struct Sorted;

impl KeyedProcess<u32, (u64, Cmd)> for Sorted {
    type Out = Dump;
    fn process(&mut self, (i, cmd): (u64, Cmd), ctx: &mut KeyedContext<'_, u32, Dump>) -> Result<()> {
        let user = *ctx.key();
        let mut m = ctx.sorted_map_state::<(i64, String), u64>("entries");
        match cmd {
            Cmd::Put(_, k, v) => m.put(&k, &v)?,
            Cmd::RemoveBelow(_, t) => {
                m.remove_range(..(t, String::new()))?;
            }
            Cmd::Dump(_, lo, hi) => {
                let lo_key = (lo, String::new());
                let hi_key = (hi, String::new());
                let dump = (
                    user,
                    i,
                    m.entries()?,
                    m.range(lo_key.clone()..hi_key)?,
                    m.range(lo_key..)?,
                    m.first()?,
                    m.last()?,
                    m.is_empty()?,
                );
                ctx.emit(dump);
            }
        }
        Ok(())
    }
}

fn sorted_model() -> Vec<Dump> {
    let mut maps: BTreeMap<u32, BTreeMap<(i64, String), u64>> = BTreeMap::new();
    let mut out = Vec::new();
    for i in 0..EVENTS {
        let (_, c) = cmd(i);
        let m = maps.entry(c.user()).or_default();
        match c {
            Cmd::Put(_, k, v) => {
                m.insert(k, v);
            }
            Cmd::RemoveBelow(_, t) => m.retain(|k, _| k.0 >= t),
            Cmd::Dump(user, lo, hi) => {
                let all: Vec<Entry> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
                let lo_key = (lo, String::new());
                let hi_key = (hi, String::new());
                let in_range = |k: &(i64, String)| *k >= lo_key && *k < hi_key;
                out.push((
                    user,
                    i,
                    all.clone(),
                    all.iter().filter(|(k, _)| in_range(k)).cloned().collect(),
                    all.iter().filter(|(k, _)| *k >= lo_key).cloned().collect(),
                    all.first().cloned(),
                    all.last().cloned(),
                    all.is_empty(),
                ));
            }
        }
    }
    out
}

#[test]
fn sorted_map_state_iterates_and_scans_in_key_order_on_both_backends_across_restores() {
    let want = sorted(sorted_model());
    assert!(
        want.iter().any(|d| d.3.len() >= 2),
        "the model dumps ranges with entries"
    );
    for backend in BACKENDS {
        for (p, failures) in [
            (1, vec![]),
            (2, vec![(fail::PROCESS_RECORD, 25)]),
            (4, vec![(fail::SNAPSHOT_SYNC, 3)]),
        ] {
            let ctx = format!("{backend:?} p {p} {failures:?}");
            let dir = tempfile::tempdir().unwrap();
            let points = FailPoints::new();
            for (f, n) in &failures {
                points.arm(f, *n, FailAction::Error);
            }
            let mut pl = Pipeline::new("sorted-map")
                .fail_points(points)
                .parallelism(p)
                .batch_size(16)
                .checkpoint_storage(dir.path().join("checkpoints"))
                .checkpoint_interval(Duration::from_millis(10))
                .restart_strategy(RestartStrategy::FixedDelay {
                    max_attempts: 10,
                    delay: Duration::from_millis(1),
                });
            pl = match backend {
                Backend::Memory => pl.state_backend(MemoryBackend::new()),
                Backend::Rocks => pl.state_dir(dir.path().join("state")),
            };
            let sink = CollectSink::new();
            pl.source(
                "cmds",
                GeneratorSource::new(cmd).bounded(EVENTS).rate_per_second(30_000.0),
            )
            .key_by("by-user", |(_, c): &(u64, Cmd)| c.user())
            .process("sorted", Sorted)
            .sink("out", sink.clone());
            let report = pl.run().unwrap_or_else(|e| panic!("{ctx}: {e}"));
            if !failures.is_empty() {
                assert!(report.restarts >= 1, "{ctx}: no failure happened");
            }
            assert_eq!(sorted(sink.records()), want, "{ctx}");
        }
    }
}
