//! The benchmarked job: a keyed running count with ~1 KiB of incompressible state per key, fed
//! by a source whose input arrives on a wall-clock schedule, into an exactly-once file sink.
//!
//! Event `i` is `(i, key(i))`. Events `0..keys` are the preload: one per key, all available at
//! once, so the job starts with `keys` KiB of keyed state. Event `keys + j` becomes available at
//! `origin + j / rate` (wall clock), whether the job is up or not: after a failure the missed
//! input waits as a backlog, as it would in Kafka, and the restarted job catches up.
//! The origin is set once the preload is processed and is handed to restarted processes.
//!
//! The keyed operator emits `(id, count)` for every steady event: the number of events of that
//! key so far (preload included). Committed output therefore shows whether each event's effect
//! was committed exactly once, and whether the state it saw had every earlier effect once.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_engine::prelude::*;
use weir_engine::source::generator::mix;

/// Bytes of padding in each key's state.
pub const VALUE_BYTES: usize = 1024;
/// Seed of the key sequence.
const SEED: u64 = 0x5EED_4EC0;

/// Microseconds since the epoch (all processes of a run share this clock).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The key of event `id`.
pub fn key_of(id: u64, keys: u64) -> u64 {
    if id < keys {
        id
    } else {
        mix(SEED, id) % keys
    }
}

/// What the source, the operator and the process's sampler share (one per process).
#[derive(Debug, Default)]
pub struct Shared {
    /// When steady event `keys` becomes available, µs since the epoch (0: not yet).
    pub origin_us: AtomicU64,
    /// Exclusive end of the input once the run is told to stop (0: unbounded).
    pub end: AtomicU64,
    /// Read position of every split (events handed out), for the replay phase.
    pub positions: Vec<AtomicU64>,
    /// Position of every split when its latest reader was created (restored or fresh).
    pub restored: Vec<AtomicU64>,
    /// Events processed by the keyed operator (replays included), for throughput.
    pub processed: AtomicU64,
    /// Preload events processed.
    pub preloaded: AtomicU64,
    /// Sum and count of the latency (availability → processed) of steady events, µs.
    pub latency_sum_us: AtomicU64,
    pub latency_n: AtomicU64,
    /// Set to make the next event panic in the keyed operator (once).
    pub panic_requested: AtomicBool,
    /// When the requested panic happened, µs since the epoch (0: not yet).
    pub panicked_at_us: AtomicU64,
}

impl Shared {
    pub fn new(splits: usize) -> Arc<Self> {
        Arc::new(Shared {
            positions: (0..splits).map(|_| AtomicU64::new(0)).collect(),
            restored: (0..splits).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        })
    }

    /// Events read by all sources (sum of split positions), replays excluded.
    pub fn position(&self) -> u64 {
        self.positions.iter().map(|p| p.load(Ordering::Relaxed)).sum()
    }

    /// Where the latest readers started (the restored checkpoint's position after a restore).
    pub fn restored_position(&self) -> u64 {
        self.restored.iter().map(|p| p.load(Ordering::Relaxed)).sum()
    }
}

/// What defines the job (the same in every process of a run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub keys: u64,
    pub rate: f64,
    pub parallelism: usize,
    pub checkpoint_ms: u64,
    pub rocksdb: bool,
    pub restart_delay_ms: u64,
    pub state_dir: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub output_dir: PathBuf,
}

impl JobSpec {
    /// Index of the first event not yet available at `now_us` (steady events only count once
    /// the origin is set).
    pub fn available(&self, origin_us: u64, now_us: u64) -> u64 {
        if origin_us == 0 {
            return self.keys;
        }
        let secs = now_us.saturating_sub(origin_us) as f64 / 1e6;
        self.keys + (secs * self.rate) as u64
    }

    /// When event `id` (steady) became available, µs since the epoch.
    pub fn available_at_us(&self, origin_us: u64, id: u64) -> u64 {
        origin_us + ((id - self.keys) as f64 / self.rate * 1e6) as u64
    }
}

/// The input: events on the wall-clock schedule of [`JobSpec`], in `parallelism` splits (split
/// `k` of `n` holds events `k, k + n, …`; its offset is how many it handed out).
pub struct ScheduledSource {
    spec: JobSpec,
    shared: Arc<Shared>,
}

impl ScheduledSource {
    pub fn new(spec: JobSpec, shared: Arc<Shared>) -> Self {
        ScheduledSource { spec, shared }
    }
}

impl Source for ScheduledSource {
    type Out = (u64, u64);

    fn splits(&self) -> Result<Vec<SplitId>> {
        let n = self.spec.parallelism;
        Ok((0..n).map(|k| format!("sched-{k}-of-{n}")).collect())
    }

    fn create_reader(
        &self,
        splits: Vec<AssignedSplit>,
        _subtask: SubtaskInfo,
    ) -> Result<Box<dyn SourceReader<(u64, u64)>>> {
        let n = self.spec.parallelism as u64;
        let mut parsed = Vec::new();
        for AssignedSplit { id, offset, .. } in splits {
            let k: usize = id
                .strip_prefix("sched-")
                .and_then(|s| s.split("-of-").next())
                .and_then(|s| s.parse().ok())
                .filter(|_| id.ends_with(&format!("-of-{n}")))
                .ok_or_else(|| Error::config(format!("split {id} is not one of this source's")))?;
            let offset = offset.unwrap_or(0);
            // A restored reader starts where its checkpoint left off.
            self.shared.positions[k].store(offset, Ordering::Relaxed);
            self.shared.restored[k].store(offset, Ordering::Relaxed);
            parsed.push((id, k, offset));
        }
        Ok(Box::new(ScheduledReader {
            spec: self.spec.clone(),
            shared: self.shared.clone(),
            splits: parsed,
            stride: n,
        }))
    }
}

struct ScheduledReader {
    spec: JobSpec,
    shared: Arc<Shared>,
    /// (split id, split index k, offset).
    splits: Vec<(SplitId, usize, u64)>,
    stride: u64,
}

impl SourceReader<(u64, u64)> for ScheduledReader {
    fn poll(&mut self, out: &mut Vec<Record<(u64, u64)>>, max: usize) -> Result<ReadStatus> {
        let origin = self.shared.origin_us.load(Ordering::Relaxed);
        let end = match self.shared.end.load(Ordering::Relaxed) {
            0 => u64::MAX,
            e => e,
        };
        let available = self.spec.available(origin, now_us()).min(end);
        let mut budget = max;
        let mut finished = true;
        for (_, k, offset) in &mut self.splits {
            let mut next = *k as u64 + *offset * self.stride;
            while budget > 0 && next < available {
                out.push(Record {
                    value: (next, key_of(next, self.spec.keys)),
                    timestamp: None,
                });
                *offset += 1;
                next += self.stride;
                budget -= 1;
            }
            self.shared.positions[*k].store(*offset, Ordering::Relaxed);
            finished &= next >= end;
        }
        Ok(if finished {
            ReadStatus::Finished
        } else if budget == 0 {
            ReadStatus::More
        } else {
            ReadStatus::Pending(Duration::from_millis(1))
        })
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits
            .iter()
            .map(|(split, _, offset)| SplitPosition {
                split: split.clone(),
                offset: *offset,
                event_time: None,
                state: None,
            })
            .collect()
    }
}

/// The keyed running count with ~1 KiB of incompressible padding per key.
#[derive(Clone)]
pub struct RunningCount {
    spec: JobSpec,
    shared: Arc<Shared>,
}

impl KeyedProcess<u64, (u64, u64)> for RunningCount {
    type Out = (u64, u64);

    fn process(&mut self, (id, _key): (u64, u64), ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        let s = &self.shared;
        if s.panic_requested.swap(false, Ordering::SeqCst) {
            s.panicked_at_us.store(now_us(), Ordering::SeqCst);
            panic!("injected failure: a keyed subtask panics (recovery benchmark)");
        }
        let mut st = ctx.value_state::<(u64, Vec<u8>)>("count");
        let count = st.get()?.map(|(c, _)| c).unwrap_or(0) + 1;
        let pad: Vec<u8> = (0..VALUE_BYTES as u64 / 8)
            .flat_map(|i| mix(id ^ count, i).to_le_bytes())
            .collect();
        st.set(&(count, pad))?;
        s.processed.fetch_add(1, Ordering::Relaxed);
        if id < self.spec.keys {
            s.preloaded.fetch_add(1, Ordering::Relaxed);
        } else {
            let origin = s.origin_us.load(Ordering::Relaxed);
            let latency = now_us().saturating_sub(self.spec.available_at_us(origin, id));
            s.latency_sum_us.fetch_add(latency, Ordering::Relaxed);
            s.latency_n.fetch_add(1, Ordering::Relaxed);
            ctx.emit((id, count));
        }
        Ok(())
    }
}

/// The job: source → key by → running count → exactly-once files of `id count` lines.
pub fn pipeline(spec: &JobSpec, shared: &Arc<Shared>) -> Pipeline {
    let mut p = Pipeline::new("recovery-bench")
        .parallelism(spec.parallelism)
        .checkpoint_storage(&spec.checkpoint_dir)
        .checkpoint_interval(Duration::from_millis(spec.checkpoint_ms))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 100,
            delay: Duration::from_millis(spec.restart_delay_ms),
        });
    p = if spec.rocksdb {
        p.state_backend(RocksDbBackend::new(&spec.state_dir))
    } else {
        p.state_backend(MemoryBackend::new())
    };
    p.source("input", ScheduledSource::new(spec.clone(), shared.clone()))
        .key_by("by-key", |(_, k): &(u64, u64)| *k)
        .process(
            "count",
            RunningCount {
                spec: spec.clone(),
                shared: shared.clone(),
            },
        )
        .sink(
            "out",
            FileSink::exactly_once(&spec.output_dir).with_formatter(|(id, n): &(u64, u64)| format!("{id} {n}")),
        );
    p
}
