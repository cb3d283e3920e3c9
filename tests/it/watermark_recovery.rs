//! Watermarks are part of a checkpoint: after a failure and a restore, every operator continues
//! at the watermark it had when the checkpoint was taken, so windows with allowed lateness,
//! late-record side outputs, event-time timers and event-time TTL commit exactly what the
//! failure-free run commits.
//!
//! # Why the failure-free output of these jobs is deterministic
//! Whether a record is late depends on the watermark when it arrives. Every job here reads one
//! split with one source subtask, chained to a timestamp assigner of parallelism 1, and emits one
//! record per batch (a watermark after every record). Each keyed subtask therefore has exactly
//! one input channel, on which records and watermarks arrive in source order: the watermark a
//! keyed operator sees at each record is a function of the input alone, whatever the thread
//! scheduling. The keyed steps run at parallelism 2 (each key's records stay in order).
//!
//! # How the failures are placed
//! The source is rate-limited and checkpoints are taken every 10 ms, so many checkpoints
//! complete while the records run through; a fail point (`PROCESS_RECORD`, hit once per batch
//! by every keyed operator) fails the job in the middle, and the job restarts from the latest
//! completed checkpoint.

use crate::common;

use common::{Backend, BACKENDS};
use std::collections::BTreeMap;
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::generator::mix;
use weir::prelude::*;

/// A record: (key, value); its event time travels separately.
type Event = (u32, i64);

/// An input record with its event time.
type Timed = (Event, i64);

fn ms(v: i64) -> Duration {
    Duration::from_millis(v as u64)
}

/// How one run of a job is set up.
struct Setup {
    name: &'static str,
    backend: Backend,
    /// Bound of the assigner's out-of-orderness.
    disorder: i64,
    /// Source records per second.
    rate: f64,
    /// Fail points armed for the run.
    failures: Vec<(&'static str, u64, FailAction)>,
}

/// Runs a job reading `events` (one split, one record per batch, watermark
/// `max - disorder - 1` after each) into the keyed steps `build` adds; returns the report.
fn run_job(setup: &Setup, events: &[Timed], build: impl FnOnce(KeyedStream<u32, Event>)) -> JobReport {
    common::trace_if_asked();
    let dir = fast_tempdir();
    let points = FailPoints::new();
    for (point, nth, action) in &setup.failures {
        points.arm(point, *nth, *action);
    }
    let p = common::pipeline(setup.name, setup.backend, &dir)
        .fail_points(points.clone())
        .parallelism(2)
        .batch_size(1)
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(10))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        });
    let values: Vec<Event> = events.iter().map(|e| e.0).collect();
    let times: Vec<i64> = events.iter().map(|e| e.1).collect();
    let keyed = p
        .source(
            "events",
            GeneratorSource::new(move |i| values[i as usize])
                .bounded(events.len() as u64)
                .rate_per_second(setup.rate)
                .with_timestamps(move |i, _| times[i as usize]),
        )
        .parallelism(1)
        .assign_timestamps_and_watermarks(WatermarkStrategy::bounded_out_of_orderness(ms(setup.disorder)))
        .parallelism(1)
        .key_by("by-key", |e: &Event| e.0);
    build(keyed);
    let report = p
        .run()
        .unwrap_or_else(|e| panic!("{} {:?}: job failed: {e}", setup.name, setup.backend));
    let unfired: Vec<_> = setup.failures.iter().filter(|f| points.is_armed(f.0)).collect();
    assert!(
        unfired.is_empty(),
        "{} {:?}: planned fail points that never fired: {unfired:?}",
        setup.name,
        setup.backend
    );
    report
}

/// A directory for checkpoints and RocksDB stores, on tmpfs where there is one (opening a
/// store fsyncs, and every restart opens every store again).
fn fast_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// `(key, start, end, sum)` of each window result, sorted.
type Sums = Vec<(u32, i64, i64, i64)>;

fn sums(records: Vec<Windowed<u32, Event>>) -> Sums {
    common::sorted(
        records
            .into_iter()
            .map(|w| (w.key, w.window.start, w.window.end, w.value.1))
            .collect(),
    )
}

/// A tumbling 10 ms window step with `lateness` summing values, plus its late records.
fn tumbling_sums(setup: &Setup, events: &[Timed], lateness: i64) -> (Sums, Vec<Event>, JobReport) {
    let results = CollectSink::new();
    let late = CollectSink::new();
    let report = run_job(setup, events, |keyed| {
        let (r, l) = keyed
            .window(TumblingEventTime::of(ms(10)))
            .allowed_lateness(ms(lateness))
            .reduce_with_late("sums", |a, b| (a.0, a.1 + b.1));
        r.sink("results", results.clone());
        l.sink("late", late.clone());
    });
    (sums(results.records()), common::sorted(late.records()), report)
}

/// Input for the targeted tests: key 1 fills window [0, 10) and a record at 15 moves the
/// watermark to 14, so [0, 10) fires with 3; then `fillers` records of key 2 at `filler_ts`;
/// then a record of key 1 at 3, behind the watermark; then a record of key 1 at 16.
fn late_input(fillers: usize, filler_ts: impl Fn(usize) -> i64) -> Vec<Timed> {
    let mut events = vec![((1, 1), 1), ((1, 2), 5), ((1, 4), 15)];
    events.extend((0..fillers).map(|j| ((2, 100 + j as i64), filler_ts(j))));
    events.push(((1, 10), 3));
    events.push(((1, 1000), 16));
    events
}

const FILLERS: usize = 30;

/// Fails the one keyed step in the middle of the fillers: well after [0, 10) fired and several
/// checkpoints completed (the source emits a record every 5 ms, checkpoints every 10 ms).
fn fail_among_fillers() -> Vec<(&'static str, u64, FailAction)> {
    vec![(fail::PROCESS_RECORD, 3 + 20, FailAction::Error)]
}

fn setup(name: &'static str, backend: Backend, failures: Vec<(&'static str, u64, FailAction)>) -> Setup {
    Setup {
        name,
        backend,
        disorder: 0,
        rate: 200.0,
        failures,
    }
}

#[test]
fn a_record_within_allowed_lateness_after_a_restore_updates_the_window_that_fired_before() {
    // Fillers at 2 are within the lateness of key 2's [0, 10): each one fires it at once.
    let events = late_input(FILLERS, |_| 2);
    let mut expected: Sums = vec![(1, 0, 10, 3), (1, 0, 10, 13), (1, 10, 20, 1004)];
    let mut acc = 0;
    for j in 0..FILLERS as i64 {
        acc += 100 + j;
        expected.push((2, 0, 10, acc));
    }
    expected.sort();
    for backend in BACKENDS {
        let (free, free_late, _) = tumbling_sums(&setup("lateness", backend, vec![]), &events, 1000);
        assert_eq!(free, expected, "{backend:?}: failure-free run");
        assert!(free_late.is_empty());
        let (got, late, report) = tumbling_sums(&setup("lateness", backend, fail_among_fillers()), &events, 1000);
        assert!(report.restarts >= 1, "{report}");
        assert_eq!(got, expected, "{backend:?}: after a restore");
        assert!(late.is_empty(), "{backend:?}: {late:?}");
    }
}

#[test]
fn a_record_late_in_the_failure_free_run_stays_late_after_a_restore() {
    // Lateness 0: [0, 10) of every key is gone once the watermark is 14; the fillers at 2 and
    // the record of key 1 at 3 are late and go to the side output.
    let events = late_input(FILLERS, |_| 2);
    let expected: Sums = vec![(1, 0, 10, 3), (1, 10, 20, 1004)];
    let mut expected_late: Vec<Event> = (0..FILLERS as i64).map(|j| (2, 100 + j)).collect();
    expected_late.push((1, 10));
    expected_late.sort();
    for backend in BACKENDS {
        let (free, free_late, _) = tumbling_sums(&setup("no-lateness", backend, vec![]), &events, 0);
        assert_eq!(free, expected, "{backend:?}: failure-free run");
        assert_eq!(free_late, expected_late, "{backend:?}: failure-free run");
        let (got, late, report) = tumbling_sums(&setup("no-lateness", backend, fail_among_fillers()), &events, 0);
        assert!(report.restarts >= 1, "{report}");
        assert_eq!(got, expected, "{backend:?}: after a restore");
        assert_eq!(late, expected_late, "{backend:?}: after a restore");
    }
}

/// Emits `(key, value, the value the previous record of the key left)`; the state has an
/// event-time TTL of 10 ms.
#[derive(Clone)]
struct Previous;

impl KeyedProcess<u32, Event> for Previous {
    type Out = (u32, i64, Option<i64>);
    fn process(&mut self, e: Event, ctx: &mut KeyedContext<'_, u32, Self::Out>) -> Result<()> {
        let mut last = ctx.value_state::<i64>("last").with_ttl(Ttl::event_time(ms(10)));
        let prev = last.get()?;
        last.set(&e.1)?;
        ctx.emit((e.0, e.1, prev));
        Ok(())
    }
}

#[test]
fn event_time_ttl_expires_the_same_entries_after_a_restore() {
    // Key 1 at 25 moves the watermark to 24. Each filler of key 2 at 3 writes an entry that
    // expires at 13, behind the watermark: the next filler does not see it.
    let mut events: Vec<Timed> = vec![((1, 1), 25)];
    events.extend((0..FILLERS).map(|j| ((2, 100 + j as i64), 3)));
    events.push(((1, 2), 4)); // sees key 1's entry (expires at 35)
    let mut expected = vec![(1, 1, None), (1, 2, Some(1))];
    expected.extend((0..FILLERS as i64).map(|j| (2, 100 + j, None)));
    expected.sort();
    same_output_after_a_restore("ttl", &events, FailAction::Panic, &expected, |keyed, out| {
        keyed.process("previous", Previous).sink("out", out);
    });
}

/// Runs the job `build` makes over `events` on both backends, once without failures and once
/// with `action` at the 21st record (a restore), and checks that both commit `expected`.
fn same_output_after_a_restore<T: Data + Ord + std::fmt::Debug>(
    name: &'static str,
    events: &[Timed],
    action: FailAction,
    expected: &[T],
    build: impl Fn(KeyedStream<u32, Event>, CollectSink<T>),
) {
    for backend in BACKENDS {
        for failures in [vec![], vec![(fail::PROCESS_RECORD, 1 + 20, action)]] {
            let restores = !failures.is_empty();
            let out = CollectSink::new();
            let report = run_job(&setup(name, backend, failures), events, |keyed| {
                build(keyed, out.clone())
            });
            if restores {
                assert!(report.restarts >= 1, "{report}");
            }
            let what = if restores {
                "after a restore"
            } else {
                "failure-free run"
            };
            assert_eq!(common::sorted(out.records()), expected, "{backend:?}: {what}");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum TimerOut {
    /// A record: key, value, timers of the key fired so far, the operator's watermark.
    Seen(u32, i64, u32, i64),
    /// A timer: key, its time, the operator's watermark.
    Fired(u32, i64, i64),
}

/// Registers an event-time timer 5 ms after each record and reports what fired.
#[derive(Clone)]
struct Reminders;

impl KeyedProcess<u32, Event> for Reminders {
    type Out = TimerOut;
    fn process(&mut self, e: Event, ctx: &mut KeyedContext<'_, u32, TimerOut>) -> Result<()> {
        let fired = ctx.value_state::<u32>("fired").get()?.unwrap_or(0);
        let wm = ctx.current_watermark();
        ctx.emit(TimerOut::Seen(e.0, e.1, fired, wm));
        let ts = ctx.timestamp().expect("timestamps are assigned");
        ctx.register_event_time_timer(ts + 5)
    }

    fn on_timer(&mut self, t: Timer, ctx: &mut KeyedContext<'_, u32, TimerOut>) -> Result<()> {
        let mut fired = ctx.value_state::<u32>("fired");
        let n = fired.get()?.unwrap_or(0) + 1;
        fired.set(&n)?;
        let (key, wm) = (*ctx.key(), ctx.current_watermark());
        ctx.emit(TimerOut::Fired(key, t.time, wm));
        Ok(())
    }
}

#[test]
fn event_time_timers_fire_as_in_the_failure_free_run_after_a_restore() {
    // Key 1 at 25 moves the watermark to 24 and nothing moves it further until the end. The
    // fillers of key 2 (at 3 and 12) register timers at 8 and 17, both behind the watermark:
    // they fire only at the next watermark, the final one.
    let mut events: Vec<Timed> = vec![((1, 1), 25)];
    events.extend((0..FILLERS).map(|j| ((2, 100 + j as i64), if j % 2 == 0 { 3 } else { 12 })));
    let mut expected = vec![TimerOut::Seen(1, 1, 0, i64::MIN)];
    expected.extend((0..FILLERS as i64).map(|j| TimerOut::Seen(2, 100 + j, 0, 24)));
    for (key, time) in [(1, 30), (2, 8), (2, 17)] {
        expected.push(TimerOut::Fired(key, time, i64::MAX));
    }
    expected.sort();
    same_output_after_a_restore("timers", &events, FailAction::Error, &expected, |keyed, out| {
        keyed.process("reminders", Reminders).sink("out", out);
    });
}

// ---------------------------------------------------------------------------------------------
// Seeded: tumbling, sliding and session windows with allowed lateness and late records, failures
// at random points, against the failure-free run and a sequential model.

/// Count, sum, min and max of the values.
#[derive(Clone)]
struct Stats;

type Stat = (u64, i64, i64, i64);

impl AggregateFunction<Event> for Stats {
    type Acc = Option<Stat>;
    type Out = Stat;
    fn create(&self) -> Self::Acc {
        None
    }
    fn add(&self, acc: &mut Self::Acc, value: &Event) {
        let v = value.1;
        *acc = Some(match *acc {
            None => (1, v, v, v),
            Some((n, s, lo, hi)) => (n + 1, s + v, lo.min(v), hi.max(v)),
        });
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if let Some((n2, s2, lo2, hi2)) = other {
            *acc = Some(match *acc {
                None => (n2, s2, lo2, hi2),
                Some((n, s, lo, hi)) => (n + n2, s + s2, lo.min(lo2), hi.max(hi2)),
            });
        }
    }
    fn result(&self, acc: &Self::Acc) -> Stat {
        acc.expect("a window that fires holds a record")
    }
}

fn stat_of(values: &[i64]) -> Stat {
    let n = values.len() as u64;
    let s = values.iter().sum();
    let lo = *values.iter().min().expect("a window holds a record");
    let hi = *values.iter().max().expect("a window holds a record");
    (n, s, lo, hi)
}

/// The window steps of the seeded job.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

/// `(step name, shape, allowed lateness)`.
const STEPS: [(&str, Shape, i64); 4] = [
    ("tumbling", Shape::Tumbling { size: 20 }, 15),
    ("tumbling-strict", Shape::Tumbling { size: 20 }, 0),
    ("sliding", Shape::Sliding { size: 30, slide: 10 }, 10),
    ("session", Shape::Session { gap: 8 }, 12),
];

const DISORDER: i64 = 5;

/// What one window step committed: sorted results and sorted late records.
type StepOut = (Vec<(u32, i64, i64, Stat)>, Vec<Event>);

/// Input of seed `seed`: time moves forward in steps of 0..4 ms, most records are at most
/// `DISORDER` behind the newest one, and about one in four is further behind (by up to 45 ms):
/// some within a step's lateness, some beyond, some exactly at the edge.
fn seeded_input(seed: u64, n: u64) -> Vec<Timed> {
    let mut t = 0i64;
    (0..n)
        .map(|i| {
            let r = mix(seed, i);
            t += (r % 4) as i64;
            let back = if (r >> 8).is_multiple_of(4) {
                DISORDER + 1 + ((r >> 16) % 40) as i64
            } else {
                ((r >> 16) % (DISORDER as u64 + 1)) as i64
            };
            let key = ((r >> 32) % 4) as u32;
            let value = 1 + ((r >> 40) % 100) as i64;
            ((key, value), t - back)
        })
        .collect()
}

/// The windows of `ts` for a non-merging shape, found by walking over window starts.
fn fixed_windows(shape: Shape, ts: i64) -> Vec<TimeWindow> {
    let (size, slide) = match shape {
        Shape::Tumbling { size } => (size, size),
        Shape::Sliding { size, slide } => (size, slide),
        Shape::Session { .. } => unreachable!("sessions merge"),
    };
    let mut start = ts.div_euclid(slide) * slide;
    let mut out = Vec::new();
    while start + size > ts {
        out.push(TimeWindow::new(start, start + size));
        start -= slide;
    }
    out
}

/// A window step computed sequentially: the watermark after each record is
/// `max - DISORDER - 1`; a record is added to each of its windows whose clean-up time
/// (`end - 1 + lateness`) is after the watermark, and fires a window at once when the watermark
/// already passed its end; a record no window takes is late. When the watermark advances,
/// windows whose end - 1 it passes fire, and windows past their clean-up time are dropped.
fn model(events: &[Timed], shape: Shape, lateness: i64) -> StepOut {
    let mut live: BTreeMap<(u32, TimeWindow), Vec<i64>> = BTreeMap::new();
    let mut results = Vec::new();
    let mut late = Vec::new();
    let mut wm = i64::MIN;
    let mut max_ts = i64::MIN;
    let advance = |live: &mut BTreeMap<(u32, TimeWindow), Vec<i64>>, results: &mut Vec<_>, from: i64, to: i64| {
        for ((k, w), vals) in live.iter() {
            if w.max_timestamp() > from && w.max_timestamp() <= to {
                results.push((*k, w.start, w.end, stat_of(vals)));
            }
        }
        live.retain(|(_, w), _| w.max_timestamp().saturating_add(lateness) > to);
    };
    for &((k, v), ts) in events {
        let is_late = |w: &TimeWindow| w.max_timestamp().saturating_add(lateness) <= wm;
        match shape {
            Shape::Session { gap } => {
                let mut merged = TimeWindow::new(ts, ts + gap);
                loop {
                    let grown = live
                        .keys()
                        .filter(|(key, w)| *key == k && w.intersects(&merged))
                        .fold(merged, |m, (_, w)| m.cover(w));
                    if grown == merged {
                        break;
                    }
                    merged = grown;
                }
                if is_late(&merged) {
                    late.push((k, v));
                } else {
                    let parts: Vec<(u32, TimeWindow)> = live
                        .keys()
                        .filter(|(key, w)| *key == k && w.intersects(&merged))
                        .copied()
                        .collect();
                    let mut vals = Vec::new();
                    for p in parts {
                        vals.extend(live.remove(&p).expect("listed above"));
                    }
                    vals.push(v);
                    if merged.max_timestamp() <= wm {
                        results.push((k, merged.start, merged.end, stat_of(&vals)));
                    }
                    live.insert((k, merged), vals);
                }
            }
            _ => {
                let mut taken = false;
                for w in fixed_windows(shape, ts) {
                    if is_late(&w) {
                        continue;
                    }
                    taken = true;
                    let vals = live.entry((k, w)).or_default();
                    vals.push(v);
                    if w.max_timestamp() <= wm {
                        results.push((k, w.start, w.end, stat_of(vals)));
                    }
                }
                if !taken {
                    late.push((k, v));
                }
            }
        }
        max_ts = max_ts.max(ts);
        let next = max_ts - DISORDER - 1;
        if next > wm {
            advance(&mut live, &mut results, wm, next);
            wm = next;
        }
    }
    advance(&mut live, &mut results, wm, i64::MAX);
    results.sort();
    late.sort();
    (results, late)
}

/// Runs the seeded job; returns each step's committed output and the report.
fn run_seeded(setup: &Setup, events: &[Timed]) -> (Vec<StepOut>, JobReport) {
    let mut sinks = Vec::new();
    let report = run_job(setup, events, |keyed| {
        for (name, shape, lateness) in STEPS {
            let (results, late) = (CollectSink::new(), CollectSink::new());
            let lateness = ms(lateness);
            let (r, l) = match shape {
                Shape::Tumbling { size } => keyed
                    .window(TumblingEventTime::of(ms(size)))
                    .allowed_lateness(lateness)
                    .aggregate_with_late(name, Stats),
                Shape::Sliding { size, slide } => keyed
                    .window(SlidingEventTime::of(ms(size), ms(slide)))
                    .allowed_lateness(lateness)
                    .aggregate_with_late(name, Stats),
                Shape::Session { gap } => keyed
                    .window(Session::with_gap(ms(gap)))
                    .allowed_lateness(lateness)
                    .aggregate_with_late(name, Stats),
            };
            r.sink(&format!("{name}-out"), results.clone());
            l.sink(&format!("{name}-late"), late.clone());
            sinks.push((results, late));
        }
    });
    let outs = sinks
        .into_iter()
        .map(|(r, l)| {
            let results = r
                .records()
                .into_iter()
                .map(|w: Windowed<u32, Stat>| (w.key, w.window.start, w.window.end, w.value))
                .collect();
            (common::sorted(results), common::sorted(l.records()))
        })
        .collect();
    (outs, report)
}

/// Two or three failures of seed `seed`: always one while processing a record (somewhere in
/// the run: every record passes 4 keyed steps), plus one or two from the checkpoint lifecycle.
fn seeded_failures(seed: u64, records: u64) -> Vec<(&'static str, u64, FailAction)> {
    let action = |r: u64| {
        if r.is_multiple_of(2) {
            FailAction::Error
        } else {
            FailAction::Panic
        }
    };
    let r = mix(seed ^ 0xFA11, 0);
    let mut plan = vec![(fail::PROCESS_RECORD, 1 + r % (3 * records), action(r >> 20))];
    let others = [
        (fail::SNAPSHOT_SYNC, 12),
        (fail::AFTER_METADATA, 2),
        (fail::DURING_COMMIT, 3),
        (fail::AFTER_PRE_COMMIT, 12),
    ];
    for k in 1..=2 {
        let r = mix(seed ^ 0xFA11, k);
        let (point, max_nth) = others[(r % others.len() as u64) as usize];
        if plan.iter().all(|p| p.0 != point) {
            plan.push((point, 1 + (r >> 8) % max_nth, action(r >> 20)));
        }
    }
    plan
}

#[test]
fn windows_with_late_records_commit_the_failure_free_output_under_random_failures() {
    let seeds: u64 = std::env::var("WEIR_WM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    const RECORDS: u64 = 240;
    let mut runs = 0;
    let mut restarts = 0;
    let mut late_total = 0;
    for seed in 1..=seeds {
        let events = seeded_input(seed, RECORDS);
        let expected: Vec<StepOut> = STEPS.iter().map(|&(_, shape, l)| model(&events, shape, l)).collect();
        late_total += expected.iter().map(|o| o.1.len()).sum::<usize>();
        for backend in BACKENDS {
            let free_setup = Setup {
                name: "seeded",
                backend,
                disorder: DISORDER,
                rate: 1000.0,
                failures: vec![],
            };
            let (free, _) = run_seeded(&free_setup, &events);
            for (i, (name, ..)) in STEPS.iter().enumerate() {
                assert_eq!(
                    free[i], expected[i],
                    "seed {seed} {backend:?} {name}: failure-free run vs model"
                );
            }
            let failures = seeded_failures(seed * 2 + matches!(backend, Backend::Rocks) as u64, RECORDS);
            let ctx = format!("seed {seed} {backend:?} failures {failures:?}");
            let (got, report) = run_seeded(
                &Setup {
                    failures: failures.clone(),
                    ..free_setup
                },
                &events,
            );
            runs += 1;
            restarts += report.restarts;
            for (i, (name, ..)) in STEPS.iter().enumerate() {
                assert_eq!(got[i], expected[i], "{ctx} {name}: restarts {}", report.restarts);
            }
        }
    }
    println!("{runs} runs with injected failures, {restarts} restarts, {late_total} late records per backend");
    assert!(late_total > 0, "the input must contain late records");
    assert!(
        restarts as usize >= runs,
        "every run must restart ({restarts} restarts in {runs} runs)"
    );
}

// ---------------------------------------------------------------------------------------------
// A keyed subtask with two input channels: each channel's watermark is restored, not only the
// combined one.

/// Reports the operator's watermark at each record of key 1 from value `FROM` on.
#[derive(Clone)]
struct WatermarkAtRecord;

const FROM: i64 = 61;

impl KeyedProcess<u32, Event> for WatermarkAtRecord {
    type Out = (i64, i64);
    fn process(&mut self, e: Event, ctx: &mut KeyedContext<'_, u32, (i64, i64)>) -> Result<()> {
        if e.0 == 1 && e.1 >= FROM {
            let wm = ctx.current_watermark();
            ctx.emit((e.1, wm));
        }
        Ok(())
    }
}

/// Two source subtasks, each chained to its own assigner, feed one keyed subtask over two
/// channels. Split 0 (even indices, key 0) has every record at 100 000, so its watermark is
/// 99 999 from its first record on and never moves again; split 1 (odd indices, key 1) has
/// record `i` at `i`. The keyed subtask's watermark at record `v` of key 1 is therefore the
/// watermark after split 1's previous record, `v - 3`, once split 0's first record has arrived
/// (both splits read at the same rate, so it arrived long before value 61).
///
/// After a restore split 0's assigner emits no watermark again (its watermark does not move),
/// so only a restored watermark of that channel lets the combined watermark follow split 1.
///
/// With `through_map` the two channels end in a stateless map of parallelism 1 instead (the
/// edge from the assigners is a rebalance), which forwards event time to the keyed subtask
/// over a single channel: the map's input watermarks must be restored as well.
fn two_channel_run(
    backend: Backend,
    through_map: bool,
    failures: Vec<(&'static str, u64, FailAction)>,
) -> (Vec<(i64, i64)>, JobReport) {
    common::trace_if_asked();
    let dir = fast_tempdir();
    let points = FailPoints::new();
    for (point, nth, action) in &failures {
        points.arm(point, *nth, *action);
    }
    let p = common::pipeline("two-channels", backend, &dir)
        .fail_points(points.clone())
        .parallelism(1)
        .batch_size(1)
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(10))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        });
    let out = CollectSink::new();
    let stamped = p
        .source(
            "events",
            GeneratorSource::new(|i| if i % 2 == 0 { (0u32, i as i64) } else { (1, i as i64) })
                .bounded(200)
                .splits(2)
                .rate_per_second(400.0)
                .with_timestamps(|i, _| if i % 2 == 0 { 100_000 } else { i as i64 }),
        )
        .parallelism(2)
        .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous())
        .parallelism(2);
    let stamped = if through_map {
        stamped.map("pass", |e: Event| e).parallelism(1)
    } else {
        stamped
    };
    stamped
        .key_by("by-key", |e: &Event| e.0)
        .process("observe", WatermarkAtRecord)
        .sink("out", out.clone());
    let report = p.run().unwrap_or_else(|e| panic!("{backend:?}: job failed: {e}"));
    let unfired: Vec<_> = failures.iter().filter(|f| points.is_armed(f.0)).collect();
    assert!(
        unfired.is_empty(),
        "{backend:?}: fail points that never fired: {unfired:?}"
    );
    (common::sorted(out.records()), report)
}

#[test]
fn a_keyed_subtask_restores_the_watermark_of_each_input_channel() {
    let expected: Vec<(i64, i64)> = (FROM..200).step_by(2).map(|v| (v, v - 3)).collect();
    for backend in BACKENDS {
        let (free, _) = two_channel_run(backend, false, vec![]);
        assert_eq!(free, expected, "{backend:?}: failure-free run");
        // The keyed subtask gets a batch per record of either split: fail about at value 120.
        let (got, report) = two_channel_run(backend, false, vec![(fail::PROCESS_RECORD, 120, FailAction::Error)]);
        assert!(report.restarts >= 1, "{report}");
        assert_eq!(got, expected, "{backend:?}: after a restore");
    }
}

#[test]
fn a_stateless_step_fed_by_several_channels_restores_their_watermarks() {
    let expected: Vec<(i64, i64)> = (FROM..200).step_by(2).map(|v| (v, v - 3)).collect();
    for backend in BACKENDS {
        let (free, _) = two_channel_run(backend, true, vec![]);
        assert_eq!(free, expected, "{backend:?}: failure-free run");
        let (got, report) = two_channel_run(backend, true, vec![(fail::PROCESS_RECORD, 120, FailAction::Panic)]);
        assert!(report.restarts >= 1, "{report}");
        assert_eq!(got, expected, "{backend:?}: after a restore");
    }
}
