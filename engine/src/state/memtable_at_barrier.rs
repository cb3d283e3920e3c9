//! What a store's snapshot at a checkpoint barrier does with the writes that are still in its
//! memtable (a log-structured store's in-memory part). The RocksDB backend implements both
//! choices (`rocks::barrier`); backends without a memtable ignore the setting.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What a store's snapshot at a barrier does with the writes still in its memtable
/// ([`RocksDbBackend::memtable_at_barrier`](super::RocksDbBackend::memtable_at_barrier)).
///
/// Both give the same checkpoint contents: exactly the writes made before the barrier.
///
/// # After a crash
/// Neither makes the working directory durable: between barriers nothing is fsynced, and the
/// next open of the scope deletes the directory and restores from a checkpoint. A snapshot is
/// fsynced before the barrier's snapshot call returns, so a completed checkpoint never refers
/// to a log tail that a crash could cut off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemtableAtBarrier {
    /// Flush them into an SST file: writes skip RocksDB's write-ahead log and the snapshot
    /// holds SST files only. The subtask waits for the flush at every barrier (50–150 ms with
    /// 100 k keys updated at full speed), and each flush adds a small L0 file that compaction
    /// rewrites.
    #[default]
    Flush,
    /// Keep them in the memtable: writes also go to RocksDB's write-ahead log (buffered in the
    /// process and written out at the barrier, never fsynced between barriers), and the
    /// snapshot includes the log's live files, which a restore replays into the memtable. The
    /// subtask waits only for a copy of the log at every barrier (~15 ms), at the cost of the
    /// log writes (about 15 % of an update-heavy job without the state cache) and of
    /// incremental checkpoints that carry the log since the last flush of the memtable.
    Log,
}

impl MemtableAtBarrier {
    /// The name used in configuration files and flags.
    pub fn name(self) -> &'static str {
        match self {
            MemtableAtBarrier::Flush => "flush",
            MemtableAtBarrier::Log => "log",
        }
    }
}

impl FromStr for MemtableAtBarrier {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "flush" => Ok(MemtableAtBarrier::Flush),
            "log" => Ok(MemtableAtBarrier::Log),
            other => Err(Error::config(format!(
                "memtable at barrier {other:?}: expected \"flush\" or \"log\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_others_are_refused() {
        for m in [MemtableAtBarrier::Flush, MemtableAtBarrier::Log] {
            assert_eq!(m.name().parse::<MemtableAtBarrier>().unwrap(), m);
        }
        let e = "wal".parse::<MemtableAtBarrier>().unwrap_err();
        assert!(e.to_string().contains("\"flush\" or \"log\""), "{e}");
    }
}
