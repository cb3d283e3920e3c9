//! # Weir engine
//!
//! Weir runs typed dataflow pipelines as parallel subtasks, keeps keyed state in RocksDB (or
//! memory) and takes barrier-aligned checkpoints so that, after any failure, every input
//! event affects the committed output exactly once.
//!
//! ## The life of a record and of a barrier
//!
//! 1. A [`Pipeline`](api::Pipeline) is a graph of named steps. [`run`](api::Pipeline::run)
//!    turns it into subtasks: each step runs as `parallelism` subtasks, and steps connected
//!    forward with equal parallelism are fused into one thread (a chain).
//! 2. Sources read splits and record, per split, the offset of the next record. Records move
//!    in batches over bounded channels (backpressure); keyed exchanges route each record to
//!    the subtask that owns its key group.
//! 3. The job master injects numbered barriers at the sources. A subtask with several input
//!    channels aligns them: it stops reading a channel that delivered barrier `n` until all
//!    did, then snapshots its operators and forwards the barrier.
//! 4. Sinks pre-commit on the barrier: what they wrote since the previous one becomes a
//!    committable stored in the checkpoint. Every subtask acknowledges the barrier.
//! 5. When every acknowledgement is in, the checkpoint is complete, and only then are sinks
//!    told to commit. Commit is idempotent, so it can be repeated after a restore.
//! 6. End of input is the final checkpoint: an exhausted source keeps answering barriers, and
//!    once every source is exhausted the master sends a final barrier on which operators
//!    finish, so nothing emitted at the end escapes the last commit.
//!
//! ## Where to start
//! [`prelude`] has everything a pipeline author imports.
#![warn(missing_docs)]

pub mod api;
pub mod cancellation;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod connector;
pub mod data;
pub mod durable;
pub mod error;
pub mod fail;
pub mod functions;
pub mod graph;
pub mod keyed;
pub mod message;
pub mod metrics;
pub mod net;
pub mod operator;
pub mod ownership;
pub mod prelude;
pub mod recovery;
pub mod runtime;
pub mod side_output;
pub mod sink;
pub mod source;
pub mod state;
pub mod testing;
pub mod time;
pub mod wall_clock;
pub mod window;

pub use error::{Error, ErrorKind, Reason, Result, ResultExt};
