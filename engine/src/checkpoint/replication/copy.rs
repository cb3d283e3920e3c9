//! Copies one checkpoint file between two storages and verifies the copy where it landed.

use crate::checkpoint::metadata::StoredFile;
use crate::checkpoint::storage::CheckpointStorage;
use crate::{Error, Result};
use std::path::Path;

/// Copies `file` from `from` to `to` through `scratch` (a local directory): the source is
/// verified while it is fetched, the copy is read back from `to` and verified against the same
/// size and CRC-32C. Returns the bytes copied.
///
/// # Errors
/// `Checkpoint` when the source is missing or corrupt (retention at the first site may have
/// removed it: the checkpoint is then superseded) or the copy reads back different;
/// `External` for I/O failures of either storage.
pub(crate) fn copy_verified(
    from: &dyn CheckpointStorage,
    to: &dyn CheckpointStorage,
    file: &StoredFile,
    scratch: &Path,
) -> Result<u64> {
    let local = scratch.join("copy");
    let result = (|| {
        from.fetch_verified(file, &local)?;
        let stored = to.put_file(&local, &file.key, &file.name)?;
        if (stored.size, stored.crc32c) != (file.size, file.crc32c) {
            return Err(Error::checkpoint(format!(
                "replica of {} stored size {} crc {:08x}, expected size {} crc {:08x}",
                file.key, stored.size, stored.crc32c, file.size, file.crc32c
            )));
        }
        let _ = std::fs::remove_file(&local);
        // Read back from the replica: what a restore there will read.
        to.fetch_verified(file, &local)
            .map_err(|e| e.context(format!("verifying the replica of {}", file.key)))?;
        Ok(file.size)
    })();
    let _ = std::fs::remove_file(&local);
    result
}
