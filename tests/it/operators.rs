//! Every operator of the public API, end to end: stateless steps, keyed state on both backends,
//! timers, TTL, rolling aggregations, exchanges, two-input steps, the built-in sources and the
//! collect sink's commit log.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::engine::source::generator::mix;
use weir::prelude::*;

// ---- helpers --------------------------------------------------------------------------------

use crate::common;
use common::*;

/// The name of the subtask thread running the current user function ("weir-step[i]").
fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

/// Checks the collect sink's commit log: every (subtask, checkpoint) committed once, nothing
/// committed twice, and the commit counts add up to the records.
fn assert_clean_commit_log<T: Data>(sink: &CollectSink<T>) {
    let c = sink.collected();
    let keys: BTreeSet<(usize, CheckpointId)> = c.commits.iter().map(|(s, id, _)| (*s, *id)).collect();
    assert_eq!(
        keys.len(),
        c.commits.len(),
        "a (subtask, checkpoint) committed twice: {:?}",
        c.commits
    );
    assert_eq!(c.repeated_commits, 0);
    assert_eq!(c.commits.iter().map(|(_, _, n)| n).sum::<usize>(), c.records.len());
}

// ---- stateless operators ----------------------------------------------------------------------

#[test]
fn map_filter_and_flat_map() {
    for p in [1, 3] {
        let sink = CollectSink::new();
        let pl = Pipeline::new("stateless").parallelism(p);
        pl.source("numbers", VecSource::new((0..1000u64).collect()).splits(4))
            .map("double", |x| x * 2)
            .filter("thirds", |x| x % 3 == 0)
            .flat_map("twice", |x| vec![x, x + 1])
            .flat_map("drop-odd-hundreds", |x| if x % 200 == 101 { None } else { Some(x) })
            .sink("out", sink.clone());
        let report = pl.run().unwrap();
        let mut want = Vec::new();
        for x in (0..1000u64).map(|x| x * 2).filter(|x| x % 3 == 0) {
            for y in [x, x + 1] {
                if y % 200 != 101 {
                    want.push(y);
                }
            }
        }
        assert_eq!(sorted(sink.records()), sorted(want.clone()), "parallelism {p}");
        assert!(!report.cancelled);
        let double = report.operator("double").unwrap();
        assert_eq!(
            (double.parallelism, double.records_in, double.records_out),
            (p, 1000, 1000)
        );
        assert_eq!(report.operator("twice").unwrap().records_out, 2 * 334);
        assert_eq!(report.operator("out").unwrap().records_in, want.len() as u64);
        assert_clean_commit_log(&sink);
    }
}

#[test]
fn stateless_operators_keep_event_timestamps() {
    let sink = CollectSink::new();
    let pl = Pipeline::new("timestamps").parallelism(2);
    let items: Vec<(u64, Timestamp)> = (0..200u64).map(|i| (i, 1_000 + i as Timestamp)).collect();
    pl.source("numbers", VecSource::with_timestamps(items))
        .map("plus", |x| x + 10_000)
        .filter("even", |x| x % 2 == 0)
        .flat_map("dup", |x| [x, x])
        .key_by("by-value", |x| *x)
        .process("stamp", StampProcess)
        .sink("out", sink.clone());
    pl.run().unwrap();
    let want: Vec<(u64, Option<Timestamp>)> = (0..200u64)
        .filter(|i| i % 2 == 0)
        .flat_map(|i| [(i + 10_000, Some(1_000 + i as Timestamp)); 2])
        .collect();
    assert_eq!(sorted(sink.records()), sorted(want));
}

/// Emits each value with the event time the keyed context sees.
#[derive(Clone)]
struct StampProcess;

impl KeyedProcess<u64, u64> for StampProcess {
    type Out = (u64, Option<Timestamp>);
    fn process(&mut self, value: u64, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let ts = ctx.timestamp();
        ctx.emit((value, ts));
        Ok(())
    }
}

// ---- keyed state ------------------------------------------------------------------------------

/// Counts records per key in a `ValueState` and emits `(key, count so far)`.
#[derive(Clone)]
struct Count;

impl KeyedProcess<u64, (u64, u64)> for Count {
    type Out = (u64, u64);
    fn process(&mut self, _v: (u64, u64), ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let key = *ctx.key();
        let mut st = ctx.value_state::<u64>("count");
        let n = st.get()?.unwrap_or(0) + 1;
        st.set(&n)?;
        if n == 3 {
            // clear() resets; get_or_default() then sees nothing.
            st.clear()?;
            assert_eq!(st.get_or_default()?, 0);
            st.set(&3)?;
        }
        ctx.emit((key, n));
        Ok(())
    }
}

#[test]
fn value_state_counts_per_key_on_both_backends() {
    for backend in BACKENDS {
        for p in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let sink = CollectSink::new();
            let pl = pipeline("value-state", backend, &dir).parallelism(p);
            pl.source("events", GeneratorSource::new(|i| (i % 13, i)).bounded(5_000).splits(3))
                .key_by("by-key", |(k, _)| *k)
                .process("count", Count)
                .sink("out", sink.clone());
            pl.run().unwrap();
            let mut want = Vec::new();
            for k in 0..13u64 {
                let n = (0..5_000u64).filter(|i| i % 13 == k).count() as u64;
                want.extend((1..=n).map(|c| (k, c)));
            }
            assert_eq!(sorted(sink.records()), want, "{backend:?} p {p}");
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum MapCmd {
    Put(u32, String, i64),
    Remove(u32, String),
    Clear(u32),
    Dump(u32),
}

impl MapCmd {
    fn user(&self) -> u32 {
        match self {
            MapCmd::Put(u, ..) | MapCmd::Remove(u, _) | MapCmd::Clear(u) | MapCmd::Dump(u) => *u,
        }
    }
}

/// What a `Dump` reports: user, sorted entries, `contains("a")`, `is_empty()`, keys.
type MapDump = (u32, Vec<(String, i64)>, bool, bool, Vec<String>);

#[derive(Clone)]
struct MapOps;

impl KeyedProcess<u32, MapCmd> for MapOps {
    type Out = MapDump;
    fn process(&mut self, cmd: MapCmd, ctx: &mut KeyedContext<'_, u32, Self::Out>) -> Result<()> {
        let user = *ctx.key();
        let mut m = ctx.map_state::<String, i64>("items");
        match cmd {
            MapCmd::Put(_, k, v) => {
                let prev = m.get(&k)?.unwrap_or(0);
                m.put(&k, &(prev + v))?;
            }
            MapCmd::Remove(_, k) => m.remove(&k)?,
            MapCmd::Clear(_) => m.clear()?,
            MapCmd::Dump(_) => {
                let entries = sorted(m.entries()?);
                let keys = sorted(m.keys()?);
                let has_a = m.contains(&"a".to_string())?;
                let empty = m.is_empty()?;
                ctx.emit((user, entries, has_a, empty, keys));
            }
        }
        Ok(())
    }
}

#[test]
fn map_state_put_get_remove_clear_and_iterate_on_both_backends() {
    let mut cmds = Vec::new();
    let mut model: BTreeMap<u32, BTreeMap<String, i64>> = BTreeMap::new();
    let mut want: Vec<MapDump> = Vec::new();
    for i in 0..3_000u64 {
        let user = (mix(1, i) % 20) as u32;
        let key = ["a", "b", "cc", "longer-key", "z"][(mix(2, i) % 5) as usize].to_string();
        let m = model.entry(user).or_default();
        let cmd = match mix(3, i) % 10 {
            0..=4 => {
                let v = (mix(4, i) % 100) as i64 - 50;
                *m.entry(key.clone()).or_insert(0) += v;
                MapCmd::Put(user, key, v)
            }
            5 | 6 => {
                m.remove(&key);
                MapCmd::Remove(user, key)
            }
            7 => {
                m.clear();
                MapCmd::Clear(user)
            }
            _ => {
                let entries: Vec<(String, i64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
                let keys = m.keys().cloned().collect();
                want.push((user, entries, m.contains_key("a"), m.is_empty(), keys));
                MapCmd::Dump(user)
            }
        };
        assert_eq!(cmd.user(), user);
        cmds.push(cmd);
    }
    for backend in BACKENDS {
        for p in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let sink = CollectSink::new();
            let pl = pipeline("map-state", backend, &dir).parallelism(p);
            pl.source("cmds", VecSource::new(cmds.clone()))
                .key_by("by-user", MapCmd::user)
                .process("maps", MapOps)
                .sink("out", sink.clone());
            pl.run().unwrap();
            assert_eq!(sorted(sink.records()), sorted(want.clone()), "{backend:?} p {p}");
        }
    }
}

/// List state: `(key, op)`; op 0..=5 adds, 6 replaces with the last two, 7 clears, 8..=9 emits.
#[derive(Clone)]
struct ListOps;

impl KeyedProcess<u32, (u32, u64)> for ListOps {
    type Out = (u32, Vec<u64>, bool);
    fn process(&mut self, (_, op): (u32, u64), ctx: &mut KeyedContext<'_, u32, Self::Out>) -> Result<()> {
        let key = *ctx.key();
        let mut l = ctx.list_state::<u64>("list");
        match op % 10 {
            0..=5 => l.add(&op)?,
            6 => {
                let all = l.get()?;
                let keep: Vec<u64> = all.iter().rev().take(2).rev().copied().collect();
                l.update(&keep)?;
            }
            7 => l.clear()?,
            _ => {
                let all = l.get()?;
                let empty = l.is_empty()?;
                ctx.emit((key, all, empty));
            }
        }
        Ok(())
    }
}

#[test]
fn list_state_add_get_update_clear_on_both_backends() {
    let input: Vec<(u32, u64)> = (0..4_000u64)
        .map(|i| ((mix(5, i) % 16) as u32, mix(6, i) % 1000))
        .collect();
    let mut model: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut want = Vec::new();
    for &(k, op) in &input {
        let l = model.entry(k).or_default();
        match op % 10 {
            0..=5 => l.push(op),
            6 => {
                let keep = l.iter().rev().take(2).rev().copied().collect();
                *l = keep;
            }
            7 => l.clear(),
            _ => want.push((k, l.clone(), l.is_empty())),
        }
    }
    assert!(want.iter().any(|(_, l, _)| l.len() > 3));
    assert!(want.iter().any(|(_, _, e)| *e));
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("list-state", backend, &dir).parallelism(2);
        pl.source("ops", VecSource::new(input.clone()))
            .key_by("by-key", |(k, _)| *k)
            .process("lists", ListOps)
            .sink("out", sink.clone());
        pl.run().unwrap();
        assert_eq!(sorted(sink.records()), sorted(want.clone()), "{backend:?}");
    }
}

#[test]
fn keyed_state_is_per_key_and_per_step() {
    // Two keyed steps with the same state name do not share state; neither do keys.
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("per-step", backend, &dir).parallelism(2);
        pl.source("events", GeneratorSource::new(|i| (i % 5, i)).bounded(100))
            .key_by("k1", |(k, _)| *k)
            .process("count-1", Count)
            .key_by("k2", |(k, _)| *k)
            .process("count-2", Count)
            .sink("out", sink.clone());
        pl.run().unwrap();
        // The second step counts the first step's outputs: 20 per key.
        let mut want = Vec::new();
        for k in 0..5u64 {
            want.extend((1..=20).map(|c| (k, c)));
        }
        assert_eq!(sorted(sink.records()), want, "{backend:?}");
    }
}

// ---- event-time timers --------------------------------------------------------------------------

/// Output of the timer process: (tag, key, time, watermark when it fired).
type Fired = (String, u32, Timestamp, Timestamp);

const TICK_DELAY: Timestamp = 25;
const TIMEOUT_DELAY: Timestamp = 500;
const FAR: Timestamp = 1_000_000_000;

/// For each record `(key, ts)`: a "tick" timer at `ts + 25` (registered twice: deduped), a
/// "timeout" timer at `ts + 500` replacing the key's previous one (deleted), and once per key a
/// "far" timer that only the end of input fires.
#[derive(Clone)]
struct EventTimers;

impl KeyedProcess<u32, (u32, Timestamp)> for EventTimers {
    type Out = Fired;
    fn process(&mut self, (_, ts): (u32, Timestamp), ctx: &mut KeyedContext<'_, u32, Fired>) -> Result<()> {
        assert_eq!(ctx.timestamp(), Some(ts), "the record's event time");
        ctx.register_event_time_timer(ts + TICK_DELAY)?;
        ctx.register_event_time_timer(ts + TICK_DELAY)?;
        let mut prev = ctx.value_state::<Timestamp>("timeout");
        let old = prev.get()?;
        prev.set(&(ts + TIMEOUT_DELAY))?;
        match old {
            Some(t) => ctx.delete_event_time_timer(t)?,
            None => ctx.register_event_time_timer(FAR)?,
        }
        ctx.register_event_time_timer(ts + TIMEOUT_DELAY)?;
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u32, Fired>) -> Result<()> {
        assert_eq!(timer.domain, TimeDomain::EventTime);
        assert_eq!(ctx.timestamp(), Some(timer.time), "a timer fires at its own time");
        let key = *ctx.key();
        let last_timeout = ctx.value_state::<Timestamp>("timeout").get()?;
        let tag = if timer.time == FAR {
            "far"
        } else if last_timeout == Some(timer.time) {
            "timeout"
        } else {
            "tick"
        };
        let wm = ctx.current_watermark();
        ctx.emit((tag.to_string(), key, timer.time, wm));
        Ok(())
    }
}

fn event_time_input() -> Vec<(u32, Timestamp)> {
    // Timestamps increase; each key's records are 50 apart.
    (0..400i64).map(|i| ((i % 5) as u32, i * 10)).collect()
}

fn expected_timers(input: &[(u32, Timestamp)]) -> Vec<(String, u32, Timestamp)> {
    let mut want = BTreeSet::new();
    let mut last: BTreeMap<u32, Timestamp> = BTreeMap::new();
    for &(k, ts) in input {
        want.insert(("tick".to_string(), k, ts + TICK_DELAY));
        last.insert(k, ts);
    }
    for (&k, &ts) in &last {
        // A tick at the same time as the last timeout would be the same timer; they differ here.
        want.insert(("timeout".to_string(), k, ts + TIMEOUT_DELAY));
        want.insert(("far".to_string(), k, FAR));
    }
    want.into_iter().collect()
}

#[test]
fn event_time_timers_fire_through_watermarks_and_all_fire_at_the_end() {
    let input = event_time_input();
    let max_ts = input.iter().map(|r| r.1).max().unwrap();
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("event-timers", backend, &dir).parallelism(1).batch_size(7);
        pl.source("events", VecSource::new(input.clone()))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::monotonous().with_timestamp_assigner(|r: &(u32, Timestamp)| r.1),
            )
            .key_by("by-key", |r| r.0)
            .process("timers", EventTimers)
            .sink("out", sink.clone());
        pl.run().unwrap();
        let fired: Vec<Fired> = sink.records();
        let got: Vec<(String, u32, Timestamp)> = sorted(fired.iter().map(|f| (f.0.clone(), f.1, f.2)).collect());
        assert_eq!(
            got,
            expected_timers(&input),
            "{backend:?}: each timer fires exactly once"
        );
        for (tag, key, time, wm) in &fired {
            assert!(
                wm >= time,
                "{backend:?}: {tag} timer of key {key} at {time} fired at watermark {wm}"
            );
            if *time < max_ts {
                // The assigner's watermarks (max seen - 1) reach it before the input ends.
                assert!(
                    *wm < MAX_WATERMARK,
                    "{backend:?}: {tag} timer at {time} waited for the end of input"
                );
            }
            if tag == "far" {
                assert_eq!(*wm, MAX_WATERMARK, "only the end of input fires the far timers");
            }
        }
        // One subtask: timers fire in time order.
        let times: Vec<Timestamp> = fired.iter().map(|f| f.2).collect();
        assert_eq!(times, sorted(times.clone()), "{backend:?}");
    }
}

#[test]
fn event_time_timers_fire_at_parallelism_three() {
    // Key = split (i % 3): each key's records come from one source subtask, in order.
    let input: Vec<(u32, Timestamp)> = (0..600i64).map(|i| ((i % 3) as u32, i * 10)).collect();
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("event-timers-p3", backend, &dir).parallelism(3).batch_size(16);
        pl.source("events", VecSource::new(input.clone()).splits(3))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(100))
                    .with_timestamp_assigner(|r: &(u32, Timestamp)| r.1),
            )
            .key_by("by-key", |r| r.0)
            .process("timers", EventTimers)
            .sink("out", sink.clone());
        pl.run().unwrap();
        let fired: Vec<Fired> = sink.records();
        let got: Vec<(String, u32, Timestamp)> = sorted(fired.iter().map(|f| (f.0.clone(), f.1, f.2)).collect());
        assert_eq!(got, expected_timers(&input), "{backend:?}");
        assert!(
            fired.iter().all(|f| f.3 >= f.2),
            "{backend:?}: a timer fired early: {fired:?}"
        );
    }
}

#[test]
fn source_timestamps_drive_timers_without_an_assigner() {
    // VecSource::with_timestamps and a strategy without an assigner use the source's times.
    let input = event_time_input();
    let stamped: Vec<((u32, Timestamp), Timestamp)> = input.iter().map(|r| (*r, r.1)).collect();
    let sink = CollectSink::new();
    let pl = Pipeline::new("source-ts").parallelism(2);
    pl.source("events", VecSource::with_timestamps(stamped))
        .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous())
        .key_by("by-key", |r| r.0)
        .process("timers", EventTimers)
        .sink("out", sink.clone());
    pl.run().unwrap();
    let got: Vec<(String, u32, Timestamp)> = sorted(sink.records().into_iter().map(|f| (f.0, f.1, f.2)).collect());
    assert_eq!(got, expected_timers(&input));
}

// ---- processing-time timers ---------------------------------------------------------------------

/// A bounded source that emits `n` records, then stays alive (pending) until `done` is set, or
/// gives up after `give_up` (so a broken engine fails the test rather than hanging it).
#[derive(Clone)]
struct UntilDone {
    n: u64,
    done: Arc<AtomicBool>,
    give_up: Duration,
}

struct UntilDoneReader {
    src: UntilDone,
    mine: bool,
    next: u64,
    started: Instant,
}

impl Source for UntilDone {
    type Out = u64;
    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok(vec!["only".to_string()])
    }
    fn create_reader(&self, splits: Vec<AssignedSplit>, _: SubtaskInfo) -> Result<Box<dyn SourceReader<u64>>> {
        Ok(Box::new(UntilDoneReader {
            src: self.clone(),
            mine: !splits.is_empty(),
            next: 0,
            started: Instant::now(),
        }))
    }
}

impl SourceReader<u64> for UntilDoneReader {
    fn poll(&mut self, out: &mut Vec<Record<u64>>, max: usize) -> Result<ReadStatus> {
        if !self.mine {
            return Ok(ReadStatus::Finished);
        }
        while self.next < self.src.n && out.len() < max {
            out.push(Record::new(self.next));
            self.next += 1;
        }
        if self.next < self.src.n {
            return Ok(ReadStatus::More);
        }
        if self.src.done.load(Ordering::SeqCst) || self.started.elapsed() > self.src.give_up {
            Ok(ReadStatus::Finished)
        } else {
            Ok(ReadStatus::Pending(Duration::from_millis(2)))
        }
    }
    fn positions(&self) -> Vec<SplitPosition> {
        if self.mine {
            vec![SplitPosition {
                split: "only".into(),
                offset: self.next,
                event_time: None,
                state: None,
            }]
        } else {
            Vec::new()
        }
    }
}

const EARLY: Timestamp = 5;
const LATE: Timestamp = 40;

/// Per key: processing-time timers at now+5 and now+40; odd keys delete the early one. Each
/// firing emits `(key, delay, fired at or after its time)`; when every key's late timer fired,
/// `done` is set.
#[derive(Clone)]
struct ProcTimers {
    keys: usize,
    late_fired: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
}

impl KeyedProcess<u64, u64> for ProcTimers {
    type Out = (u64, Timestamp, bool);
    fn process(&mut self, _v: u64, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let key = *ctx.key();
        let now = ctx.current_processing_time() as Timestamp;
        let mut base = ctx.value_state::<Timestamp>("base");
        if base.get()?.is_some() {
            return Ok(()); // one pair of timers per key
        }
        base.set(&now)?;
        ctx.register_processing_time_timer(now + EARLY)?;
        ctx.register_processing_time_timer(now + LATE)?;
        if key % 2 == 1 {
            ctx.delete_processing_time_timer(now + EARLY)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        assert_eq!(timer.domain, TimeDomain::ProcessingTime);
        assert_eq!(ctx.timestamp(), None);
        let key = *ctx.key();
        let base = ctx
            .value_state::<Timestamp>("base")
            .get()?
            .expect("base set with the timers");
        let on_time = ctx.current_processing_time() as Timestamp >= timer.time;
        ctx.emit((key, timer.time - base, on_time));
        if timer.time - base == LATE && self.late_fired.fetch_add(1, Ordering::SeqCst) + 1 == self.keys {
            self.done.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_while_a_slow_source_keeps_the_job_alive() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let keys = 6;
        let sink = CollectSink::new();
        let (s2, d2) = (sink.clone(), done.clone());
        let report = within(60, move || {
            let pl = pipeline("proc-timers", backend, &dir).parallelism(2);
            pl.source(
                "slow",
                UntilDone {
                    n: 60,
                    done: d2.clone(),
                    give_up: Duration::from_secs(20),
                },
            )
            .key_by("by-key", move |v| v % keys as u64)
            .process(
                "timers",
                ProcTimers {
                    keys,
                    late_fired: Arc::new(AtomicUsize::new(0)),
                    done: d2,
                },
            )
            .sink("out", s2);
            pl.run()
        })
        .unwrap();
        assert!(done.load(Ordering::SeqCst), "{backend:?}: the late timers never fired");
        let mut want = Vec::new();
        for k in 0..keys as u64 {
            if k % 2 == 0 {
                want.push((k, EARLY, true));
            }
            want.push((k, LATE, true));
        }
        assert_eq!(
            sorted(sink.records()),
            want,
            "{backend:?}: deleted timers must not fire"
        );
        assert!(!report.cancelled);
    }
}

/// Registers a processing-time timer 5 ms ahead for each record and records firings.
#[derive(Clone)]
struct RecordFirings(Arc<Mutex<Vec<(u64, Timestamp, u64)>>>);

impl KeyedProcess<u64, u64> for RecordFirings {
    type Out = u64;
    fn process(&mut self, _v: u64, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        let now = ctx.current_processing_time() as Timestamp;
        ctx.register_processing_time_timer(now + 5)
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        let key = *ctx.key();
        let now = ctx.current_processing_time();
        self.0.lock().unwrap().push((key, timer.time, now));
        ctx.emit(key);
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_on_an_unbounded_source_and_the_job_cancels() {
    let firings = Arc::new(Mutex::new(Vec::new()));
    let pl = Pipeline::new("proc-timers-unbounded").parallelism(2);
    pl.source("ticks", GeneratorSource::new(|i| i % 4).rate_per_second(400.0))
        .key_by("by-key", |k| *k)
        .process("timers", RecordFirings(firings.clone()))
        .sink("out", DiscardSink::new());
    let handle = pl.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let keys: BTreeSet<u64> = firings.lock().unwrap().iter().map(|f| f.0).collect();
        if keys.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timers of every key should fire within 20 s: {keys:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    let report = within(20, move || handle.join()).unwrap();
    assert!(report.cancelled);
    for (key, time, now) in firings.lock().unwrap().iter() {
        assert!(
            *now as Timestamp >= *time,
            "key {key}: timer {time} fired early at {now}"
        );
    }
}

// ---- TTL ----------------------------------------------------------------------------------------

const TTL: Duration = Duration::from_millis(100);

/// `(key, ts, op)`: op 0 writes the value `ts` (value and map state, event-time TTL), op 1
/// probes: emits `(ts, watermark, value, map entry)`.
#[derive(Clone)]
struct TtlProbe;

type Probe = (Timestamp, Timestamp, Option<Timestamp>, Option<Timestamp>);

impl KeyedProcess<u32, (u32, Timestamp, u8)> for TtlProbe {
    type Out = Probe;
    fn process(&mut self, (_, ts, op): (u32, Timestamp, u8), ctx: &mut KeyedContext<'_, u32, Probe>) -> Result<()> {
        if op == 0 {
            ctx.value_state::<Timestamp>("v")
                .with_ttl(Ttl::event_time(TTL))
                .set(&ts)?;
            ctx.map_state::<String, Timestamp>("m")
                .with_ttl(Ttl::event_time(TTL))
                .put(&"x".to_string(), &ts)?;
        } else {
            let v = ctx.value_state::<Timestamp>("v").get()?;
            let mut m = ctx.map_state::<String, Timestamp>("m");
            let entry = m.get(&"x".to_string())?;
            assert_eq!(
                m.entries()?.len(),
                usize::from(entry.is_some()),
                "entries() skips expired entries"
            );
            let wm = ctx.current_watermark();
            ctx.emit((ts, wm, v, entry));
        }
        Ok(())
    }
}

#[test]
fn event_time_ttl_hides_a_value_once_the_watermark_passes_its_expiry() {
    // Key 1 is written at 1000 and at 1300; probes every 10 ms of event time in between and
    // after; key 2 records move the watermark along. A key 2 record at 1101 (and 1401) puts
    // the watermark exactly on the expiry (1100, 1400) for the next probe.
    let mut input = vec![(1u32, 1000 as Timestamp, 0u8)];
    for ts in (1001..1600).step_by(10) {
        input.push((2, ts, 1));
        input.push((1, ts + 1, 1));
        if ts == 1291 {
            input.push((1, 1300, 0));
        }
    }
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("ttl", backend, &dir).parallelism(1).batch_size(1);
        pl.source("events", VecSource::new(input.clone()))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::monotonous().with_timestamp_assigner(|r: &(u32, Timestamp, u8)| r.1),
            )
            .key_by("by-key", |r| r.0)
            .process("ttl", TtlProbe)
            .sink("out", sink.clone());
        pl.run().unwrap();
        let probes: Vec<Probe> = sink.records().into_iter().filter(|p| p.0 % 10 == 2).collect();
        assert_eq!(probes.len(), 60, "{backend:?}");
        let (mut seen_visible, mut seen_expired, mut boundary) = (0, 0, 0);
        for (ts, wm, v, m) in probes {
            let written = if ts > 1300 { 1300 } else { 1000 };
            let live = wm < written + TTL.as_millis() as Timestamp;
            let want = live.then_some(written);
            assert_eq!((v, m), (want, want), "{backend:?}: probe at {ts}, watermark {wm}");
            if wm == written + TTL.as_millis() as Timestamp {
                boundary += 1;
            }
            if live {
                seen_visible += 1;
            } else {
                seen_expired += 1;
            }
        }
        assert_eq!(boundary, 2, "{backend:?}: probes at exactly the expiry");
        assert!(
            seen_visible > 5 && seen_expired > 5,
            "{backend:?}: {seen_visible} / {seen_expired}"
        );
    }
}

/// Drops a record whose id was seen within the TTL (event time).
#[derive(Clone)]
struct Dedupe;

impl KeyedProcess<u64, (u64, Timestamp)> for Dedupe {
    type Out = (u64, Timestamp);
    fn process(&mut self, r: (u64, Timestamp), ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let mut seen = ctx.value_state::<bool>("seen").with_ttl(Ttl::event_time(TTL));
        if seen.get()?.is_some() {
            ctx.count("duplicates", 1);
            return Ok(());
        }
        seen.set(&true)?;
        ctx.emit(r);
        Ok(())
    }
}

#[test]
fn dedupe_by_id_with_event_time_ttl() {
    let input: Vec<(u64, Timestamp)> = vec![
        (1, 0),
        (2, 10),
        (1, 50),
        (3, 200),
        (3, 250),
        (1, 300),
        (1, 320),
        (2, 330),
    ];
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("dedupe", backend, &dir).parallelism(1).batch_size(1);
        pl.source("events", VecSource::new(input.clone()))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::monotonous().with_timestamp_assigner(|r: &(u64, Timestamp)| r.1),
            )
            .key_by("by-id", |r| r.0)
            .process("dedupe", Dedupe)
            .sink("out", sink.clone());
        let report = pl.run().unwrap();
        // (1, 50), (3, 250) and (1, 320) repeat an id within 100 ms; (1, 300) and (2, 330)
        // come after the watermark passed the first sighting's expiry.
        assert_eq!(
            sink.records(),
            vec![(1, 0), (2, 10), (3, 200), (1, 300), (2, 330)],
            "{backend:?}"
        );
        assert_eq!(
            report.operator("dedupe").unwrap().counters.get("duplicates"),
            Some(&3),
            "{backend:?}"
        );
    }
}

#[test]
fn event_time_ttl_without_timestamps_is_a_data_error() {
    let e = within(30, || {
        let pl = Pipeline::new("ttl-no-ts");
        pl.source("events", VecSource::new(vec![(1u64, 0 as Timestamp)]))
            .key_by("by-id", |r| r.0)
            .process("dedupe", Dedupe)
            .sink("out", DiscardSink::new());
        pl.run()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("dedupe["), "{e}");
}

// ---- reduce and aggregate -----------------------------------------------------------------------

#[test]
fn reduce_emits_the_running_combination_per_key() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("reduce", backend, &dir).parallelism(2);
        // One split: each key's records arrive in order, so the running values are exact.
        pl.source("events", VecSource::new((0..3_000u64).map(|i| (i % 7, i)).collect()))
            .key_by("by-key", |r| r.0)
            .reduce("sum", |(k, a), (_, b)| (k, a + b))
            .sink("out", sink.clone());
        pl.run().unwrap();
        let mut want = Vec::new();
        let mut acc = [0u64; 7];
        for i in 0..3_000u64 {
            acc[(i % 7) as usize] += i;
            want.push((i % 7, acc[(i % 7) as usize]));
        }
        assert_eq!(sorted(sink.records()), sorted(want), "{backend:?}");
    }
}

/// Count, sum, min and max per key.
struct Stats;

impl AggregateFunction<(u64, i64)> for Stats {
    type Acc = (u64, u64, i64, i64, i64);
    type Out = (u64, u64, i64, i64, i64);
    fn create(&self) -> Self::Acc {
        (0, 0, 0, i64::MAX, i64::MIN)
    }
    fn add(&self, acc: &mut Self::Acc, v: &(u64, i64)) {
        acc.0 = v.0;
        acc.1 += 1;
        acc.2 += v.1;
        acc.3 = acc.3.min(v.1);
        acc.4 = acc.4.max(v.1);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.1 += other.1;
        acc.2 += other.2;
        acc.3 = acc.3.min(other.3);
        acc.4 = acc.4.max(other.4);
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        *acc
    }
}

#[test]
fn aggregate_with_a_custom_function() {
    let input: Vec<(u64, i64)> = (0..4_000u64)
        .map(|i| (i % 11, (mix(9, i) % 2001) as i64 - 1000))
        .collect();
    for backend in BACKENDS {
        for p in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let sink = CollectSink::new();
            let pl = pipeline("aggregate", backend, &dir).parallelism(p);
            pl.source("events", VecSource::new(input.clone()).splits(3))
                .key_by("by-key", |r| r.0)
                .aggregate("stats", Stats)
                .sink("out", sink.clone());
            pl.run().unwrap();
            let out = sink.records();
            assert_eq!(out.len(), input.len());
            // The final result per key (the one with the full count) matches; counts run 1..=n.
            for k in 0..11u64 {
                let vals: Vec<i64> = input.iter().filter(|r| r.0 == k).map(|r| r.1).collect();
                let mut counts: Vec<u64> = out.iter().filter(|o| o.0 == k).map(|o| o.1).collect();
                counts.sort();
                assert_eq!(counts, (1..=vals.len() as u64).collect::<Vec<_>>(), "{backend:?} p {p}");
                let last = out.iter().find(|o| o.0 == k && o.1 == vals.len() as u64).unwrap();
                let want = (
                    k,
                    vals.len() as u64,
                    vals.iter().sum::<i64>(),
                    *vals.iter().min().unwrap(),
                    *vals.iter().max().unwrap(),
                );
                assert_eq!(*last, want, "{backend:?} p {p}");
            }
        }
    }
    let mut acc = Stats.create();
    Stats.add(&mut acc, &(1, 5));
    let mut other = Stats.create();
    Stats.add(&mut other, &(1, -3));
    Stats.merge(&mut acc, other);
    assert_eq!(Stats.result(&acc), (1, 2, 2, -3, 5));
}

// ---- exchanges ----------------------------------------------------------------------------------

#[test]
fn rebalance_spreads_whole_batches_round_robin() {
    let sink = CollectSink::new();
    let pl = Pipeline::new("rebalance").parallelism(4).batch_size(10);
    pl.source("numbers", VecSource::new((0..200u64).collect()))
        .parallelism(1)
        .rebalance()
        .map("spread", |x| (x, thread_name()))
        .sink("out", sink.clone());
    let report = pl.run().unwrap();
    assert_eq!(report.operator("spread").unwrap().parallelism, 4);
    let out = sink.records();
    assert_eq!(sorted(out.iter().map(|r| r.0).collect()), (0..200).collect::<Vec<_>>());
    let mut per_subtask: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (x, t) in out {
        per_subtask.entry(t).or_default().push(x);
    }
    assert_eq!(per_subtask.len(), 4, "{per_subtask:?}");
    for (t, xs) in &per_subtask {
        assert_eq!(xs.len(), 50, "{t}: 20 batches of 10 round-robin over 4 subtasks");
        // Whole batches: every batch of 10 consecutive values lands in one subtask.
        let batches: BTreeSet<u64> = xs.iter().map(|x| x / 10).collect();
        assert_eq!(batches.len(), 5, "{t}: {xs:?}");
    }
}

#[test]
fn forward_between_different_parallelisms_still_delivers_everything() {
    let sink = CollectSink::new();
    let pl = Pipeline::new("forward-mismatch").parallelism(3);
    pl.source("numbers", VecSource::new((0..1000u64).collect()).splits(2))
        .parallelism(2)
        .map("m", |x| x + 1)
        .sink("out", sink.clone())
        .parallelism(1);
    pl.run().unwrap();
    assert_eq!(sorted(sink.records()), (1..=1000).collect::<Vec<_>>());
    assert_clean_commit_log(&sink);
}

#[test]
fn broadcast_reaches_every_downstream_subtask() {
    let n = 300u64;
    for p in [2usize, 3] {
        let sink = CollectSink::new();
        let pl = Pipeline::new("broadcast").parallelism(p).batch_size(32);
        pl.source("numbers", VecSource::new((0..n).collect()).splits(2))
            .parallelism(2)
            .broadcast()
            .map("each", |x| (x, thread_name()))
            .sink("out", sink.clone());
        pl.run().unwrap();
        let out = sink.records();
        assert_eq!(out.len() as u64, n * p as u64, "n × parallelism");
        let mut per_subtask: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (x, t) in out {
            per_subtask.entry(t).or_default().push(x);
        }
        assert_eq!(per_subtask.len(), p);
        for (t, xs) in per_subtask {
            assert_eq!(sorted(xs), (0..n).collect::<Vec<_>>(), "{t} sees every record once");
        }
    }
}

#[test]
fn union_merges_streams() {
    let sink = CollectSink::new();
    let pl = Pipeline::new("union").parallelism(2);
    let a = pl.source("a", VecSource::new((0..100u64).collect()));
    let b = pl.source("b", GeneratorSource::new(|i| 1_000 + i).bounded(50).splits(2));
    let c = pl
        .source("c", VecSource::new(vec![7u64, 7, 7]))
        .map("c-x", |x| x * 1_000_000);
    a.union(&b).union(&c).map("all", |x| x + 1).sink("out", sink.clone());
    pl.run().unwrap();
    let mut want: Vec<u64> = (0..100).chain(1_000..1_050).map(|x| x + 1).collect();
    want.extend([7_000_001; 3]);
    assert_eq!(sorted(sink.records()), sorted(want));
}

#[test]
fn union_into_a_keyed_step() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("union-keyed", backend, &dir).parallelism(2);
        let a = pl.source("a", GeneratorSource::new(|i| (i % 3, i)).bounded(300));
        let b = pl.source("b", GeneratorSource::new(|i| (i % 3, i)).bounded(150).splits(2));
        a.union(&b)
            .key_by("k", |r| r.0)
            .process("count", Count)
            .sink("out", sink.clone());
        pl.run().unwrap();
        let mut want = Vec::new();
        for k in 0..3 {
            want.extend((1..=150).map(|c| (k, c)));
        }
        assert_eq!(sorted(sink.records()), want, "{backend:?}");
    }
}

// ---- two-input steps ----------------------------------------------------------------------------

#[test]
fn connected_streams_map_and_flat_map() {
    for p in [1, 2] {
        let sink = CollectSink::new();
        let pl = Pipeline::new("connect").parallelism(p);
        let numbers = pl.source("numbers", VecSource::new((0..100u64).collect()).splits(2));
        let words = pl.source(
            "words",
            VecSource::new(vec!["a".to_string(), "bb".into(), "ccc".into()]),
        );
        numbers
            .connect(&words)
            .map("co-map", |n| format!("n{n}"), |w| format!("w{w}"))
            .sink("mapped", sink.clone());
        let flat = CollectSink::new();
        let numbers2 = pl.source("numbers2", VecSource::new((0..10u64).collect()));
        let words2 = pl.source("words2", VecSource::new(vec!["xy".to_string(), "".into(), "z".into()]));
        numbers2
            .connect(&words2)
            .flat_map(
                "co-flat",
                |n| vec![n; (n % 3) as usize],
                |w| w.chars().map(|c| c as u64).collect::<Vec<_>>(),
            )
            .sink("flat", flat.clone());
        // A stream connected with itself: every record reaches both inputs.
        let both = CollectSink::new();
        let numbers3 = pl.source("numbers3", VecSource::new((0..50u64).collect()));
        numbers3
            .connect(&numbers3)
            .map("self", |n| (0u8, n), |n| (1u8, n))
            .sink("both", both.clone());
        pl.run().unwrap();
        let want: Vec<(u8, u64)> = (0..2u8).flat_map(|i| (0..50).map(move |n| (i, n))).collect();
        assert_eq!(sorted(both.records()), want, "p {p}");
        let mut want: Vec<String> = (0..100).map(|n| format!("n{n}")).collect();
        want.extend(["wa", "wbb", "wccc"].map(String::from));
        assert_eq!(sorted(sink.records()), sorted(want), "p {p}");
        let mut want: Vec<u64> = (0..10u64).flat_map(|n| vec![n; (n % 3) as usize]).collect();
        want.extend(['x', 'y', 'z'].map(|c| c as u64));
        assert_eq!(sorted(flat.records()), sorted(want), "p {p}");
    }
}

/// Joins orders `(order, customer)` with customers `(customer, name)`: orders wait in list
/// state until their customer's name is known (value state shared by both inputs).
#[derive(Clone)]
struct Enrich;

impl KeyedCoProcess<u32, (u64, u32), (u32, String)> for Enrich {
    type Out = (u64, u32, String);
    fn process_first(&mut self, (order, _): (u64, u32), ctx: &mut KeyedContext<'_, u32, Self::Out>) -> Result<()> {
        let customer = *ctx.key();
        match ctx.value_state::<String>("name").get()? {
            Some(name) => ctx.emit((order, customer, name)),
            None => ctx.list_state::<u64>("waiting").add(&order)?,
        }
        Ok(())
    }
    fn process_second(&mut self, (_, name): (u32, String), ctx: &mut KeyedContext<'_, u32, Self::Out>) -> Result<()> {
        let customer = *ctx.key();
        ctx.value_state::<String>("name").set(&name)?;
        let mut waiting = ctx.list_state::<u64>("waiting");
        let orders = waiting.get()?;
        waiting.clear()?;
        for o in orders {
            ctx.emit((o, customer, name.clone()));
        }
        Ok(())
    }
}

#[test]
fn keyed_connect_joins_two_streams_by_key_with_shared_state() {
    let orders: Vec<(u64, u32)> = (0..2_000u64).map(|o| (o, (mix(11, o) % 60) as u32)).collect();
    // Customers 0..50 exist; orders of 50..60 never join.
    let customers: Vec<(u32, String)> = (0..50u32).rev().map(|c| (c, format!("customer-{c}"))).collect();
    let want: Vec<(u64, u32, String)> = orders
        .iter()
        .filter(|(_, c)| *c < 50)
        .map(|(o, c)| (*o, *c, format!("customer-{c}")))
        .collect();
    for backend in BACKENDS {
        for p in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let sink = CollectSink::new();
            let pl = pipeline("join", backend, &dir).parallelism(p).batch_size(64);
            let o = pl.source("orders", VecSource::new(orders.clone()).splits(3));
            let c = pl.source("customers", VecSource::new(customers.clone()).splits(2));
            o.key_by("orders-by-customer", |r| r.1)
                .connect(&c.key_by("customers-by-id", |r| r.0))
                .process("enrich", Enrich)
                .sink("out", sink.clone());
            pl.run().unwrap();
            assert_eq!(sorted(sink.records()), want, "{backend:?} p {p}");
        }
    }
}

#[test]
fn connected_streams_key_by_then_process() {
    let orders: Vec<(u64, u32)> = (0..500u64).map(|o| (o, (o % 10) as u32)).collect();
    let customers: Vec<(u32, String)> = (0..10u32).map(|c| (c, format!("c{c}"))).collect();
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let pl = pipeline("join2", backend, &dir).parallelism(2);
        let o = pl.source("orders", VecSource::new(orders.clone()));
        let c = pl.source("customers", VecSource::new(customers.clone()));
        o.connect(&c)
            .key_by("by-customer", |r| r.1, |r| r.0)
            .process("enrich", Enrich)
            .sink("out", sink.clone());
        pl.run().unwrap();
        let want: Vec<_> = orders.iter().map(|(o, c)| (*o, *c, format!("c{c}"))).collect();
        assert_eq!(sorted(sink.records()), want, "{backend:?}");
    }
}

// ---- sources ------------------------------------------------------------------------------------

#[test]
fn file_lines_source_reads_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.txt");
    std::fs::write(&file, "alpha\nbeta\r\n\ngamma delta\nlast without newline").unwrap();
    let sink = CollectSink::new();
    let pl = Pipeline::new("lines");
    pl.source("file", FileLinesSource::new(&file)).sink("out", sink.clone());
    pl.run().unwrap();
    assert_eq!(
        sink.records(),
        vec!["alpha", "beta", "", "gamma delta", "last without newline"]
    );

    // A directory stands for its files; several paths; parallelism 3 over 4 files.
    let d = dir.path().join("many");
    std::fs::create_dir(&d).unwrap();
    let mut want = Vec::new();
    for f in 0..3 {
        let lines: Vec<String> = (0..500).map(|i| format!("file {f} line {i}")).collect();
        std::fs::write(d.join(format!("part-{f}.txt")), lines.join("\n") + "\n").unwrap();
        want.extend(lines);
    }
    std::fs::create_dir(d.join("subdir-is-skipped")).unwrap();
    let extra = dir.path().join("extra.txt");
    std::fs::write(&extra, "x\ny\n").unwrap();
    want.extend(["x".to_string(), "y".to_string()]);
    let sink = CollectSink::new();
    let pl = Pipeline::new("lines-many").parallelism(3);
    pl.source("files", FileLinesSource::many([d.clone(), extra.clone()]))
        .map("len", |l: String| l)
        .sink("out", sink.clone());
    let report = pl.run().unwrap();
    assert_eq!(sorted(sink.records()), sorted(want));
    assert_eq!(report.operator("len").unwrap().records_in, 1502);
}

#[test]
fn file_lines_source_on_a_missing_path_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let pl = Pipeline::new("lines-missing");
    pl.source("file", FileLinesSource::new(dir.path().join("nope.txt")))
        .sink("out", DiscardSink::new());
    let e = pl.run().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("nope.txt"), "{e}");
}

#[test]
fn generator_source_is_deterministic_across_parallelism_and_splits() {
    let n = 10_007u64;
    let make = |i: u64| (i, mix(42, i) % 1000);
    let want: Vec<((u64, u64), Option<Timestamp>)> =
        (0..n).map(|i| (make(i), Some(1_000 + 3 * i as Timestamp))).collect();
    for splits in [1usize, 4] {
        for p in [1usize, 2, 4] {
            let sink = CollectSink::new();
            let pl = Pipeline::new("generator").parallelism(p).batch_size(100);
            pl.source(
                "gen",
                GeneratorSource::new(make)
                    .bounded(n)
                    .splits(splits)
                    .with_timestamps(|i, _| 1_000 + 3 * i as Timestamp),
            )
            .key_by("by-value", |v| v.0)
            .process("stamp", GenStamp)
            .sink("out", sink.clone());
            pl.run().unwrap();
            assert_eq!(sorted(sink.records()), want, "splits {splits} p {p}");
        }
    }
}

#[derive(Clone)]
struct GenStamp;

impl KeyedProcess<u64, (u64, u64)> for GenStamp {
    type Out = ((u64, u64), Option<Timestamp>);
    fn process(&mut self, v: (u64, u64), ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let ts = ctx.timestamp();
        ctx.emit((v, ts));
        Ok(())
    }
}

#[test]
fn vec_source_output_is_the_same_at_every_parallelism_and_split_count() {
    let items: Vec<u64> = (0..777).map(|i| mix(3, i)).collect();
    for (splits, p) in [(1, 1), (1, 3), (5, 2), (7, 7)] {
        let sink = CollectSink::new();
        let pl = Pipeline::new("vec").parallelism(p).batch_size(50);
        pl.source("v", VecSource::new(items.clone()).splits(splits))
            .sink("out", sink.clone());
        pl.run().unwrap();
        assert_eq!(sorted(sink.records()), sorted(items.clone()), "splits {splits} p {p}");
    }
}

// ---- sinks --------------------------------------------------------------------------------------

#[test]
fn collect_sink_commits_each_subtask_and_checkpoint_once() {
    for (p, sink_p) in [(1, 1), (3, 3), (3, 2), (2, 4)] {
        let sink = CollectSink::new();
        let pl = Pipeline::new("commit-log").parallelism(p).batch_size(64);
        pl.source("gen", GeneratorSource::new(|i| i).bounded(5_000).splits(4))
            .map("m", |x| x)
            .sink("out", sink.clone())
            .parallelism(sink_p);
        pl.run().unwrap();
        assert_eq!(
            sorted(sink.records()),
            (0..5_000).collect::<Vec<_>>(),
            "p {p} sink {sink_p}"
        );
        assert_clean_commit_log(&sink);
        let c = sink.collected();
        assert!(!c.commits.is_empty());
        assert!(
            c.commits.iter().all(|(s, _, n)| *s < sink_p && *n > 0),
            "{:?}",
            c.commits
        );
    }
}

#[test]
fn collect_sink_commit_log_over_many_commit_barriers() {
    let sink = CollectSink::new();
    let s2 = sink.clone();
    within(60, move || {
        let pl = Pipeline::new("many-commits")
            .parallelism(3)
            .batch_size(16)
            .checkpoint_interval(Duration::from_millis(10));
        pl.source(
            "gen",
            GeneratorSource::new(|i| i)
                .bounded(6_000)
                .splits(3)
                .rate_per_second(20_000.0),
        )
        .key_by("by-key", |x| x % 17)
        .reduce("sum", |a, b| a + b)
        .sink("out", s2)
        .parallelism(2);
        pl.run()
    })
    .unwrap();
    assert_eq!(sink.records().len(), 6_000);
    assert_clean_commit_log(&sink);
    let c = sink.collected();
    let ids: BTreeSet<CheckpointId> = c.commits.iter().map(|c| c.1).collect();
    assert!(
        ids.len() > 3,
        "a 300 ms job with a 10 ms commit interval commits often: {:?}",
        c.commits
    );
    // Each subtask commits its checkpoints in order.
    for s in 0..2 {
        let mine: Vec<CheckpointId> = c.commits.iter().filter(|c| c.0 == s).map(|c| c.1).collect();
        assert_eq!(mine, sorted(mine.clone()), "subtask {s}");
    }
}

#[test]
fn discard_sink_counts_records_and_several_sinks_get_everything() {
    let discard = DiscardSink::new();
    let collect = CollectSink::new();
    let pl = Pipeline::new("two-sinks").parallelism(2);
    let s = pl.source("gen", GeneratorSource::new(|i| i).bounded(1_234).splits(2));
    s.sink("drop", discard.clone());
    s.map("plus", |x| x + 1).sink("keep", collect.clone());
    pl.run().unwrap();
    assert_eq!(discard.count(), 1_234);
    assert_eq!(sorted(collect.records()), (1..=1_234).collect::<Vec<_>>());
}

// ---- idleness and processing-time TTL -----------------------------------------------------------

/// Records every event-time timer that fires (registered at each record's time + 5).
#[derive(Clone)]
struct EventFirings(Arc<Mutex<Vec<(u64, Timestamp, Timestamp)>>>);

impl KeyedProcess<u64, (u64, Timestamp)> for EventFirings {
    type Out = u64;
    fn process(&mut self, r: (u64, Timestamp), ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        ctx.register_event_time_timer(r.1 + 5)
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        let key = *ctx.key();
        let wm = ctx.current_watermark();
        self.0.lock().unwrap().push((key, timer.time, wm));
        Ok(())
    }
}

#[test]
fn an_idle_source_subtask_does_not_hold_back_event_time() {
    // One split, two source subtasks: subtask 1 reads nothing, forever. Declared idle, it must
    // not keep the keyed step's watermark at its minimum.
    let firings = Arc::new(Mutex::new(Vec::new()));
    let pl = Pipeline::new("idle").parallelism(2).batch_size(8);
    pl.source(
        "ticks",
        GeneratorSource::new(|i| (i % 3, i as Timestamp * 10)).rate_per_second(2_000.0),
    )
    .assign_timestamps_and_watermarks(
        WatermarkStrategy::monotonous()
            .with_timestamp_assigner(|r: &(u64, Timestamp)| r.1)
            .with_idleness(Duration::from_millis(100)),
    )
    .key_by("by-key", |r| r.0)
    .process("timers", EventFirings(firings.clone()))
    .sink("out", DiscardSink::new());
    let handle = pl.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while firings.lock().unwrap().len() < 30 {
        assert!(
            Instant::now() < deadline,
            "no event-time timer fired within 20 s: the idle subtask holds the watermark back"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    assert!(within(20, move || handle.join()).unwrap().cancelled);
    for (key, time, wm) in firings.lock().unwrap().iter() {
        assert!(
            wm >= time && *wm < MAX_WATERMARK,
            "key {key}: timer {time} at watermark {wm}"
        );
    }
}

/// `(key, op)`: op 0 writes with a 1.5 s processing-time TTL, op 1 probes.
#[derive(Clone)]
struct ProcTtl;

impl KeyedProcess<u64, (u64, u8)> for ProcTtl {
    type Out = (u64, Option<u64>);
    fn process(&mut self, (n, op): (u64, u8), ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        let ttl = Ttl::processing_time(Duration::from_millis(1_500));
        let mut st = ctx.value_state::<u64>("v").with_ttl(ttl);
        if op == 0 {
            st.set(&n)?;
        } else {
            let v = st.get()?;
            ctx.emit((n, v));
        }
        Ok(())
    }
}

/// Emits `first`, then waits at least `pause` (wall clock), then emits `then`.
#[derive(Clone)]
struct TwoBursts {
    first: Vec<(u64, u8)>,
    then: Vec<(u64, u8)>,
    pause: Duration,
}

struct TwoBurstsReader {
    src: TwoBursts,
    mine: bool,
    stage: u8,
    first_done: Option<Instant>,
}

impl Source for TwoBursts {
    type Out = (u64, u8);
    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok(vec!["only".to_string()])
    }
    fn create_reader(&self, splits: Vec<AssignedSplit>, _: SubtaskInfo) -> Result<Box<dyn SourceReader<(u64, u8)>>> {
        Ok(Box::new(TwoBurstsReader {
            src: self.clone(),
            mine: !splits.is_empty(),
            stage: 0,
            first_done: None,
        }))
    }
}

impl SourceReader<(u64, u8)> for TwoBurstsReader {
    fn poll(&mut self, out: &mut Vec<Record<(u64, u8)>>, _max: usize) -> Result<ReadStatus> {
        if !self.mine {
            return Ok(ReadStatus::Finished);
        }
        match self.stage {
            0 => {
                out.extend(self.src.first.iter().cloned().map(Record::new));
                self.stage = 1;
                self.first_done = Some(Instant::now());
                Ok(ReadStatus::Pending(Duration::from_millis(5)))
            }
            1 if self.first_done.unwrap().elapsed() < self.src.pause => {
                Ok(ReadStatus::Pending(Duration::from_millis(5)))
            }
            1 => {
                out.extend(self.src.then.iter().cloned().map(Record::new));
                self.stage = 2;
                Ok(ReadStatus::Finished)
            }
            _ => Ok(ReadStatus::Finished),
        }
    }
    fn positions(&self) -> Vec<SplitPosition> {
        Vec::new()
    }
}

#[test]
fn processing_time_ttl_expires_after_its_duration() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let s2 = sink.clone();
        within(30, move || {
            let pl = pipeline("proc-ttl", backend, &dir).parallelism(2);
            pl.source(
                "bursts",
                TwoBursts {
                    // Written and probed at once (well within the 1.5 s TTL, even on a loaded
                    // machine)...
                    first: vec![(1, 0), (2, 0), (1, 1), (2, 1)],
                    // ...and probed again after at least 3 s.
                    then: vec![(1, 1), (2, 1), (3, 0), (3, 1)],
                    pause: Duration::from_millis(3_000),
                },
            )
            .key_by("by-key", |r| r.0)
            .process("ttl", ProcTtl)
            .sink("out", s2);
            pl.run()
        })
        .unwrap();
        assert_eq!(
            sorted(sink.records()),
            vec![(1, None), (1, Some(1)), (2, None), (2, Some(2)), (3, Some(3))],
            "{backend:?}"
        );
    }
}

#[test]
fn keyed_steps_whose_names_differ_only_in_punctuation_keep_separate_state() {
    // Step names are unique, but "count a", "count_a" and "count/a" look alike once made safe
    // for a path: their stores (and their checkpoint snapshots) must still be separate.
    for (backend, checkpoints) in [
        (Backend::Memory, false),
        (Backend::Rocks, false),
        (Backend::Memory, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sink = CollectSink::new();
        let s2 = sink.clone();
        let result = within(60, move || {
            let mut pl = pipeline("look-alike", backend, &dir).parallelism(2);
            if checkpoints {
                pl = pl.checkpoint_storage(dir.path().join("checkpoints"));
            }
            pl.source("events", GeneratorSource::new(|i| (i % 5, i)).bounded(100))
                .key_by("k1", |r| r.0)
                .process("count a", Count)
                .key_by("k2", |r| r.0)
                .process("count_a", Count)
                .key_by("k3", |r| r.0)
                .process("count/a", Count)
                .sink("out", s2);
            pl.run()
        });
        let what = format!("{backend:?}, checkpoint storage: {checkpoints}");
        assert!(result.is_ok(), "{what}: {}", result.unwrap_err());
        let mut want = Vec::new();
        for k in 0..5u64 {
            want.extend((1..=20).map(|c| (k, c)));
        }
        assert_eq!(sorted(sink.records()), want, "{what}");
    }
}
