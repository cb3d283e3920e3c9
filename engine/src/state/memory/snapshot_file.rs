//! The memory backend's snapshot file, `state.bin`: a header (magic, format version, payload
//! length, CRC32C of the payload) followed by the bincode-encoded entries in key order, the
//! encoding of a `BTreeMap<Vec<u8>, Vec<u8>>`. The file is written under a temporary name,
//! synced and renamed, so after a crash `state.bin` is either absent or whole.

use crate::{Error, Result};
use bincode::Encode;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Name of the single file a memory snapshot consists of.
pub(super) const SNAPSHOT_FILE: &str = "state.bin";
/// First bytes of a snapshot file.
pub(super) const MAGIC: &[u8; 8] = b"WEIRMEM\0";
/// Version of the snapshot format written by this code.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Header length: magic, version (u32), payload length (u64), payload CRC32C (u32).
pub(super) const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// Writes `entries` (which encode as a `BTreeMap<Vec<u8>, Vec<u8>>` does) to `dir/state.bin`,
/// creating `dir` (which must not exist), and makes the file, `dir` and its entry in the parent
/// durable. The file is written under a temporary name and
/// renamed, so `state.bin` is never seen half-written.
pub(super) fn save(entries: &impl Encode, dir: &Path) -> Result<()> {
    let failed = |what: &str, e: std::io::Error| Error::checkpoint(format!("{what} {}", dir.display())).with_source(e);
    let payload = bincode::encode_to_vec(entries, bincode::config::standard())
        .map_err(|e| Error::checkpoint("encoding memory state").with_source(e))?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);

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
    let bad = |why: &str| Error::checkpoint(format!("{} is not a usable memory snapshot: {why}", path.display()));
    if bytes.len() < HEADER_LEN {
        return Err(bad("shorter than its header"));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad("bad magic"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(&format!("format version {version}, expected {FORMAT_VERSION}")));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(bad(&format!("payload is {} bytes, header says {len}", payload.len())));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(bad("checksum mismatch"));
    }
    let (map, read) = bincode::decode_from_slice(payload, bincode::config::standard())
        .map_err(|e| bad("cannot decode entries").with_source(e))?;
    if read != payload.len() {
        return Err(bad("trailing bytes after the entries"));
    }
    Ok(map)
}

/// Makes the entries of directory `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
