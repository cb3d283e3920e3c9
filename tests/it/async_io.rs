//! Async I/O (`async_map`) against a real local service: a Tokio TCP server on loopback that
//! answers each number after a random latency, counts the calls per number and the calls in
//! progress. The committed output is compared with a sequential model; failures are injected
//! while requests are in flight, and the job is restored and rescaled with requests in flight.
//!
//! Calls are at least once (a record in flight at a failure is called again), results exactly
//! once: the tests count results, not calls.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::generator::mix;
use weir::prelude::*;

use crate::common::within;

/// The service's answer for `i` (what the sequential model computes).
fn model(i: u64) -> u64 {
    i * 3 + 1
}

/// How the service behaves for a number.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Latency: 0..=max_latency_ms, random per call.
    max_latency_ms: u64,
    /// Numbers divisible by this answer after `slow` (for timeouts); 0: none.
    slow_every: u64,
    slow: Duration,
    /// Numbers divisible by this fail their first call (then succeed); 0: none.
    flaky_every: u64,
    /// Numbers divisible by this always fail; 0: none.
    broken_every: u64,
}

impl Behaviour {
    fn latency(max_latency_ms: u64) -> Self {
        Behaviour {
            max_latency_ms,
            slow_every: 0,
            slow: Duration::ZERO,
            flaky_every: 0,
            broken_every: 0,
        }
    }
}

fn divides(every: u64, i: u64) -> bool {
    every != 0 && i.is_multiple_of(every)
}

/// A TCP service on loopback: one request per connection, `"<n>\n"` in, `"<answer>\n"` or
/// `"error\n"` out.
struct Service {
    addr: SocketAddr,
    calls: Arc<Mutex<BTreeMap<u64, u64>>>,
    max_concurrent: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Service {
    fn start(behaviour: Behaviour) -> Service {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
        let max_concurrent = Arc::new(AtomicUsize::new(0));
        let concurrent = Arc::new(AtomicUsize::new(0));
        let serial = Arc::new(AtomicU64::new(0));
        let (c, m) = (calls.clone(), max_concurrent.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (calls, max_concurrent, concurrent, serial) =
                    (c.clone(), m.clone(), concurrent.clone(), serial.clone());
                tokio::spawn(async move {
                    let Ok(line) = read_line(&stream).await else { return };
                    let Ok(i) = line.trim().parse::<u64>() else { return };
                    let now = concurrent.fetch_add(1, Ordering::SeqCst) + 1;
                    max_concurrent.fetch_max(now, Ordering::SeqCst);
                    let nth = {
                        let mut g = calls.lock().unwrap();
                        let n = g.entry(i).or_default();
                        *n += 1;
                        *n
                    };
                    let r = mix(0xA51C, serial.fetch_add(1, Ordering::Relaxed));
                    let mut wait = Duration::from_millis(r % (behaviour.max_latency_ms + 1));
                    if divides(behaviour.slow_every, i) {
                        wait = behaviour.slow;
                    }
                    tokio::time::sleep(wait).await;
                    concurrent.fetch_sub(1, Ordering::SeqCst);
                    let failed = divides(behaviour.broken_every, i) || (divides(behaviour.flaky_every, i) && nth == 1);
                    let answer = if failed {
                        "error\n".to_string()
                    } else {
                        format!("{}\n", model(i))
                    };
                    let _ = write_all(&stream, answer.as_bytes()).await;
                });
            }
        });
        Service {
            addr,
            calls,
            max_concurrent,
            _runtime: runtime,
        }
    }

    fn calls(&self) -> BTreeMap<u64, u64> {
        self.calls.lock().unwrap().clone()
    }
}

async fn read_line(stream: &tokio::net::TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    while !buf.ends_with(b"\n") {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn write_all(stream: &tokio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The client: looks a number up in the service. With `fallback`, a timed-out request gives
/// `(i, u64::MAX)`.
#[derive(Clone)]
struct Lookup {
    addr: SocketAddr,
    fallback: bool,
    opened: Arc<AtomicUsize>,
}

impl Lookup {
    fn new(service: &Service) -> Self {
        Lookup {
            addr: service.addr,
            fallback: false,
            opened: Arc::default(),
        }
    }
}

impl AsyncFunction<u64> for Lookup {
    type Out = (u64, u64);

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        assert!(ctx.subtask < ctx.parallelism);
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn call(&self, i: u64) -> impl Future<Output = Result<Vec<(u64, u64)>>> + Send {
        let addr = self.addr;
        async move {
            let io = |e: std::io::Error| Error::external(true, format!("calling the service for {i}: {e}"));
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
            write_all(&stream, format!("{i}\n").as_bytes()).await.map_err(io)?;
            let line = read_line(&stream).await.map_err(io)?;
            match line.trim().parse::<u64>() {
                Ok(v) => Ok(vec![(i, v)]),
                Err(_) => Err(Error::external(true, format!("the service failed for {i}"))),
            }
        }
    }

    fn timeout(&self, i: u64) -> Result<Vec<(u64, u64)>> {
        if self.fallback {
            Ok(vec![(i, u64::MAX)])
        } else {
            Err(Error::user(format!("no answer for {i}")))
        }
    }
}

fn expected(n: u64) -> Vec<(u64, u64)> {
    (0..n).map(|i| (i, model(i))).collect()
}

#[test]
fn ordered_results_follow_the_input_and_calls_stay_within_capacity() {
    const N: u64 = 600;
    let service = Service::start(Behaviour::latency(8));
    let lookup = Lookup::new(&service);
    let opened = lookup.opened.clone();
    let sink = CollectSink::new();
    let s = sink.clone();
    within(120, move || {
        let p = Pipeline::new("async-ordered").parallelism(1);
        p.source("numbers", GeneratorSource::new(|i| i).bounded(N))
            .async_map(
                "lookup",
                lookup,
                AsyncOptions::ordered(Duration::from_secs(10)).capacity(6),
            )
            .sink("out", s);
        p.run().unwrap()
    });
    // In input order, exactly the model.
    assert_eq!(sink.records(), expected(N));
    let max = service.max_concurrent.load(Ordering::SeqCst);
    assert!(max <= 6, "{max} calls at once with capacity 6");
    assert!(
        max >= 2,
        "requests overlapped ({max} at most): the step did not wait for each"
    );
    assert!(
        service.calls().values().all(|&n| n == 1),
        "one call per record without failures"
    );
    assert_eq!(opened.load(Ordering::SeqCst), 1, "opened once per subtask");
}

/// Unordered results, followed by event-time windows: a result that overtook the watermark
/// after its record would be late, dropped from its window, and the per-window counts and sums
/// would differ from the model's.
#[test]
fn unordered_results_stay_between_watermarks() {
    const N: u64 = 1_200;
    const WINDOW: u64 = 40;
    let service = Service::start(Behaviour::latency(15));
    let lookup = Lookup::new(&service);
    let sink = CollectSink::new();
    let s = sink.clone();
    within(120, move || {
        let p = Pipeline::new("async-unordered").parallelism(2);
        p.source(
            "numbers",
            GeneratorSource::new(|i| i)
                .bounded(N)
                .splits(2)
                .rate_per_second(20_000.0),
        )
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO).with_timestamp_assigner(|i: &u64| *i as i64),
        )
        .async_map(
            "lookup",
            lookup,
            AsyncOptions::unordered(Duration::from_secs(10)).capacity(16),
        )
        .key_by("by-window", |(i, _): &(u64, u64)| i / WINDOW)
        .window(TumblingEventTime::of(Duration::from_millis(WINDOW)))
        .aggregate("count-sum", CountSum)
        .sink("out", s);
        p.run().unwrap()
    });
    let got: BTreeMap<u64, (u64, u64)> = sink.records().into_iter().map(|w| (w.key, w.value)).collect();
    let mut want: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for i in 0..N {
        let e = want.entry(i / WINDOW).or_default();
        e.0 += 1;
        e.1 += model(i);
    }
    assert_eq!(got, want, "every result in its window: none overtook a watermark");
}

#[derive(Clone)]
struct CountSum;

impl AggregateFunction<(u64, u64)> for CountSum {
    type Acc = (u64, u64);
    type Out = (u64, u64);
    fn create(&self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (u64, u64), v: &(u64, u64)) {
        acc.0 += 1;
        acc.1 += v.1;
    }
    fn merge(&self, a: &mut (u64, u64), b: (u64, u64)) {
        a.0 += b.0;
        a.1 += b.1;
    }
    fn result(&self, acc: &(u64, u64)) -> (u64, u64) {
        *acc
    }
}

fn slow_service() -> Service {
    Service::start(Behaviour {
        slow_every: 25,
        slow: Duration::from_secs(3),
        ..Behaviour::latency(2)
    })
}

#[test]
fn a_timed_out_request_gives_the_fallback() {
    const N: u64 = 200;
    let service = slow_service();
    let mut lookup = Lookup::new(&service);
    lookup.fallback = true;
    let sink = CollectSink::new();
    let s = sink.clone();
    let report = within(120, move || {
        let p = Pipeline::new("async-timeout-fallback").parallelism(1);
        p.source("numbers", GeneratorSource::new(|i| i).bounded(N))
            .async_map(
                "lookup",
                lookup,
                AsyncOptions::ordered(Duration::from_millis(150)).capacity(8),
            )
            .sink("out", s);
        p.run().unwrap()
    });
    let want: Vec<(u64, u64)> = (0..N)
        .map(|i| (i, if i % 25 == 0 { u64::MAX } else { model(i) }))
        .collect();
    assert_eq!(sink.records(), want);
    let counters = &report.operator("lookup").unwrap().counters;
    assert_eq!(counters.get("async_timeouts"), Some(&(N / 25)));
}

#[test]
fn a_timed_out_request_without_fallback_fails_the_job_naming_the_step() {
    let service = slow_service();
    let lookup = Lookup::new(&service);
    let err = within(120, move || {
        let p = Pipeline::new("async-timeout-fail")
            .parallelism(1)
            .restart_strategy(RestartStrategy::None);
        p.source("numbers", GeneratorSource::new(|i| i).bounded(100))
            .async_map("lookup", lookup, AsyncOptions::ordered(Duration::from_millis(150)))
            .sink("out", DiscardSink::new());
        p.run().unwrap_err()
    });
    let msg = err.to_string();
    assert!(msg.contains("async step \"lookup\""), "{msg}");
    assert!(msg.contains("did not complete within 150ms"), "{msg}");
    assert!(msg.contains("no answer for"), "{msg}");
}

/// A flaky number succeeds on its retry; a broken one goes to the dead letters after its
/// attempts; the rest is the model.
#[test]
fn failed_calls_are_retried_then_handled_by_the_bad_record_policy() {
    const N: u64 = 300;
    let service = Service::start(Behaviour {
        flaky_every: 7,
        broken_every: 11,
        ..Behaviour::latency(3)
    });
    let lookup = Lookup::new(&service);
    let (out, dead) = (CollectSink::new(), CollectSink::new());
    let (o, d) = (out.clone(), dead.clone());
    let report = within(120, move || {
        let p = Pipeline::new("async-retries").parallelism(2);
        let results = p
            .source("numbers", GeneratorSource::new(|i| i).bounded(N).splits(2))
            .async_map(
                "lookup",
                lookup,
                AsyncOptions::unordered(Duration::from_secs(10))
                    .retry(RetryStrategy::exponential(
                        3,
                        Duration::from_millis(1),
                        Duration::from_millis(4),
                        2.0,
                    ))
                    .on_error(BadRecordPolicy::DeadLetter),
            );
        results.sink("out", o);
        results
            .dead_letters::<u64>()
            .map("dead-ids", |l: DeadLetter<u64>| {
                assert_eq!(l.step, "lookup");
                l.record
            })
            .sink("dead", d);
        p.run().unwrap()
    });
    let want: Vec<(u64, u64)> = expected(N).into_iter().filter(|(i, _)| i % 11 != 0).collect();
    assert_eq!(crate::common::sorted(out.records()), want);
    assert_eq!(
        crate::common::sorted(dead.records()),
        (0..N).filter(|i| i % 11 == 0).collect::<Vec<_>>()
    );
    let calls = service.calls();
    assert!(
        (0..N).filter(|i| i % 11 == 0).all(|i| calls[&i] == 3),
        "3 attempts per broken number"
    );
    let counters = &report.operator("lookup").unwrap().counters;
    assert_eq!(counters.get("dead_letters"), Some(&(N.div_ceil(11))));
    let flaky_only = (0..N).filter(|i| i % 7 == 0 && i % 11 != 0).count() as u64;
    assert_eq!(counters.get("async_retries"), Some(&(flaky_only + 2 * N.div_ceil(11))));
}

/// Checks that every number's result was committed exactly once, with the model's value.
fn assert_exactly_once(results: Vec<(u64, u64)>, n: u64, ctx: &str) {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, v) in results {
        assert_eq!(v, model(i), "{ctx}: wrong result for {i}");
        assert!(seen.insert(i, v).is_none(), "{ctx}: result of {i} committed twice");
    }
    let missing: Vec<u64> = (0..n).filter(|i| !seen.contains_key(i)).take(10).collect();
    assert!(missing.is_empty(), "{ctx}: results lost, e.g. {missing:?}");
}

/// Failures strike right after a record's request was issued (more are in flight: the
/// service is slow and the capacity large); the job restores the latest checkpoint, whose
/// state holds the records in flight at its barrier, and calls them again.
#[test]
fn results_are_exactly_once_after_failures_with_requests_in_flight() {
    for order in [ResultOrder::Ordered, ResultOrder::Unordered] {
        const N: u64 = 3_000;
        let service = Service::start(Behaviour::latency(25));
        let lookup = Lookup::new(&service);
        let sink = CollectSink::new();
        let s = sink.clone();
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let report = within(180, move || {
            let points = FailPoints::new();
            points.arm(fail::PROCESS_RECORD, 700, FailAction::Error);
            let p = Pipeline::new("async-exactly-once")
                .fail_points(points.clone())
                .parallelism(2)
                .checkpoint_storage(checkpoints)
                .checkpoint_interval(Duration::from_millis(20))
                .restart_strategy(RestartStrategy::FixedDelay {
                    max_attempts: 5,
                    delay: Duration::from_millis(1),
                });
            let options = AsyncOptions {
                order,
                ..AsyncOptions::ordered(Duration::from_secs(10)).capacity(32)
            };
            p.source(
                "numbers",
                GeneratorSource::new(|i| i)
                    .bounded(N)
                    .splits(4)
                    .rate_per_second(3_000.0),
            )
            .async_map("lookup", lookup, options)
            .sink("out", s);
            let handle = p.start().unwrap();
            // A second failure once the first restore has run for a while.
            while handle.progress().restarts < 1 && !handle.is_finished() {
                std::thread::sleep(Duration::from_millis(5));
            }
            points.arm(fail::PROCESS_RECORD, 900, FailAction::Panic);
            handle.join().unwrap()
        });
        let ctx = format!("{order:?}");
        assert_eq!(report.restarts, 2, "{ctx}: both failures restarted the job");
        assert!(
            report.restores.iter().all(|r| r.checkpoint.is_some()),
            "{ctx}: restored checkpoints"
        );
        assert_exactly_once(sink.records(), N, &ctx);
        let counters = &report.operator("lookup").unwrap().counters;
        assert!(
            counters.get("async_restored_records").copied().unwrap_or(0) > 0,
            "{ctx}: the restored checkpoints held records in flight: {counters:?}"
        );
        let calls = service.calls();
        assert_eq!(calls.len() as u64, N, "{ctx}: every number called");
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Answer {
    i: u64,
    v: u64,
}

fn rescale_pipeline(dir: &Path, service: &Service, parallelism: usize, rate: f64, n: u64) -> Pipeline {
    let p = Pipeline::new("async-rescale")
        .parallelism(parallelism)
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(25));
    p.source(
        "numbers",
        GeneratorSource::new(|i| i).bounded(n).splits(4).rate_per_second(rate),
    )
    .async_map(
        "lookup",
        Lookup::new(service),
        AsyncOptions::unordered(Duration::from_secs(10)).capacity(24),
    )
    .map("to-line", |(i, v)| Answer { i, v })
    .sink("out", FileSink::exactly_once(dir.join("out")));
    p
}

/// Stages at parallelism 2 → 3 → 1, each but the last cancelled after a checkpoint that holds
/// requests in flight; each later stage restores it at another parallelism.
#[test]
fn rescaling_shares_out_the_requests_in_flight() {
    const N: u64 = 4_000;
    let service = Service::start(Behaviour::latency(40));
    let dir = tempfile::tempdir().unwrap();
    let shapes = [2usize, 3, 1];
    let mut restored_records = Vec::new();
    let mut after = 0u64;
    for (n, &parallelism) in shapes.iter().enumerate() {
        let last = n + 1 == shapes.len();
        let rate = if last { 50_000.0 } else { 1_500.0 };
        let handle = rescale_pipeline(dir.path(), &service, parallelism, rate, N)
            .start()
            .unwrap();
        let report = if last {
            within(120, move || handle.join().unwrap())
        } else {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let pr = handle.progress();
                if pr.source_records >= (n as u64 + 1) * N / 4
                    && pr.last_checkpoint.is_some_and(|(id, _)| id.get() > after)
                {
                    break;
                }
                assert!(!handle.is_finished(), "stage {n} ended before it was stopped");
                assert!(Instant::now() < deadline, "stage {n} made no checkpoint");
                std::thread::sleep(Duration::from_millis(5));
            }
            handle.cancel();
            let report = handle.join().unwrap();
            assert!(report.cancelled);
            after = report.checkpoints.iter().map(|c| c.id.get()).max().unwrap_or(after);
            report
        };
        if n > 0 {
            assert!(report.restored_from.is_some(), "stage {n} restored a checkpoint");
        }
        let counters = &report.operator("lookup").unwrap().counters;
        restored_records.push(counters.get("async_restored_records").copied().unwrap_or(0));
    }
    assert!(
        restored_records[1..].iter().any(|&r| r > 0),
        "a rescaled stage restored records in flight: {restored_records:?}"
    );
    let results = weir::engine::sink::read_committed_lines(dir.path().join("out"))
        .unwrap()
        .into_iter()
        .map(|line| {
            let r: Answer = serde_json::from_str(&line).unwrap();
            (r.i, r.v)
        })
        .collect();
    assert_exactly_once(results, N, &format!("through {shapes:?}"));
}
