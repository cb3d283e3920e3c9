//! Per-operator counters, readable while the job runs (progress) and summed into the report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one operator subtask. Cheap to clone: clones share the same counters.
#[derive(Clone, Default, Debug)]
pub struct OperatorMetrics {
    inner: Arc<MetricsInner>,
}

#[derive(Debug)]
struct MetricsInner {
    records_in: AtomicU64,
    records_out: AtomicU64,
    /// Nanoseconds spent waiting for room in a full output channel (backpressure).
    blocked_ns: AtomicU64,
    /// The latest watermark the step saw (`i64::MIN`: none yet; 0 is a valid watermark).
    watermark: AtomicI64,
    custom: Mutex<BTreeMap<String, u64>>,
}

impl Default for MetricsInner {
    fn default() -> Self {
        MetricsInner {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            custom: Mutex::default(),
        }
    }
}

impl OperatorMetrics {
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
        self.inner.watermark.store(w, Ordering::Relaxed);
    }
    /// The latest watermark the step saw, if any.
    pub fn watermark(&self) -> Option<crate::data::Timestamp> {
        Some(self.inner.watermark.load(Ordering::Relaxed)).filter(|&w| w != i64::MIN)
    }
    /// Adds `n` records received.
    pub fn add_in(&self, n: u64) {
        self.inner.records_in.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds `n` records emitted.
    pub fn add_out(&self, n: u64) {
        self.inner.records_out.fetch_add(n, Ordering::Relaxed);
    }
    /// Records received so far.
    pub fn records_in(&self) -> u64 {
        self.inner.records_in.load(Ordering::Relaxed)
    }
    /// Records emitted so far.
    pub fn records_out(&self) -> u64 {
        self.inner.records_out.load(Ordering::Relaxed)
    }
    /// Adds `n` to the named counter (for example `late_records`, `duplicates`).
    pub fn count(&self, name: &str, n: u64) {
        let mut m = self.inner.custom.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(name) {
            Some(v) => *v += n,
            None => {
                m.insert(name.to_string(), n);
            }
        }
    }
    /// A copy of the named counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.inner.custom.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
