//! One job across several processes and machines: a master and N workers running the same
//! executable, which builds the same graph in every process.
//!
//! # The design
//!
//! - **Roles** come from the environment ([`config`]): in-process (the default), a local
//!   cluster launched by the program itself on loopback, or the master or a worker of a cluster
//!   spread over machines (Kubernetes: a master Deployment and a worker StatefulSet).
//! - **Placement** ([`assignment`]): before every attempt the master assigns subtasks to the
//!   workers present by slot sharing; a chain is one subtask and never split.
//! - **Data plane** ([`crate::net`]): channels between subtasks of different workers travel
//!   over one TCP connection per pair of workers and attempt, in order, with per-channel
//!   credits so that a channel held by barrier alignment never stalls the others.
//! - **Control plane**: master and workers call each other over RPC with serializable
//!   messages ([`crate::runtime::control::Control`] down, task events up); every message names
//!   the attempt, and a worker drops what belongs to another one.
//! - **Failure detection**: a closed connection or heartbeats missing for the heartbeat timeout
//!   fail the attempt; failover is global (every worker cancels, the job restores the latest
//!   completed checkpoint on the workers present). A worker that loses the master cancels its
//!   subtasks on its own, so nothing of an old attempt reaches a sink after the timeout.

pub mod assignment;
pub mod config;
pub(crate) mod protocol;
pub(crate) mod worker;

pub use assignment::{assign, Assignment, SubtaskShape, WorkerSlots};
pub use config::{Deployment, Heartbeats, MasterSettings, WorkerSettings};
