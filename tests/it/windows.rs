//! Event-time windows through the public API: generated out-of-order input against a
//! brute-force model (tumbling, sliding, session; aggregate, reduce, process), at parallelism
//! 1, 2 and 4 on both state backends, and late data with and without allowed lateness.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use std::collections::BTreeMap;
use std::time::Duration;
use weir::prelude::*;

/// A record: (key, value); its event time travels as the record's timestamp.
type Event = (u32, i64);

fn ms(v: i64) -> Duration {
    Duration::from_millis(v as u64)
}

/// Count, sum, min and max of the values.
#[derive(Clone)]
struct Stats;

impl AggregateFunction<Event> for Stats {
    type Acc = Option<(u64, i64, i64, i64)>;
    type Out = (u64, i64, i64, i64);
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
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        acc.expect("a window that fires holds a record")
    }
}

/// Which state backend a run uses.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Rocks,
}

const BACKENDS: [Backend; 2] = [Backend::Memory, Backend::Rocks];

/// A pipeline on `backend`; the returned directory must outlive the run.
fn pipeline(name: &str, parallelism: usize, backend: Backend) -> (Pipeline, tempfile::TempDir) {
    pipeline_in(name, parallelism, backend, tempfile::tempdir().unwrap())
}

fn pipeline_in(
    name: &str,
    parallelism: usize,
    backend: Backend,
    dir: tempfile::TempDir,
) -> (Pipeline, tempfile::TempDir) {
    let p = Pipeline::new(name).parallelism(parallelism);
    let p = match backend {
        Backend::Memory => p.state_backend(MemoryBackend::new()),
        Backend::Rocks => p.state_backend(RocksDbBackend::new(dir.path())),
    };
    (p, dir)
}

/// A directory for RocksDB stores, on tmpfs where there is one: opening a store fsyncs (about
/// 70 ms on a disk) and a job opens its stores one after another, which would make the
/// generated matrix (7 keyed steps at parallelism 1, 2 and 4) take over a minute.
fn fast_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Runs the pipeline `build` makes and returns its report and the sinks `build` returned.
fn run_job<S>(build: impl Fn() -> (Pipeline, tempfile::TempDir, S)) -> (JobReport, S) {
    let (p, _dir, sinks) = build();
    match p.run() {
        Ok(report) => (report, sinks),
        Err(e) => panic!("job failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The model: windows computed directly from the input.

type Stat = (u64, i64, i64, i64);

fn stats(values: &[i64]) -> Stat {
    let mut acc = None;
    for &v in values {
        Stats.add(&mut acc, &(0, v));
    }
    Stats.result(&acc)
}

/// Every (key, window) with its values, for a non-merging assigner given by `windows_of`.
fn model_fixed(
    events: &[(Event, i64)],
    windows_of: impl Fn(i64) -> Vec<TimeWindow>,
) -> BTreeMap<(u32, TimeWindow), Vec<i64>> {
    let mut m: BTreeMap<(u32, TimeWindow), Vec<i64>> = BTreeMap::new();
    for &((k, v), ts) in events {
        for w in windows_of(ts) {
            assert!(w.start <= ts && ts < w.end);
            m.entry((k, w)).or_default().push(v);
        }
    }
    m
}

fn tumbling_model(ts: i64, size: i64, offset: i64) -> Vec<TimeWindow> {
    // The aligned start at or below ts, found by walking (no modular arithmetic to share
    // mistakes with the implementation).
    let mut start = offset;
    while start > ts {
        start -= size;
    }
    while start + size <= ts {
        start += size;
    }
    vec![TimeWindow::new(start, start + size)]
}

fn sliding_model(ts: i64, size: i64, slide: i64) -> Vec<TimeWindow> {
    (-5000 / slide..5000 / slide)
        .map(|k| TimeWindow::new(k * slide, k * slide + size))
        .filter(|w| w.start <= ts && ts < w.end)
        .collect()
}

/// Sessions per key: sorted timestamps split where the next one lies beyond the session's end.
fn session_model(events: &[(Event, i64)], gap: i64) -> BTreeMap<(u32, TimeWindow), Vec<i64>> {
    let mut by_key: BTreeMap<u32, Vec<(i64, i64)>> = BTreeMap::new();
    for &((k, v), ts) in events {
        by_key.entry(k).or_default().push((ts, v));
    }
    let mut m = BTreeMap::new();
    for (k, mut evs) in by_key {
        evs.sort();
        let mut cur: Option<(TimeWindow, Vec<i64>)> = None;
        for (ts, v) in evs {
            cur = Some(match cur {
                Some((w, mut vals)) if ts <= w.end => {
                    vals.push(v);
                    (TimeWindow::new(w.start, w.end.max(ts + gap)), vals)
                }
                other => {
                    if let Some((w, vals)) = other {
                        m.insert((k, w), vals);
                    }
                    (TimeWindow::new(ts, ts + gap), vec![v])
                }
            });
        }
        if let Some((w, vals)) = cur {
            m.insert((k, w), vals);
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// The generated case.

#[derive(Debug, Clone)]
struct Case {
    /// ((key, value), timestamp) in source order.
    events: Vec<(Event, i64)>,
    /// Bound of the disorder: every record is at most this much older than any earlier one.
    disorder: i64,
    tumbling: (i64, i64),
    sliding: (i64, i64),
    gap: i64,
    /// Records per source batch: the watermark advances after each batch.
    batch: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (0i64..40, -300i64..300)
        .prop_flat_map(|(disorder, base)| {
            (
                Just(disorder),
                prop::collection::vec((0u32..4, 0i64..12, 0..=disorder, -50i64..50), 0..160),
                Just(base),
                (1i64..50).prop_flat_map(|size| (Just(size), 0..size)),
                (1i64..40).prop_flat_map(|size| (Just(size), 1..size + 8)),
                1i64..30,
                1usize..8,
            )
        })
        .prop_map(|(disorder, raw, base, tumbling, sliding, gap, batch)| {
            // In-order times t_i, each moved back by at most `disorder`: then for j > i,
            // ts_j >= t_j - disorder >= t_i - disorder >= ts_i - disorder.
            let mut t = base;
            let events = raw
                .into_iter()
                .map(|(k, step, back, v)| {
                    t += step;
                    ((k, v), t - back)
                })
                .collect();
            Case {
                events,
                disorder,
                tumbling,
                sliding,
                gap,
                batch,
            }
        })
}

/// The sorted outputs of every windowed step of one run.
#[derive(Debug, PartialEq)]
struct Outputs {
    tumbling_agg: Vec<Windowed<u32, Stat>>,
    tumbling_lateness: Vec<Windowed<u32, Stat>>,
    sliding_reduce: Vec<Windowed<u32, Event>>,
    sliding_process: Vec<(u32, TimeWindow, Vec<i64>)>,
    session_agg: Vec<Windowed<u32, Stat>>,
    session_reduce: Vec<Windowed<u32, Event>>,
    session_process: Vec<(u32, TimeWindow, Vec<i64>)>,
    late: Vec<Event>,
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `process` window function: the key, the window and its values sorted (arrival order differs
/// between parallelisms).
fn sorted_values(k: &u32, w: TimeWindow, evs: Vec<Event>) -> Vec<(u32, TimeWindow, Vec<i64>)> {
    assert!(evs.iter().all(|e| e.0 == *k));
    vec![(*k, w, sorted(evs.into_iter().map(|e| e.1).collect()))]
}

fn run(c: &Case, parallelism: usize, backend: Backend) -> Outputs {
    let (report, sinks) = run_job(|| {
        let (p, dir) = pipeline_in("windows", parallelism, backend, fast_tempdir());
        let p = p.batch_size(c.batch);
        let sinks = build(&p, c);
        (p, dir, sinks)
    });
    for step in [
        "tumbling-agg",
        "tumbling-lateness",
        "sliding-reduce",
        "sliding-process",
        "session-agg",
        "session-reduce",
        "session-process",
    ] {
        let counters = &report.operator(step).unwrap().counters;
        assert_eq!(counters.get("late_records"), None, "{step}: {report}");
    }
    let (ta, tl, sr, sp, sa, ssr, ssp, late) = sinks;
    Outputs {
        tumbling_agg: sorted(ta.records()),
        tumbling_lateness: sorted(tl.records()),
        sliding_reduce: sorted(sr.records()),
        sliding_process: sorted(sp.records()),
        session_agg: sorted(sa.records()),
        session_reduce: sorted(ssr.records()),
        session_process: sorted(ssp.records()),
        late: late.records(),
    }
}

type StatSink = CollectSink<Windowed<u32, Stat>>;
type SumSink = CollectSink<Windowed<u32, Event>>;
type ValuesSink = CollectSink<(u32, TimeWindow, Vec<i64>)>;
type Sinks = (
    StatSink,
    StatSink,
    SumSink,
    ValuesSink,
    StatSink,
    SumSink,
    ValuesSink,
    CollectSink<Event>,
);

/// Every windowed step of the generated test, each into its own sink.
fn build(p: &Pipeline, c: &Case) -> Sinks {
    // The source reads each of its 3 splits in its own subtask, so that the watermark of each
    // subtask follows its split's bounded disorder: a subtask that reads several splits reads
    // them one after another, and the watermark of the first would make the next one late.
    let keyed = p
        .source("events", VecSource::with_timestamps(c.events.clone()).splits(3))
        .parallelism(3)
        .assign_timestamps_and_watermarks(WatermarkStrategy::bounded_out_of_orderness(ms(c.disorder)))
        .parallelism(3)
        .key_by("by-key", |e: &Event| e.0);

    let (size, offset) = c.tumbling;
    let tumbling = keyed.window(TumblingEventTime::of(ms(size)).with_offset(ms(offset)));
    let (ta, late) = tumbling.aggregate_with_late("tumbling-agg", Stats);
    let ta_sink = CollectSink::new();
    ta.sink("tumbling-agg-out", ta_sink.clone());
    let late_sink = CollectSink::new();
    late.sink("late-out", late_sink.clone());
    let tl_sink = CollectSink::new();
    tumbling
        .allowed_lateness(ms(25))
        .aggregate("tumbling-lateness", Stats)
        .sink("tumbling-lateness-out", tl_sink.clone());

    let (size, slide) = c.sliding;
    let sliding = keyed.window(SlidingEventTime::of(ms(size), ms(slide)));
    let sr_sink = CollectSink::new();
    sliding
        .reduce("sliding-reduce", |a, b| (a.0, a.1 + b.1))
        .sink("sliding-reduce-out", sr_sink.clone());
    let sp_sink = CollectSink::new();
    sliding
        .process("sliding-process", sorted_values)
        .sink("sliding-process-out", sp_sink.clone());

    let session = keyed.window(Session::with_gap(ms(c.gap)));
    let sa_sink = CollectSink::new();
    session
        .aggregate("session-agg", Stats)
        .sink("session-agg-out", sa_sink.clone());
    let ssr_sink = CollectSink::new();
    session
        .reduce("session-reduce", |a, b| (a.0, a.1 + b.1))
        .sink("session-reduce-out", ssr_sink.clone());
    let ssp_sink = CollectSink::new();
    session
        .process("session-process", sorted_values)
        .sink("session-process-out", ssp_sink.clone());
    (
        ta_sink, tl_sink, sr_sink, sp_sink, sa_sink, ssr_sink, ssp_sink, late_sink,
    )
}

fn expected(c: &Case) -> Outputs {
    let (size, offset) = c.tumbling;
    let tumbling = model_fixed(&c.events, |ts| tumbling_model(ts, size, offset));
    let (size, slide) = c.sliding;
    let sliding = model_fixed(&c.events, |ts| sliding_model(ts, size, slide));
    let session = session_model(&c.events, c.gap);
    let agg = |m: &BTreeMap<(u32, TimeWindow), Vec<i64>>| {
        m.iter()
            .map(|(&(key, window), vals)| Windowed {
                key,
                window,
                value: stats(vals),
            })
            .collect::<Vec<_>>()
    };
    let reduce = |m: &BTreeMap<(u32, TimeWindow), Vec<i64>>| {
        m.iter()
            .map(|(&(key, window), vals)| Windowed {
                key,
                window,
                value: (key, vals.iter().sum::<i64>()),
            })
            .collect::<Vec<_>>()
    };
    let process = |m: &BTreeMap<(u32, TimeWindow), Vec<i64>>| {
        m.iter()
            .map(|(&(key, window), vals)| (key, window, sorted(vals.clone())))
            .collect::<Vec<_>>()
    };
    Outputs {
        tumbling_agg: sorted(agg(&tumbling)),
        tumbling_lateness: sorted(agg(&tumbling)),
        sliding_reduce: sorted(reduce(&sliding)),
        sliding_process: sorted(process(&sliding)),
        session_agg: sorted(agg(&session)),
        session_reduce: sorted(reduce(&session)),
        session_process: sorted(process(&session)),
        late: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_the_model_at_every_parallelism(c in case()) {
        let expect = expected(&c);
        for backend in BACKENDS {
            for parallelism in [1usize, 2, 4] {
                let got = run(&c, parallelism, backend);
                prop_assert_eq!(&got, &expect, "parallelism {} backend {:?}", parallelism, backend);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Late data: one split, parallelism 1, one record per batch (a watermark after every record).

fn late_pipeline(backend: Backend) -> (Pipeline, tempfile::TempDir) {
    let (p, dir) = pipeline("late", 1, backend);
    (p.batch_size(1), dir)
}

fn source(p: &Pipeline, events: &[(Event, i64)]) -> KeyedStream<u32, Event> {
    source_with_disorder(p, events, 0)
}

fn source_with_disorder(p: &Pipeline, events: &[(Event, i64)], disorder: i64) -> KeyedStream<u32, Event> {
    p.source("events", VecSource::with_timestamps(events.to_vec()))
        .assign_timestamps_and_watermarks(WatermarkStrategy::bounded_out_of_orderness(ms(disorder)))
        .key_by("by-key", |e: &Event| e.0)
}

fn window_sums(records: Vec<Windowed<u32, Event>>) -> Vec<(i64, i64, i64)> {
    records
        .into_iter()
        .map(|w| (w.window.start, w.window.end, w.value.1))
        .collect()
}

fn late_records(report: &JobReport, step: &str) -> Option<u64> {
    report.operator(step).unwrap().counters.get("late_records").copied()
}

#[test]
fn a_record_behind_the_watermark_is_counted_and_side_output() {
    // Watermark after a record at ts is ts - 1 (no out-of-orderness).
    let events = [
        ((1, 1), 1),
        ((1, 2), 5),
        ((1, 4), 25), // watermark 24: [0, 10) fires with 3
        ((1, 10), 3), // late
        ((1, 20), 9), // late
        ((1, 40), 27),
    ];
    for backend in BACKENDS {
        let (report, (results, late, plain)) = run_job(|| {
            let (p, dir) = late_pipeline(backend);
            let (results, late, plain) = (CollectSink::new(), CollectSink::new(), CollectSink::new());
            let windows = source(&p, &events).window(TumblingEventTime::of(ms(10)));
            let (r, l) = windows.reduce_with_late("sums", |a, b| (a.0, a.1 + b.1));
            r.sink("results", results.clone());
            l.sink("late", late.clone());
            windows.aggregate("stats", Stats).sink("stats-out", plain.clone());
            (p, dir, (results, late, plain))
        });
        assert_eq!(
            window_sums(results.records()),
            vec![(0, 10, 3), (20, 30, 44)],
            "{backend:?}"
        );
        assert_eq!(late.records(), vec![(1, 10), (1, 20)], "{backend:?}");
        assert_eq!(late_records(&report, "sums"), Some(2), "{report}");
        // The plain variant only counts them.
        assert_eq!(late_records(&report, "stats"), Some(2), "{report}");
        let stats: Vec<Stat> = plain.records().into_iter().map(|w| w.value).collect();
        assert_eq!(stats, vec![(2, 3, 1, 2), (2, 44, 4, 40)]);
    }
}

#[test]
fn a_record_within_allowed_lateness_updates_the_window() {
    let events = [
        ((1, 1), 1),
        ((1, 2), 5),
        ((1, 4), 15),   // watermark 14: [0, 10) fires with 3
        ((1, 10), 3),   // within lateness (state kept until watermark 19): fires again with 13
        ((1, 100), 30), // watermark 29: [0, 10) is cleaned up, [10, 20) fires with 4
        ((1, 1000), 4), // late now
        ((2, 7), 8),    // another key, late for its own (never created) window as well
    ];
    for backend in BACKENDS {
        let (report, (results, late)) = run_job(|| {
            let (p, dir) = late_pipeline(backend);
            let (results, late) = (CollectSink::new(), CollectSink::new());
            let (r, l) = source(&p, &events)
                .window(TumblingEventTime::of(ms(10)))
                .allowed_lateness(ms(10))
                .reduce_with_late("sums", |a, b| (a.0, a.1 + b.1));
            r.sink("results", results.clone());
            l.sink("late", late.clone());
            (p, dir, (results, late))
        });
        let got: Vec<(u32, i64, i64, i64)> = results
            .records()
            .into_iter()
            .map(|w| (w.key, w.window.start, w.window.end, w.value.1))
            .collect();
        assert_eq!(
            got,
            vec![(1, 0, 10, 3), (1, 0, 10, 13), (1, 10, 20, 4), (1, 30, 40, 100)],
            "{backend:?}"
        );
        assert_eq!(late.records(), vec![(1, 1000), (2, 7)], "{backend:?}");
        assert_eq!(late_records(&report, "sums"), Some(2), "{report}");
    }
}

#[test]
fn late_sessions_merge_refire_and_bridge() {
    let events = [
        ((1, 1), 0),
        ((1, 2), 5),     // session [0, 15)
        ((1, 4), 30),    // watermark 29: [0, 15) fires with 3; session [30, 40)
        ((1, 8), 12),    // [12, 22) merges into the fired [0, 15): [0, 22) fires at once with 11
        ((1, 16), 20),   // [20, 30) touches both: [0, 40), fires at the end with 31
        ((1, 64), -100), // a new session far behind the watermark: late
    ];
    for backend in BACKENDS {
        let (report, (results, late, elements)) = run_job(|| {
            let (p, dir) = late_pipeline(backend);
            let sinks = (CollectSink::new(), CollectSink::new(), CollectSink::new());
            let windows = source(&p, &events)
                .window(Session::with_gap(ms(10)))
                .allowed_lateness(ms(20));
            let (r, l) = windows.reduce_with_late("sessions", |a, b| (a.0, a.1 + b.1));
            r.sink("results", sinks.0.clone());
            l.sink("late", sinks.1.clone());
            windows
                .process("session-elements", |_k, w, evs: Vec<Event>| {
                    vec![(w, sorted(evs.iter().map(|e| e.1).collect::<Vec<_>>()))]
                })
                .sink("elements", sinks.2.clone());
            (p, dir, sinks)
        });
        assert_eq!(
            window_sums(results.records()),
            vec![(0, 15, 3), (0, 22, 11), (0, 40, 31)],
            "{backend:?}"
        );
        assert_eq!(late.records(), vec![(1, 64)], "{backend:?}");
        assert_eq!(late_records(&report, "sessions"), Some(1), "{report}");
        assert_eq!(
            elements.records(),
            vec![
                (TimeWindow::new(0, 15), vec![1, 2]),
                (TimeWindow::new(0, 22), vec![1, 2, 8]),
                (TimeWindow::new(0, 40), vec![1, 2, 4, 8, 16]),
            ],
            "{backend:?}"
        );
        assert_eq!(late_records(&report, "session-elements"), Some(1), "{report}");
    }
}

#[test]
fn a_merged_away_session_keeps_timers_other_sessions_need() {
    // Gap 3, lateness 10: [0, 3) has its clean-up timer at 2 + 10 = 12, which is also the fire
    // time of [10, 13). Merging [0, 3) away must not delete that timer.
    let events = [((1, 1), 0), ((1, 2), 10), ((1, 4), 1)];
    for backend in BACKENDS {
        let (_, results) = run_job(|| {
            let (p, dir) = late_pipeline(backend);
            let results = CollectSink::new();
            source_with_disorder(&p, &events, 20)
                .window(Session::with_gap(ms(3)))
                .allowed_lateness(ms(10))
                .reduce("sessions", |a, b| (a.0, a.1 + b.1))
                .sink("results", results.clone());
            (p, dir, results)
        });
        assert_eq!(
            sorted(window_sums(results.records())),
            vec![(0, 4, 5), (10, 13, 2)],
            "{backend:?}"
        );
    }
}

#[test]
fn windows_fire_at_their_max_timestamp_and_results_carry_it() {
    let events = [
        ((1, 1), 9),
        ((1, 2), 10), // watermark 9 = max timestamp of [0, 10): it fires with 1
        ((1, 4), 9),  // exactly behind the watermark: late
        ((1, 8), 19),
        ((1, 16), 20), // watermark 19: [10, 20) fires with 10
    ];
    for backend in BACKENDS {
        let (report, (firsts, seconds)) = run_job(|| {
            let (p, dir) = late_pipeline(backend);
            let (firsts, seconds) = (CollectSink::new(), CollectSink::new());
            let (sums, late) = source(&p, &events)
                .window(TumblingEventTime::of(ms(10)))
                .reduce_with_late("sums", |a, b| (a.0, a.1 + b.1));
            sums.sink("sums-out", firsts.clone());
            late.sink("late", DiscardSink::new());
            // A second stage: each result, at timestamp end - 1, must land in the same window
            // again, and must not be late there.
            sums.map("unwrap", |w| w.value)
                .key_by("by-key-again", |e: &Event| e.0)
                .window(TumblingEventTime::of(ms(10)))
                .process("again", |_k, w, evs: Vec<Event>| {
                    vec![(w.start, evs.iter().map(|e| e.1).collect::<Vec<_>>())]
                })
                .sink("again-out", seconds.clone());
            (p, dir, (firsts, seconds))
        });
        assert_eq!(
            window_sums(firsts.records()),
            vec![(0, 10, 1), (10, 20, 10), (20, 30, 16)],
            "{backend:?}"
        );
        assert_eq!(late_records(&report, "sums"), Some(1), "{report}");
        assert_eq!(
            seconds.records(),
            vec![(0, vec![1]), (10, vec![10]), (20, vec![16])],
            "{backend:?}"
        );
        assert_eq!(late_records(&report, "again"), None, "{report}");
    }
}

#[test]
fn invalid_window_parameters_fail_the_pipeline() {
    let p = Pipeline::new("invalid");
    p.source("events", VecSource::with_timestamps(vec![((1u32, 1i64), 1i64)]))
        .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous())
        .key_by("by-key", |e: &Event| e.0)
        .window(TumblingEventTime::of(Duration::ZERO))
        .reduce("sums", |a, _| a)
        .sink("out", DiscardSink::new());
    let err = p.run().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}
