//! Operators running function objects with `open`/`close` hooks ([`MapFunction`],
//! [`FlatMapFunction`]).

use super::{Emitter, OperatorContext, OperatorCore};
use crate::data::{downcast, erase, Data, ErasedBatch, Record};
use crate::functions::{FlatMapFunction, MapFunction};
use crate::Result;
use std::marker::PhantomData;

/// Runs a [`MapFunction`].
pub(crate) struct MapFunctionOp<I, F> {
    pub(crate) f: F,
    pub(crate) _i: PhantomData<fn(I)>,
}

impl<I: Data, F: MapFunction<I>> OperatorCore for MapFunctionOp<I, F> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.f.open(&ctx.runtime())
    }

    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let batch = downcast::<I>(batch)?;
        let mut mapped = Vec::with_capacity(batch.len());
        for r in batch {
            mapped.push(Record {
                value: self.f.map(r.value)?,
                timestamp: r.timestamp,
            });
        }
        out.batch(erase(mapped));
        Ok(())
    }

    fn close(&mut self) {
        self.f.close();
    }
}

/// Runs a [`FlatMapFunction`].
pub(crate) struct FlatMapFunctionOp<I, F> {
    pub(crate) f: F,
    pub(crate) _i: PhantomData<fn(I)>,
}

impl<I: Data, F: FlatMapFunction<I>> OperatorCore for FlatMapFunctionOp<I, F> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.f.open(&ctx.runtime())
    }

    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let batch = downcast::<I>(batch)?;
        let mut produced = Vec::with_capacity(batch.len());
        let mut scratch = Vec::new();
        for r in batch {
            self.f.flat_map(r.value, &mut scratch)?;
            produced.extend(scratch.drain(..).map(|value| Record {
                value,
                timestamp: r.timestamp,
            }));
        }
        out.batch(erase(produced));
        Ok(())
    }

    fn close(&mut self) {
        self.f.close();
    }
}
