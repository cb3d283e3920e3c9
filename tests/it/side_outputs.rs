//! Side outputs, fallible steps under a bad-record policy, and `open`/`close` with a runtime
//! context: each checked against a sequential model, through failures and a rescale.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::prelude::*;

const EVENTS: u64 = 4_000;
/// Keys are `i % KEYS`; with 4 splits (`i % 4`) each key's events come from one split, in order.
const KEYS: u64 = 8;

const ODD: OutputTag<(u64, u64, u64)> = OutputTag::new("odd");
const ROUND: OutputTag<u64> = OutputTag::new("round");

/// Counts each key's events: even values go to the main output as `(key, value, count)`, odd
/// ones to the side output `ODD`, multiples of 10 also to `ROUND`.
#[derive(Clone)]
struct Classify;

impl KeyedProcess<u64, u64> for Classify {
    type Out = (u64, u64, u64);
    fn process(&mut self, v: u64, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let mut count = ctx.value_state::<u64>("count");
        let n = count.get()?.unwrap_or(0) + 1;
        count.set(&n)?;
        let key = *ctx.key();
        if v.is_multiple_of(2) {
            ctx.emit((key, v, n));
        } else {
            ctx.output(&ODD, (key, v, n))?;
        }
        if v.is_multiple_of(10) {
            ctx.output(&ROUND, v)?;
        }
        Ok(())
    }
}

type Outputs = (Vec<(u64, u64, u64)>, Vec<(u64, u64, u64)>, Vec<u64>);

/// What a sequential run of [`Classify`] emits over `0..events`, sorted.
fn model(events: u64) -> Outputs {
    let mut counts = [0u64; KEYS as usize];
    let (mut main, mut odd, mut round) = (Vec::new(), Vec::new(), Vec::new());
    for v in 0..events {
        let key = v % KEYS;
        counts[key as usize] += 1;
        let n = counts[key as usize];
        if v.is_multiple_of(2) {
            main.push((key, v, n));
        } else {
            odd.push((key, v, n));
        }
        if v.is_multiple_of(10) {
            round.push(v);
        }
    }
    (sorted(main), sorted(odd), sorted(round))
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

struct Sinks {
    main: CollectSink<(u64, u64, u64)>,
    odd: CollectSink<(u64, u64, u64)>,
    round: CollectSink<u64>,
}

impl Sinks {
    fn new() -> Self {
        Sinks {
            main: CollectSink::new(),
            odd: CollectSink::new(),
            round: CollectSink::new(),
        }
    }
    fn outputs(&self) -> Outputs {
        (self.main.records(), self.odd.records(), self.round.records())
    }
}

/// The classify pipeline with its three outputs in `sinks`.
fn classify(p: &Pipeline, rate: Option<f64>, sinks: &Sinks) {
    let mut source = GeneratorSource::new(|i| i)
        .bounded(EVENTS)
        .splits(4)
        .with_timestamps(|i, _| i as Timestamp);
    if let Some(r) = rate {
        source = source.rate_per_second(r);
    }
    let main = p
        .source("numbers", source)
        .key_by("by-key", |v: &u64| v % KEYS)
        .process("classify", Classify);
    // The side outputs cross an exchange (rebalance) and are chained further: a map after each.
    main.sink("main-out", sinks.main.clone());
    main.side_output(&ODD)
        .rebalance()
        .map("odd-copy", |x| x)
        .sink("odd-out", sinks.odd.clone());
    main.side_output(&ROUND).sink("round-out", sinks.round.clone());
}

fn checkpointed(name: &str, dir: &Path, parallelism: usize, points: FailPoints) -> Pipeline {
    Pipeline::new(name)
        .parallelism(parallelism)
        .fail_points(points)
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(15))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        })
}

fn assert_model(got: Outputs, ctx: &str) {
    let (m, o, r) = model(EVENTS);
    let (gm, go, gr) = got;
    // Compared as booleans first, so that a failure names the difference briefly.
    let (gm, go, gr) = (sorted(gm), sorted(go), sorted(gr));
    assert!(
        gm == m,
        "{ctx}: main output: {} records, {} expected",
        gm.len(),
        m.len()
    );
    assert!(
        go == o,
        "{ctx}: side output odd: {} records, {} expected",
        go.len(),
        o.len()
    );
    assert!(
        gr == r,
        "{ctx}: side output round: {} records, {} expected",
        gr.len(),
        r.len()
    );
}

#[test]
fn side_outputs_match_the_model_at_parallelism_one_and_two() {
    for parallelism in [1, 2] {
        let sinks = Sinks::new();
        let p = Pipeline::new("side-outputs").parallelism(parallelism);
        classify(&p, None, &sinks);
        let report = p.run().unwrap();
        assert_model(sinks.outputs(), &format!("p{parallelism}"));
        // The hidden steps are named after the step and the tag.
        assert!(report.operator("classify.main").is_some());
        assert_eq!(report.operator("classify.odd").unwrap().records_out, EVENTS / 2);
        assert_eq!(report.operator("classify.round").unwrap().records_out, EVENTS / 10);
    }
}

#[test]
fn side_outputs_are_exactly_once_through_failures() {
    for parallelism in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let points = FailPoints::new();
        points.arm(fail::PROCESS_RECORD, 40, FailAction::Panic);
        points.arm(fail::AFTER_PRE_COMMIT, 3, FailAction::Error);
        points.arm(fail::DURING_COMMIT, 5, FailAction::Error);
        let sinks = Sinks::new();
        let p = checkpointed("side-outputs-failures", dir.path(), parallelism, points);
        classify(&p, Some(40_000.0), &sinks);
        let report = p.run().unwrap();
        assert!(
            report.restarts >= 2,
            "p{parallelism}: the failures restarted the job: {report}"
        );
        assert_model(sinks.outputs(), &format!("p{parallelism} with failures"));
    }
}

#[test]
fn side_outputs_are_exactly_once_across_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let first = Sinks::new();
    let p = checkpointed("side-outputs-rescale", dir.path(), 2, FailPoints::new());
    classify(&p, Some(4_000.0), &first);
    let handle = p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(handle.progress().source_records >= EVENTS / 8 && handle.progress().last_checkpoint.is_some()) {
        assert!(Instant::now() < deadline, "the first run read nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    let at = dir.path().join("savepoint");
    handle.stop_with_savepoint(Arc::new(LocalDirStorage::new(&at))).unwrap();
    handle.join().unwrap();
    // The same sinks: the restored run commits the savepoint's committables again, which an
    // idempotent sink (as CollectSink) ignores.
    let before = first.outputs().0.len();
    let p = Pipeline::new("side-outputs-rescale")
        .parallelism(3)
        .checkpoint_storage(dir.path().join("checkpoints-2"))
        .checkpoint_interval(Duration::from_millis(15))
        .from_savepoint(SavepointRestore::dir(&at));
    classify(&p, None, &first);
    let report = p.run().unwrap();
    assert!(report.restored_from_savepoint.is_some());
    assert!(
        before > 0 && first.outputs().0.len() > before,
        "both runs committed output"
    );
    assert_model(first.outputs(), "stopped at parallelism 2, restored at 3");
}

/// Parses `"n"`; every 7th record is not a number.
fn text(i: u64) -> String {
    if i % 7 == 3 {
        format!("bad-{i}")
    } else {
        i.to_string()
    }
}

fn bad_records() -> u64 {
    (0..EVENTS).filter(|i| i % 7 == 3).count() as u64
}

fn parse(s: String) -> std::result::Result<u64, std::num::ParseIntError> {
    s.parse::<u64>()
}

#[test]
fn a_bad_record_fails_the_job_by_default_naming_the_step_and_the_error() {
    let p = Pipeline::new("bad-records-fail").parallelism(2);
    p.source("texts", GeneratorSource::new(text).bounded(EVENTS))
        .try_map("parse", BadRecordPolicy::default(), parse)
        .sink("out", DiscardSink::new());
    let err = p.run().unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data, "{msg}");
    assert!(msg.contains("\"parse\"") && msg.contains("invalid digit"), "{msg}");
}

#[test]
fn skipped_bad_records_are_counted_in_the_report() {
    let out = CollectSink::new();
    let p = Pipeline::new("bad-records-skip").parallelism(2);
    p.source("texts", GeneratorSource::new(text).bounded(EVENTS))
        .try_filter("non-empty", BadRecordPolicy::Fail, |s: &String| {
            std::result::Result::<bool, String>::Ok(!s.is_empty())
        })
        .try_map("parse", BadRecordPolicy::Skip, parse)
        .sink("out", out.clone());
    let report = p.run().unwrap();
    let skipped = report
        .operator("parse")
        .unwrap()
        .counters
        .get("skipped_records")
        .copied();
    assert_eq!(skipped, Some(bad_records()));
    let expected: Vec<u64> = (0..EVENTS).filter(|i| i % 7 != 3).collect();
    assert_eq!(sorted(out.records()), expected);
}

#[test]
fn dead_letters_are_delivered_exactly_once_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    points.arm(fail::PROCESS_RECORD, 30, FailAction::Error);
    points.arm(fail::AFTER_PRE_COMMIT, 4, FailAction::Panic);
    let (out, dead) = (CollectSink::new(), CollectSink::new());
    let p = checkpointed("dead-letters", dir.path(), 2, points);
    let parsed = p
        .source(
            "texts",
            GeneratorSource::new(text)
                .bounded(EVENTS)
                .splits(4)
                .rate_per_second(40_000.0),
        )
        .try_flat_map("parse", BadRecordPolicy::DeadLetter, |s: String| parse(s).map(|n| [n]));
    // A keyed step downstream, so that the fail point PROCESS_RECORD hits.
    parsed
        .key_by("by-number", |n: &u64| *n)
        .reduce("same", |a, _| a)
        .sink("out", out.clone());
    parsed.dead_letters::<String>().sink("dead", dead.clone());
    let report = p.run().unwrap();
    assert!(report.restarts >= 2, "{report}");
    let letters = sorted(
        dead.records()
            .into_iter()
            .map(|d| (d.record, d.step, d.error))
            .collect(),
    );
    let expected: Vec<(String, String, String)> = sorted(
        (0..EVENTS)
            .filter(|i| i % 7 == 3)
            .map(|i| {
                (
                    format!("bad-{i}"),
                    "parse".to_string(),
                    "invalid digit found in string".to_string(),
                )
            })
            .collect(),
    );
    assert_eq!(letters, expected);
    assert_eq!(out.records().len() as u64, EVENTS - bad_records());
}

/// What one `open` saw: (step, subtask, parallelism, max parallelism, attempt).
type Opened = Arc<Mutex<Vec<(String, usize, usize, usize, u32)>>>;

#[derive(Clone)]
struct Recording {
    opened: Opened,
    closed: Arc<Mutex<u32>>,
}

impl Recording {
    fn new() -> Self {
        Recording {
            opened: Arc::default(),
            closed: Arc::default(),
        }
    }
    fn open(&self, ctx: &RuntimeContext) {
        self.opened.lock().unwrap().push((
            ctx.step.clone(),
            ctx.subtask,
            ctx.parallelism,
            ctx.max_parallelism,
            ctx.attempt,
        ));
    }
    fn attempts(&self, step: &str) -> BTreeSet<u32> {
        self.opened
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.0 == step)
            .map(|o| o.4)
            .collect()
    }
}

impl KeyedProcess<u64, u64> for Recording {
    type Out = u64;
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        Recording::open(self, ctx);
        Ok(())
    }
    fn process(&mut self, v: u64, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        ctx.emit(v);
        Ok(())
    }
    fn close(&mut self) {
        *self.closed.lock().unwrap() += 1;
    }
}

impl MapFunction<u64> for Recording {
    type Out = u64;
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        Recording::open(self, ctx);
        Ok(())
    }
    fn map(&mut self, v: u64) -> Result<u64> {
        Ok(v)
    }
    fn close(&mut self) {
        *self.closed.lock().unwrap() += 1;
    }
}

impl IdempotentSink<u64> for Recording {
    fn open(&self, ctx: &RuntimeContext) -> Result<()> {
        Recording::open(self, ctx);
        Ok(())
    }
    fn id(&self, v: &u64) -> String {
        v.to_string()
    }
    fn upsert(&self, _batch: Vec<(String, u64)>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn open_and_close_get_the_runtime_context_and_the_attempt_grows_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    points.arm(fail::PROCESS_RECORD, 20, FailAction::Error);
    let rec = Recording::new();
    let p = checkpointed("open-close", dir.path(), 2, points).max_parallelism(64);
    p.source(
        "numbers",
        GeneratorSource::new(|i| i).bounded(EVENTS).rate_per_second(40_000.0),
    )
    .map_function("mapped", rec.clone())
    .key_by("by-number", |v: &u64| *v)
    .process("recorded", rec.clone())
    .sink("upserts", Idempotent::new(rec.clone()));
    let report = p.run().unwrap();
    assert_eq!(report.restarts, 1, "{report}");
    let opened = rec.opened.lock().unwrap().clone();
    for step in ["mapped", "recorded", "upserts"] {
        assert_eq!(rec.attempts(step), BTreeSet::from([1, 2]), "{step}: {opened:?}");
        for attempt in [1, 2] {
            let subtasks: BTreeSet<usize> = opened
                .iter()
                .filter(|o| o.0 == step && o.4 == attempt)
                .map(|o| {
                    assert_eq!((o.2, o.3), (2, 64), "{step}: {o:?}");
                    o.1
                })
                .collect();
            assert_eq!(subtasks, BTreeSet::from([0, 1]), "{step} attempt {attempt}");
        }
    }
    // Every keyed and map subtask of both attempts was closed.
    assert_eq!(*rec.closed.lock().unwrap(), 8);
}
