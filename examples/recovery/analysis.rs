//! From samples and lifecycle moments to the phases of one recovery.
//!
//! * **detection**: the failure → the failed job is stopped (in-process: every subtask of the
//!   failed attempt cancelled and joined; `kill -9`: the dead process reaped).
//! * **restore**: → every subtask runs again on restored state (restart delay, process start
//!   and state restore included).
//! * **replay**: → the sources' read position is back where it was at the failure.
//! * **back to normal**: → the start of the first 2 s window in which throughput is within
//!   10 % of the pre-failure level and latency is no more than 10 % above it. During catch-up
//!   the job reads the backlog faster than the input rate, so throughput is *above* the band
//!   and latency is high; both settle when the backlog is gone.
//!
//! RTO = the sum: failure → back to normal.

use serde::Serialize;

/// Width of the window that must look normal.
pub const NORMAL_WINDOW_US: u64 = 2_000_000;
/// Tolerance of "normal": ±10 % throughput, +10 % latency.
pub const TOLERANCE: f64 = 0.10;
/// Latency below this is normal whatever the baseline (a 10 % band of a 2 ms baseline is
/// below the sampling noise of batching).
pub const LATENCY_FLOOR_MS: f64 = 5.0;

/// One progress sample, merged over the run's processes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub t_us: u64,
    /// Events processed by the keyed operator, all processes, replays included.
    pub processed: u64,
    /// Events read by the sources, replays excluded (the input position).
    pub position: u64,
    pub restored_position: u64,
    pub latency_sum_us: u64,
    pub latency_n: u64,
    pub running: bool,
}

/// The moments of the injected failure's recovery, µs since the epoch.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Moments {
    pub failure: u64,
    pub stopped: Option<u64>,
    pub restore_started: Option<u64>,
    pub running: Option<u64>,
}

/// The measured phases (ms) of a recovery; `None` where the run ended before the phase did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub baseline_eps: f64,
    pub baseline_latency_ms: f64,
    /// Input position at the moment of the failure.
    pub position_at_failure: u64,
    /// Events read again (position at failure − restored position).
    pub replayed: u64,
    pub detection_ms: Option<f64>,
    pub restore_ms: Option<f64>,
    /// Of the restore phase: restart (delay, process start) before the restore began.
    pub restart_ms: Option<f64>,
    pub replay_ms: Option<f64>,
    pub normal_ms: Option<f64>,
    pub rto_ms: Option<f64>,
    /// Absolute moments (µs) of the phase ends, for plots.
    pub caught_up_us: Option<u64>,
    pub normal_us: Option<u64>,
}

/// Linear interpolation of `f` at time `t` over samples sorted by time.
fn at(samples: &[Sample], t: u64, f: impl Fn(&Sample) -> f64) -> Option<f64> {
    let i = samples.partition_point(|s| s.t_us < t);
    if i == samples.len() {
        return None;
    }
    if samples[i].t_us == t || i == 0 {
        return (samples[i].t_us == t).then(|| f(&samples[i]));
    }
    let (a, b) = (&samples[i - 1], &samples[i]);
    let w = (t - a.t_us) as f64 / (b.t_us - a.t_us) as f64;
    Some(f(a) + w * (f(b) - f(a)))
}

/// Mean throughput (events/s) and latency (ms) over `[t0, t1]`.
pub fn window(samples: &[Sample], t0: u64, t1: u64) -> Option<(f64, f64)> {
    let p0 = at(samples, t0, |s| s.processed as f64)?;
    let p1 = at(samples, t1, |s| s.processed as f64)?;
    let (l0, n0) = (
        at(samples, t0, |s| s.latency_sum_us as f64)?,
        at(samples, t0, |s| s.latency_n as f64)?,
    );
    let (l1, n1) = (
        at(samples, t1, |s| s.latency_sum_us as f64)?,
        at(samples, t1, |s| s.latency_n as f64)?,
    );
    let eps = (p1 - p0) / ((t1 - t0) as f64 / 1e6);
    let latency = if n1 > n0 { (l1 - l0) / (n1 - n0) / 1e3 } else { f64::NAN };
    Some((eps, latency))
}

/// Whether a window with this throughput and latency counts as normal against the baseline.
pub fn is_normal(eps: f64, latency_ms: f64, baseline_eps: f64, baseline_latency_ms: f64) -> bool {
    let eps_ok = (eps - baseline_eps).abs() <= TOLERANCE * baseline_eps;
    let latency_ok = latency_ms <= (baseline_latency_ms * (1.0 + TOLERANCE)).max(LATENCY_FLOOR_MS);
    eps_ok && latency_ok
}

/// The phases of the recovery from the failure at `m.failure`, with the pre-failure level
/// measured over `baseline` (µs). Works on partial runs (for deciding when to stop).
pub fn phases(samples: &[Sample], baseline: (u64, u64), m: &Moments, rate: f64) -> Phases {
    let mut out = Phases::default();
    if let Some((eps, lat)) = window(samples, baseline.0, baseline.1) {
        out.baseline_eps = eps;
        out.baseline_latency_ms = lat;
    }
    // Position at the failure: the last sample before it, plus the input that arrived since
    // (samples after it may include reads of the failing attempt before it stopped).
    if let Some(last) = samples.iter().rev().find(|s| s.t_us <= m.failure) {
        out.position_at_failure = last.position + ((m.failure - last.t_us) as f64 / 1e6 * rate) as u64;
    }
    let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e3;
    out.detection_ms = m.stopped.map(|s| ms(m.failure, s));
    if let (Some(s), Some(r)) = (m.stopped, m.running) {
        out.restore_ms = Some(ms(s, r));
    }
    if let (Some(s), Some(r)) = (m.stopped, m.restore_started) {
        out.restart_ms = Some(ms(s, r));
    }
    let Some(running) = m.running else { return out };
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t_us >= running && s.running).collect();
    if let Some(first) = after.first() {
        out.replayed = out.position_at_failure.saturating_sub(first.restored_position);
    }
    // Caught up: interpolate the moment the position passes the failure position.
    let target = out.position_at_failure as f64;
    let mut caught = None;
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.t_us < running || !b.running {
            continue;
        }
        if (b.position as f64) >= target {
            let t = if a.t_us < running || (a.position as f64) >= target || !a.running {
                b.t_us.max(running)
            } else {
                let f = (target - a.position as f64) / (b.position - a.position) as f64;
                a.t_us + (f * (b.t_us - a.t_us) as f64) as u64
            };
            caught = Some(t.max(running));
            break;
        }
    }
    let Some(caught) = caught else { return out };
    out.caught_up_us = Some(caught);
    out.replay_ms = Some(ms(running, caught));
    // Back to normal: the first window start (on the sample grid) at or after catching up.
    for s in samples.iter().filter(|s| s.t_us >= caught) {
        let Some((eps, lat)) = window(samples, s.t_us, s.t_us + NORMAL_WINDOW_US) else { break };
        if is_normal(eps, lat, out.baseline_eps, out.baseline_latency_ms) {
            out.normal_us = Some(s.t_us);
            out.normal_ms = Some(ms(caught, s.t_us));
            out.rto_ms = Some(ms(m.failure, s.t_us));
            break;
        }
    }
    out
}

/// Throughput (events/s) and latency (ms) per bucket of `bucket_us`, as (seconds relative to
/// `t0`, events/s, latency ms), for plots and the JSON file.
pub fn series(samples: &[Sample], t0: u64, bucket_us: u64) -> Vec<(f64, f64, f64)> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return Vec::new() };
    let mut out = Vec::new();
    let mut t = first.t_us;
    while t + bucket_us <= last.t_us {
        if let Some((eps, lat)) = window(samples, t, t + bucket_us) {
            let mid = (t + bucket_us / 2) as f64 - t0 as f64;
            out.push((mid / 1e6, eps, lat));
        }
        t += bucket_us;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64, processed: u64, position: u64, latency_ms: u64) -> Sample {
        Sample {
            t_us: t_ms * 1000,
            processed,
            position,
            restored_position: 0,
            latency_sum_us: processed * latency_ms * 1000,
            latency_n: processed,
            running: true,
        }
    }

    #[test]
    fn a_steady_job_is_normal_and_interpolation_is_linear() {
        let s: Vec<Sample> = (0..100).map(|i| sample(i * 50, i * 500, i * 500, 2)).collect();
        let (eps, lat) = window(&s, 1_000_000, 3_000_000).unwrap();
        assert!((eps - 10_000.0).abs() < 1.0);
        assert!((lat - 2.0).abs() < 1e-9);
        assert!(is_normal(eps, lat, 10_000.0, 2.0));
        assert!(!is_normal(12_000.0, lat, 10_000.0, 2.0));
    }
}
