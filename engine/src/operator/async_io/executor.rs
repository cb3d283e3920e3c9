//! Where the requests of async steps run: one Tokio runtime shared by every async subtask of
//! the process, and the life of one request (its attempts, its timeout).
//!
//! One runtime per process rather than one per subtask: a subtask's thread never drives
//! futures (it keeps taking records, watermarks and barriers), so requests need threads of
//! their own, and a shared pool keeps their number fixed however many async subtasks a process
//! runs; timers and sockets share one driver. Each subtask aborts its own requests when its
//! attempt ends, so nothing of a failed attempt outlives it.

use super::options::RetryStrategy;
use crate::functions::AsyncFunction;
use crate::{Error, Result};
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Worker threads of the shared runtime, at most.
const MAX_WORKERS: usize = 4;

/// The process's runtime for async steps, started on first use.
///
/// # Errors
/// `Internal` if the runtime's threads cannot be started.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(MAX_WORKERS));
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("weir-async-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::internal(format!("starting the runtime of async steps: {e}")))
}

/// How a request ended.
pub(crate) enum Outcome<O> {
    /// The call (or the timeout fallback) gave these results.
    Results(Vec<O>),
    /// The call failed on every attempt: a bad record.
    Failed(Error),
    /// The request timed out and the function has no fallback: fails the attempt.
    TimedOut(Error),
}

/// A request's outcome, sent back to its subtask.
pub(crate) struct Completion<O> {
    /// The record's sequence number in its subtask.
    pub(crate) seq: u64,
    pub(crate) outcome: Outcome<O>,
    /// Whether the fallback decided the outcome after a timeout.
    pub(crate) timed_out: bool,
}

/// What every request of one subtask shares.
pub(crate) struct RequestSettings {
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryStrategy,
    /// Retries made so far (a metric; the subtask reads and resets it).
    pub(crate) retries: AtomicU64,
}

/// Starts the request of record `seq` on the shared runtime; its completion goes to `done`
/// (dropped if the subtask is gone). The handle aborts it.
pub(crate) fn spawn<I, F>(
    rt: &tokio::runtime::Runtime,
    f: Arc<F>,
    settings: Arc<RequestSettings>,
    seq: u64,
    input: I,
    done: Sender<Completion<F::Out>>,
) -> tokio::task::AbortHandle
where
    I: Clone + Send + 'static,
    F: AsyncFunction<I>,
{
    rt.spawn(async move {
        let attempts = attempts(f.as_ref(), &settings, input.clone());
        let (outcome, timed_out) = match tokio::time::timeout(settings.timeout, attempts).await {
            Ok(Ok(results)) => (Outcome::Results(results), false),
            Ok(Err(e)) => (Outcome::Failed(e), false),
            Err(_) => match f.timeout(input) {
                Ok(results) => (Outcome::Results(results), true),
                Err(e) => (Outcome::TimedOut(e), true),
            },
        };
        let _ = done.send(Completion {
            seq,
            outcome,
            timed_out,
        });
    })
    .abort_handle()
}

/// Calls `f` until it succeeds or the retry strategy gives up.
async fn attempts<I: Clone, F: AsyncFunction<I>>(f: &F, settings: &RequestSettings, input: I) -> Result<Vec<F::Out>> {
    let mut attempt = 1;
    loop {
        match f.call(input.clone()).await {
            Ok(results) => return Ok(results),
            Err(e) if attempt >= settings.retry.max_attempts => return Err(e),
            Err(_) => {
                tokio::time::sleep(settings.retry.backoff(attempt)).await;
                settings.retries.fetch_add(1, Ordering::Relaxed);
                attempt += 1;
            }
        }
    }
}
