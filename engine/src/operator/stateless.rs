//! Stateless record-at-a-time operators: map, filter, flat_map, and their two-input forms.

use super::{Emitter, OperatorCore};
use crate::data::{downcast, erase, Data, ErasedBatch, Record};
use crate::{Error, Result};
use std::sync::Arc;

/// A function that appends its outputs for one input.
pub(crate) type FlatFn<I, O> = Arc<dyn Fn(I, &mut Vec<O>) + Send + Sync>;

/// `map`: one output per input.
pub(crate) struct MapOp<I, O> {
    pub(crate) f: Arc<dyn Fn(I) -> O + Send + Sync>,
}

impl<I: Data, O: Data> OperatorCore for MapOp<I, O> {
    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let batch = downcast::<I>(batch)?;
        let f = &self.f;
        let mapped: Vec<Record<O>> = batch
            .into_iter()
            .map(|r| Record {
                value: f(r.value),
                timestamp: r.timestamp,
            })
            .collect();
        out.batch(erase(mapped));
        Ok(())
    }
}

/// `filter`: keeps the records the predicate accepts (in place, no allocation).
pub(crate) struct FilterOp<T> {
    pub(crate) f: Arc<dyn Fn(&T) -> bool + Send + Sync>,
}

impl<T: Data> OperatorCore for FilterOp<T> {
    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let mut batch = downcast::<T>(batch)?;
        batch.retain(|r| (self.f)(&r.value));
        out.batch(erase(batch));
        Ok(())
    }
}

/// `flat_map`: any number of outputs per input, all with the input's timestamp.
pub(crate) struct FlatMapOp<I, O> {
    pub(crate) f: FlatFn<I, O>,
}

impl<I: Data, O: Data> OperatorCore for FlatMapOp<I, O> {
    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let batch = downcast::<I>(batch)?;
        let mut produced = Vec::with_capacity(batch.len());
        let mut scratch = Vec::new();
        for r in batch {
            (self.f)(r.value, &mut scratch);
            produced.extend(scratch.drain(..).map(|value| Record {
                value,
                timestamp: r.timestamp,
            }));
        }
        out.batch(erase(produced));
        Ok(())
    }
}

/// Two-input `flat_map` over connected streams: one function per input, one output type.
pub(crate) struct CoFlatMapOp<A, B, O> {
    pub(crate) first: FlatFn<A, O>,
    pub(crate) second: FlatFn<B, O>,
}

impl<A: Data, B: Data, O: Data> OperatorCore for CoFlatMapOp<A, B, O> {
    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let mut produced = Vec::with_capacity(batch.len());
        let mut scratch = Vec::new();
        macro_rules! run {
            ($t:ty, $f:expr) => {
                for r in downcast::<$t>(batch)? {
                    $f(r.value, &mut scratch);
                    produced.extend(scratch.drain(..).map(|value| Record {
                        value,
                        timestamp: r.timestamp,
                    }));
                }
            };
        }
        match input {
            0 => run!(A, self.first),
            1 => run!(B, self.second),
            i => return Err(Error::internal(format!("co-flat-map has no input {i}"))),
        }
        out.batch(erase(produced));
        Ok(())
    }
}
