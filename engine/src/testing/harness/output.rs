//! What a harnessed step emitted: its main records, its side records (by tag) and its
//! watermarks, in the order it emitted them.

use crate::data::{downcast, Data, Record, Timestamp};
use crate::operator::{Emitted, Emitter};
use crate::side_output::{OutputTag, Tagged};
use crate::{Error, Result};

/// The output of a harnessed step, collected from the operator's [`Emitter`] after each call.
#[derive(Debug)]
pub(crate) struct Collected<O> {
    /// Whether the operator emits [`Tagged`] records (main and side records in one stream).
    pub(crate) tagged: bool,
    pub(crate) records: Vec<Record<O>>,
    /// Side records: the tag's id and the record's encoding.
    pub(crate) side: Vec<Record<(u64, Vec<u8>)>>,
    pub(crate) watermarks: Vec<Timestamp>,
}

impl<O: Data> Collected<O> {
    pub(crate) fn new(tagged: bool) -> Self {
        Collected {
            tagged,
            records: Vec::new(),
            side: Vec::new(),
            watermarks: Vec::new(),
        }
    }

    /// Takes what the operator emitted during one call.
    pub(crate) fn collect(&mut self, emitter: Emitter) -> Result<()> {
        for item in emitter.items {
            match item {
                Emitted::Batch(batch) if self.tagged => {
                    for r in downcast::<Tagged<O>>(batch)? {
                        match r.value {
                            Tagged::Main(value) => self.records.push(Record {
                                value,
                                timestamp: r.timestamp,
                            }),
                            Tagged::Side(id, bytes) => self.side.push(Record {
                                value: (id, bytes),
                                timestamp: r.timestamp,
                            }),
                        }
                    }
                }
                Emitted::Batch(batch) => self.records.extend(downcast::<O>(batch)?),
                Emitted::Watermark(wm) => self.watermarks.push(wm),
                Emitted::Idle(_) => {}
            }
        }
        Ok(())
    }

    /// The records of side output `tag`, decoded; with `take`, they are removed.
    pub(crate) fn side_output<T: Data>(&mut self, tag: &OutputTag<T>, take: bool) -> Result<Vec<Record<T>>> {
        let id = tag.id();
        let mut out = Vec::new();
        for r in self.side.iter().filter(|r| r.value.0 == id) {
            let (value, _) = bincode::serde::decode_from_slice::<T, _>(&r.value.1, bincode::config::standard())
                .map_err(|e| Error::data(format!("decoding a record of side output \"{}\": {e}", tag.name())))?;
            out.push(Record {
                value,
                timestamp: r.timestamp,
            });
        }
        if take {
            self.side.retain(|r| r.value.0 != id);
        }
        Ok(out)
    }
}

/// The output accessors both harnesses share (`output`, `take_output`, `output_values`,
/// `side_output`, `take_side_output`, `emitted_watermarks`), over a field `collected` (or the
/// [`Collected`] at the path given).
macro_rules! output_accessors {
    ($out:ty) => {
        $crate::testing::harness::output::output_accessors!($out, collected);
    };
    ($out:ty, $($field:ident).+) => {
        /// The main records emitted so far (since the last [`take_output`](Self::take_output)),
        /// in order, each with its timestamp.
        pub fn output(&self) -> &[$crate::data::Record<$out>] {
            &self.$($field).+.records
        }

        /// The main records emitted so far, which are then forgotten.
        pub fn take_output(&mut self) -> Vec<$crate::data::Record<$out>> {
            std::mem::take(&mut self.$($field).+.records)
        }

        /// The values of the main records emitted so far, without their timestamps.
        pub fn output_values(&self) -> Vec<$out> {
            self.$($field).+.records.iter().map(|r| r.value.clone()).collect()
        }

        /// The records emitted to side output `tag` so far, in order, with their timestamps.
        ///
        /// # Errors
        /// `Data` if a record does not decode as `S`.
        pub fn side_output<S: $crate::data::Data>(
            &mut self,
            tag: &$crate::side_output::OutputTag<S>,
        ) -> $crate::Result<Vec<$crate::data::Record<S>>> {
            self.$($field).+.side_output(tag, false)
        }

        /// As [`side_output`](Self::side_output); the records are then forgotten.
        ///
        /// # Errors
        /// `Data` if a record does not decode as `S`.
        pub fn take_side_output<S: $crate::data::Data>(
            &mut self,
            tag: &$crate::side_output::OutputTag<S>,
        ) -> $crate::Result<Vec<$crate::data::Record<S>>> {
            self.$($field).+.side_output(tag, true)
        }

        /// The watermarks the step emitted (forwarded downstream), in order.
        pub fn emitted_watermarks(&self) -> &[$crate::data::Timestamp] {
            &self.$($field).+.watermarks
        }
    };
}
pub(crate) use output_accessors;
