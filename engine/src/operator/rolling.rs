//! Rolling `reduce` and `aggregate` on a keyed stream: keyed state holds the running value,
//! and every record emits the updated result.

use super::keyed_process::KeyedProcess;
use crate::data::{Data, Key};
use crate::keyed::KeyedContext;
use crate::Result;
use std::marker::PhantomData;
use std::sync::Arc;

/// Incremental aggregation: an accumulator that absorbs values and yields a result.
///
/// `merge` combines two accumulators (session windows need it when sessions merge).
pub trait AggregateFunction<T>: Send + Sync + 'static {
    /// The accumulator kept in keyed state.
    type Acc: Data;
    /// The result type.
    type Out: Data;
    /// A new, empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds a value.
    fn add(&self, acc: &mut Self::Acc, value: &T);
    /// Folds `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result for an accumulator.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

const STATE: &str = "rolling";

/// `reduce`: the running combination of all values of a key.
pub(crate) struct ReduceProcess<T> {
    pub(crate) f: Arc<dyn Fn(T, T) -> T + Send + Sync>,
}

impl<T> Clone for ReduceProcess<T> {
    fn clone(&self) -> Self {
        ReduceProcess { f: self.f.clone() }
    }
}

impl<K: Key, T: Data> KeyedProcess<K, T> for ReduceProcess<T> {
    type Out = T;
    fn process(&mut self, value: T, ctx: &mut KeyedContext<'_, K, T>) -> Result<()> {
        let mut st = ctx.value_state::<T>(STATE);
        let next = match st.get()? {
            Some(prev) => (self.f)(prev, value),
            None => value,
        };
        st.set(&next)?;
        ctx.emit(next);
        Ok(())
    }
}

/// `aggregate`: the running result of an [`AggregateFunction`] per key.
pub(crate) struct AggregateProcess<T, A> {
    pub(crate) agg: Arc<A>,
    pub(crate) _t: PhantomData<fn(T)>,
}

impl<T, A> Clone for AggregateProcess<T, A> {
    fn clone(&self) -> Self {
        AggregateProcess {
            agg: self.agg.clone(),
            _t: PhantomData,
        }
    }
}

impl<K: Key, T: Data, A: AggregateFunction<T>> KeyedProcess<K, T> for AggregateProcess<T, A> {
    type Out = A::Out;
    fn process(&mut self, value: T, ctx: &mut KeyedContext<'_, K, A::Out>) -> Result<()> {
        let mut st = ctx.value_state::<A::Acc>(STATE);
        let mut acc = st.get()?.unwrap_or_else(|| self.agg.create());
        self.agg.add(&mut acc, &value);
        st.set(&acc)?;
        let out = self.agg.result(&acc);
        ctx.emit(out);
        Ok(())
    }
}
