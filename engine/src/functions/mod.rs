//! User functions as objects with `open`/`close` hooks, and the [`RuntimeContext`] they are
//! opened with (Flink's `RichFunction` and `RuntimeContext`).
//!
//! # After a crash
//! Fields of a function object are not checkpointed: every attempt clones the function given
//! to the pipeline again, calls `initialize_state` (its [operator state](operator_state), as
//! the restored checkpoint held it) and `open` with the new attempt's number, and feeds it the
//! records replayed from that checkpoint. `open` is the place to connect to external systems,
//! `close` (called when the attempt ends, normally or not) the place to release them; what
//! must survive a failure goes into operator lists, brought up to date in `snapshot_state`.

pub mod operator_state;

use crate::data::Data;
use crate::message::CheckpointId;
use crate::Result;
pub use operator_state::FunctionStateContext;

/// Where one subtask of a user function runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeContext {
    /// The job's name.
    pub job: String,
    /// The step's name.
    pub step: String,
    /// This subtask's index, `0..parallelism`.
    pub subtask: usize,
    /// The step's parallelism.
    pub parallelism: usize,
    /// The job's max parallelism (its number of key groups).
    pub max_parallelism: usize,
    /// The attempt this subtask belongs to: 1 for the job's first run in this process, one
    /// more after each restart (a restore after a failure).
    pub attempt: u32,
}

impl RuntimeContext {
    /// `step[subtask]`, for messages.
    pub fn describe(&self) -> String {
        format!("{}[{}]", self.step, self.subtask)
    }
}

/// A map function object with `open`/`close` hooks (see [`Stream::map_function`](crate::api::Stream::map_function)).
/// One clone runs per subtask.
pub trait MapFunction<I>: Send + 'static {
    /// The output record type.
    type Out: Data;

    /// Called once per subtask and attempt, before `open`: declare the function's operator
    /// lists (see [`operator_state`]) and keep their handles. After a restore they hold this
    /// subtask's share of the checkpoint's elements.
    fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// Called once per subtask and attempt, before the first record.
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Maps one record. An error fails the job (and restarts it, as any failure); for errors
    /// that are about the record use `try_map` and a bad-record policy.
    fn map(&mut self, value: I) -> Result<Self::Out>;

    /// Called at every checkpoint barrier, after every record before it and before any after
    /// it: bring the operator lists up to date (what they hold on return is checkpointed).
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let _ = checkpoint;
        Ok(())
    }

    /// Called once when the attempt ends, normally or not. Must not panic.
    fn close(&mut self) {}
}

/// A flat-map function object with `open`/`close` hooks (see
/// [`Stream::flat_map_function`](crate::api::Stream::flat_map_function)). One clone runs per subtask.
pub trait FlatMapFunction<I>: Send + 'static {
    /// The output record type.
    type Out: Data;

    /// Called once per subtask and attempt, before `open`: declare the function's operator
    /// lists (see [`operator_state`]) and keep their handles. After a restore they hold this
    /// subtask's share of the checkpoint's elements.
    fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// Called once per subtask and attempt, before the first record.
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Appends the outputs of one record to `out`.
    fn flat_map(&mut self, value: I, out: &mut Vec<Self::Out>) -> Result<()>;

    /// Called at every checkpoint barrier, after every record before it and before any after
    /// it: bring the operator lists up to date (what they hold on return is checkpointed).
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let _ = checkpoint;
        Ok(())
    }

    /// All input has ended: appends what the function still holds (e.g. a partly filled
    /// batch in an operator list) to `out`. These records have no event time.
    fn finish(&mut self, out: &mut Vec<Self::Out>) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// Called once when the attempt ends, normally or not. Must not panic.
    fn close(&mut self) {}
}

/// An async function calling an external service for each record (Flink's `AsyncFunction`; see
/// [`Stream::async_map`](crate::api::Stream::async_map)). One clone runs per subtask; its
/// futures run on a runtime shared by the process, never on the subtask's thread.
///
/// # After a crash
/// Calls are at least once, results exactly once: the records whose results were not emitted
/// when a checkpoint was taken are in that checkpoint, and after a restore they are called
/// again (a call whose result was lost in the failure is repeated). Each record's results
/// appear once in the committed output. A service with side effects must accept a repeated
/// call (make it idempotent, e.g. by a request id derived from the record).
pub trait AsyncFunction<I>: Send + Sync + 'static {
    /// The output record type.
    type Out: Data;

    /// Called once per subtask and attempt, before the first call, inside the async runtime
    /// (clients that need a Tokio runtime can be built here).
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Calls the service for one record; resolves to its results (any number). An error is
    /// retried by the step's retry strategy and then handled by its bad-record policy. Many
    /// calls run at once (up to the step's capacity): do not block the thread inside.
    fn call(&self, input: I) -> impl std::future::Future<Output = Result<Vec<Self::Out>>> + Send;

    /// The outcome of a record whose request did not complete within the step's timeout (all
    /// its attempts). The default fails the job (as Flink's); return a fallback result instead
    /// to go on. An error here always fails the job.
    fn timeout(&self, input: I) -> Result<Vec<Self::Out>> {
        let _ = input;
        Err(crate::Error::new(
            crate::ErrorKind::UserFunction,
            "the request timed out (the async function has no timeout fallback)",
        ))
    }

    /// Called once when the attempt ends, normally or not, after its requests in flight were
    /// cancelled. Must not panic.
    fn close(&self) {}
}
