//! The checkpointed state of an async subtask: the records whose results were not emitted
//! (with the markers between them) and the event time of its inputs, and how a restore at
//! another parallelism shares the records out.
//!
//! # After a crash
//! A record is in the state of exactly one subtask of a checkpoint (or its results are before
//! the barrier in the output). After a restore at the same parallelism each subtask gets its
//! own records back; at another parallelism every new subtask reads every old subtask's state
//! and keeps the records whose position in the combined list (old subtasks in index order,
//! each in arrival order) is its index modulo the new parallelism: each record is called again
//! by exactly one new subtask. Markers are dropped then (a watermark of one old subtask may
//! not overtake another's records); watermarks only come later, never too early.

use super::queue::Saved;
use crate::data::Data;
use crate::keyed::event_time::EventTime;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Version tag of the encoding.
const VERSION: u8 = 1;

/// What one async subtask writes at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AsyncState<I> {
    version: u8,
    /// Queued records and markers, in arrival order.
    pub(crate) queued: Vec<Saved<I>>,
    /// The watermarks of the subtask's inputs (restored into its input gate).
    pub(crate) input: EventTime,
}

impl<I: Data> AsyncState<I> {
    pub(crate) fn new(queued: Vec<Saved<I>>, input: EventTime) -> Self {
        AsyncState {
            version: VERSION,
            queued,
            input,
        }
    }

    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| Error::checkpoint(format!("encoding the records in flight: {e}")))
    }

    /// Decodes the state `describe` (the subtask that wrote it) wrote.
    ///
    /// # Errors
    /// `Checkpoint` if it does not decode (another record type, a corrupt checkpoint).
    pub(crate) fn from_bytes(raw: &[u8], describe: &str) -> Result<Self> {
        let (state, _): (Self, usize) = bincode::serde::decode_from_slice(raw, bincode::config::standard())
            .map_err(|e| Error::checkpoint(format!("decoding the records in flight of {describe}: {e}")))?;
        if state.version != VERSION {
            return Err(Error::checkpoint(format!(
                "the records in flight of {describe} have encoding version {}, this build reads {VERSION}",
                state.version
            )));
        }
        Ok(state)
    }

    /// The share of new subtask `subtask` of `parallelism` of the states of old subtasks
    /// `old` (by their index): its records, and the earliest event time of them all.
    pub(crate) fn rescaled(mut old: Vec<(usize, Self)>, subtask: usize, parallelism: usize) -> Self {
        old.sort_by_key(|(i, _)| *i);
        let mut input: Option<EventTime> = None;
        let mut queued = Vec::new();
        let mut position = 0usize;
        for (_, state) in old {
            input = Some(match input {
                None => state.input,
                Some(earlier) => earlier.min(state.input),
            });
            for saved in state.queued {
                if let Saved::Record { .. } = saved {
                    if position % parallelism == subtask {
                        queued.push(saved);
                    }
                    position += 1;
                }
            }
        }
        Self::new(queued, input.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::Marker;
    use super::*;

    fn records(values: &[u32]) -> Vec<Saved<u32>> {
        let mut v: Vec<Saved<u32>> = values
            .iter()
            .map(|&value| Saved::Record {
                value,
                timestamp: Some(value as i64),
            })
            .collect();
        v.insert(1, Saved::Marker(Marker::Watermark(1)));
        v
    }

    #[test]
    fn rescaling_gives_every_record_to_exactly_one_new_subtask() {
        let old = vec![
            (1, AsyncState::new(records(&[10, 11, 12]), EventTime::default())),
            (0, AsyncState::new(records(&[0, 1]), EventTime::default())),
        ];
        let mut all = Vec::new();
        for subtask in 0..3 {
            let share = AsyncState::rescaled(old.clone(), subtask, 3);
            for s in share.queued {
                match s {
                    Saved::Record { value, .. } => all.push(value),
                    Saved::Marker(m) => panic!("marker {m:?} kept across a rescale"),
                }
            }
        }
        all.sort();
        assert_eq!(all, vec![0, 1, 10, 11, 12]);
    }

    #[test]
    fn state_round_trips_and_names_the_subtask_when_corrupt() {
        let s = AsyncState::new(records(&[1, 2]), EventTime::default());
        let raw = s.to_bytes().unwrap();
        assert_eq!(AsyncState::<u32>::from_bytes(&raw, "enrich[0]").unwrap(), s);
        let err = AsyncState::<u32>::from_bytes(&raw[..3], "enrich[0]").unwrap_err();
        assert!(err.to_string().contains("enrich[0]"), "{err}");
    }
}
