//! The recovery benchmark's phase analysis (`weir_examples::recovery::analysis`) on a simulated
//! recovery whose phases are known: detection, restore, replay and back-to-normal come out
//! where the simulation put them, and a job that never catches up never counts as normal.

use weir_examples::recovery::analysis::{phases, Moments, Sample};

const RATE: f64 = 10_000.0; // events/s: 10 per ms
const CATCH_UP: u64 = 40; // events per ms while a backlog lasts

/// Samples every 50 ms of a job that fails at 10 s, is stopped at 10.1 s, runs again at
/// 10.3 s from a checkpoint taken at 9.5 s, and catches up at `catch_up` events/ms, until
/// `end_ms`.
fn simulate(catch_up: u64, end_ms: u64) -> Vec<Sample> {
    let mut out = Vec::new();
    let (mut position, mut processed, mut lat_sum, mut lat_n) = (0u64, 0u64, 0u64, 0u64);
    let mut restored = 0;
    for t in (0..end_ms).step_by(50) {
        let running = !(10_050..10_300).contains(&t);
        if t == 10_300 {
            position = 95_000;
            restored = position;
        }
        if running {
            let available = t * 10;
            let step = if t >= 10_300 { catch_up * 50 } else { 500 };
            let n = step.min(available.saturating_sub(position));
            // Latency: how far behind the schedule the job is, plus 1 ms.
            let behind_ms = available.saturating_sub(position + n) / 10 + 1;
            position += n;
            processed += n;
            lat_sum += n * behind_ms * 1000;
            lat_n += n;
        }
        out.push(Sample {
            t_us: t * 1000,
            processed,
            position,
            restored_position: restored,
            latency_sum_us: lat_sum,
            latency_n: lat_n,
            running,
        });
    }
    out
}

fn moments() -> Moments {
    Moments {
        failure: 10_000_000,
        stopped: Some(10_100_000),
        restore_started: Some(10_120_000),
        running: Some(10_300_000),
    }
}

#[test]
fn phases_of_a_simulated_recovery_are_where_the_simulation_put_them() {
    let samples = simulate(CATCH_UP, 20_000);
    let p = phases(&samples, (4_000_000, 9_000_000), &moments(), RATE);
    assert!((p.baseline_eps - RATE).abs() < 1.0, "{p:?}");
    assert_eq!(p.position_at_failure, 100_000);
    assert_eq!(p.replayed, 5_000);
    assert_eq!(p.detection_ms, Some(100.0));
    assert_eq!(p.restore_ms, Some(200.0));
    assert_eq!(p.restart_ms, Some(20.0));
    // Each sample counts the reads of the 50 ms before it, so the simulated job reads from
    // 10.25 s: 5,000 events at 40 per ms take 125 ms, until 10.375 s.
    let replay = p.replay_ms.unwrap();
    assert!((50.0..=100.0).contains(&replay), "{p:?}");
    // The backlog is gone when 95,000 + 40 (t - 10,250) = 10 t: t = 10,500 ms, give or take
    // a sample.
    let rto = p.rto_ms.unwrap();
    assert!((450.0..=550.0).contains(&rto), "{p:?}");
    let sum = p.detection_ms.unwrap() + p.restore_ms.unwrap() + replay + p.normal_ms.unwrap();
    assert!((sum - rto).abs() < 1e-6, "the phases add up to the RTO");
}

#[test]
fn a_job_that_cannot_catch_up_never_counts_as_normal() {
    // Catch-up at 11 events/ms barely outruns the input: the backlog of 8,000 events lasts
    // 8 s, until 18.3 s, after the samples end.
    let samples = simulate(11, 16_000);
    let p = phases(&samples, (4_000_000, 9_000_000), &moments(), RATE);
    assert!(p.replay_ms.is_some(), "{p:?}");
    assert_eq!(p.rto_ms, None, "{p:?}");
    assert_eq!(p.normal_us, None);
}
