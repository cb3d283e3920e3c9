//! Graceful stop on the signals a process manager sends before it kills a process: SIGTERM
//! (Kubernetes, systemd, `docker stop`) and SIGINT (Ctrl-C).
//!
//! The first signal stops the job at a final checkpoint ([`JobHandle::stop`]): sources stop
//! reading, sinks commit the output up to it, every subtask ends, and a later run of the job
//! restores that checkpoint. A second signal, a stop that fails, or a job still running
//! `grace` after the first signal cancels it instead. Once the job has ended, the signals have
//! their default effect again (the process ends).
//!
//! # After a crash
//! Either way nothing is lost or repeated: a graceful stop leaves its final checkpoint and the
//! output committed up to it; a cancellation leaves the output committed up to the latest
//! completed checkpoint, which the next run restores.

use super::handle::{JobHandle, JobStopper};
use crate::{Error, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::time::Duration;

/// What the first signal started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
}

/// What to do on a signal. Pure: the decision only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnSignal {
    /// The job ended: the signal's default action.
    Default,
    /// Stop at a final checkpoint, cancelling after the grace period.
    Stop,
    /// A stop is under way: cancel now.
    Cancel,
}

fn on_signal(job_ended: bool, phase: Phase) -> OnSignal {
    match (job_ended, phase) {
        (true, _) => OnSignal::Default,
        (false, Phase::Running) => OnSignal::Stop,
        (false, Phase::Stopping) => OnSignal::Cancel,
    }
}

/// Stops `handle`'s job gracefully on SIGTERM or SIGINT, and cancels it on a second signal or
/// when it is still running `grace` after the first (see the [module documentation](self)).
/// Call once per process, right after starting the job.
///
/// # Errors
/// `Io` when the signal handlers cannot be installed.
pub fn stop_on_termination(handle: &JobHandle, grace: Duration) -> Result<()> {
    let stopper = handle.stopper();
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|e| Error::io("installing the SIGTERM and SIGINT handlers", e))?;
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            let mut phase = Phase::Running;
            for signal in signals.forever() {
                match on_signal(stopper.job_ended(), phase) {
                    OnSignal::Default => {
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                    }
                    OnSignal::Stop => {
                        phase = Phase::Stopping;
                        tracing::warn!(
                            signal,
                            ?grace,
                            "stopping the job at a final checkpoint (a second signal cancels it)"
                        );
                        stop_or_cancel(stopper.clone(), grace);
                    }
                    OnSignal::Cancel => {
                        tracing::warn!(signal, "a second signal: cancelling the job");
                        stopper.cancel();
                    }
                }
            }
        })
        .map_err(|e| Error::io("spawning the signal thread", e))?;
    Ok(())
}

/// Stops the job; cancels it when the stop fails or the job still runs after `grace`.
fn stop_or_cancel(stopper: JobStopper, grace: Duration) {
    let watch = stopper.clone();
    let _ = std::thread::Builder::new()
        .name("weir-stop".into())
        .spawn(move || match stopper.stop() {
            Ok(id) => tracing::info!(checkpoint = id.get(), "the job stopped at its final checkpoint"),
            Err(e) => {
                if !stopper.job_ended() {
                    tracing::error!(error = %e, "the graceful stop failed: cancelling the job");
                    stopper.cancel();
                }
            }
        });
    let _ = std::thread::Builder::new()
        .name("weir-stop-grace".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if watch.job_ended() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            tracing::error!(?grace, "the job did not stop within its grace period: cancelling it");
            watch.cancel();
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_stops_the_second_cancels_and_after_the_job_the_default_applies() {
        assert_eq!(on_signal(false, Phase::Running), OnSignal::Stop);
        assert_eq!(on_signal(false, Phase::Stopping), OnSignal::Cancel);
        assert_eq!(on_signal(true, Phase::Running), OnSignal::Default);
        assert_eq!(on_signal(true, Phase::Stopping), OnSignal::Default);
    }
}
