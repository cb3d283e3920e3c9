//! Async I/O steps (Flink's `AsyncDataStream`): `stream.async_map(name, f, options)` calls an
//! external service for each record without blocking the subtask. See
//! [`operator::async_io`](crate::operator::async_io) for what holds after a crash.

use super::keyed::per_subtask;
use super::side_output::{is_tagged, main_output, tag_flag};
use super::stream::Stream;
use crate::data::Data;
use crate::functions::AsyncFunction;
use crate::operator::async_io::options::AsyncOptions;
use crate::operator::async_io::AsyncOp;
use crate::Result;
use std::future::Future;
use std::marker::PhantomData;

impl<T: Data> Stream<T> {
    /// Calls `f` for every record, up to `options.capacity` records at once per subtask, and
    /// emits each record's results (with its timestamp) in input order or as they complete
    /// (`options.order`). A request that takes longer than `options.timeout` ends with the
    /// function's [`timeout`](AsyncFunction::timeout) outcome; a call that fails is retried by
    /// `options.retry` and then handled by `options.on_error` (with
    /// [`BadRecordPolicy::DeadLetter`](crate::side_output::BadRecordPolicy::DeadLetter),
    /// [`dead_letters`](Self::dead_letters) on the returned stream has the records).
    ///
    /// Records in flight at a checkpoint are in it and are called again after a restore:
    /// calls are at least once, results exactly once.
    pub fn async_map<F: AsyncFunction<T> + Clone>(&self, name: &str, f: F, options: AsyncOptions) -> Stream<F::Out> {
        if let Err(e) = options.validate(name) {
            self.graph.borrow_mut().errors.push(e);
        }
        let tagged = tag_flag();
        let flag = tagged.clone();
        let step = self.then::<F::Out>(
            name,
            per_subtask(f, move |f| AsyncOp::new(f, options.clone(), is_tagged(&flag))),
        );
        main_output(step, &format!("{name}.main"), tagged)
    }

    /// [`async_map`](Self::async_map) with a closure returning a future (no `open`/`close`,
    /// and a timeout fails the job).
    pub fn async_map_fn<O, Fut, C>(&self, name: &str, f: C, options: AsyncOptions) -> Stream<O>
    where
        O: Data,
        Fut: Future<Output = Result<Vec<O>>> + Send + 'static,
        C: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    {
        self.async_map(name, AsyncFn { f, _o: PhantomData }, options)
    }
}

/// A closure as an [`AsyncFunction`].
struct AsyncFn<C, O> {
    f: C,
    _o: PhantomData<fn() -> O>,
}

impl<C: Clone, O> Clone for AsyncFn<C, O> {
    fn clone(&self) -> Self {
        AsyncFn {
            f: self.f.clone(),
            _o: PhantomData,
        }
    }
}

impl<T, O, Fut, C> AsyncFunction<T> for AsyncFn<C, O>
where
    O: Data,
    Fut: Future<Output = Result<Vec<O>>> + Send + 'static,
    C: Fn(T) -> Fut + Clone + Send + Sync + 'static,
{
    type Out = O;

    fn call(&self, input: T) -> impl Future<Output = Result<Vec<O>>> + Send {
        (self.f)(input)
    }
}
