//! Counters the operators of a peer run bump and the sampler in `run` reads (the Java job's
//! static counters; here one shared value per run). Every timestamp is ms since the epoch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use weir_engine::wall_clock::now_ms;

/// Progress and recovery instants of one run.
#[derive(Debug, Default)]
pub struct Probe {
    /// Records processed by the running sum (all attempts), in steps of 1024 per subtask.
    pub processed: AtomicU64,
    /// First record at the running sum.
    pub first_record_ms: AtomicU64,
    /// Latest time `processed` moved.
    pub last_record_ms: AtomicU64,
    /// Whether the injected failure happened.
    pub failed: AtomicBool,
    /// When it happened (just before the failing map panicked).
    pub fail_ms: AtomicU64,
    /// `processed` at that moment.
    pub fail_processed: AtomicU64,
    /// First record at the running sum in an attempt started after the failure.
    pub restart_first_record_ms: AtomicU64,
    /// When the source emitted event `fail_at` again (lost work redone).
    pub catchup_ms: AtomicU64,
    /// Keys whose end-of-input timer fired (verify).
    pub final_keys: AtomicU64,
    /// Sum of their sums.
    pub final_sum: AtomicU64,
    /// Sum of `(account + 1) * sum` (wrapping, as Java's long).
    pub final_weighted: AtomicU64,
}

impl Probe {
    /// Adds `n` processed records.
    pub fn add_processed(&self, n: u64) {
        self.processed.fetch_add(n, Ordering::Relaxed);
        self.last_record_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Sets `slot` to now unless it was set.
    pub fn mark_once(slot: &AtomicU64) {
        let _ = slot.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(slot: &AtomicU64) -> u64 {
        slot.load(Ordering::Relaxed)
    }
}
