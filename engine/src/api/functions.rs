//! Steps running function objects with `open`/`close` hooks and a runtime context.

use super::keyed::per_subtask;
use super::stream::Stream;
use crate::data::Data;
use crate::functions::{FlatMapFunction, MapFunction};
use crate::operator::user_functions::{FlatMapFunctionOp, MapFunctionOp};
use std::marker::PhantomData;

impl<T: Data> Stream<T> {
    /// Applies the function object `f` (a clone per subtask, opened with its
    /// [`RuntimeContext`](crate::functions::RuntimeContext) before the first record and closed
    /// when the attempt ends) to every record, as Flink's `map(RichMapFunction)`.
    pub fn map_function<F: MapFunction<T> + Clone>(&self, name: &str, f: F) -> Stream<F::Out> {
        self.then(name, per_subtask(f, |f| MapFunctionOp { f, _i: PhantomData }))
    }

    /// Emits what the function object `f` appends for every record (see
    /// [`map_function`](Self::map_function) for its life cycle).
    pub fn flat_map_function<F: FlatMapFunction<T> + Clone>(&self, name: &str, f: F) -> Stream<F::Out> {
        self.then(name, per_subtask(f, |f| FlatMapFunctionOp { f, _i: PhantomData }))
    }
}
