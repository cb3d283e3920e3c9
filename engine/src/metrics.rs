//! Per-operator counters, readable while the job runs (progress) and summed into the report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one operator subtask. Cheap to clone: clones share the same counters.
#[derive(Clone, Default, Debug)]
pub struct OperatorMetrics {
    inner: Arc<MetricsInner>,
}

#[derive(Default, Debug)]
struct MetricsInner {
    records_in: AtomicU64,
    records_out: AtomicU64,
    custom: Mutex<BTreeMap<String, u64>>,
}

impl OperatorMetrics {
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
