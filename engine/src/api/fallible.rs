//! Fallible steps: `try_map`, `try_filter`, `try_flat_map`, whose function's errors are data
//! errors handled by a [`BadRecordPolicy`] (fail the job, skip and count, or dead letters).

use super::side_output::{is_tagged, main_output, tag_flag};
use super::stream::Stream;
use crate::data::Data;
use crate::operator::fallible::{FallibleOp, TryFn};
use crate::side_output::BadRecordPolicy;
use std::fmt::Display;
use std::sync::Arc;

impl<T: Data> Stream<T> {
    /// Applies `f` to every record; a record for which it returns an error is handled by
    /// `policy`. The step's main output is read through a hidden step `"{name}.main"`; with
    /// [`BadRecordPolicy::DeadLetter`], [`dead_letters`](Self::dead_letters) on the returned
    /// stream has the rejected records.
    pub fn try_map<O: Data, E: Display>(
        &self,
        name: &str,
        policy: BadRecordPolicy,
        f: impl Fn(T) -> Result<O, E> + Send + Sync + 'static,
    ) -> Stream<O> {
        self.fallible(
            name,
            policy,
            Arc::new(move |t, out: &mut Vec<O>| {
                out.push(f(t).map_err(|e| e.to_string())?);
                Ok(())
            }),
        )
    }

    /// Keeps the records for which `f` returns `Ok(true)`; an error is handled by `policy`
    /// (see [`try_map`](Self::try_map)).
    pub fn try_filter<E: Display>(
        &self,
        name: &str,
        policy: BadRecordPolicy,
        f: impl Fn(&T) -> Result<bool, E> + Send + Sync + 'static,
    ) -> Stream<T> {
        self.fallible(
            name,
            policy,
            Arc::new(move |t, out: &mut Vec<T>| {
                if f(&t).map_err(|e| e.to_string())? {
                    out.push(t);
                }
                Ok(())
            }),
        )
    }

    /// Emits every element of `f(record)`; an error is handled by `policy` (see
    /// [`try_map`](Self::try_map)): a record that fails emits nothing.
    pub fn try_flat_map<O: Data, I: IntoIterator<Item = O>, E: Display>(
        &self,
        name: &str,
        policy: BadRecordPolicy,
        f: impl Fn(T) -> Result<I, E> + Send + Sync + 'static,
    ) -> Stream<O> {
        self.fallible(
            name,
            policy,
            Arc::new(move |t, out: &mut Vec<O>| {
                out.extend(f(t).map_err(|e| e.to_string())?);
                Ok(())
            }),
        )
    }

    fn fallible<O: Data>(&self, name: &str, policy: BadRecordPolicy, f: TryFn<T, O>) -> Stream<O> {
        let tagged = tag_flag();
        let flag = tagged.clone();
        let step = self.then::<O>(
            name,
            super::stream::factory(move || FallibleOp::new(f.clone(), policy, is_tagged(&flag))),
        );
        main_output(step, &format!("{name}.main"), tagged)
    }
}
