//! Durable files: checksums and the fsyncs that make new files and directory entries survive
//! a crash. Shared by checkpoint storage, the file sink and the state backends.

use crate::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// CRC-32C and size of a file, read in chunks.
pub fn checksum_file(path: &Path) -> Result<(u64, u32)> {
    let mut f = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            return Ok((size, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
}

/// Fsyncs a directory so that renames and new entries in it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsyncing directory {}", dir.display()), e))
}
