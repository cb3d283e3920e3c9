//! Steps running function objects with `open`/`close` hooks and a runtime context.

use super::keyed::per_subtask;
use super::stream::Stream;
use crate::data::Data;
use crate::functions::{FlatMapFunction, MapFunction};
use crate::graph::StateSharing;
use crate::operator::user_functions::{flat_map_function_op, map_function_op};

impl<T: Data> Stream<T> {
    /// Applies the function object `f` (a clone per subtask, opened with its
    /// [`RuntimeContext`](crate::functions::RuntimeContext) before the first record and closed
    /// when the attempt ends) to every record, as Flink's `map(RichMapFunction)`. The function
    /// may keep [operator state](crate::functions::operator_state) (Flink's
    /// `CheckpointedFunction`): every subtask restores all old subtasks' lists to take its share.
    pub fn map_function<F: MapFunction<T> + Clone>(&self, name: &str, f: F) -> Stream<F::Out> {
        let out = self.then(name, per_subtask(f, map_function_op));
        redistribute_operator_state(&out);
        out
    }

    /// Emits what the function object `f` appends for every record (see
    /// [`map_function`](Self::map_function) for its life cycle).
    pub fn flat_map_function<F: FlatMapFunction<T> + Clone>(&self, name: &str, f: F) -> Stream<F::Out> {
        let out = self.then(name, per_subtask(f, flat_map_function_op));
        redistribute_operator_state(&out);
        out
    }
}

/// Marks the step `step` ends in as redistributing its operator state at a restore.
fn redistribute_operator_state<T>(step: &Stream<T>) {
    for &id in &step.nodes {
        step.graph
            .borrow_mut()
            .share_operator_state(id, StateSharing::Redistributed);
    }
}
