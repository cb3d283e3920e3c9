//! The hidden steps that split a step's tagged output (see [`crate::side_output`]): one keeps
//! the main records, one per read tag decodes that tag's records.

use super::{Emitter, OperatorCore};
use crate::data::{downcast, erase, Data, ErasedBatch, Record};
use crate::side_output::Tagged;
use crate::{Error, Result};
use std::marker::PhantomData;

/// Keeps the main records of a step; passes its batches through untouched when the step is
/// not tagged (no side output is read).
pub(crate) struct MainOutputOp<O> {
    pub(crate) tagged: bool,
    pub(crate) _o: PhantomData<fn() -> O>,
}

impl<O: Data> OperatorCore for MainOutputOp<O> {
    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        if !self.tagged {
            out.batch(batch);
            return Ok(());
        }
        let main: Vec<Record<O>> = downcast::<Tagged<O>>(batch)?
            .into_iter()
            .filter_map(|r| match r.value {
                Tagged::Main(value) => Some(Record {
                    value,
                    timestamp: r.timestamp,
                }),
                Tagged::Side(..) => None,
            })
            .collect();
        out.batch(erase(main));
        Ok(())
    }
}

/// Decodes the records of one side output (tag id `id`, named `name`) of a step whose main
/// records are `O`.
pub(crate) struct SideOutputOp<O, T> {
    pub(crate) id: u64,
    pub(crate) name: &'static str,
    pub(crate) _ot: PhantomData<fn() -> (O, T)>,
}

impl<O: Data, T: Data> OperatorCore for SideOutputOp<O, T> {
    fn forwards_event_time(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let mut side: Vec<Record<T>> = Vec::new();
        for r in downcast::<Tagged<O>>(batch)? {
            if let Tagged::Side(id, bytes) = r.value {
                if id == self.id {
                    let (value, _): (T, usize) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                        .map_err(|e| {
                            Error::data(format!(
                                "a record of side output \"{}\" does not decode: {e}",
                                self.name
                            ))
                        })?;
                    side.push(Record {
                        value,
                        timestamp: r.timestamp,
                    });
                }
            }
        }
        out.batch(erase(side));
        Ok(())
    }
}
