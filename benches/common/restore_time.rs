//! How long a restore takes, as the recovery and storage benchmarks measure it.

use std::time::{Duration, Instant};
use weir::engine::runtime::{JobHandle, LifecyclePhase};

/// Waits until `handle`'s first attempt runs, then cancels the job: the time in ms from the
/// attempt's start (restore started) until every subtask runs on restored state.
///
/// # Panics
/// If the job ends, or is not running after `limit`.
pub fn restore_ms(handle: JobHandle, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let l = handle.lifecycle();
        let started = l
            .iter()
            .find(|e| e.phase == LifecyclePhase::RestoreStarted)
            .map(|e| e.at);
        let running = l.iter().find(|e| e.phase == LifecyclePhase::Running).map(|e| e.at);
        if let (Some(s), Some(r)) = (started, running) {
            handle.cancel();
            let _ = handle.join();
            return r.duration_since(s).as_secs_f64() * 1e3;
        }
        if handle.is_finished() || Instant::now() > deadline {
            panic!("the restored job never ran: {:?}", handle.join());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
