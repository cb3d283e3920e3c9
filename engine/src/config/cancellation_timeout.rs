//! The cancellation timeout (Flink's `task.cancellation.timeout`): what happens when the
//! subtasks of a failed or cancelled attempt do not stop.
//!
//! A subtask stops at its next cancellation check; one that never gets there (a user function
//! that blocks, a producer whose queue never drains, a checkpoint upload stuck on storage)
//! would hold failover and cancellation forever. After the timeout the master gives up on it.
//!
//! # After a crash
//! Exiting the process is safe: nothing of a cancelled attempt is needed by the next one, and
//! its supervisor restarts the job from the latest completed checkpoint, as after `kill -9`.

use std::time::Duration;

/// The exit status of a process that ended because a cancellation timed out (75 is
/// `EX_TEMPFAIL`: a temporary failure, the supervisor should start the process again).
pub const CANCELLATION_TIMEOUT_EXIT_CODE: i32 = 75;

/// The default cancellation timeout (Flink's default too).
pub const DEFAULT_CANCELLATION_TIMEOUT: Duration = Duration::from_secs(180);

/// What the master does when the subtasks of an attempt have not all stopped within the
/// cancellation timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancellationTimeoutAction {
    /// Logs an error naming the subtasks still running and ends the process with
    /// [`CANCELLATION_TIMEOUT_EXIT_CODE`], so that its supervisor restarts it. The default:
    /// threads that do not stop cannot be killed, and a new attempt next to them could race
    /// them for state directories and sinks.
    #[default]
    ExitProcess,
    /// Ends the job with an `Internal` error naming the subtasks still running, without
    /// restarting it and without waiting for their threads (they keep running, detached). For
    /// embedders that end the process themselves.
    FailJob,
}

impl CancellationTimeoutAction {
    /// Acts on a timed-out cancellation described by `message`; returns only if the job should
    /// end with an error.
    pub(crate) fn act(&self, message: &str) {
        tracing::error!(message, "cancellation timed out");
        match self {
            CancellationTimeoutAction::ExitProcess => {
                tracing::error!(
                    exit_code = CANCELLATION_TIMEOUT_EXIT_CODE,
                    "ending the process so that its supervisor restarts it"
                );
                std::process::exit(CANCELLATION_TIMEOUT_EXIT_CODE)
            }
            CancellationTimeoutAction::FailJob => {}
        }
    }
}
