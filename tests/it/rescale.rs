//! Rescale on restore: a job stopped with a savepoint, or cancelled after checkpoints, at one
//! parallelism and restored at another, through every transition among 1, 2, 3 and 4, on both
//! backends.
//!
//! The job is count-sensitive, as in `exactly_once.rs`: a running count and sum per account
//! with no deduplication, every event committed as `(account, id, count, sum)`, and an
//! event-time window per account with allowed lateness fed late events (its timers and
//! contents move with their key groups). An event processed twice or lost, a timer lost or
//! fired twice, changes the committed output, which is compared with a sequential model.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weir::engine::source::generator::mix;
use weir::prelude::*;

use crate::common::{wait_until, within, Backend};

const EVENTS: u64 = 6_000;
const ACCOUNTS: u64 = 24;
const SPLITS: usize = 4;
/// Event time of a late event: this far behind its neighbours (the watermark allows 500 ms).
const LATE_BY_MS: i64 = 6_000;
/// Events per second while a stage runs until it is stopped: the input lasts 12 s, and a
/// stage reads a few hundred events.
const SLOW: f64 = 500.0;
/// Events per second of the last stage, which finishes the input.
const FAST: f64 = 100_000.0;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Txn {
    id: u64,
    account: u64,
    cents: i64,
    ts: i64,
}

/// Event `i`: every 40th is `LATE_BY_MS` behind (late for its window, within the allowed
/// lateness).
fn txn(i: u64) -> Txn {
    let r = mix(0x2E5CA1E, i);
    let mut ts = 1_000_000 + 2 * i as i64 + (r >> 24) as i64 % 200 - 100;
    if r.is_multiple_of(40) {
        ts -= LATE_BY_MS;
    }
    Txn {
        id: i,
        account: (r >> 8) % ACCOUNTS,
        cents: 1 + ((r >> 16) % 1000) as i64,
        ts,
    }
}

/// What the tally step commits per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Tallied {
    account: u64,
    id: u64,
    cents: i64,
    /// The account's event count after this event.
    count: u64,
    /// The account's sum after this event.
    sum: i64,
}

/// Running count and sum per account: no deduplication, so every event processed counts.
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
                account: t.account,
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

/// Count and sum of the amounts `(account, cents)` in a window.
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

/// The parallelism of each step of one stage.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// The source, the watermarks and the tally's sink.
    job: usize,
    /// The tally step.
    tally: usize,
    /// The window step.
    window: usize,
}

impl Shape {
    fn all(p: usize) -> Self {
        Shape {
            job: p,
            tally: p,
            window: p,
        }
    }
}

/// One stage of the job: a run at one shape.
struct Stage<'a> {
    dir: &'a Path,
    backend: Backend,
    shape: Shape,
    checkpoints: PathBuf,
    rate: f64,
    from_savepoint: Option<PathBuf>,
    max_parallelism: usize,
}

impl Stage<'_> {
    fn pipeline(&self) -> Pipeline {
        let mut p = Pipeline::new("rescale")
            .parallelism(self.shape.job)
            .max_parallelism(self.max_parallelism)
            .batch_size(32)
            .checkpoint_storage(&self.checkpoints)
            .checkpoint_interval(Duration::from_millis(30));
        p = match self.backend {
            Backend::Memory => p.state_backend(MemoryBackend::new()),
            Backend::Rocks => p.state_dir(self.dir.join("state")),
        };
        if let Some(sp) = &self.from_savepoint {
            p = p.from_savepoint(SavepointRestore::dir(sp));
        }
        let tallied = p
            .source(
                "txns",
                GeneratorSource::new(txn)
                    .bounded(EVENTS)
                    .splits(SPLITS)
                    .rate_per_second(self.rate),
            )
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(500))
                    .with_timestamp_assigner(|t: &Txn| t.ts),
            )
            .key_by("by-account", |t: &Txn| t.account)
            .process("tally", Tally)
            .parallelism(self.shape.tally);
        tallied.sink("tallied-out", FileSink::exactly_once(self.dir.join("tallied")));
        tallied
            .map("amounts", |t: Tallied| (t.account, t.cents))
            .key_by("amounts-by-account", |(a, _): &(u64, i64)| *a)
            .window(TumblingEventTime::of(Duration::from_secs(1)))
            .allowed_lateness(Duration::from_secs(3_600))
            .aggregate("per-account-second", WindowTotals)
            .parallelism(self.shape.window)
            .sink("windows-out", FileSink::exactly_once(self.dir.join("windows")));
        p
    }
}

/// How a stage ends.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Stopped with a savepoint; the next stage starts from it, with checkpoints elsewhere.
    Savepoint,
    /// Cancelled; the next stage restores the latest checkpoint.
    Cancel,
}

/// Runs the job through `shapes`: every stage but the last reads a while, completes a
/// checkpoint after `after` (the checkpoint or savepoint it started from) and is stopped as
/// `stops` says; the last stage finishes the input. Returns the checkpoint each stage restored.
fn run_stages(dir: &Path, backend: Backend, shapes: &[Shape], stops: &[Stop]) -> Vec<Option<CheckpointId>> {
    let mut checkpoints = dir.join("checkpoints-0");
    let mut from_savepoint = None;
    let mut restored = Vec::new();
    let mut after = 0u64;
    for (n, &shape) in shapes.iter().enumerate() {
        let last = n + 1 == shapes.len();
        let stage = Stage {
            dir,
            backend,
            shape,
            checkpoints: checkpoints.clone(),
            rate: if last { FAST } else { SLOW },
            from_savepoint: from_savepoint.take(),
            max_parallelism: 128,
        };
        let handle = stage.pipeline().start().unwrap();
        if last {
            let report = handle.join().unwrap();
            restored.push(report.restored_from);
            break;
        }
        wait_until("the stage read records and completed a checkpoint", 90, || {
            let p = handle.progress();
            handle.is_finished()
                || p.source_records >= EVENTS / 40 && p.last_checkpoint.is_some_and(|(id, _)| id.get() > after)
        });
        assert!(!handle.is_finished(), "stage {n} ended before it was stopped");
        match stops[n] {
            Stop::Savepoint => {
                let at = dir.join(format!("savepoint-{n}"));
                let sp = handle.stop_with_savepoint(Arc::new(LocalDirStorage::new(&at))).unwrap();
                let report = handle.join().unwrap();
                restored.push(report.restored_from);
                after = sp.id.get();
                from_savepoint = Some(at);
                checkpoints = dir.join(format!("checkpoints-{}", n + 1));
            }
            Stop::Cancel => {
                handle.cancel();
                let report = handle.join().unwrap();
                assert!(report.cancelled, "stage {n} was cancelled before its input ended");
                restored.push(report.restored_from);
                after = report.checkpoints.iter().map(|c| c.id.get()).max().unwrap_or(after);
            }
        }
    }
    restored
}

/// The committed tally against a sequential model: per account, each event once, the counts
/// exactly `1..=n`, and the model's sum at `n`.
fn check_tallied(dir: &Path, ctx: &str) {
    let mut committed: BTreeMap<u64, Vec<Tallied>> = BTreeMap::new();
    for line in weir::engine::sink::read_committed_lines(dir.join("tallied")).unwrap() {
        let t: Tallied = serde_json::from_str(&line).unwrap();
        committed.entry(t.account).or_default().push(t);
    }
    let mut model: BTreeMap<u64, (Vec<u64>, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let t = txn(i);
        let m = model.entry(t.account).or_default();
        m.0.push(t.id);
        m.1 += t.cents;
    }
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        model.keys().collect::<Vec<_>>(),
        "{ctx}: accounts"
    );
    for (account, (ids, sum)) in &model {
        let got = &committed[account];
        assert_eq!(
            got.len(),
            ids.len(),
            "{ctx}: account {account}: {} records committed for {} events (an event processed twice or lost)",
            got.len(),
            ids.len()
        );
        let mut got_ids: Vec<u64> = got.iter().map(|t| t.id).collect();
        got_ids.sort_unstable();
        assert!(got_ids == *ids, "{ctx}: account {account}: committed event ids differ");
        let mut counts: Vec<u64> = got.iter().map(|t| t.count).collect();
        counts.sort_unstable();
        let n = ids.len() as u64;
        assert!(
            counts == (1..=n).collect::<Vec<_>>(),
            "{ctx}: account {account}: the running counts must be exactly 1..={n}"
        );
        let last = got.iter().find(|t| t.count == n).expect("count n");
        assert_eq!(last.sum, *sum, "{ctx}: account {account}: final sum");
    }
}

/// The committed window results: per account and window, the counts of its firings strictly
/// increase (each firing after at least one new event, none repeated), and the last firing
/// holds the model's count and sum of the window. Returns the number of late firings.
fn check_windows(dir: &Path, ctx: &str) -> usize {
    let mut firings: BTreeMap<(u64, i64), Vec<(u64, i64)>> = BTreeMap::new();
    for line in weir::engine::sink::read_committed_lines(dir.join("windows")).unwrap() {
        let w: Windowed<u64, (u64, i64)> = serde_json::from_str(&line).unwrap();
        firings.entry((w.key, w.window.start)).or_default().push(w.value);
    }
    let mut model: BTreeMap<(u64, i64), (u64, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let t = txn(i);
        let w = model.entry((t.account, t.ts - t.ts.rem_euclid(1_000))).or_default();
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

/// Every transition among parallelism 1, 2, 3 and 4 in one lineage (an Eulerian circuit of
/// the 12), alternately through a savepoint and a cancel.
fn rescale_through_every_transition(backend: Backend) {
    within(300, move || {
        let d = tempfile::tempdir().unwrap();
        let path = [1, 2, 1, 3, 1, 4, 2, 3, 2, 4, 3, 4, 1];
        let transitions: std::collections::BTreeSet<(usize, usize)> = path.windows(2).map(|w| (w[0], w[1])).collect();
        assert_eq!(transitions.len(), 12, "every transition once");
        let shapes: Vec<Shape> = path.into_iter().map(Shape::all).collect();
        let stops: Vec<Stop> = (0..path.len() - 1)
            .map(|n| if n % 2 == 0 { Stop::Savepoint } else { Stop::Cancel })
            .collect();
        let restored = run_stages(d.path(), backend, &shapes, &stops);
        let ctx = format!("{backend:?} {shapes:?} {stops:?}");
        assert!(restored[0].is_none(), "{ctx}: the first stage starts fresh");
        assert!(
            restored[1..].iter().all(Option::is_some),
            "{ctx}: every later stage restores: {restored:?}"
        );
        check_tallied(d.path(), &ctx);
        let late = check_windows(d.path(), &ctx);
        assert!(late > 0, "{ctx}: late events fired their windows again");
    });
}

#[test]
fn rescaled_restores_are_exact_on_rocksdb() {
    crate::common::trace_if_asked();
    rescale_through_every_transition(Backend::Rocks);
}

#[test]
fn rescaled_restores_are_exact_in_memory() {
    crate::common::trace_if_asked();
    rescale_through_every_transition(Backend::Memory);
}

/// Each step changes its parallelism on its own: the tally grows while the window shrinks and
/// the rest stays.
#[test]
fn steps_rescale_independently() {
    crate::common::trace_if_asked();
    within(300, || {
        let d = tempfile::tempdir().unwrap();
        let shapes = [
            Shape {
                job: 2,
                tally: 1,
                window: 4,
            },
            Shape {
                job: 2,
                tally: 3,
                window: 1,
            },
            Shape {
                job: 3,
                tally: 3,
                window: 2,
            },
        ];
        let stops = [Stop::Cancel, Stop::Savepoint];
        let restored = run_stages(d.path(), Backend::Rocks, &shapes, &stops);
        assert!(restored[1..].iter().all(Option::is_some), "{restored:?}");
        let ctx = format!("{shapes:?}");
        check_tallied(d.path(), &ctx);
        check_windows(d.path(), &ctx);
    });
}

#[test]
fn a_changed_max_parallelism_or_a_step_above_it_is_refused_clearly() {
    crate::common::trace_if_asked();
    within(120, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let stage = |shape: Shape, max_parallelism: usize| Stage {
            dir,
            backend: Backend::Memory,
            shape,
            checkpoints: dir.join("checkpoints"),
            rate: FAST,
            from_savepoint: None,
            max_parallelism,
        };
        stage(Shape::all(2), 128).pipeline().run().unwrap();
        let e = stage(Shape::all(2), 64).pipeline().run().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert_eq!(e.reason(), Some(Reason::MaxParallelismChanged), "{e}");
        assert!(e.to_string().contains("max parallelism 128"), "{e}");
        let above = Shape {
            job: 2,
            tally: 5,
            window: 2,
        };
        let e = stage(above, 4).pipeline().run().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(
            e.to_string()
                .contains("\"tally\": parallelism 5 exceeds max parallelism 4"),
            "{e}"
        );
    });
}

/// Sums cents per account in a value state `sum` of type `S`.
#[derive(Clone)]
struct SumAs<S>(std::marker::PhantomData<S>);

/// The type the state `sum` has after the change: it no longer decodes what `u64` wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Total {
    cents: u64,
    note: String,
}

impl<S: Default + Clone + Serialize + serde::de::DeserializeOwned + Send + 'static> KeyedProcess<u64, (u64, u64)>
    for SumAs<S>
{
    type Out = u64;
    fn process(&mut self, (account, _): (u64, u64), ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        let mut sum = ctx.value_state::<S>("sum");
        let v = sum.get()?.unwrap_or_default();
        sum.set(&v)?;
        ctx.emit(account);
        Ok(())
    }
}

/// A step whose state changed type across a restore (same step, same state name, `u64` ->
/// a struct) fails the job with a configuration error naming the step and the state, restored
/// at the same parallelism and rescaled, on both backends.
#[test]
fn a_state_whose_type_changed_is_a_clear_error_naming_the_step_and_the_state() {
    crate::common::trace_if_asked();
    for backend in crate::common::BACKENDS {
        for (before, after) in [(2usize, 2usize), (2, 3)] {
            let d = tempfile::tempdir().unwrap();
            let job = |parallelism: usize, events: u64, changed: bool| {
                let p = crate::common::pipeline("state-type", backend, &d)
                    .parallelism(parallelism)
                    .checkpoint_storage(d.path().join("checkpoints"));
                let keyed = p
                    .source(
                        "events",
                        GeneratorSource::new(|i| (i % 16, i)).bounded(events).splits(SPLITS),
                    )
                    .key_by("by-account", |e: &(u64, u64)| e.0);
                if changed {
                    keyed.process("sums", SumAs::<Total>(Default::default()))
                } else {
                    keyed.process("sums", SumAs::<u64>(Default::default()))
                }
                .sink("out", DiscardSink::new());
                p
            };
            job(before, 400, false).run().unwrap();
            let ctx = format!("{backend:?} {before} -> {after}");
            let e = job(after, 800, true).run().expect_err(&ctx);
            let text = e.to_string();
            assert_eq!(e.kind(), ErrorKind::Config, "{ctx}: {text}");
            assert!(text.contains("sums"), "{ctx}: the step: {text}");
            assert!(text.contains("state \"sum\""), "{ctx}: the state: {text}");
            assert!(text.contains("Total"), "{ctx}: the new type: {text}");
        }
    }
}
