//! The event time of a keyed operator subtask, kept in its keyed store so that it is part of
//! every checkpoint and moves with its key groups.
//!
//! At each snapshot the subtask writes its [`EventTime`] into every key group it owns (one entry
//! per key group under [`TAG_WATERMARK`](crate::state::layout::TAG_WATERMARK)). A subtask that
//! opens from a checkpoint starts at the minimum over its key groups. Without a rescale every
//! key group of a subtask holds the same value, so the subtask continues at exactly the
//! watermark it had when the checkpoint was taken: a record that was late then is late again,
//! a window that fired does not fire again before the watermark moves, and event-time timers
//! and TTL see the same time as in a run without failure. After a rescale no key group sees a
//! watermark beyond the one its previous owner had.

use crate::data::{Timestamp, MIN_WATERMARK};
use crate::state::layout::watermark_key;
use crate::state::{KeyGroupRange, KeyedStore};
use crate::time::ChannelWatermark;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Version tag of the stored encoding.
const VERSION: u8 = 1;

/// What a keyed operator subtask knows about event time at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventTime {
    /// The operator's watermark: the last combined input watermark it acted on.
    pub(crate) watermark: Timestamp,
    /// The watermark and idleness of each input channel of the subtask's gate, in channel
    /// order; empty when not known.
    pub(crate) channels: Vec<ChannelWatermark>,
}

impl Default for EventTime {
    fn default() -> Self {
        EventTime {
            watermark: MIN_WATERMARK,
            channels: Vec::new(),
        }
    }
}

impl EventTime {
    /// The event time restored from the key groups of `range` in `store`. A key group without
    /// an entry (a fresh start, or a checkpoint written before watermarks were checkpointed)
    /// makes the result the start of time.
    pub(crate) fn load(store: &mut dyn KeyedStore, range: KeyGroupRange) -> Result<EventTime> {
        let mut restored: Option<EventTime> = None;
        for kg in range.start..=range.end {
            let Some(raw) = store.get(&watermark_key(kg))? else {
                return Ok(EventTime::default());
            };
            let et = decode(&raw)?;
            restored = Some(match restored {
                None => et,
                Some(r) => r.min(et),
            });
        }
        Ok(restored.unwrap_or_default())
    }

    /// Writes this event time into every key group of `range`.
    pub(crate) fn store(&self, store: &mut dyn KeyedStore, range: KeyGroupRange) -> Result<()> {
        let raw = self.to_bytes()?;
        for kg in range.start..=range.end {
            store.put(&watermark_key(kg), &raw)?;
        }
        Ok(())
    }

    /// The stored encoding (a version byte, then bincode).
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut raw = vec![VERSION];
        bincode::serde::encode_into_std_write(self, &mut raw, bincode::config::standard())?;
        Ok(raw)
    }

    /// Reads what [`to_bytes`](Self::to_bytes) wrote.
    pub(crate) fn from_bytes(raw: &[u8]) -> Result<EventTime> {
        decode(raw)
    }

    /// The earlier of two event times, channel by channel (a channel is idle only if idle in
    /// both; channels are dropped when the two disagree on their number).
    pub(crate) fn min(self, other: EventTime) -> EventTime {
        let channels = if self.channels.len() == other.channels.len() {
            self.channels
                .iter()
                .zip(&other.channels)
                .map(|(a, b)| ChannelWatermark {
                    watermark: a.watermark.min(b.watermark),
                    idle: a.idle && b.idle,
                })
                .collect()
        } else {
            Vec::new()
        };
        EventTime {
            watermark: self.watermark.min(other.watermark),
            channels,
        }
    }
}

fn decode(raw: &[u8]) -> Result<EventTime> {
    match raw.split_first() {
        Some((&VERSION, rest)) => {
            let (et, _) = bincode::serde::decode_from_slice(rest, bincode::config::standard())?;
            Ok(et)
        }
        _ => Err(Error::checkpoint(
            "keyed state holds a watermark entry of an unknown format (written by a newer Weir?)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryBackend;
    use crate::state::{StateBackend, StoreScope};

    fn store(range: KeyGroupRange) -> Box<dyn KeyedStore> {
        MemoryBackend::new()
            .open_store(
                &StoreScope {
                    job: "j".into(),
                    operator: "op".into(),
                    subtask: 0,
                    key_groups: range,
                },
                None,
            )
            .unwrap()
    }

    fn active(ws: &[Timestamp]) -> Vec<ChannelWatermark> {
        ws.iter()
            .map(|&watermark| ChannelWatermark { watermark, idle: false })
            .collect()
    }

    #[test]
    fn a_store_without_entries_starts_at_the_start_of_time() {
        let range = KeyGroupRange { start: 0, end: 3 };
        let mut st = store(range);
        assert_eq!(EventTime::load(st.as_mut(), range).unwrap(), EventTime::default());
    }

    #[test]
    fn what_is_stored_is_loaded_and_a_subtask_takes_the_minimum_over_its_key_groups() {
        let mut st = store(KeyGroupRange { start: 0, end: 7 });
        let a = EventTime {
            watermark: 40,
            channels: active(&[40, 55]),
        };
        let b = EventTime {
            watermark: 30,
            channels: vec![
                ChannelWatermark {
                    watermark: 60,
                    idle: false,
                },
                ChannelWatermark {
                    watermark: 30,
                    idle: true,
                },
            ],
        };
        a.store(st.as_mut(), KeyGroupRange { start: 0, end: 3 }).unwrap();
        b.store(st.as_mut(), KeyGroupRange { start: 4, end: 7 }).unwrap();
        assert_eq!(
            EventTime::load(st.as_mut(), KeyGroupRange { start: 0, end: 3 }).unwrap(),
            a
        );
        assert_eq!(
            EventTime::load(st.as_mut(), KeyGroupRange { start: 2, end: 5 }).unwrap(),
            EventTime {
                watermark: 30,
                channels: active(&[40, 30])
            }
        );
        // One key group without an entry: nothing is known.
        assert_eq!(
            EventTime::load(st.as_mut(), KeyGroupRange { start: 6, end: 8 }).unwrap(),
            EventTime::default()
        );
    }

    #[test]
    fn key_groups_that_disagree_on_the_channels_keep_only_the_watermark() {
        let mut st = store(KeyGroupRange { start: 0, end: 1 });
        let one = KeyGroupRange { start: 0, end: 0 };
        let two = KeyGroupRange { start: 1, end: 1 };
        EventTime {
            watermark: 5,
            channels: active(&[5]),
        }
        .store(st.as_mut(), one)
        .unwrap();
        EventTime {
            watermark: 9,
            channels: active(&[9, 12]),
        }
        .store(st.as_mut(), two)
        .unwrap();
        assert_eq!(
            EventTime::load(st.as_mut(), KeyGroupRange { start: 0, end: 1 }).unwrap(),
            EventTime {
                watermark: 5,
                channels: vec![]
            }
        );
    }

    #[test]
    fn an_entry_of_an_unknown_format_is_a_checkpoint_error() {
        let range = KeyGroupRange { start: 0, end: 0 };
        let mut st = store(range);
        st.put(&watermark_key(0), &[9, 1, 2]).unwrap();
        let err = EventTime::load(st.as_mut(), range).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Checkpoint, "{err}");
    }
}
