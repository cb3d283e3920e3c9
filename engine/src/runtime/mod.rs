//! The runtime: subtask threads, channels, barrier alignment, exchanges and the job master.

pub(crate) mod attempt;
pub(crate) mod chain;
pub(crate) mod control;
pub(crate) mod events;
pub(crate) mod exchange;
pub(crate) mod gate;
pub mod handle;
pub(crate) mod job;
pub(crate) mod layout;
pub(crate) mod master;
pub(crate) mod plan;
pub(crate) mod remote;
pub mod report;
pub(crate) mod savepoint_request;
pub(crate) mod signals;
pub mod status;
pub(crate) mod status_server;
pub(crate) mod task;

pub use handle::{JobHandle, JobStopper, LifecycleEvent, LifecyclePhase, Progress};
pub use report::{JobReport, OperatorReport};
pub use signals::stop_on_termination;
pub use status::{JobState, JobStatus};
