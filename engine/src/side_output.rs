//! Side outputs: typed [`OutputTag`]s a step emits to besides its main output, each read back
//! as a stream of its own (`stream.side_output(&TAG)`), as Flink's `OutputTag`.
//!
//! A step with side outputs emits one stream of [`Tagged`] records: its main records and, per
//! side record, the tag's id and the record's encoding. Hidden steps fed forward by it (at its
//! parallelism) split that stream again: `"{step}.main"` (or `"{step}.results"` for windows)
//! keeps the main records, `"{step}.{tag}"` decodes one tag's records. Side records travel
//! with the main records in the same batches, so they carry event time and watermarks like
//! them and are covered by the same barriers.
//!
//! # After a crash
//! Side records are part of the step's output: the records emitted before a checkpoint's
//! barrier are in every downstream step's state or sink committable of that checkpoint, those
//! after it are emitted again by the replay. A side output written to an exactly-once sink
//! therefore has every record exactly once, as the main output.
//!
//! A step whose side outputs nobody reads drops its side records (Flink does the same) and
//! emits its main records unchanged, without the tagging.

use crate::data::{Data, Record, Timestamp};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// The name and record type of a side output. Declare it once (a `const` works) and use it in
/// the function that emits (`ctx.output(&TAG, value)`) and where the stream is read
/// (`stream.side_output(&TAG)`).
///
/// The tag's id combines its name and its record type's name, so two tags with the same name
/// and different types are different outputs.
pub struct OutputTag<T> {
    name: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for OutputTag<T> {}

impl<T> std::fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({}: {})", self.name, std::any::type_name::<T>())
    }
}

impl<T: Data> OutputTag<T> {
    /// A tag named `name` (it names the hidden step that reads the side output:
    /// `"{step}.{name}"`).
    pub const fn new(name: &'static str) -> Self {
        OutputTag { name, _t: PhantomData }
    }

    /// The tag's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The id side records of this tag carry: a hash of the name and the record type.
    pub fn id(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(self.name.as_bytes());
        h.update(&[0]);
        h.update(std::any::type_name::<T>().as_bytes());
        h.digest()
    }
}

/// The tag of a window step's late records (`*_with_late`).
pub(crate) fn late_records<T: Data>() -> OutputTag<T> {
    OutputTag::new("late")
}

/// One record of a step with side outputs: a main record, or a side record with its tag's id
/// and its encoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Tagged<O> {
    /// A record of the main output.
    Main(O),
    /// A record of the side output whose [`OutputTag::id`] this is.
    Side(u64, Vec<u8>),
}

/// The side records one call of a user function emitted, in order.
#[derive(Debug, Default)]
pub struct SideOutputs {
    pub(crate) records: Vec<Record<(u64, Vec<u8>)>>,
}

impl SideOutputs {
    /// Emits `value` to `tag` with event time `timestamp`.
    ///
    /// # Errors
    /// `Data` if `value` cannot be encoded.
    pub fn emit<T: Data>(&mut self, tag: &OutputTag<T>, value: &T, timestamp: Option<Timestamp>) -> Result<()> {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| Error::data(format!("encoding a record of side output \"{}\": {e}", tag.name)))?;
        self.records.push(Record {
            value: (tag.id(), bytes),
            timestamp,
        });
        Ok(())
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The main records and these side records as one tagged batch (the side records follow
    /// the main ones); `self` is left empty.
    pub(crate) fn tag_with<O>(&mut self, main: Vec<Record<O>>) -> Vec<Record<Tagged<O>>> {
        let mut out = Vec::with_capacity(main.len() + self.records.len());
        out.extend(main.into_iter().map(|r| Record {
            value: Tagged::Main(r.value),
            timestamp: r.timestamp,
        }));
        out.extend(self.records.drain(..).map(|r| Record {
            value: Tagged::Side(r.value.0, r.value.1),
            timestamp: r.timestamp,
        }));
        out
    }

    /// Drops what was emitted (nobody reads the side outputs).
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}

/// A record a fallible step (`try_map`, `try_filter`, `try_flat_map`) could not process under
/// [`BadRecordPolicy::DeadLetter`]: the record as it arrived, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter<T> {
    /// The step that rejected the record.
    pub step: String,
    /// The record.
    pub record: T,
    /// The function's error message.
    pub error: String,
}

impl<T: Data> DeadLetter<T> {
    /// The side output of a fallible step's dead letters (records of type `T`).
    pub const TAG: OutputTag<DeadLetter<T>> = OutputTag::new("dead-letters");
}

/// What a fallible step does with a record its function returns an error for (the names are
/// those of the Kafka source's policy for records it cannot deserialize).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadRecordPolicy {
    /// Fail the job with a `Data` error naming the step and the error (without restarting:
    /// the same record would fail again).
    #[default]
    Fail,
    /// Skip the record and count it: the step's counter `skipped_records` (job report), exported
    /// as `weir_skipped_records_total`.
    Skip,
    /// Emit a [`DeadLetter`] with the record and the error to the step's side output
    /// [`DeadLetter::TAG`] (read it with `stream.dead_letters()`), and count it: the step's
    /// counter `dead_letters`, exported as `weir_dead_letters_total`. Exactly once, as any
    /// side output.
    DeadLetter,
}
