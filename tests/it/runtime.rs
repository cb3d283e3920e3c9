//! The runtime as a whole: results independent of parallelism, configuration errors, failures
//! of user functions, cancellation, thread hygiene and backpressure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::engine::config::cancellation_timeout::{CancellationTimeoutAction, CANCELLATION_TIMEOUT_EXIT_CODE};
use weir::engine::message::CheckpointId;
use weir::engine::source::generator::mix;
use weir::prelude::*;

// ---- helpers --------------------------------------------------------------------------------

use crate::common;
use common::*;

/// Names (as the kernel shows them, at most 15 bytes) of this process's threads.
fn thread_names() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
            out.push(comm.trim_end().to_string());
        }
    }
    out
}

/// Threads of jobs whose job and step names start with `prefix` (subtasks are named
/// "weir-<steps>[i]", the master "weir-master-<job>"; keep "weir-master-<prefix>" within the
/// kernel's 15 bytes).
fn job_threads(prefix: &str) -> Vec<String> {
    let sub = format!("weir-{prefix}");
    let master = format!("weir-master-{prefix}");
    thread_names()
        .into_iter()
        .filter(|n| n.starts_with(&sub) || n.starts_with(&master))
        .collect()
}

/// Waits (up to 5 s, for the kernel to reap exited threads) until no thread of `prefix` is left.
fn assert_no_threads_left(prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = job_threads(prefix);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "threads left after join: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- results independent of parallelism --------------------------------------------------------

/// Counts records per key: emits `(key, count so far)` (a multiset independent of the order in
/// which a key's records arrive).
#[derive(Clone)]
struct RunningCount;

impl KeyedProcess<u64, (u64, u64)> for RunningCount {
    type Out = (u64, u64);
    fn process(&mut self, _v: (u64, u64), ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let key = *ctx.key();
        let mut st = ctx.value_state::<u64>("count");
        let n = st.get()?.unwrap_or(0) + 1;
        st.set(&n)?;
        ctx.emit((key, n));
        Ok(())
    }
}

/// Two inputs sharing per-key state: the largest count of input 1, the sum and number of the
/// values of input 2 (map state by value bucket); everything is emitted once per key by an
/// event-time timer that only the end of input fires, so the output does not depend on the
/// interleaving. Input 1 records also pass through tagged 0.
#[derive(Clone)]
struct Combine;

type Combined = (u8, u64, u64, u64, u64);

impl KeyedCoProcess<u64, (u64, u64), (u64, u64)> for Combine {
    type Out = Combined;
    fn process_first(&mut self, (k, n): (u64, u64), ctx: &mut KeyedContext<'_, u64, Combined>) -> Result<()> {
        let mut max = ctx.value_state::<u64>("max-count");
        let m = max.get()?.unwrap_or(0).max(n);
        max.set(&m)?;
        ctx.register_event_time_timer(0)?;
        ctx.emit((0, k, n, 0, 0));
        Ok(())
    }
    fn process_second(&mut self, (_, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, Combined>) -> Result<()> {
        let mut sum = ctx.value_state::<u64>("sum");
        let s = sum.get()?.unwrap_or(0) + v;
        sum.set(&s)?;
        let mut buckets = ctx.map_state::<u64, u64>("buckets");
        let b = buckets.get(&(v % 4))?.unwrap_or(0);
        buckets.put(&(v % 4), &(b + 1))?;
        ctx.register_event_time_timer(0)
    }
    fn on_timer(&mut self, _t: Timer, ctx: &mut KeyedContext<'_, u64, Combined>) -> Result<()> {
        let k = *ctx.key();
        let max = ctx.value_state::<u64>("max-count").get()?.unwrap_or(0);
        let sum = ctx.value_state::<u64>("sum").get()?.unwrap_or(0);
        let n: u64 = ctx
            .map_state::<u64, u64>("buckets")
            .entries()?
            .iter()
            .map(|e| e.1)
            .sum();
        ctx.emit((1, k, max, sum, n));
        Ok(())
    }
}

const KEYS: u64 = 37;
const N_A: u64 = 20_000;
const N_B: u64 = 5_000;

fn run_parity(p: usize, backend: Backend) -> Vec<Combined> {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    let pl = pipeline("parity", backend, &dir).parallelism(p).batch_size(256);
    let a = pl
        .source(
            "a",
            GeneratorSource::new(|i| (mix(1, i) % KEYS, i)).bounded(N_A).splits(4),
        )
        .map("a-map", |(k, i)| (k, i + 1))
        .key_by("a-by-key", |r| r.0)
        .process("count", RunningCount);
    let b = pl
        .source(
            "b",
            GeneratorSource::new(|i| (i % KEYS, mix(2, i) % 100))
                .bounded(N_B)
                .splits(3),
        )
        .filter("b-filter", |r| r.1 != 13);
    a.connect(&b)
        .key_by("by-key", |r| r.0, |r| r.0)
        .process("combine", Combine)
        .sink("out", sink.clone());
    let report = pl.run().unwrap();
    assert_eq!(report.operator("count").unwrap().parallelism, p);
    sorted(sink.records())
}

fn expected_parity() -> Vec<Combined> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for i in 0..N_A {
        let c = counts.entry(mix(1, i) % KEYS).or_default();
        *c += 1;
        out.push((0u8, mix(1, i) % KEYS, *c, 0, 0));
    }
    let mut sums: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for i in 0..N_B {
        let v = mix(2, i) % 100;
        if v != 13 {
            let e = sums.entry(i % KEYS).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    for k in 0..KEYS {
        let (s, n) = sums.get(&k).copied().unwrap_or_default();
        out.push((1, k, counts.get(&k).copied().unwrap_or(0), s, n));
    }
    sorted(out)
}

#[test]
fn results_are_identical_at_parallelism_1_2_and_4_on_both_backends() {
    let want = expected_parity();
    for backend in BACKENDS {
        for p in [1, 2, 4] {
            let got = run_parity(p, backend);
            assert_eq!(got.len(), want.len(), "{backend:?} p {p}");
            assert!(
                got == want,
                "{backend:?} p {p}: output differs from the expected multiset"
            );
        }
    }
}

// ---- configuration errors -----------------------------------------------------------------------

fn simple(p: Pipeline) -> Pipeline {
    p.source("src", VecSource::new(vec![1u64, 2, 3]))
        .key_by("by-key", |x| *x)
        .reduce("sum", |a, b| a + b)
        .sink("out", DiscardSink::new());
    p
}

/// Runs `p` (which must fail with a configuration error, promptly) and returns the message.
fn config_error(p: Pipeline) -> String {
    let e = match p.start() {
        Err(e) => e,
        // Some settings are only checked by the job master (for example the state directory).
        Ok(handle) => within(30, move || handle.join()).expect_err("a configuration error"),
    };
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    e.to_string()
}

#[test]
fn parallelism_zero_is_a_config_error() {
    let msg = config_error(simple(Pipeline::new("zero").parallelism(0)));
    assert!(msg.contains("parallelism") && msg.contains('0'), "{msg}");

    let p = Pipeline::new("zero-step");
    p.source("src", VecSource::new(vec![1u64]))
        .map("doubler", |x| x * 2)
        .parallelism(0)
        .sink("out", DiscardSink::new());
    let msg = config_error(p);
    assert!(msg.contains("doubler") && msg.contains("parallelism"), "{msg}");

    let p = Pipeline::new("zero-sink");
    p.source("src", VecSource::new(vec![1u64]))
        .sink("the-sink", DiscardSink::new())
        .parallelism(0);
    let msg = config_error(p);
    assert!(msg.contains("the-sink"), "{msg}");
}

#[test]
fn max_parallelism_below_parallelism_is_a_config_error() {
    let msg = config_error(simple(Pipeline::new("maxp").parallelism(4).max_parallelism(2)));
    assert!(msg.contains("max parallelism"), "{msg}");

    let p = Pipeline::new("maxp-step").max_parallelism(4);
    p.source("src", VecSource::new(vec![1u64]))
        .key_by("by-key", |x| *x)
        .reduce("wide", |a, b| a + b)
        .parallelism(8)
        .sink("out", DiscardSink::new());
    let msg = config_error(p);
    assert!(msg.contains("wide") && msg.contains("max parallelism"), "{msg}");

    let msg = config_error(simple(Pipeline::new("maxp-zero").max_parallelism(0)));
    assert!(msg.contains("max parallelism"), "{msg}");
}

#[test]
fn a_step_name_used_twice_is_a_config_error() {
    let p = Pipeline::new("dup");
    p.source("src", VecSource::new(vec![1u64]))
        .map("same", |x| x)
        .map("same", |x| x)
        .sink("out", DiscardSink::new());
    let msg = config_error(p);
    assert!(msg.contains("\"same\"") && msg.contains("twice"), "{msg}");

    // Exchange names count too.
    let p = Pipeline::new("dup-key");
    p.source("src", VecSource::new(vec![1u64]))
        .key_by("src", |x| *x)
        .reduce("sum", |a, b| a + b)
        .sink("out", DiscardSink::new());
    let msg = config_error(p);
    assert!(msg.contains("\"src\""), "{msg}");
}

#[test]
fn a_pipeline_without_sink_or_source_is_a_config_error() {
    let p = Pipeline::new("no-sink");
    let _ = p.source("src", VecSource::new(vec![1u64])).map("m", |x| x + 1);
    let msg = config_error(p);
    assert!(msg.contains("no sink"), "{msg}");

    let msg = config_error(Pipeline::new("empty"));
    assert!(msg.contains("no source"), "{msg}");
}

#[test]
fn other_invalid_settings_are_config_errors() {
    config_error(simple(Pipeline::new("batch").batch_size(0)));
    config_error(simple(Pipeline::new("capacity").channel_capacity(0)));
    config_error(simple(Pipeline::new("  ")));
    let p = Pipeline::new("rate");
    p.source("src", GeneratorSource::new(|i| i).rate_per_second(-1.0))
        .sink("out", DiscardSink::new());
    let msg = config_error(p);
    assert!(msg.contains("rate"), "{msg}");
}

#[test]
fn an_unwritable_state_dir_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("regular-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let dir = file.join("state");
    let msg = config_error(simple(Pipeline::new("bad-dir").state_dir(&dir)));
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
}

// ---- failures of user functions -----------------------------------------------------------------

#[test]
fn a_panicking_map_fails_the_job_naming_step_and_subtask() {
    let e = within(30, || {
        let p = Pipeline::new("panics").parallelism(2);
        p.source("src", GeneratorSource::new(|i| i).splits(2))
            .map("boom", |x| {
                if x == 500 {
                    panic!("kaboom at record {x}");
                }
                x
            })
            .key_by("by-key", |x| x % 10)
            .reduce("sum", |a, b| a + b)
            .sink("out", DiscardSink::new());
        p.run()
    })
    .expect_err("the job fails");
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::UserFunction, "{msg}");
    // Record 500 belongs to split 0 of 2, read by subtask 0.
    assert!(msg.contains("boom[0]"), "{msg}");
    assert!(msg.contains("kaboom at record 500"), "{msg}");
}

/// Fails on one record.
#[derive(Clone)]
struct FailAt(u64);

impl KeyedProcess<u64, u64> for FailAt {
    type Out = u64;
    fn process(&mut self, v: u64, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        if v == self.0 {
            return Err(Error::data(format!("cannot handle record {v}")));
        }
        let mut st = ctx.value_state::<u64>("sum");
        let s = st.get()?.unwrap_or(0) + v;
        st.set(&s)?;
        ctx.emit(s);
        Ok(())
    }
}

fn failing_keyed_job(backend: Backend, dir: &tempfile::TempDir) -> Pipeline {
    let p = pipeline("keyed-fails", backend, dir)
        .parallelism(4)
        .batch_size(64)
        .channel_capacity(4);
    p.source("src", GeneratorSource::new(|i| i).splits(4))
        .key_by("by-key", |x| *x % 97)
        .process("fail", FailAt(70_000))
        .sink("out", DiscardSink::new());
    p
}

#[test]
fn a_keyed_process_returning_err_fails_the_job_naming_step_and_subtask() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let e = within(30, move || failing_keyed_job(backend, &dir).run()).expect_err("the job fails");
        let msg = e.to_string();
        assert!(msg.contains("fail["), "{backend:?}: {msg}");
        assert!(msg.contains("cannot handle record 70000"), "{backend:?}: {msg}");
        assert_eq!(e.kind(), ErrorKind::Data, "{backend:?}: {msg}");
    }
}

/// The error reported is the root cause even when the failing subtask's neighbours notice its
/// closed channels first: run the failing jobs repeatedly.
#[test]
fn the_reported_error_is_always_the_root_cause() {
    let mut wrong = Vec::new();
    for round in 0..12 {
        let backend = BACKENDS[round % 2];
        let dir = tempfile::tempdir().unwrap();
        let e = within(30, move || failing_keyed_job(backend, &dir).run()).expect_err("the job fails");
        if !e.to_string().contains("cannot handle record 70000") {
            wrong.push(format!("{backend:?}: {e}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 12 runs reported another error:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_panic_in_a_sink_fails_the_job() {
    struct PanicSink;
    struct PanicWriter;
    impl Sink<u64> for PanicSink {
        type Committable = ();
        fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<u64, ()>>> {
            Ok(Box::new(PanicWriter))
        }
    }
    impl SinkWriter<u64, ()> for PanicWriter {
        fn write(&mut self, records: Vec<Record<u64>>) -> Result<()> {
            if records.iter().any(|r| r.value == 300) {
                panic!("sink cannot take 300");
            }
            Ok(())
        }
        fn pre_commit(&mut self, _: CheckpointId) -> Result<Option<()>> {
            Ok(None)
        }
        fn commit(&mut self, _: Vec<(CheckpointId, ())>) -> Result<()> {
            Ok(())
        }
    }
    let e = within(30, || {
        let p = Pipeline::new("sink-panics").parallelism(2);
        p.source("src", GeneratorSource::new(|i| i))
            .rebalance()
            .sink("fragile", PanicSink);
        p.run()
    })
    .expect_err("the job fails");
    let msg = e.to_string();
    assert!(
        msg.contains("fragile[") && msg.contains("sink cannot take 300"),
        "{msg}"
    );
}

// ---- cancellation and threads -------------------------------------------------------------------

#[test]
fn cancel_stops_an_unbounded_job_promptly() {
    let sink = CollectSink::new();
    let p = Pipeline::new("cancel").parallelism(2);
    p.source("src", GeneratorSource::new(|i| (i % 10, i)).splits(2))
        .key_by("by-key", |r| r.0)
        .reduce("sum", |(k, a), (_, b)| (k, a + b))
        .sink("out", sink.clone());
    let handle = p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.source_records() < 10_000 {
        assert!(Instant::now() < deadline, "the job makes no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!handle.is_finished());
    let t = Instant::now();
    handle.cancel();
    let report = within(10, move || handle.join()).expect("a cancelled job is not an error");
    assert!(report.cancelled);
    assert!(t.elapsed() < Duration::from_secs(10));
    // Whatever was committed (at commit barriers) was committed once: running sums are
    // distinct per key.
    let recs = sink.records();
    let distinct: std::collections::BTreeSet<_> = recs.iter().collect();
    assert_eq!(distinct.len(), recs.len(), "a record was committed twice");
}

#[test]
fn cancel_is_never_reported_as_a_failure() {
    // Cancelling races subtasks that notice their neighbours stopping: repeat it.
    let mut wrong = Vec::new();
    for round in 0..15 {
        let p = Pipeline::new("cancel-race")
            .parallelism(3)
            .batch_size(16)
            .channel_capacity(2);
        p.source("src", GeneratorSource::new(|i| (i % 10, i)).splits(3))
            .map("m", |r| r)
            .key_by("by-key", |r| r.0)
            .reduce("sum", |(k, a), (_, b)| (k, a + b))
            .rebalance()
            .sink("out", DiscardSink::new());
        let handle = p.start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while handle.source_records() < 1_000 {
            assert!(Instant::now() < deadline, "the job makes no progress");
            std::thread::yield_now();
        }
        handle.cancel();
        match within(10, move || handle.join()) {
            Ok(r) => assert!(r.cancelled),
            Err(e) => wrong.push(format!("round {round}: {e}")),
        }
    }
    assert!(wrong.is_empty(), "cancel returned errors:\n{}", wrong.join("\n"));
}

#[test]
fn no_thread_of_a_job_is_left_after_join() {
    // A finished job.
    let p = Pipeline::new("zqdone").parallelism(3);
    p.source("zqsrc", GeneratorSource::new(|i| (i % 5, i)).bounded(10_000).splits(3))
        .key_by("zqkey", |r| r.0)
        .reduce("zqsum", |(k, a), (_, b)| (k, a + b))
        .sink("zqout", DiscardSink::new());
    p.run().unwrap();
    assert_no_threads_left("zq");

    // A running job has its threads; a cancelled one leaves none.
    let p = Pipeline::new("zqcancel").parallelism(3);
    p.source("zqsrc", GeneratorSource::new(|i| (i % 5, i)).splits(3))
        .key_by("zqkey", |r| r.0)
        .reduce("zqsum", |(k, a), (_, b)| (k, a + b))
        .sink("zqout", DiscardSink::new());
    let handle = p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let threads = job_threads("zq");
        // 3 source subtasks, 3 (sum -> out) subtasks and the master.
        if threads.len() == 7 {
            break;
        }
        assert!(Instant::now() < deadline, "expected 7 job threads, see {threads:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    within(10, move || handle.join()).unwrap();
    assert_no_threads_left("zq");

    // A failed job.
    let e = within(30, || {
        let p = Pipeline::new("zqfail").parallelism(3);
        p.source("zqsrc", GeneratorSource::new(|i| i).splits(3))
            .map("zqboom", |x| if x == 1_000 { panic!("boom") } else { x })
            .sink("zqout", DiscardSink::new());
        p.run()
    });
    assert!(e.is_err());
    assert_no_threads_left("zq");

    // A handle dropped without join cancels and joins the job.
    let p = Pipeline::new("zqdrop").parallelism(2);
    p.source("zqsrc", GeneratorSource::new(|i| i))
        .sink("zqout", DiscardSink::new());
    let handle = p.start().unwrap();
    while handle.source_records() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    within(10, move || drop(handle));
    assert_no_threads_left("zq");
}

// ---- backpressure -------------------------------------------------------------------------------

/// A sink that takes `delay` per batch and counts what it received.
struct SlowSink {
    received: Arc<AtomicU64>,
    delay: Duration,
}

struct SlowWriter {
    received: Arc<AtomicU64>,
    delay: Duration,
}

impl Sink<u64> for SlowSink {
    type Committable = ();
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<u64, ()>>> {
        Ok(Box::new(SlowWriter {
            received: self.received.clone(),
            delay: self.delay,
        }))
    }
}

impl SinkWriter<u64, ()> for SlowWriter {
    fn write(&mut self, records: Vec<Record<u64>>) -> Result<()> {
        std::thread::sleep(self.delay);
        self.received.fetch_add(records.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    fn pre_commit(&mut self, _: CheckpointId) -> Result<Option<()>> {
        Ok(None)
    }
    fn commit(&mut self, _: Vec<(CheckpointId, ())>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn a_slow_sink_holds_back_a_fast_source() {
    const BATCH: u64 = 8;
    const CAPACITY: u64 = 2;
    let received = Arc::new(AtomicU64::new(0));
    let p = Pipeline::new("backpressure")
        .batch_size(BATCH as usize)
        .channel_capacity(CAPACITY as usize);
    p.source("fast", GeneratorSource::new(|i| i)).rebalance().sink(
        "slow",
        SlowSink {
            received: received.clone(),
            delay: Duration::from_millis(2),
        },
    );
    let handle = p.start().unwrap();
    // In flight at most: the batch the source is sending, the channel's batches and the batch
    // the sink is writing.
    let bound = (CAPACITY + 2) * BATCH;
    let started = Instant::now();
    let mut worst = 0;
    while started.elapsed() < Duration::from_millis(500) {
        let read = handle.source_records(); // read first: the sink only gains meanwhile
        let written = received.load(Ordering::SeqCst);
        worst = worst.max(read.saturating_sub(written));
        assert!(
            read <= written + bound,
            "source read {read} records, the sink got {written}"
        );
        std::thread::sleep(Duration::from_millis(3));
    }
    let written = received.load(Ordering::SeqCst);
    assert!(written >= 10 * BATCH, "the sink made progress: {written}");
    handle.cancel();
    let report = within(10, move || handle.join()).unwrap();
    assert!(report.cancelled);
    println!("max in flight {worst} (bound {bound})");
}

// ---- failures of sources ------------------------------------------------------------------------

/// A source whose reader fails (returns an error, or panics) after `fail_after` records.
#[derive(Clone)]
struct Flaky {
    fail_after: u64,
    panic: bool,
}

struct FlakyReader {
    src: Flaky,
    next: u64,
}

impl Source for Flaky {
    type Out = u64;
    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok(vec!["s0".into(), "s1".into()])
    }
    fn create_reader(&self, _splits: Vec<AssignedSplit>, _: SubtaskInfo) -> Result<Box<dyn SourceReader<u64>>> {
        Ok(Box::new(FlakyReader {
            src: self.clone(),
            next: 0,
        }))
    }
}

impl SourceReader<u64> for FlakyReader {
    fn poll(&mut self, out: &mut Vec<Record<u64>>, max: usize) -> Result<ReadStatus> {
        for _ in 0..max {
            if self.next == self.src.fail_after {
                if self.src.panic {
                    panic!("reader exploded at {}", self.next);
                }
                return Err(Error::external(false, format!("broker unreachable at {}", self.next)));
            }
            out.push(Record::new(self.next));
            self.next += 1;
        }
        Ok(ReadStatus::More)
    }
    fn positions(&self) -> Vec<SplitPosition> {
        Vec::new()
    }
}

fn flaky_job(panic: bool) -> Error {
    within(30, move || {
        let p = Pipeline::new("flaky-source").parallelism(2);
        p.source("flaky", Flaky { fail_after: 300, panic })
            .map("m", |x| x + 1)
            .sink("out", DiscardSink::new());
        p.run()
    })
    .expect_err("the job fails")
}

#[test]
fn a_failing_source_reader_fails_the_job_naming_the_source_and_subtask() {
    let e = flaky_job(false);
    let msg = e.to_string();
    assert!(msg.contains("broker unreachable at 300"), "{msg}");
    assert_eq!(e.kind(), ErrorKind::External { retryable: false }, "{msg}");
    assert!(
        msg.contains("flaky["),
        "the error does not name the source step and subtask: {msg}"
    );
}

#[test]
fn a_panicking_source_reader_is_a_user_function_failure() {
    let e = flaky_job(true);
    let msg = e.to_string();
    assert!(
        msg.contains("reader exploded at 300") && msg.contains("flaky["),
        "{msg}"
    );
    assert_eq!(
        e.kind(),
        ErrorKind::UserFunction,
        "a panic in user code is not an internal bug: {msg}"
    );
}

/// Fails in `on_timer`: the timers only fire at the end of input.
#[derive(Clone)]
struct FailInTimer;

impl KeyedProcess<u64, u64> for FailInTimer {
    type Out = u64;
    fn process(&mut self, v: u64, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        ctx.register_event_time_timer(v as Timestamp)
    }
    fn on_timer(&mut self, t: Timer, _ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        if t.time == 77 {
            panic!("timer 77 exploded");
        }
        Ok(())
    }
}

#[test]
fn a_failure_in_a_timer_at_the_end_of_input_fails_the_job() {
    let sink = CollectSink::new();
    let s2 = sink.clone();
    let e = within(30, move || {
        let p = Pipeline::new("timer-fails").parallelism(2);
        p.source("src", VecSource::new((0..100u64).collect()))
            .key_by("by-key", |x| *x)
            .process("late-boom", FailInTimer)
            .sink("out", s2);
        p.run()
    })
    .expect_err("the job fails");
    let msg = e.to_string();
    assert!(msg.contains("late-boom[") && msg.contains("timer 77 exploded"), "{msg}");
    assert_eq!(e.kind(), ErrorKind::UserFunction, "{msg}");
    assert!(
        sink.collected().commits.is_empty(),
        "the failed final checkpoint committed output"
    );
}

#[test]
fn start_reports_configuration_errors_before_starting_anything() {
    // `Pipeline::start` promises a Config error "for an invalid pipeline or configuration
    // (nothing is started then)": an unusable state directory is such an error.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("regular-file");
    std::fs::write(&file, b"not a directory").unwrap();
    match simple(Pipeline::new("bad-dir-start").state_dir(file.join("state"))).start() {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Config, "{e}"),
        Ok(handle) => {
            let r = within(30, move || handle.join());
            panic!("start() accepted the pipeline; join() then returned {r:?}");
        }
    }
}

// ---- end of input -------------------------------------------------------------------------------

#[test]
fn short_bounded_jobs_always_finish_cleanly() {
    // At the final checkpoint every subtask acknowledges the barrier and sends end of stream;
    // a subtask must never find its downstream already gone (the job completed) and fail the
    // job. The race is narrow: run many short jobs.
    let mut failures = Vec::new();
    let started = Instant::now();
    let mut runs = 0;
    while runs < 5_000 && started.elapsed() < Duration::from_secs(10) {
        runs += 1;
        let sink = CollectSink::new();
        let p = Pipeline::new("short").parallelism(1 + runs % 3);
        let keyed = p
            .source("src", VecSource::new((0..20u64).collect()))
            .key_by("by-key", |x| x % 4)
            .reduce("sum", |a, b| a + b);
        if runs % 2 == 0 {
            keyed.sink("out", sink.clone());
        } else {
            keyed.rebalance().map("m", |x| x).sink("out", sink.clone());
        }
        match p.run() {
            Ok(_) => assert_eq!(sink.records().len(), 20),
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs of a finished job failed, first: {}",
        failures.len(),
        failures[0]
    );
}

// ---- the API does not change semantics behind the user's back -----------------------------------

type BuilderCall = (&'static str, Box<dyn Fn(Pipeline) -> Pipeline>);

/// `p.config()` of a pipeline built by `calls` in the given order.
fn effective_config(calls: &[&BuilderCall]) -> String {
    let p = calls.iter().fold(Pipeline::new("order"), |p, (_, call)| call(p));
    format!("{:?}", p.config())
}

/// Calls every pair of `calls` in both orders (and all of them forwards and backwards) and
/// requires the same effective configuration.
fn assert_order_free(calls: &[BuilderCall]) {
    for i in 0..calls.len() {
        for j in i + 1..calls.len() {
            let (a, b) = (&calls[i], &calls[j]);
            assert_eq!(
                effective_config(&[a, b]),
                effective_config(&[b, a]),
                "{}() then {}() must give the same job as the reverse order",
                a.0,
                b.0
            );
        }
    }
    let forwards: Vec<&BuilderCall> = calls.iter().collect();
    let backwards: Vec<&BuilderCall> = calls.iter().rev().collect();
    assert_eq!(effective_config(&forwards), effective_config(&backwards));
}

fn order_sensitive_calls(dir: &std::path::Path, checkpoint: Option<CheckpointConfig>) -> Vec<BuilderCall> {
    let chk = dir.join("chk");
    let state = dir.join("state");
    let mut calls: Vec<BuilderCall> = vec![
        (
            "checkpoint_interval",
            Box::new(|p| p.checkpoint_interval(Duration::from_secs(60))),
        ),
        (
            "restore_mode",
            Box::new(|p| p.restore_mode(RestoreMode::Checkpoint(CheckpointId::new(3)))),
        ),
        ("parallelism", Box::new(|p| p.parallelism(3))),
        ("max_parallelism", Box::new(|p| p.max_parallelism(64))),
        ("state_dir", Box::new(move |p| p.state_dir(&state))),
        (
            "restart_strategy",
            Box::new(|p| {
                p.restart_strategy(RestartStrategy::FixedDelay {
                    max_attempts: 2,
                    delay: Duration::from_millis(7),
                })
            }),
        ),
        ("batch_size", Box::new(|p| p.batch_size(17))),
        ("channel_capacity", Box::new(|p| p.channel_capacity(5))),
    ];
    match checkpoint {
        Some(cfg) => calls.push(("checkpointing", Box::new(move |p| p.checkpointing(cfg.clone())))),
        None => calls.push(("checkpoint_storage", Box::new(move |p| p.checkpoint_storage(&chk)))),
    }
    calls
}

#[test]
fn builder_methods_give_the_same_job_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    assert_order_free(&order_sensitive_calls(dir.path(), None));
    let mut cfg = CheckpointConfig::new(dir.path().join("chk"));
    cfg.interval = Duration::from_millis(250);
    cfg.retained = 5;
    assert_order_free(&order_sensitive_calls(dir.path(), Some(cfg)));

    // What the dedicated setters say wins, before or after the storage.
    let p = Pipeline::new("interval-first")
        .checkpoint_interval(Duration::from_secs(60))
        .restore_mode(RestoreMode::Fresh)
        .checkpoint_storage(dir.path().join("chk"));
    let chk = p.config().checkpoint.as_ref().expect("checkpoint storage");
    assert_eq!(chk.interval, Duration::from_secs(60));
    assert_eq!(chk.restore, RestoreMode::Fresh);

    // Two methods that set the same thing are refused in either order.
    let state = dir.path().join("state");
    for backend_first in [true, false] {
        let p = Pipeline::new("two-backends");
        let p = if backend_first {
            p.state_backend(MemoryBackend::new()).state_dir(&state)
        } else {
            p.state_dir(&state).state_backend(MemoryBackend::new())
        };
        let msg = config_error(simple(p));
        assert!(msg.contains("state_backend()") && msg.contains("state_dir()"), "{msg}");
    }
    let msg = config_error(simple(
        Pipeline::new("two-storages")
            .checkpointing(CheckpointConfig::new(dir.path().join("a")))
            .checkpoint_storage(dir.path().join("b")),
    ));
    assert!(
        msg.contains("checkpointing()") && msg.contains("checkpoint_storage()"),
        "{msg}"
    );
    let msg = config_error(simple(Pipeline::new("restore-only").restore_mode(RestoreMode::Fresh)));
    assert!(
        msg.contains("restore_mode()") && msg.contains("checkpoint storage"),
        "{msg}"
    );
}

#[test]
fn a_long_checkpoint_interval_holds_when_the_storage_is_set_after_it() {
    for storage_first in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let p = Pipeline::new("interval");
        let p = if storage_first {
            p.checkpoint_storage(dir.path().join("chk"))
                .checkpoint_interval(Duration::from_secs(60))
        } else {
            p.checkpoint_interval(Duration::from_secs(60))
                .checkpoint_storage(dir.path().join("chk"))
        };
        p.source(
            "src",
            GeneratorSource::new(|i| i).bounded(2_500).rate_per_second(1_000.0),
        )
        .sink("out", DiscardSink::new());
        let report = p.run().unwrap();
        // A 2.5 s run with a 60 s interval takes no periodic checkpoint: only the first one of
        // a fresh start (taken at once) and the final one at the end of input.
        assert!(
            report.checkpoints.len() <= 2,
            "storage set {}: {} checkpoints in 2.5 s with a 60 s interval",
            if storage_first { "first" } else { "last" },
            report.checkpoints.len()
        );
    }
}

/// Two splits: `ahead` emits event times from 1 000 000 on; `behind` waits until `ahead` has
/// emitted all of its records, then emits event times from 0 on. Each split is in order.
#[derive(Clone)]
struct AheadAndBehind {
    ahead_done: Arc<std::sync::atomic::AtomicBool>,
}

const AHEAD_BEHIND_EACH: u64 = 300;

struct AheadAndBehindReader {
    src: AheadAndBehind,
    ahead: bool,
    next: u64,
}

impl Source for AheadAndBehind {
    type Out = i64;
    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok(vec!["ahead".into(), "behind".into()])
    }
    fn create_reader(&self, splits: Vec<AssignedSplit>, _: SubtaskInfo) -> Result<Box<dyn SourceReader<i64>>> {
        assert_eq!(splits.len(), 1, "one split per subtask");
        Ok(Box::new(AheadAndBehindReader {
            src: self.clone(),
            ahead: splits[0].id == "ahead",
            next: 0,
        }))
    }
}

impl SourceReader<i64> for AheadAndBehindReader {
    fn poll(&mut self, out: &mut Vec<Record<i64>>, max: usize) -> Result<ReadStatus> {
        if self.next == AHEAD_BEHIND_EACH {
            if self.ahead {
                self.src.ahead_done.store(true, Ordering::SeqCst);
            }
            return Ok(ReadStatus::Finished);
        }
        if !self.ahead && !self.src.ahead_done.load(Ordering::SeqCst) {
            return Ok(ReadStatus::Pending(Duration::from_millis(2)));
        }
        let base = if self.ahead { 1_000_000 } else { 0 };
        while self.next < AHEAD_BEHIND_EACH && out.len() < max.min(10) {
            out.push(Record::new(base + self.next as i64));
            self.next += 1;
        }
        Ok(ReadStatus::More)
    }
    fn positions(&self) -> Vec<SplitPosition> {
        Vec::new()
    }
}

struct CountAll;
impl AggregateFunction<i64> for CountAll {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &i64) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// The line of `explain` that describes step `name` (a prefix of the line).
fn explained<'a>(explain: &'a str, name: &str) -> &'a str {
    explain
        .lines()
        .find(|l| l.starts_with(&format!("{name} [")))
        .unwrap_or_else(|| panic!("no step {name} in\n{explain}"))
}

#[test]
fn a_watermark_assigner_keeps_its_inputs_parallelism_and_order() {
    let sink = CollectSink::new();
    // Default parallelism 1, the source at 2: the assigner must run at 2 on forward edges, so
    // that each of its subtasks follows one split's order.
    let p = Pipeline::new("watermark-parallelism").parallelism(1);
    p.source(
        "src",
        AheadAndBehind {
            ahead_done: Arc::default(),
        },
    )
    .parallelism(2)
    .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous().with_timestamp_assigner(|t: &i64| *t))
    .key_by("one-key", |_| 0u8)
    .window(TumblingEventTime::of(Duration::from_secs(1)))
    .aggregate("per-second", CountAll)
    .sink("out", sink.clone());
    let explain = p.explain();
    let report = p.run().unwrap();
    let counted: u64 = sink.records().iter().map(|w| w.value).sum();
    let late = report
        .operator("per-second")
        .and_then(|o| o.counters.get("late_records").copied())
        .unwrap_or(0);
    assert_eq!(
        (counted, late),
        (2 * AHEAD_BEHIND_EACH, 0),
        "every in-order record of each split must be counted, none dropped as late\n{explain}"
    );
    let line = explained(&explain, "src.watermarks#1");
    assert!(
        line.contains("parallelism 2]") && line.contains("<- src (forward)"),
        "the watermark assigner must keep its input's parallelism and forward edge:\n{explain}"
    );

    // An explicit parallelism still wins (and its edge becomes a rebalance).
    let p = Pipeline::new("watermark-explicit");
    p.source("src", VecSource::new(vec![1i64, 2, 3]))
        .parallelism(2)
        .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous().with_timestamp_assigner(|t: &i64| *t))
        .parallelism(3)
        .sink("out", DiscardSink::new());
    let explain = p.explain();
    let line = explained(&explain, "src.watermarks#1");
    assert!(
        line.contains("parallelism 3]") && line.contains("(rebalance)"),
        "{explain}"
    );
}

#[test]
fn parallelism_after_a_window_step_applies_to_the_window_step() {
    for late_stream in [false, true] {
        let sink = CollectSink::new();
        let p = Pipeline::new("window-parallelism").parallelism(1);
        let windowed = p
            .source("src", VecSource::new((0..400i64).collect()))
            .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous().with_timestamp_assigner(|t: &i64| *t))
            .key_by("by-key", |t: &i64| t % 8)
            .window(TumblingEventTime::of(Duration::from_millis(50)));
        let results = if late_stream {
            let (results, late) = windowed.aggregate_with_late("counts", CountAll);
            late.sink("late-out", DiscardSink::new());
            results
        } else {
            windowed.aggregate("counts", CountAll)
        };
        results.parallelism(2).sink("out", sink.clone()).parallelism(2);
        let explain = p.explain();
        let report = p.run().unwrap();
        assert_eq!(
            report.operator("counts").map(|o| o.parallelism),
            Some(2),
            "the window step must run at the parallelism set after it:\n{explain}"
        );
        assert_eq!(sink.records().iter().map(|w| w.value).sum::<u64>(), 400);
        assert!(
            explained(&explain, "counts").contains("parallelism 2]"),
            "the window step must take the parallelism:\n{explain}"
        );
        let line = explained(&explain, "counts.results");
        assert!(
            line.contains("parallelism 2]") && line.contains("<- counts (forward)"),
            "no hidden rebalance after the window step:\n{explain}"
        );
        if late_stream {
            assert!(
                explained(&explain, "counts.late").contains("parallelism 2]"),
                "{explain}"
            );
        }
    }
}

// ---- failures: when they are stamped, and subtasks that do not stop -----------------------------

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_failure_is_stamped_when_it_is_detected_not_after_the_attempt_was_cancelled() {
    static FAILED: AtomicU64 = AtomicU64::new(0);
    static STALL_ENDED_MS: AtomicU64 = AtomicU64::new(0);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new("failure-stamp")
        .batch_size(10)
        .checkpoint_storage(dir.path().join("chk"))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 2,
            delay: Duration::from_millis(1),
        });
    // Record 50 fails downstream while the source's subtask sits in a user function that does
    // not check for cancellation: cancelling the attempt takes until that function returns.
    p.source("gen", GeneratorSource::new(|i| i).bounded(1_000))
        .map("stall", |x: u64| {
            if x == 100 && STALL_ENDED_MS.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1_500));
                STALL_ENDED_MS.store(wall_ms(), Ordering::SeqCst);
            }
            x
        })
        .key_by("k", |x: &u64| *x % 3)
        .process("fail-once", FailOnceAt(50, &FAILED))
        .sink("out", DiscardSink::new());
    let report = {
        let h = p.start().unwrap();
        within(60, move || h.join())
    }
    .unwrap();
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let stall_ended = STALL_ENDED_MS.load(Ordering::SeqCst);
    assert!(stall_ended > 0);
    assert!(
        report.failures[0].at_ms < stall_ended,
        "the failure was stamped at {} ms, after the stalled subtask returned at {stall_ended} ms (cancel_ms {:.0})",
        report.failures[0].at_ms,
        report.restores.first().map(|r| r.cancel_ms).unwrap_or(-1.0)
    );
}

/// Fails once, on one record.
#[derive(Clone)]
struct FailOnceAt(u64, &'static AtomicU64);

impl KeyedProcess<u64, u64> for FailOnceAt {
    type Out = u64;
    fn process(&mut self, v: u64, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        if v == self.0 && self.1.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(Error::external(true, format!("service unavailable at record {v}")));
        }
        ctx.emit(v);
        Ok(())
    }
}

/// Blocks on record 10 until `release` is set, without checking for cancellation.
fn blocking_job(name: &str, release: Arc<std::sync::atomic::AtomicBool>) -> Pipeline {
    let p = Pipeline::new(name);
    p.source("gen", GeneratorSource::new(|i| i))
        .map("blocking", move |x: u64| {
            if x == 10 {
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            x
        })
        .sink("out", DiscardSink::new());
    p
}

#[test]
fn a_subtask_that_never_stops_ends_the_job_after_the_cancellation_timeout() {
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p = blocking_job("stuck-cancel", release.clone())
        .cancellation_timeout(Duration::from_millis(300), CancellationTimeoutAction::FailJob);
    let handle = p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.source_records() < 10 {
        assert!(Instant::now() < deadline, "the job makes no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    let e = within(30, move || handle.join()).expect_err("the cancellation timed out");
    release.store(true, Ordering::SeqCst);
    let msg = e.to_string();
    assert!(
        msg.contains("cancellation timeout") && msg.contains("blocking -> out[0]"),
        "{msg}"
    );
    assert_eq!(e.kind(), ErrorKind::Internal, "{msg}");
}

/// Re-arms its processing-time timer at the time it fires, until `RE_ARM` is cleared.
#[derive(Clone)]
struct ReArming;
static RE_ARM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
static SPINNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl KeyedProcess<u64, u64> for ReArming {
    type Out = u64;
    fn process(&mut self, v: u64, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        if v == 5 {
            let now = ctx.current_processing_time();
            ctx.register_processing_time_timer(now as Timestamp)?;
        }
        Ok(())
    }
    fn on_timer(&mut self, t: Timer, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        SPINNING.store(true, Ordering::SeqCst);
        if RE_ARM.load(Ordering::SeqCst) {
            ctx.register_processing_time_timer(t.time)?;
        }
        Ok(())
    }
}

/// A keyed subtask spinning in a timer that re-arms itself at the time it fires checks for
/// cancellation between timers: a failure elsewhere cancels it at once, long before the
/// cancellation timeout (here 60 s, so that only the check can end the job within 30 s).
#[test]
fn a_subtask_spinning_in_a_re_arming_timer_stops_when_the_attempt_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new("re-arming-timer")
        .batch_size(10)
        .channel_capacity(4)
        .checkpoint_storage(dir.path().join("chk"))
        .restart_strategy(RestartStrategy::None)
        .cancellation_timeout(Duration::from_secs(60), CancellationTimeoutAction::FailJob);
    // Record 20 fails the attempt once the keyed subtask spins in its timer (which it starts
    // at record 5, in the first batch). The spinning subtask reads no more input, so the
    // failing record must come before the channel to it is full: batches of 10, 4 buffered.
    p.source("gen", GeneratorSource::new(|i| i).bounded(2_000))
        .map("boom", |x: u64| {
            if x == 20 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !SPINNING.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                panic!("failing while a timer spins");
            }
            x
        })
        .key_by("k", |_: &u64| 0u64)
        .process("spin", ReArming)
        .sink("out", DiscardSink::new());
    let h = p.start().unwrap();
    let r = within(30, move || h.join());
    RE_ARM.store(false, Ordering::SeqCst);
    let e = r.expect_err("the job fails: its restart strategy is None");
    let msg = e.to_string();
    assert!(msg.contains("failing while a timer spins"), "{msg}");
    assert!(!msg.contains("cancellation timeout"), "{msg}");
}

#[test]
fn the_process_exits_with_a_distinct_code_when_a_cancellation_times_out() {
    const CHILD: &str = "WEIR_TEST_CANCELLATION_TIMEOUT_CHILD";
    const NAME: &str = "runtime::the_process_exits_with_a_distinct_code_when_a_cancellation_times_out";
    if std::env::var_os(CHILD).is_some() {
        // The child: the default action ends the process.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p = blocking_job("exits", release)
            .cancellation_timeout(Duration::from_millis(300), CancellationTimeoutAction::ExitProcess);
        let handle = p.start().unwrap();
        while handle.source_records() < 10 {
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.cancel();
        let r = handle.join();
        panic!("join returned {r:?} instead of the process exiting");
    }
    let exe = std::env::current_exe().unwrap();
    let out = within(60, move || {
        std::process::Command::new(exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(CANCELLATION_TIMEOUT_EXIT_CODE),
        "{}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("cancellation timeout") && stderr.contains("blocking -> out[0]"),
        "{stderr}"
    );
}
