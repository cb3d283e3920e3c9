//! The process-wide registry that every Weir metric of this process lives in, its label sets,
//! and the text a scrape returns.
//!
//! Metric families are registered once per process; jobs, steps and subtasks are labels. A
//! subtask takes its handles (an `Arc` each) from the families when it is planned, so the
//! per-record path only adds to atomics: no label is hashed or allocated per record.
//!
//! # After a crash
//! Nothing here is durable: a restarted process starts every counter at zero (Prometheus's
//! `rate()` and `increase()` handle such resets).

pub(crate) use crate::metrics::labels::{CounterLabels, JobLabels, PartitionLabels, SubtaskLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// A counter of seconds (or other fractional amounts).
pub(crate) type SecondsCounter = Counter<f64, AtomicU64>;
/// A gauge holding a fractional value.
pub(crate) type FloatGauge = Gauge<f64, AtomicU64>;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn commit_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric family Weir exports (see `docs/metrics.md` for the list and meanings).
#[derive(Debug)]
pub(crate) struct Families {
    pub(crate) records_in: Family<SubtaskLabels, Counter>,
    pub(crate) records_out: Family<SubtaskLabels, Counter>,
    pub(crate) user_counter: Family<CounterLabels, Counter>,
    pub(crate) late_records: Family<SubtaskLabels, Counter>,
    pub(crate) dead_letters: Family<SubtaskLabels, Counter>,
    pub(crate) skipped_records: Family<SubtaskLabels, Counter>,
    pub(crate) busy: Family<SubtaskLabels, SecondsCounter>,
    pub(crate) idle: Family<SubtaskLabels, SecondsCounter>,
    pub(crate) backpressured: Family<SubtaskLabels, SecondsCounter>,
    pub(crate) sink_commit: HistogramFamily<SubtaskLabels>,
    pub(crate) consumer_lag: Family<PartitionLabels, Gauge>,
    pub(crate) checkpoints_completed: Family<JobLabels, Counter>,
    pub(crate) checkpoints_failed: Family<JobLabels, Counter>,
    pub(crate) checkpoints_aborted: Family<JobLabels, Counter>,
    pub(crate) checkpoint_duration: Family<JobLabels, FloatGauge>,
    pub(crate) checkpoint_alignment: Family<JobLabels, FloatGauge>,
    pub(crate) checkpoint_sync: Family<JobLabels, FloatGauge>,
    pub(crate) checkpoint_size: Family<JobLabels, Gauge>,
    pub(crate) checkpoint_uploaded: Family<JobLabels, Counter>,
    pub(crate) last_checkpoint_id: Family<JobLabels, Gauge>,
    pub(crate) last_checkpoint_time: Family<JobLabels, FloatGauge>,
    pub(crate) restarts: Family<JobLabels, Counter>,
    pub(crate) recovery_seconds: Family<JobLabels, FloatGauge>,
    pub(crate) recovery_replayed: Family<JobLabels, Gauge>,
    pub(crate) running: Family<JobLabels, Gauge>,
}

/// The registry and the families in it.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) families: Families,
    registry: Registry,
    /// Whether this process serves its metrics: only then do jobs register their series.
    exporting: AtomicBool,
}

impl Metrics {
    fn new() -> Self {
        let families = Families {
            records_in: Family::default(),
            records_out: Family::default(),
            user_counter: Family::default(),
            late_records: Family::default(),
            dead_letters: Family::default(),
            skipped_records: Family::default(),
            busy: Family::default(),
            idle: Family::default(),
            backpressured: Family::default(),
            sink_commit: Family::new_with_constructor(commit_histogram),
            consumer_lag: Family::default(),
            checkpoints_completed: Family::default(),
            checkpoints_failed: Family::default(),
            checkpoints_aborted: Family::default(),
            checkpoint_duration: Family::default(),
            checkpoint_alignment: Family::default(),
            checkpoint_sync: Family::default(),
            checkpoint_size: Family::default(),
            checkpoint_uploaded: Family::default(),
            last_checkpoint_id: Family::default(),
            last_checkpoint_time: Family::default(),
            restarts: Family::default(),
            recovery_seconds: Family::default(),
            recovery_replayed: Family::default(),
            running: Family::default(),
        };
        let mut r = Registry::default();
        let f = &families;
        // Counters get `_total` appended by the exposition.
        r.register(
            "weir_records_in",
            "Records a step's subtask received",
            f.records_in.clone(),
        );
        r.register(
            "weir_records_out",
            "Records a step's subtask emitted",
            f.records_out.clone(),
        );
        r.register(
            "weir_user_counter",
            "Named counters operators add to with ctx.count(name, n), by name",
            f.user_counter.clone(),
        );
        r.register(
            "weir_late_records",
            "Records that arrived behind the watermark (windows)",
            f.late_records.clone(),
        );
        r.register(
            "weir_dead_letters",
            "Records a source could not read and sent to its dead-letter topic, or a fallible step rejected and sent to its dead-letter output",
            f.dead_letters.clone(),
        );
        r.register(
            "weir_skipped_records",
            "Records a fallible step rejected and skipped (bad-record policy Skip)",
            f.skipped_records.clone(),
        );
        r.register(
            "weir_subtask_busy_seconds",
            "Time a subtask spent processing (neither waiting for input nor blocked on output)",
            f.busy.clone(),
        );
        r.register(
            "weir_subtask_idle_seconds",
            "Time a subtask spent waiting for input",
            f.idle.clone(),
        );
        r.register(
            "weir_subtask_backpressured_seconds",
            "Time a subtask spent blocked sending into a full channel",
            f.backpressured.clone(),
        );
        r.register(
            "weir_sink_commit_seconds",
            "Time a sink subtask took to commit a completed checkpoint's output",
            f.sink_commit.clone(),
        );
        r.register(
            "weir_kafka_consumer_lag_records",
            "Records between a Kafka source's position and the partition's high watermark",
            f.consumer_lag.clone(),
        );
        r.register(
            "weir_checkpoints_completed",
            "Checkpoints completed (durable, sinks told to commit)",
            f.checkpoints_completed.clone(),
        );
        r.register(
            "weir_checkpoints_failed",
            "Checkpoints whose completion failed and failed the attempt",
            f.checkpoints_failed.clone(),
        );
        r.register(
            "weir_checkpoints_aborted",
            "Checkpoints aborted (timeout, failed upload) while the job went on",
            f.checkpoints_aborted.clone(),
        );
        r.register(
            "weir_checkpoint_duration_seconds",
            "The last completed checkpoint: trigger to completion",
            f.checkpoint_duration.clone(),
        );
        r.register(
            "weir_checkpoint_alignment_seconds",
            "The last completed checkpoint: longest barrier alignment of any subtask",
            f.checkpoint_alignment.clone(),
        );
        r.register(
            "weir_checkpoint_sync_seconds",
            "The last completed checkpoint: longest synchronous snapshot pause of any subtask",
            f.checkpoint_sync.clone(),
        );
        r.register(
            "weir_checkpoint_size_bytes",
            "The last completed checkpoint: bytes of all files it references",
            f.checkpoint_size.clone(),
        );
        r.register(
            "weir_checkpoint_uploaded_bytes",
            "Bytes checkpoints stored anew (the rest is shared with earlier checkpoints)",
            f.checkpoint_uploaded.clone(),
        );
        r.register(
            "weir_last_checkpoint_id",
            "The id of the last completed checkpoint",
            f.last_checkpoint_id.clone(),
        );
        r.register(
            "weir_last_checkpoint_timestamp_seconds",
            "When the last checkpoint completed, seconds since the epoch",
            f.last_checkpoint_time.clone(),
        );
        r.register(
            "weir_restarts",
            "Restarts of the job after failures",
            f.restarts.clone(),
        );
        r.register(
            "weir_recovery_seconds",
            "The last recovery: failure detected to every subtask running on restored state (RTO)",
            f.recovery_seconds.clone(),
        );
        r.register(
            "weir_recovery_replayed_records",
            "The last recovery: source records read again after the restored checkpoint",
            f.recovery_replayed.clone(),
        );
        r.register(
            "weir_job_running",
            "1 while every subtask of the job's current attempt runs, else 0",
            f.running.clone(),
        );
        r.register_collector(Box::new(crate::metrics::age::AgeCollector));
        Metrics {
            families,
            registry: r,
            exporting: AtomicBool::new(false),
        }
    }

    /// The exposition of every metric of this process, in the OpenMetrics text format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Whether jobs register their series (this process serves metrics).
    pub(crate) fn exporting(&self) -> bool {
        self.exporting.load(Ordering::Relaxed)
    }

    pub(crate) fn start_exporting(&self) {
        self.exporting.store(true, Ordering::Relaxed);
    }
}

/// The process's metrics.
pub(crate) fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
