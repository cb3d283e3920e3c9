//! Test harnesses for user functions, as Flink's `*OperatorTestHarness`: one function runs
//! through the operator a pipeline runs for it, without a pipeline, fed by hand.
//!
//! - [`KeyedHarness`]: a [`KeyedProcess`](crate::operator::keyed_process::KeyedProcess)
//!   function (windows too: they are keyed functions) with its keyed store (memory, or
//!   RocksDB with [`HarnessBuilder::rocksdb`]), timers, TTLs and side outputs.
//! - [`KeyedCoProcessHarness`]: a [`KeyedCoProcess`](crate::operator::keyed_process::KeyedCoProcess)
//!   over two keyed streams sharing keyed state and timers.
//! - [`KeyedBroadcastHarness`]: a keyed broadcast function
//!   ([`KeyedBroadcastProcess`](crate::operator::broadcast::KeyedBroadcastProcess)), its keyed
//!   input and its broadcast input, keyed state and the broadcast state.
//! - [`BroadcastHarness`]: a [`BroadcastProcess`](crate::operator::broadcast::BroadcastProcess)
//!   over a non-keyed stream and a broadcast stream.
//! - [`OneInputHarness`]: `map`, `filter`, `flat_map`, their function objects
//!   ([`MapFunction`](crate::functions::MapFunction), ...) and fallible forms (`try_map`, ...)
//!   under a bad-record policy.
//!
//! Feed records with timestamps, watermarks and processing time; read the main output, side
//! outputs and emitted watermarks, keyed state by name and type, registered timers and
//! counters; on two-input steps, watermarks per input (the step's event time is their
//! minimum) and the broadcast state. [`KeyedHarness::snapshot`] (and the other harnesses')
//! takes what a checkpoint would hold of the subtask; [`KeyedHarness::restore`] and
//! [`HarnessBuilder::restore_from`] open a function on it, also as another subtask of another
//! parallelism (the pipeline's rescaling rules: a share of the keyed state, and subtask 0's
//! copy of the broadcast state for every subtask).
//!
//! # After a crash
//! A snapshot holds keyed state, timers, the watermark and the broadcast state as of the moment it was taken,
//! nothing of the output: a harness restored from it continues exactly where the snapshotted
//! one was, and the records that came after the snapshot must be fed again (a pipeline's
//! sources replay them). Tests of that shape show that a function is deterministic under
//! replay, which exactly-once output relies on.
//!
//! # Misuse is an error
//! A watermark or processing time going back, a key the subtask does not own, a state name
//! the function never wrote, a state read as the wrong type or kind, snapshots that do not
//! fit the restore: each is a `Config` error naming the step and what was expected.

mod broadcast;
mod builder;
mod keyed;
mod keyed_broadcast;
mod keyed_co;
mod keyed_driver;
mod one_input;
mod output;
mod snapshot;
mod state_names;
mod window;

pub use broadcast::BroadcastHarness;
pub use builder::HarnessBuilder;
pub use keyed::KeyedHarness;
pub use keyed_broadcast::KeyedBroadcastHarness;
pub use keyed_co::KeyedCoProcessHarness;
pub use keyed_driver::RegisteredTimer;
pub use one_input::OneInputHarness;
pub use snapshot::HarnessSnapshot;
pub use window::{WindowHarness, WindowHarnessBuilder, WindowStep};
