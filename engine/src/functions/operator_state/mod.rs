//! Operator state of user functions: lists kept per subtask (not per key), checkpointed with
//! the subtask and handed out again at a restore, split evenly or unioned, as Flink's operator
//! list state and union list state.
//!
//! A function declares its lists in `initialize_state` (called before `open`) with an
//! [`OperatorListDescriptor`] and keeps the [`OperatorListState`] handles it gets; at every
//! checkpoint barrier the engine calls the function's `snapshot_state` and then writes every
//! declared list.
//!
//! ```
//! use weir_engine::prelude::*;
//! use weir_engine::functions::operator_state::{OperatorListDescriptor, OperatorListState};
//!
//! /// Emits records in groups of 100; the group being filled is operator state.
//! #[derive(Clone, Default)]
//! struct Batcher {
//!     pending: Option<OperatorListState<u64>>,
//! }
//!
//! const PENDING: OperatorListDescriptor<u64> = OperatorListDescriptor::new("pending");
//!
//! impl FlatMapFunction<u64> for Batcher {
//!     type Out = Vec<u64>;
//!     fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()> {
//!         self.pending = Some(state.list_state(&PENDING)?);
//!         Ok(())
//!     }
//!     fn flat_map(&mut self, v: u64, out: &mut Vec<Vec<u64>>) -> Result<()> {
//!         let pending = self.pending.as_ref().expect("initialized");
//!         pending.add(v);
//!         if pending.len() == 100 {
//!             out.push(pending.take());
//!         }
//!         Ok(())
//!     }
//!     fn finish(&mut self, out: &mut Vec<Vec<u64>>) -> Result<()> {
//!         let rest = self.pending.as_ref().expect("initialized").take();
//!         if !rest.is_empty() {
//!             out.push(rest);
//!         }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # After a crash
//! A checkpoint holds each subtask's lists as they were at the barrier (after
//! `snapshot_state`). At a restore:
//! - a split list ([`ListDistribution::Split`], the default): at the same parallelism every
//!   subtask gets its own elements back; at another parallelism the elements of all old
//!   subtasks (in old subtask order, each list in its order) are cut into contiguous, even
//!   shares, one per new subtask: every element reaches exactly one new subtask.
//! - a union list ([`ListDistribution::Union`]): every subtask gets the elements of all old
//!   subtasks, at any parallelism (the function picks what it needs).
//!
//! A list in the checkpoint that the function no longer declares is not dropped: each subtask
//! keeps its share (by the distribution it was written with) and writes it again at the next
//! checkpoint. Elements carry their schema format, so a list's type evolves as keyed state does
//! ([`schema`](crate::keyed::schema)); an element the job cannot read fails the restore naming
//! the step and the list.

mod descriptor;
mod encoding;
mod list;
mod redistribute;
mod store;

pub use descriptor::{ListDistribution, OperatorListDescriptor};
pub use list::OperatorListState;
pub(crate) use store::FunctionOperatorState;
pub use store::FunctionStateContext;

#[cfg(test)]
mod tests;
