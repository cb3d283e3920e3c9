//! From samples and lifecycle moments to the phases of one recovery.
//!
//! * **detection**: the failure → the failed job is stopped (in-process: every subtask of the
//!   failed attempt cancelled and joined; `kill -9`: the dead process reaped).
//! * **restore**: → every subtask runs again on restored state (restart delay, process start
//!   and state restore included).
//! * **replay**: → the sources' read position is back where it was at the failure.
//! * **back to normal**: → the start of the first 2 s window in which mean throughput is
//!   within 10 % of the pre-failure mean, and latency is no more than 10 % above the
//!   pre-failure level both in the window's first 100 ms bucket (the backlog is gone) and in the
//!   window's median bucket (it stays gone; a checkpoint's pause may spike a bucket or two,
//!   as it does before the failure). Latency levels are medians of 100 ms buckets, with a floor
//!   of [`LATENCY_FLOOR_MS`]. During catch-up the job reads the backlog faster than the input
//!   rate, so throughput is *above* the band and latency is high; both settle when the backlog
//!   is gone.
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

/// Width of the latency buckets.
pub const BUCKET_US: u64 = 100_000;

/// Mean latency (ms) of each 100 ms bucket of `[t0, t1]` that processed steady events.
fn bucket_latencies(samples: &[Sample], t0: u64, t1: u64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut t = t0;
    while t + BUCKET_US <= t1 {
        if let Some((_, lat)) = window(samples, t, t + BUCKET_US) {
            if lat.is_finite() {
                out.push(lat);
            }
        }
        t += BUCKET_US;
    }
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The most latency (ms) that counts as normal against a pre-failure level.
pub fn latency_limit(baseline_latency_ms: f64) -> f64 {
    (baseline_latency_ms * (1.0 + TOLERANCE)).max(LATENCY_FLOOR_MS)
}

/// Whether the window `[t, t + 2 s]` counts as normal against the baseline (see the module
/// documentation); `None` if the samples do not cover it yet.
pub fn window_is_normal(samples: &[Sample], t: u64, baseline_eps: f64, baseline_latency_ms: f64) -> Option<bool> {
    let (eps, _) = window(samples, t, t + NORMAL_WINDOW_US)?;
    let buckets = bucket_latencies(samples, t, t + NORMAL_WINDOW_US);
    let limit = latency_limit(baseline_latency_ms);
    let eps_ok = (eps - baseline_eps).abs() <= TOLERANCE * baseline_eps;
    let first_ok = buckets.first().is_some_and(|&l| l <= limit);
    let median_ok = median(buckets).is_some_and(|l| l <= limit);
    Some(eps_ok && first_ok && median_ok)
}

/// The phases of the recovery from the failure at `m.failure`, with the pre-failure level
/// measured over `baseline` (µs). Works on partial runs (for deciding when to stop).
pub fn phases(samples: &[Sample], baseline: (u64, u64), m: &Moments, rate: f64) -> Phases {
    let mut out = Phases::default();
    if let Some((eps, _)) = window(samples, baseline.0, baseline.1) {
        out.baseline_eps = eps;
        out.baseline_latency_ms = median(bucket_latencies(samples, baseline.0, baseline.1)).unwrap_or(0.0);
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
        let Some(normal) = window_is_normal(samples, s.t_us, out.baseline_eps, out.baseline_latency_ms) else {
            break;
        };
        if normal {
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
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
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
