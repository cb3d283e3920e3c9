//! The RocksDB options and write options each [`MemtableAtBarrier`] needs (the snapshot
//! itself is in `segment::checkpoint_into`).

use crate::state::MemtableAtBarrier;
use rocksdb::{DBRecoveryMode, Options, WriteOptions};

/// Sets the database options `choice` needs on `opts`; returns the options-string part for
/// those the Rust binding has no setter for.
pub(super) fn configure(choice: MemtableAtBarrier, opts: &mut Options) -> &'static str {
    match choice {
        MemtableAtBarrier::Flush => "",
        MemtableAtBarrier::Log => {
            // The log is written out by the snapshot (FlushWAL), not at every write.
            opts.set_manual_wal_flush(true);
            // A restored log that does not replay completely is a damaged checkpoint: refuse
            // it rather than start from a prefix of its writes.
            opts.set_wal_recovery_mode(DBRecoveryMode::AbsoluteConsistency);
            // The replayed writes stay in the memtable; opening does not wait for a flush.
            "avoid_flush_during_recovery=true"
        }
    }
}

/// The options of every write of a store: through the write-ahead log only when snapshots
/// include it.
pub(super) fn write_options(choice: MemtableAtBarrier) -> WriteOptions {
    let mut write = WriteOptions::default();
    write.disable_wal(choice == MemtableAtBarrier::Flush);
    write
}
