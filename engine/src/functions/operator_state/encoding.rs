//! What one subtask of a function step writes at a checkpoint: its operator lists (elements
//! encoded with their schema header) and the event time of its input.

use super::descriptor::ListDistribution;
use crate::keyed::event_time::EventTime;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// First byte of the encoding. Checkpoints written before function steps had operator state
/// hold only the input's [`EventTime`], whose encoding starts with a small version number.
const TAG: u8 = 0xF5;
/// Version of the encoding after the tag.
const VERSION: u8 = 1;

/// One list as a subtask wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedList {
    pub(crate) name: String,
    pub(crate) distribution: ListDistribution,
    /// Each element with its schema header (see [`schema`](crate::keyed::schema)).
    pub(crate) elements: Vec<Vec<u8>>,
}

/// The operator state of one function subtask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedFunctionState {
    /// The subtask that wrote it.
    pub(crate) subtask: usize,
    /// The step's parallelism then (0 in state written before it was recorded).
    pub(crate) parallelism: usize,
    /// The watermarks of the subtask's input.
    pub(crate) input: EventTime,
    /// Its lists, in the order they were declared.
    pub(crate) lists: Vec<SavedList>,
}

impl SavedFunctionState {
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut raw = vec![TAG, VERSION];
        bincode::serde::encode_into_std_write(self, &mut raw, bincode::config::standard())
            .map_err(|e| Error::checkpoint(format!("encoding the operator state of a function step: {e}")))?;
        Ok(raw)
    }

    /// Decodes what subtask `subtask` (`describe` for messages) wrote.
    ///
    /// # Errors
    /// `Checkpoint` if it does not decode.
    pub(crate) fn from_bytes(raw: &[u8], subtask: usize, describe: &str) -> Result<Self> {
        match raw {
            [TAG, VERSION, rest @ ..] => {
                let (state, _): (Self, usize) = bincode::serde::decode_from_slice(rest, bincode::config::standard())
                    .map_err(|e| Error::checkpoint(format!("decoding the operator state of {describe}: {e}")))?;
                Ok(state)
            }
            [TAG, v, ..] => Err(Error::checkpoint(format!(
                "the operator state of {describe} has encoding version {v}, this build reads {VERSION}"
            ))),
            _ => {
                let input = EventTime::from_bytes(raw)
                    .map_err(|e| e.context(format!("restoring the input watermarks of {describe}")))?;
                Ok(SavedFunctionState {
                    subtask,
                    parallelism: 0,
                    input,
                    lists: Vec::new(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::ChannelWatermark;

    fn input() -> EventTime {
        EventTime {
            watermark: 42,
            channels: vec![ChannelWatermark {
                watermark: 42,
                idle: false,
            }],
        }
    }

    #[test]
    fn the_state_round_trips() {
        let s = SavedFunctionState {
            subtask: 1,
            parallelism: 3,
            input: input(),
            lists: vec![SavedList {
                name: "buffer".into(),
                distribution: ListDistribution::Union,
                elements: vec![vec![1, 2], vec![]],
            }],
        };
        assert_eq!(
            SavedFunctionState::from_bytes(&s.to_bytes().unwrap(), 1, "f[1]").unwrap(),
            s
        );
    }

    #[test]
    fn state_of_a_step_without_lists_written_before_reads_as_its_watermarks() {
        let raw = input().to_bytes().unwrap();
        let s = SavedFunctionState::from_bytes(&raw, 2, "f[2]").unwrap();
        assert_eq!((s.subtask, s.parallelism, s.input, s.lists), (2, 0, input(), vec![]));
    }

    #[test]
    fn corrupt_state_names_the_subtask() {
        let raw = SavedFunctionState {
            subtask: 0,
            parallelism: 1,
            input: input(),
            lists: vec![],
        }
        .to_bytes()
        .unwrap();
        let e = SavedFunctionState::from_bytes(&raw[..4], 0, "batcher[0]").unwrap_err();
        assert!(e.to_string().contains("batcher[0]"), "{e}");
        let e = SavedFunctionState::from_bytes(&[TAG, 9], 0, "batcher[0]").unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
    }
}
