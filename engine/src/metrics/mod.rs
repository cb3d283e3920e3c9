//! Metrics of a running job: per-operator counters readable in-process (progress, the final
//! report), and the same counters plus runtime and checkpoint metrics exported for Prometheus.
//!
//! A process exports once it serves its metrics over HTTP ([`serve`]): an in-process job with
//! [`JobConfig::metrics_addr`](crate::config::JobConfig::metrics_addr), a cluster's master and
//! workers with `WEIR_METRICS_ADDR`. Every job such a process runs then registers its series,
//! labelled by `job`, `step` and `subtask`, in one process-wide registry (`docs/metrics.md`
//! lists them). Without an endpoint the handles are detached: counting costs the same, and
//! nothing is registered.

mod age;
mod endpoint;
mod handles;
mod labels;
mod registry;
mod user;

pub use endpoint::serve;
pub(crate) use handles::{CompletedCheckpoint, JobMetrics, TaskClock};
pub(crate) use registry::SecondsCounter;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one operator subtask. Cheap to clone: clones share the same counters.
#[derive(Clone, Default, Debug)]
pub struct OperatorMetrics {
    inner: Arc<MetricsInner>,
}

#[derive(Default, Debug)]
struct MetricsInner {
    records_in: AtomicU64,
    records_out: AtomicU64,
    /// Nanoseconds spent waiting for room in a full output channel (backpressure).
    blocked_ns: AtomicU64,
    /// The latest watermark the step saw.
    watermark: LatestWatermark,
    custom: user::NamedCounters,
    exported: Exported,
}

/// A watermark readable from other threads (`i64::MIN`: none yet; 0 is a valid watermark).
#[derive(Debug)]
struct LatestWatermark(AtomicI64);

impl Default for LatestWatermark {
    fn default() -> Self {
        LatestWatermark(AtomicI64::new(i64::MIN))
    }
}

/// The subtask's exported series (detached handles when the process does not export).
#[derive(Debug, Default)]
struct Exported {
    labels: Option<registry::SubtaskLabels>,
    records_in: Counter,
    records_out: Counter,
}

impl OperatorMetrics {
    /// Counters of subtask `subtask` of step `step` of job `job`, exported when this process
    /// serves metrics. Registers the series once: counting takes no lock.
    pub fn new(job: &str, step: &str, subtask: usize) -> Self {
        let m = registry::global();
        let exported = if m.exporting() {
            let labels = registry::SubtaskLabels {
                job: job.to_string(),
                step: step.to_string(),
                subtask: subtask as u32,
            };
            Exported {
                records_in: m.families.records_in.get_or_create_owned(&labels),
                records_out: m.families.records_out.get_or_create_owned(&labels),
                labels: Some(labels),
            }
        } else {
            Exported::default()
        };
        OperatorMetrics {
            inner: Arc::new(MetricsInner {
                custom: user::NamedCounters::new(exported.labels.clone()),
                exported,
                ..Default::default()
            }),
        }
    }

    /// Adds time spent blocked sending to a full output channel.
    pub(crate) fn add_blocked(&self, d: std::time::Duration) {
        self.inner
            .blocked_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
    /// Nanoseconds spent blocked sending so far.
    pub fn blocked_ns(&self) -> u64 {
        self.inner.blocked_ns.load(Ordering::Relaxed)
    }
    /// Records the latest watermark the step saw.
    pub(crate) fn set_watermark(&self, w: crate::data::Timestamp) {
        self.inner.watermark.0.store(w, Ordering::Relaxed);
    }
    /// The latest watermark the step saw, if any.
    pub fn watermark(&self) -> Option<crate::data::Timestamp> {
        Some(self.inner.watermark.0.load(Ordering::Relaxed)).filter(|&w| w != i64::MIN)
    }
    /// Adds `n` records received.
    pub fn add_in(&self, n: u64) {
        self.inner.records_in.fetch_add(n, Ordering::Relaxed);
        self.inner.exported.records_in.inc_by(n);
    }
    /// Adds `n` records emitted.
    pub fn add_out(&self, n: u64) {
        self.inner.records_out.fetch_add(n, Ordering::Relaxed);
        self.inner.exported.records_out.inc_by(n);
    }
    /// Records received so far.
    pub fn records_in(&self) -> u64 {
        self.inner.records_in.load(Ordering::Relaxed)
    }
    /// Records emitted so far.
    pub fn records_out(&self) -> u64 {
        self.inner.records_out.load(Ordering::Relaxed)
    }
    /// Adds `n` to the named counter (for example `late_records`, `duplicates`). Exported as
    /// `weir_user_counter_total{name="..."}`; `late_records` as `weir_late_records_total`
    /// `dead_letters` as `weir_dead_letters_total` and `skipped_records` as
    /// `weir_skipped_records_total`. Takes a lock only the first time a
    /// name is seen.
    pub fn count(&self, name: &str, n: u64) {
        self.inner.custom.add(name, n);
    }
    /// A copy of the named counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.inner.custom.snapshot()
    }

    /// Whether this subtask's series are exported (the process serves metrics).
    pub fn is_exported(&self) -> bool {
        self.inner.exported.labels.is_some()
    }

    /// The histogram a sink subtask observes its commit latency in (seconds).
    pub(crate) fn sink_commit_latency(&self) -> Histogram {
        match &self.inner.exported.labels {
            Some(l) => registry::global().families.sink_commit.get_or_create_owned(l),
            None => Histogram::new([1.0]),
        }
    }

    /// The gauge of a Kafka-style source's lag on one partition of `topic`.
    pub fn consumer_lag(&self, topic: &str, partition: i32) -> ConsumerLag {
        ConsumerLag(match &self.inner.exported.labels {
            Some(l) => Some(
                registry::global()
                    .families
                    .consumer_lag
                    .get_or_create_owned(&registry::PartitionLabels {
                        job: l.job.clone(),
                        step: l.step.clone(),
                        subtask: l.subtask,
                        topic: topic.to_string(),
                        partition,
                    }),
            ),
            None => None,
        })
    }
}

/// The exported lag (records) of a source on one partition; a no-op when the process does
/// not export metrics.
#[derive(Debug, Clone)]
pub struct ConsumerLag(Option<prometheus_client::metrics::gauge::Gauge>);

impl ConsumerLag {
    /// Sets the lag: the partition's high watermark minus the next offset to read.
    pub fn set(&self, records: i64) {
        if let Some(g) = &self.0 {
            g.set(records.max(0));
        }
    }

    /// Whether the lag is exported (a source may skip fetching high watermarks otherwise).
    pub fn is_exported(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests;
