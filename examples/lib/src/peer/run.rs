//! One run of the peer workload: builds the job from the arguments, samples its progress
//! every `sample_ms`, and prints `weir <key>=<value>` lines with the figures of
//! `PaymentSumJob.java` under the same names.

use super::args::Args;
use super::figures::{p50_max, peak_rss_mb, CpuTicks, Timeline};
use super::probe::Probe;
use super::workload::{event_index, expected, fail_once, payment, Payment, RunningSum};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use weir_engine::prelude::*;
use weir_engine::wall_clock::now_ms;

/// The settings of one run, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events generated (bounded input).
    pub events: u64,
    /// Distinct accounts.
    pub keys: u64,
    /// Extra bytes of state per account.
    pub pad: usize,
    /// Parallelism of every step (and splits of the generator).
    pub parallelism: usize,
    /// Checkpoints every `interval_ms` when set.
    pub checkpoint_interval: Option<Duration>,
    /// Whether state lives in memory rather than RocksDB.
    pub memory: bool,
    /// The event at which the fail-once map fails.
    pub fail_at: Option<u64>,
    /// Whether to check the final per-key sums.
    pub verify: bool,
    /// Progress sampling period.
    pub sample: Duration,
    /// When the launcher started this process (ms since the epoch; 0: unknown).
    pub launch_ms: u64,
    /// Where to write the progress samples as CSV.
    pub timeline: Option<PathBuf>,
    /// Cancel the job this long after the replay caught up (0: run to the end).
    pub stop_after_catchup_ms: u64,
    /// A label for the output.
    pub tag: String,
    /// The write-back state cache of each RocksDB store, MiB (`None`: the backend's default).
    pub state_cache_mb: Option<u64>,
    /// What a RocksDB snapshot does with the memtable (`None`: the backend's default).
    pub memtable_at_barrier: Option<MemtableAtBarrier>,
    /// Batches in flight per channel (`None`: the engine's default).
    pub channel_capacity: Option<usize>,
    /// Working directory for state and checkpoints.
    pub work: PathBuf,
}

impl Settings {
    /// Checks and converts the arguments.
    ///
    /// # Errors
    /// A value that does not parse or makes no sense (no events, no keys, an unknown backend).
    pub fn from_args(a: &Args) -> anyhow::Result<Self> {
        let memory = match a.str("backend") {
            "rocksdb" => false,
            "memory" | "hashmap" => true,
            b => anyhow::bail!("backend={b:?}: expected rocksdb or memory"),
        };
        let events: u64 = a.num("events")?;
        let keys: u64 = a.num("keys")?;
        anyhow::ensure!(events > 0 && keys > 0, "events and keys must be positive");
        let fail_at: i64 = a.num("fail_at")?;
        let interval_ms: u64 = a.num("interval_ms")?;
        Ok(Settings {
            events,
            keys,
            pad: a.num("pad")?,
            parallelism: a.num::<usize>("parallelism")?.max(1),
            checkpoint_interval: a
                .flag("checkpointing")?
                .then(|| Duration::from_millis(interval_ms.max(1))),
            memory,
            fail_at: (fail_at >= 0).then_some(fail_at as u64),
            verify: a.flag("verify")?,
            sample: Duration::from_millis(a.num::<u64>("sample_ms")?.max(1)),
            launch_ms: a.num("launch_ms")?,
            timeline: Some(a.str("timeline")).filter(|s| !s.is_empty()).map(PathBuf::from),
            stop_after_catchup_ms: a.num("stop_after_catchup_ms")?,
            tag: a.str("tag").to_string(),
            state_cache_mb: match a.str("state_cache_mb") {
                "" => None,
                _ => Some(a.num("state_cache_mb")?),
            },
            memtable_at_barrier: match a.str("memtable_at_barrier") {
                "" => None,
                s => Some(s.parse()?),
            },
            channel_capacity: match a.str("channel_capacity") {
                "" => None,
                _ => Some(a.num("channel_capacity")?),
            },
            work: PathBuf::from(a.str("work")),
        })
    }
}

/// Prints one figure.
fn out(key: &str, value: impl std::fmt::Display) {
    println!("weir {key}={value}");
}

/// Deletes and recreates `dir`.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("deleting {}: {e}", dir.display()),
    }
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))
}

/// The job of `s`, reporting to `probe`.
fn pipeline(s: &Settings, probe: &Arc<Probe>) -> anyhow::Result<Pipeline> {
    let ckpt_dir = s.work.join("ckpt");
    let state_dir = s.work.join("rocksdb");
    fresh_dir(&ckpt_dir)?;
    fresh_dir(&state_dir)?;
    let mut p = Pipeline::new(format!("peer-{}", s.tag))
        .parallelism(s.parallelism)
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 3,
            delay: Duration::ZERO,
        });
    p = if s.memory {
        p.state_backend(MemoryBackend::new())
    } else {
        let mut rocks = RocksDbBackend::new(&state_dir);
        if let Some(mb) = s.state_cache_mb {
            rocks = rocks.cache_size((mb as usize) << 20);
        }
        if let Some(choice) = s.memtable_at_barrier {
            rocks = rocks.memtable_at_barrier(choice);
        }
        p.state_backend(rocks)
    };
    if let Some(interval) = s.checkpoint_interval {
        p = p.checkpoint_storage(&ckpt_dir).checkpoint_interval(interval);
    }
    if let Some(n) = s.channel_capacity {
        p = p.channel_capacity(n);
    }
    let (events, keys, splits) = (s.events, s.keys, s.parallelism as u64);
    let source = GeneratorSource::new(move |n| payment(event_index(n, events, splits), keys))
        .bounded(events)
        .splits(s.parallelism);
    p.source("payments", source)
        .map("fail-once", fail_once(probe.clone(), s.fail_at))
        .key_by("by-account", |p: &Payment| p.account)
        .process("running-sum", RunningSum::new(probe.clone(), s.pad, s.verify))
        .sink("discard", DiscardSink::new());
    Ok(p)
}

/// Runs the scenario `a` describes and prints its figures.
///
/// # Errors
/// Bad arguments, or a job that failed for good.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let main_ms = now_ms();
    let cpu0 = CpuTicks::read();
    let s = Settings::from_args(a)?;
    let probe = Arc::new(Probe::default());
    let p = pipeline(&s, &probe)?;
    let submit_ms = now_ms();
    let handle = p.start()?;
    let mut timeline = Timeline::default();
    let mut cancelled = false;
    while !handle.is_finished() {
        let now = now_ms();
        timeline.samples.push((now, probe.processed.load(Ordering::Relaxed)));
        let catchup = Probe::get(&probe.catchup_ms);
        if !cancelled && s.stop_after_catchup_ms > 0 && catchup > 0 && now > catchup + s.stop_after_catchup_ms {
            cancelled = true;
            handle.cancel();
        }
        std::thread::sleep(s.sample);
    }
    let end_ms = now_ms();
    let report = match handle.join() {
        Ok(r) => r,
        Err(e) if cancelled => {
            out("cancel_error", format!("{e:?}").replace('\n', " "));
            JobReport::default()
        }
        Err(e) => return Err(e.into()),
    };
    timeline.samples.push((end_ms, probe.processed.load(Ordering::Relaxed)));
    if let Some(path) = &s.timeline {
        let mut csv = String::from("epoch_ms,processed\n");
        for (t, n) in &timeline.samples {
            csv.push_str(&format!("{t},{n}\n"));
        }
        std::fs::write(path, csv).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    print_figures(&s, &probe, &timeline, &report, cancelled, [main_ms, submit_ms, end_ms]);
    if let (Some(c0), Some(c1)) = (cpu0, CpuTicks::read()) {
        if let Some((me, other)) = c1.shares_since(&c0) {
            out("cpu_self_pct", format!("{me:.0}"));
            out("cpu_other_pct", format!("{other:.0}"));
        }
    }
    if let Some(mb) = peak_rss_mb() {
        out("peak_rss_mb", mb);
    }
    Ok(())
}

/// Prints the figures of a finished run.
fn print_figures(
    s: &Settings,
    probe: &Probe,
    timeline: &Timeline,
    report: &JobReport,
    cancelled: bool,
    [main_ms, submit_ms, end_ms]: [u64; 3],
) {
    let first = Probe::get(&probe.first_record_ms);
    let last = Probe::get(&probe.last_record_ms);
    let total = Probe::get(&probe.processed);
    out(
        "config",
        format!(
            "tag={} events={} keys={} pad={} parallelism={} checkpointing={} interval_ms={} backend={} state_cache_mb={} memtable_at_barrier={} fail_at={}",
            s.tag,
            s.events,
            s.keys,
            s.pad,
            s.parallelism,
            s.checkpoint_interval.is_some(),
            s.checkpoint_interval.map(|d| d.as_millis()).unwrap_or(0),
            if s.memory { "memory" } else { "rocksdb" },
            s.state_cache_mb.map(|m| m.to_string()).unwrap_or_else(|| "default".into()),
            s.memtable_at_barrier.map_or("default", |m| m.name()),
            s.fail_at.map(|f| f as i64).unwrap_or(-1),
        ),
    );
    out("processed_records", total);
    out("run_ms", last.saturating_sub(first));
    let failed = probe.failed.load(Ordering::SeqCst);
    if cancelled {
        out("cancelled_after_recovery", true);
    } else {
        out(
            "throughput_eps",
            format!(
                "{:.0}",
                s.events as f64 * 1000.0 / last.saturating_sub(first).max(1) as f64
            ),
        );
    }
    if !failed {
        out("steady_eps", format!("{:.0}", timeline.steady_eps(s.events)));
    }
    if s.launch_ms > 0 {
        out("process_start_to_main_ms", main_ms.saturating_sub(s.launch_ms));
        out("startup_to_first_record_ms", first.saturating_sub(s.launch_ms));
    }
    out("submit_to_first_record_ms", first.saturating_sub(submit_ms));
    out("job_total_ms", end_ms.saturating_sub(submit_ms));
    let ckpts = &report.checkpoints;
    out("ckpt_rest_completed", ckpts.len());
    let stat = |f: fn(&CheckpointStats) -> f64| p50_max(ckpts.iter().map(f).collect());
    if let Some((p50, max)) = stat(|c| c.total_ms) {
        out("ckpt_rest_duration_ms_p50", format!("{p50:.0}"));
        out("ckpt_rest_duration_ms_max", format!("{max:.0}"));
    }
    // The phases of a checkpoint: a keyed subtask's pause, its barrier alignment, the upload.
    type Phase = fn(&CheckpointStats) -> f64;
    let phases: [(&str, Phase); 3] = [
        ("ckpt_sync_ms", |c| c.sync_ms),
        ("ckpt_alignment_ms", |c| c.alignment_ms),
        ("ckpt_async_ms", |c| c.async_ms),
    ];
    for (name, phase) in phases {
        if let Some((p50, max)) = stat(phase) {
            out(&format!("{name}_p50"), format!("{p50:.1}"));
            out(&format!("{name}_max"), format!("{max:.1}"));
        }
    }
    if let Some((p50, _)) = stat(|c| c.uploaded_bytes as f64) {
        out("ckpt_rest_incremental_bytes_p50", format!("{p50:.0}"));
    }
    if let Some((p50, _)) = stat(|c| c.state_bytes as f64) {
        out("ckpt_rest_full_bytes_p50", format!("{p50:.0}"));
    }
    if failed {
        print_recovery(probe, timeline, report, first);
    }
    if s.verify {
        let (keys, sum, weighted) = expected(s.events, s.keys);
        let got = (
            Probe::get(&probe.final_keys),
            Probe::get(&probe.final_sum),
            Probe::get(&probe.final_weighted),
        );
        let ok = got == (keys, sum, weighted);
        out(
            "verify",
            format!(
                "{} keys={}/{keys} sum={}/{sum} weighted={}/{weighted}",
                if ok { "ok" } else { "FAILED" },
                got.0,
                got.1,
                got.2
            ),
        );
    }
}

/// Prints the recovery figures of a run with the injected failure.
fn print_recovery(probe: &Probe, timeline: &Timeline, report: &JobReport, first: u64) {
    let f = Probe::get(&probe.fail_ms);
    let pre = timeline.pre_failure_eps(first, f);
    let resumed = Probe::get(&probe.restart_first_record_ms);
    let steady = (resumed > 0).then(|| timeline.back_to_rate(resumed, pre)).flatten();
    let since = |t: u64| if t == 0 { -1 } else { t as i64 - f as i64 };
    out("pre_failure_eps", format!("{pre:.0}"));
    out("recovery_first_record_ms", since(resumed));
    out("recovery_ms", steady.map(since).unwrap_or(-1));
    let catchup = Probe::get(&probe.catchup_ms);
    out("recovery_catchup_ms", since(catchup));
    if catchup > 0 {
        out(
            "replayed_records",
            format!(
                "{:.0}",
                timeline.value_at(catchup) - Probe::get(&probe.fail_processed) as f64
            ),
        );
    }
    out("fail_epoch_ms", f);
    if let (Some(failure), Some(restore)) = (report.failures.first(), report.restores.first()) {
        out("recovery_log_failure_detected_ms", since(failure.at_ms));
        out(
            "recovery_log_job_running_again_ms",
            since(failure.at_ms + restore.detect_to_running_ms as u64),
        );
        out("recovery_log_cancel_ms", format!("{:.0}", restore.cancel_ms));
        out("recovery_log_restore_ms", format!("{:.0}", restore.restore_ms));
        if let Some(id) = restore.checkpoint {
            out("restored_checkpoint_id", id);
            if let Some(c) = report.checkpoints.iter().find(|c| c.id == id) {
                out("restored_checkpoint_full_bytes", c.state_bytes);
            }
        }
    }
}
