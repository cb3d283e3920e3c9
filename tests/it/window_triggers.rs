//! Processing-time, count and global windows, triggers and evictors through the public API.
//!
//! One job runs every piece over the same seeded input, read by one source split so that each
//! key's records arrive in generator order (count windows depend on arrival order): tumbling
//! and sliding count windows, an event-time window with a time evictor, an event-time window
//! with continuous early firings, a tumbling processing-time window, and the global window with
//! a purging continuous processing-time trigger. Each output is compared with a sequential
//! model (count windows and the evictor exactly; early firings by their final result;
//! processing-time pieces by conservation: every record in exactly one firing), at parallelism
//! 1, 2 and 4 on both state backends, with failures injected (restarts from the latest
//! checkpoint), and across a rescale (stopped with a savepoint at one parallelism, finished at
//! another).

use crate::common::{sorted, Backend, BACKENDS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::generator::mix;
use weir::prelude::*;

const KEYS: u64 = 8;
const EVENTS: u64 = 3_000;
/// Tumbling count window size.
const COUNT: u64 = 7;
/// Sliding count window: size and slide.
const SIZE: u64 = 5;
const SLIDE: u64 = 2;
/// Event-time window size, the time evictor's span and the early-firing interval.
const WINDOW_MS: i64 = 100;
const EVICT_MS: i64 = 30;
const EARLY_MS: i64 = 20;

/// A record: its id (the generator index), key and event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Ev {
    id: u64,
    key: u64,
    ts: i64,
}

/// Record `i`: timestamps rise by 2 ms per record with up to ±400 ms of disorder, well within
/// the watermarks' 2 s bound, so no record is late.
fn ev(i: u64) -> Ev {
    let r = mix(5, i);
    Ev {
        id: i,
        key: (r >> 8) % KEYS,
        ts: 1_000_000 + 2 * i as i64 + ((r >> 24) % 800) as i64 - 400,
    }
}

fn input() -> Vec<Ev> {
    (0..EVENTS).map(ev).collect()
}

/// Count and sum of ids.
#[derive(Clone)]
struct CountSum;

impl AggregateFunction<Ev> for CountSum {
    type Acc = (u64, u64);
    type Out = (u64, u64);
    fn create(&self) -> Self::Acc {
        (0, 0)
    }
    fn add(&self, acc: &mut Self::Acc, e: &Ev) {
        acc.0 += 1;
        acc.1 += e.id;
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        *acc
    }
}

/// A group of ids: key and ids in arrival order.
type Ids = (u64, Vec<u64>);
/// A count-and-sum result: key, window start (0 for the global window), count, sum of ids.
type Sum = (u64, i64, u64, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outputs {
    /// Tumbling count windows: each firing's ids.
    count: Vec<Ids>,
    /// Tumbling count windows with `aggregate`.
    count_sums: Vec<Sum>,
    /// Sliding count windows with `aggregate` (through the count evictor).
    sliding: Vec<Sum>,
    /// Event-time windows with a time evictor: key, window start, ids (sorted).
    evicted: Vec<(u64, i64, Vec<u64>)>,
    /// Event-time windows with continuous early firings.
    early: Vec<Sum>,
    /// Processing-time tumbling windows: each firing's ids.
    processing: Vec<Ids>,
    /// Global window with a purging continuous processing-time trigger: each firing's ids.
    global: Vec<Ids>,
}

// ---------------------------------------------------------------------------------------------
// The model.

fn by_key(input: &[Ev]) -> BTreeMap<u64, Vec<Ev>> {
    let mut m: BTreeMap<u64, Vec<Ev>> = BTreeMap::new();
    for e in input {
        m.entry(e.key).or_default().push(*e);
    }
    m
}

fn sum_of(key: u64, start: i64, evs: &[Ev]) -> Sum {
    (key, start, evs.len() as u64, evs.iter().map(|e| e.id).sum())
}

fn window_start(ts: i64) -> i64 {
    ts - ts.rem_euclid(WINDOW_MS)
}

/// What the deterministic outputs must be (the processing-time ones are checked by
/// conservation).
fn model(input: &[Ev]) -> Outputs {
    let mut out = Outputs {
        count: vec![],
        count_sums: vec![],
        sliding: vec![],
        evicted: vec![],
        early: vec![],
        processing: vec![],
        global: vec![],
    };
    for (k, evs) in by_key(input) {
        for chunk in evs.chunks_exact(COUNT as usize) {
            out.count.push((k, chunk.iter().map(|e| e.id).collect()));
            out.count_sums.push(sum_of(k, i64::MIN, chunk));
        }
        let mut i = SLIDE as usize;
        while i <= evs.len() {
            out.sliding
                .push(sum_of(k, i64::MIN, &evs[i.saturating_sub(SIZE as usize)..i]));
            i += SLIDE as usize;
        }
        let mut windows: BTreeMap<i64, Vec<Ev>> = BTreeMap::new();
        for e in &evs {
            windows.entry(window_start(e.ts)).or_default().push(*e);
        }
        for (start, w) in windows {
            let newest = w.iter().map(|e| e.ts).max().unwrap();
            let kept: Vec<u64> = w.iter().filter(|e| e.ts > newest - EVICT_MS).map(|e| e.id).collect();
            out.evicted.push((k, start, sorted(kept)));
            out.early.push(sum_of(k, start, &w));
        }
    }
    out.count = sorted(out.count);
    out.count_sums = sorted(out.count_sums);
    out.sliding = sorted(out.sliding);
    out
}

// ---------------------------------------------------------------------------------------------
// The job.

struct Sinks {
    count: CollectSink<Ids>,
    count_sums: CollectSink<Sum>,
    sliding: CollectSink<Sum>,
    evicted: CollectSink<(u64, i64, Vec<u64>)>,
    early: CollectSink<Sum>,
    processing: CollectSink<Ids>,
    global: CollectSink<Ids>,
}

impl Sinks {
    fn new() -> Self {
        Sinks {
            count: CollectSink::new(),
            count_sums: CollectSink::new(),
            sliding: CollectSink::new(),
            evicted: CollectSink::new(),
            early: CollectSink::new(),
            processing: CollectSink::new(),
            global: CollectSink::new(),
        }
    }

    fn outputs(&self) -> Outputs {
        Outputs {
            count: sorted(self.count.records()),
            count_sums: sorted(self.count_sums.records()),
            sliding: sorted(self.sliding.records()),
            evicted: sorted(self.evicted.records()),
            early: sorted(self.early.records()),
            processing: sorted(self.processing.records()),
            global: sorted(self.global.records()),
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

fn ids(records: &[Ev]) -> Vec<u64> {
    records.iter().map(|e| e.id).collect()
}

fn sums(w: Windowed<u64, (u64, u64)>) -> Sum {
    let start = if w.window == TimeWindow::global() {
        i64::MIN
    } else {
        w.window.start
    };
    (w.key, start, w.value.0, w.value.1)
}

impl Job<'_> {
    fn pipeline(&self, sinks: &Sinks) -> Pipeline {
        let points = FailPoints::new();
        for (p, n) in &self.failures {
            points.arm(p, *n, FailAction::Error);
        }
        let mut p = Pipeline::new("window-triggers")
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
        // One split: each key's records reach its window subtask in generator order.
        let mut g = GeneratorSource::new(ev).bounded(EVENTS).splits(1);
        if let Some(rate) = self.rate {
            g = g.rate_per_second(rate);
        }
        let keyed = p
            .source("events", g)
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(2))
                    .with_timestamp_assigner(|e: &Ev| e.ts),
            )
            .key_by("by-key", |e: &Ev| e.key);

        keyed
            .count_window(COUNT)
            .process("count", |k: &u64, w, records: Vec<Ev>| {
                assert_eq!(w, TimeWindow::global());
                vec![(*k, ids(&records))]
            })
            .sink("count-out", sinks.count.clone());
        keyed
            .count_window(COUNT)
            .aggregate("count-sum", CountSum)
            .map("count-sum.flat", sums)
            .sink("count-sum-out", sinks.count_sums.clone());
        keyed
            .count_window_sliding(SIZE, SLIDE)
            .aggregate("sliding", CountSum)
            .map("sliding.flat", sums)
            .sink("sliding-out", sinks.sliding.clone());
        keyed
            .window(TumblingEventTime::of(Duration::from_millis(WINDOW_MS as u64)))
            .evictor(time_evictor(Duration::from_millis(EVICT_MS as u64)))
            .process("evicted", |k: &u64, w, records: Vec<Ev>| {
                vec![(*k, w.start, sorted(ids(&records)))]
            })
            .sink("evicted-out", sinks.evicted.clone());
        keyed
            .window(TumblingEventTime::of(Duration::from_millis(WINDOW_MS as u64)))
            .trigger(triggers::continuous_event_time(Duration::from_millis(EARLY_MS as u64)))
            .aggregate("early", CountSum)
            .map("early.flat", sums)
            .sink("early-out", sinks.early.clone());
        keyed
            .window(TumblingProcessingTime::of(Duration::from_millis(50)))
            .process("processing", |k: &u64, _, records: Vec<Ev>| vec![(*k, ids(&records))])
            .sink("processing-out", sinks.processing.clone());
        keyed
            .window(GlobalWindows::create())
            .trigger(triggers::purging(triggers::continuous_processing_time(
                Duration::from_millis(30),
            )))
            .process("global", |k: &u64, _, records: Vec<Ev>| vec![(*k, ids(&records))])
            .sink("global-out", sinks.global.clone());
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

/// Every record in exactly one firing, each firing of one key.
fn check_conserved(what: &str, firings: &[Ids], input: &[Ev], ctx: &str) {
    let mut seen: Vec<u64> = Vec::new();
    for (k, ids) in firings {
        assert!(!ids.is_empty(), "{ctx}: {what}: an empty firing");
        for id in ids {
            assert_eq!(
                input[*id as usize].key, *k,
                "{ctx}: {what}: record {id} fired under key {k}"
            );
        }
        seen.extend(ids);
    }
    let seen = sorted(seen);
    let all: Vec<u64> = input.iter().map(|e| e.id).collect();
    assert_eq!(seen.len(), all.len(), "{ctx}: {what}: records in firings");
    assert_eq!(seen, all, "{ctx}: {what}: every record exactly once");
}

fn check(got: &Outputs, want: &Outputs, ctx: &str) {
    let input = input();
    assert_eq!(got.count.len(), want.count.len(), "{ctx}: count windows");
    assert!(
        got.count.iter().all(|(_, ids)| ids.len() == COUNT as usize),
        "{ctx}: a count window fired without exactly {COUNT} records"
    );
    assert_eq!(got.count, want.count, "{ctx}: count windows");
    assert_eq!(got.count_sums, want.count_sums, "{ctx}: count windows (aggregate)");
    assert_eq!(got.sliding, want.sliding, "{ctx}: sliding count windows");
    assert_eq!(got.evicted, want.evicted, "{ctx}: time evictor");
    // Early firings: the last firing of each window is the model's result, earlier ones see a
    // part of it.
    let mut last: BTreeMap<(u64, i64), Sum> = BTreeMap::new();
    for s in &got.early {
        let e = last.entry((s.0, s.1)).or_insert(*s);
        if s.2 > e.2 {
            *e = *s;
        }
    }
    let finals: Vec<Sum> = last.into_values().collect();
    assert_eq!(finals, want.early, "{ctx}: early firings' final results");
    check_conserved("processing-time windows", &got.processing, &input, ctx);
    check_conserved(
        "global window, purging continuous processing time",
        &got.global,
        &input,
        ctx,
    );
}

fn expected() -> Outputs {
    model(&input())
}

fn run_once(backend: Backend, parallelism: usize, failures: Vec<(&'static str, u64)>) -> (Outputs, JobReport) {
    let dir = tempfile::tempdir().unwrap();
    let sinks = Sinks::new();
    let job = Job {
        dir: dir.path(),
        backend,
        parallelism,
        failures,
        rate: Some(20_000.0),
        checkpoints: dir.path().join("checkpoints"),
        from_savepoint: None,
    };
    let report = job.pipeline(&sinks).run().unwrap_or_else(|e| panic!("job failed: {e}"));
    (sinks.outputs(), report)
}

#[test]
fn count_processing_time_and_global_windows_match_the_model_on_both_backends() {
    let want = expected();
    for backend in BACKENDS {
        for p in [1, 2, 4] {
            let ctx = format!("{backend:?} p {p}");
            let (got, report) = run_once(backend, p, vec![]);
            check(&got, &want, &ctx);
            assert!(
                counter(&report, "sliding", "evicted_records") > 0,
                "{ctx}: the count evictor evicted"
            );
            assert!(
                counter(&report, "evicted", "evicted_records") > 0,
                "{ctx}: the time evictor evicted"
            );
            assert!(
                got.early.len() > want.early.len(),
                "{ctx}: windows fired early before the watermark reached their end"
            );
        }
    }
}

#[test]
fn triggers_and_evictors_are_exactly_once_across_failures() {
    let want = expected();
    for (n, backend) in BACKENDS.into_iter().enumerate() {
        for p in [1, 2, 4] {
            let r = |k: u64| mix(p as u64 * 13 + n as u64, k);
            let failures = vec![
                (fail::PROCESS_RECORD, 30 + r(0) % 200),
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

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn triggers_and_evictors_are_exact_across_a_rescale() {
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
        wait_until("the first run read records and completed a checkpoint", || {
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
            !halfway.count.is_empty() && halfway.count.len() < want.count.len(),
            "{ctx}: the savepoint falls in the middle of the input ({} of {} count windows)",
            halfway.count.len(),
            want.count.len()
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

/// Builds a one-step window job with `configure` and returns its error message.
fn config_error(configure: impl FnOnce(KeyedStream<u32, u32>) -> Stream<Windowed<u32, u32>>) -> String {
    let p = Pipeline::new("bad-windows").state_backend(MemoryBackend::new());
    let keyed = p.source("in", VecSource::new(vec![1u32])).key_by("k", |v: &u32| *v);
    configure(keyed).sink("out", DiscardSink::new());
    let err = p.run().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    err.to_string()
}

#[test]
fn meaningless_window_configurations_are_errors_naming_the_step() {
    let sum = |a: u32, b: u32| a + b;
    let ms = Duration::from_millis;
    let cases: Vec<(&str, String)> = vec![
        (
            "at least 1 record",
            config_error(|k| k.count_window(0).reduce("zero", sum)),
        ),
        (
            "1 <= slide <= size",
            config_error(|k| k.count_window_sliding(2, 3).reduce("gappy", sum)),
        ),
        (
            "processing-time windows have no late records",
            config_error(|k| {
                k.window(TumblingProcessingTime::of(ms(10)))
                    .allowed_lateness(ms(5))
                    .reduce("late-proc", sum)
            }),
        ),
        (
            "global/count windows have no late records",
            config_error(|k| k.count_window(3).allowed_lateness(ms(5)).reduce("late-count", sum)),
        ),
        (
            "larger than its size",
            config_error(|k| k.window(SlidingProcessingTime::of(ms(10), ms(20))).reduce("slide", sum)),
        ),
        (
            "count must be at least 1",
            config_error(|k| k.window(GlobalWindows).trigger(triggers::count(0)).reduce("never", sum)),
        ),
        (
            "at least 1 ms",
            config_error(|k| {
                k.window(TumblingEventTime::of(ms(10)))
                    .trigger(triggers::continuous_event_time(Duration::ZERO))
                    .reduce("busy", sum)
            }),
        ),
        (
            "keep at least 1 record",
            config_error(|k| k.window(GlobalWindows).evictor(count_evictor(0)).reduce("empty", sum)),
        ),
    ];
    for (step, (what, err)) in [
        "zero",
        "gappy",
        "late-proc",
        "late-count",
        "slide",
        "never",
        "busy",
        "empty",
    ]
    .iter()
    .zip(cases)
    {
        assert!(err.contains(&format!("\"{step}\"")), "names the step {step}: {err}");
        assert!(err.contains(what), "{what}: {err}");
    }
}

/// A trigger of one's own: fires and purges a key's global window at each negative value,
/// and keeps how many records it saw in trigger state.
#[derive(Debug)]
struct UntilNegative;

impl Trigger<(u32, i64)> for UntilNegative {
    fn on_element(&self, v: &(u32, i64), _: Option<Timestamp>, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let seen = ctx.state::<u64>("seen")?.unwrap_or(0) + 1;
        ctx.set_state("seen", &seen)?;
        Ok(if v.1 < 0 {
            TriggerResult::FireAndPurge
        } else {
            TriggerResult::Continue
        })
    }
    fn on_event_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn clear(&self, ctx: &mut TriggerContext<'_>) -> Result<()> {
        ctx.clear_state("seen")
    }
}

#[test]
fn a_trigger_of_ones_own_decides_firing_and_purging() {
    let input: Vec<(u32, i64)> = vec![(1, 1), (2, 10), (1, 2), (1, -3), (2, -20), (1, 4), (2, 30), (1, -5)];
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::common::pipeline("own-trigger", backend, &dir).parallelism(2);
        let out = CollectSink::new();
        p.source("in", VecSource::new(input.clone()))
            .key_by("k", |v: &(u32, i64)| v.0)
            .window(GlobalWindows::create())
            .trigger(UntilNegative)
            .process("groups", |k: &u32, _, vs: Vec<(u32, i64)>| {
                vec![(*k, vs.into_iter().map(|v| v.1).collect::<Vec<_>>())]
            })
            .sink("out", out.clone());
        p.run().unwrap();
        assert_eq!(
            sorted(out.records()),
            vec![(1, vec![1, 2, -3]), (1, vec![4, -5]), (2, vec![10, -20])],
            "{backend:?}: the trailing 30 never fires"
        );
    }
}
