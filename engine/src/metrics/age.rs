//! Gauges whose value depends on the time of the scrape: a subtask's watermark and its lag
//! behind the wall clock, and the time since a job's last completed checkpoint.
//!
//! Subtasks and masters store a timestamp (ms since the epoch) in an atomic; the scrape turns
//! it into seconds, so a watermark that stopped moving shows a growing lag without any ticker.

use crate::metrics::labels::{JobLabels, SubtaskLabels};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// No timestamp yet: the series is left out of the scrape.
pub(crate) const UNSET: i64 = i64::MIN;

/// A timestamp (ms since the epoch) shown at scrape time.
#[derive(Clone, Debug)]
pub(crate) struct Timestamp(Arc<AtomicI64>);

impl Timestamp {
    /// A timestamp no scrape shows.
    pub(crate) fn detached() -> Self {
        Timestamp(Arc::new(AtomicI64::new(UNSET)))
    }

    pub(crate) fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    fn get_ms(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|v| *v != UNSET)
    }
}

type Entries<L> = Mutex<Vec<(L, Timestamp)>>;

static WATERMARKS: Entries<SubtaskLabels> = Mutex::new(Vec::new());
static CHECKPOINTS: Entries<JobLabels> = Mutex::new(Vec::new());

fn entry<L: PartialEq + Clone>(entries: &Entries<L>, labels: &L) -> Timestamp {
    let mut e = entries.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, t)) = e.iter().find(|(l, _)| l == labels) {
        return t.clone();
    }
    let t = Timestamp::detached();
    e.push((labels.clone(), t.clone()));
    t
}

/// The watermark of a subtask (the same one for every attempt of the job).
pub(crate) fn watermark(labels: &SubtaskLabels) -> Timestamp {
    entry(&WATERMARKS, labels)
}

/// When a job's last checkpoint completed.
pub(crate) fn last_checkpoint(labels: &JobLabels) -> Timestamp {
    entry(&CHECKPOINTS, labels)
}

/// Encodes the scrape-time gauges.
#[derive(Debug)]
pub(crate) struct AgeCollector;

fn encode_all<L: prometheus_client::encoding::EncodeLabelSet + Clone>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    entries: &Entries<L>,
    value: impl Fn(i64, i64) -> f64,
) -> Result<(), std::fmt::Error> {
    let now = crate::wall_clock::now_ms() as i64;
    let set: Vec<(L, i64)> = entries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(l, t)| t.get_ms().map(|v| (l.clone(), v)))
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, ms) in &set {
        ConstGauge::new(value(*ms, now)).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for AgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_all(
            &mut encoder,
            "weir_watermark_seconds",
            "The subtask's current event-time watermark, seconds since the epoch",
            &WATERMARKS,
            |ms, _| ms as f64 / 1e3,
        )?;
        encode_all(
            &mut encoder,
            "weir_watermark_lag_seconds",
            "Wall-clock time minus the subtask's watermark",
            &WATERMARKS,
            |ms, now| (now - ms) as f64 / 1e3,
        )?;
        encode_all(
            &mut encoder,
            "weir_time_since_last_checkpoint_seconds",
            "Seconds since the job's last checkpoint completed",
            &CHECKPOINTS,
            |ms, now| (now - ms).max(0) as f64 / 1e3,
        )
    }
}
