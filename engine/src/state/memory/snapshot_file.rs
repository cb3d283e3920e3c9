//! The memory backend's snapshot file, `state.bin`: the bincode-encoded entries in key order,
//! framed ([`framed`](crate::state::framed): magic, format version, length, CRC32C), the
//! encoding of a `BTreeMap<Vec<u8>, Vec<u8>>`. The file is written under a temporary name,
//! synced and renamed, so after a crash `state.bin` is either absent or whole.

use crate::state::framed::{frame, unframe, FileKind};
use crate::{Error, Result};
use bincode::Encode;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Name of the single file a memory snapshot consists of.
pub(super) const SNAPSHOT_FILE: &str = "state.bin";
/// What a snapshot file is: its first bytes and the format version this code writes.
pub(super) const KIND: FileKind = FileKind {
    magic: b"WEIRMEM\0",
    version: 1,
};

/// Writes `entries` (which encode as a `BTreeMap<Vec<u8>, Vec<u8>>` does) to `dir/state.bin`,
/// creating `dir` (which must not exist), and makes the file, `dir` and its entry in the parent
/// durable. The file is written under a temporary name and renamed, so `state.bin` is never
/// seen half-written.
pub(super) fn save(entries: &impl Encode, dir: &Path) -> Result<()> {
    let failed = |what: &str, e: std::io::Error| Error::checkpoint(format!("{what} {}", dir.display())).with_source(e);
    let payload = bincode::encode_to_vec(entries, bincode::config::standard())
        .map_err(|e| Error::checkpoint("encoding memory state").with_source(e))?;
    let bytes = frame(KIND, &payload);
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        fs::create_dir_all(parent).map_err(|e| failed("creating the parent of", e))?;
    }
    fs::create_dir(dir).map_err(|e| failed("creating", e))?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| failed("creating a file in", e))?;
    file.write_all(&bytes).map_err(|e| failed("writing into", e))?;
    file.sync_all().map_err(|e| failed("syncing a file in", e))?;
    drop(file);
    fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(|e| failed("renaming a file in", e))?;
    sync_dir(dir).map_err(|e| failed("syncing", e))?;
    if let Some(parent) = parent {
        sync_dir(parent).map_err(|e| failed("syncing the parent of", e))?;
    }
    Ok(())
}

/// Reads the map written by [`save`] into `dir`.
pub(super) fn load(dir: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = fs::read(&path).map_err(|e| Error::checkpoint(format!("reading {}", path.display())).with_source(e))?;
    let bad = |why: &str| Error::checkpoint(format!("the memory snapshot {} {why}", path.display()));
    let payload = unframe(KIND, &bytes).map_err(|e| bad(&e.to_string()))?;
    let (map, read) = bincode::decode_from_slice(payload, bincode::config::standard())
        .map_err(|e| bad("cannot decode its entries").with_source(e))?;
    if read != payload.len() {
        return Err(bad("has trailing bytes after its entries"));
    }
    Ok(map)
}

/// Makes the entries of directory `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
