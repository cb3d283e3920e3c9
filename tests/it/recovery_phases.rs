//! The lifecycle log a recovery benchmark reads its phases from: after a panicking subtask,
//! the failed attempt is detected, then cancelled, and the next attempt restores and runs, in
//! that order, and `RestoreStats` agrees with the log.

use std::time::{Duration, Instant};
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::runtime::{LifecycleEvent, LifecyclePhase};
use weir::prelude::*;

#[derive(Clone)]
struct Count;
impl KeyedProcess<u64, u64> for Count {
    type Out = (u64, u64);
    fn process(&mut self, k: u64, ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        let mut s = ctx.value_state::<u64>("count");
        let n = s.get()?.unwrap_or(0) + 1;
        s.set(&n)?;
        ctx.emit((k, n));
        Ok(())
    }
}

fn phases(log: &[LifecycleEvent]) -> Vec<(u32, LifecyclePhase)> {
    log.iter().map(|e| (e.attempt, e.phase)).collect()
}

#[test]
fn a_recovery_is_logged_as_detected_cancelled_restore_started_running_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    let p = Pipeline::new("recovery-phases")
        .fail_points(points.clone())
        .parallelism(2)
        .state_dir(dir.path().join("state"))
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(50))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 3,
            delay: Duration::from_millis(30),
        });
    p.source(
        "gen",
        GeneratorSource::new(|i| i % 7).splits(2).rate_per_second(20_000.0),
    )
    .key_by("k", |k: &u64| *k)
    .process("count", Count)
    .sink("out", DiscardSink::new());
    let handle = p.start().unwrap();
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Fail only once a checkpoint completed, so the recovery restores one.
        while handle.progress().last_checkpoint.is_none() {
            assert!(Instant::now() < deadline, "no checkpoint completed");
            std::thread::sleep(Duration::from_millis(10));
        }
        points.arm(fail::PROCESS_RECORD, 1, FailAction::Panic);
        while handle.progress().attempt < 2 || !handle.progress().running {
            assert!(Instant::now() < deadline, "the job did not recover");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let log = handle.lifecycle();
    handle.cancel();
    let report = handle.join().unwrap();

    use LifecyclePhase::*;
    assert_eq!(
        phases(&log),
        vec![
            (1, RestoreStarted),
            (1, Running),
            (1, FailureDetected),
            (1, Cancelled),
            (2, RestoreStarted),
            (2, Running)
        ]
    );
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at), "the log is in time order");
    // The restart delay lies between the cancellation and the next restore.
    assert!(log[4].at.duration_since(log[3].at) >= Duration::from_millis(30));

    let r = &report.restores[..];
    assert_eq!(r.len(), 1);
    let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e3;
    let close = |x: f64, y: f64| (x - y).abs() < 1.0;
    assert!(close(r[0].cancel_ms, ms(log[2].at, log[3].at)), "{r:?} vs {log:?}");
    assert!(
        close(r[0].detect_to_running_ms, ms(log[2].at, log[5].at)),
        "{r:?} vs {log:?}"
    );
    assert!(close(r[0].restore_ms, ms(log[4].at, log[5].at)), "{r:?} vs {log:?}");
    assert!(r[0].checkpoint.is_some());
}
