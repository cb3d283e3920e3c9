//! Serves a running job's status (see [`crate::runtime::status`]) over HTTP: an axum router on
//! a thread of its own, started with the job by the process that runs its master.

pub(crate) mod server;
pub(crate) mod snapshot;
