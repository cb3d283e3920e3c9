//! The segment list of a RocksDB snapshot, and how the segments' files are named in it.
//!
//! A snapshot directory is flat. Each segment's RocksDB checkpoint files are named
//! `<segment id>.<RocksDB file name>` (`3f9a...c2.000007.sst`), except those of a segment whose
//! id is empty (a store that was never rescaled), which keep their RocksDB names: such a
//! snapshot is laid out exactly as snapshots were before stores had segments. The file
//! [`SEGMENTS_FILE`] lists the segments and the key groups each owns: the bincode-encoded list,
//! framed ([`framed`](crate::state::framed)). A snapshot without it is one store owning every
//! key group of its subtask (written before segments).
//!
//! Because file names carry the segment id, and ids are fresh for every segment a rescale
//! creates, the same name in two checkpoints of a subtask always means the same bytes (RocksDB
//! never reuses a file number within a database): incremental checkpoints reference it.

use crate::state::framed::{frame, unframe, FileKind};
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the segment list in a snapshot directory.
pub(super) const SEGMENTS_FILE: &str = "SEGMENTS";
/// What a segment list is: its first bytes and the format version this code writes.
const KIND: FileKind = FileKind {
    magic: b"WEIRSEG\0",
    version: 1,
};

/// One segment of a snapshot: its id and the key groups it owns, ascending and disjoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SegmentEntry {
    /// Empty for the only segment of a store that was never rescaled; otherwise 16 hex digits.
    pub(super) id: String,
    /// The key groups the segment owns.
    pub(super) ranges: Vec<KeyGroupRange>,
}

/// The name under which file `name` of segment `id` is stored in a snapshot.
pub(super) fn file_name(id: &str, name: &str) -> String {
    if id.is_empty() {
        name.to_string()
    } else {
        format!("{id}.{name}")
    }
}

/// A new segment id, distinct (with overwhelming probability) from every id written before:
/// 64 bits from the standard library's randomly keyed hasher over the time, the process and a
/// counter.
pub(super) fn fresh_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let h = std::collections::hash_map::RandomState::new().hash_one((
        std::time::SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ));
    format!("{h:016x}")
}

/// Writes the segment list into the snapshot directory `dir` and fsyncs it; returns its name.
pub(super) fn write(dir: &Path, segments: &[SegmentEntry]) -> Result<PathBuf> {
    let payload = bincode::serde::encode_to_vec(segments, bincode::config::standard())?;
    let bytes = frame(KIND, &payload);
    let path = dir.join(SEGMENTS_FILE);
    File::create(&path)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(PathBuf::from(SEGMENTS_FILE))
}

/// The segment list of the snapshot `dir`; `None` when it has none (a snapshot of one store,
/// written before segments).
///
/// # Errors
/// `Checkpoint` when the list is corrupt, of another format version, or not a valid list
/// (duplicate ids, overlapping ranges, an empty id beside others).
pub(super) fn read(dir: &Path) -> Result<Option<Vec<SegmentEntry>>> {
    let path = dir.join(SEGMENTS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::checkpoint(format!("reading {}", path.display())).with_source(e)),
    };
    let corrupt = |what: &str| Error::checkpoint(format!("the segment list {} {what}", path.display()));
    let payload = unframe(KIND, &bytes).map_err(|e| corrupt(&e.to_string()))?;
    let (segments, _): (Vec<SegmentEntry>, usize) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
            .map_err(|e| corrupt("cannot be decoded").with_source(e))?;
    validate(&segments).map_err(|what| corrupt(&what))?;
    Ok(Some(segments))
}

/// Checks that ids are distinct and well formed and that the ranges are disjoint.
fn validate(segments: &[SegmentEntry]) -> std::result::Result<(), String> {
    if segments.is_empty() {
        return Err("lists no segment".into());
    }
    let mut ranges: Vec<KeyGroupRange> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        if s.id.is_empty() && segments.len() > 1 {
            return Err("has an unnamed segment beside others".into());
        }
        if !s.id.is_empty() && (s.id.len() != 16 || !s.id.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(format!("has a malformed segment id {:?}", s.id));
        }
        if segments[..i].iter().any(|o| o.id == s.id) {
            return Err(format!("lists segment {} twice", s.id));
        }
        if s.ranges.is_empty() || s.ranges.iter().any(|r| r.start > r.end) {
            return Err(format!("gives segment {:?} no valid key groups", s.id));
        }
        ranges.extend_from_slice(&s.ranges);
    }
    ranges.sort_by_key(|r| r.start);
    if ranges.windows(2).any(|w| w[0].end >= w[1].start) {
        return Err("gives two segments the same key group".into());
    }
    Ok(())
}

/// The files of segment `id` in the snapshot `dir`: (path in the snapshot, RocksDB file name).
///
/// # Errors
/// `Checkpoint` if the directory cannot be listed or holds a directory.
pub(super) fn files_of(dir: &Path, id: &str) -> Result<Vec<(PathBuf, String)>> {
    let unusable = |what: String| Error::checkpoint(what);
    let entries = fs::read_dir(dir).map_err(|e| unusable(format!("listing {}", dir.display())).with_source(e))?;
    let prefix = format!("{id}.");
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| unusable(format!("listing {}", dir.display())).with_source(e))?;
        let path = entry.path();
        if path.is_dir() {
            return Err(unusable(format!(
                "unexpected directory {} in a RocksDB snapshot",
                path.display()
            )));
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == SEGMENTS_FILE {
            continue;
        }
        let own = if id.is_empty() {
            Some(name.as_str())
        } else {
            name.strip_prefix(&prefix)
        };
        if let Some(own) = own {
            files.push((path.clone(), own.to_string()));
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, ranges: &[(u16, u16)]) -> SegmentEntry {
        SegmentEntry {
            id: id.into(),
            ranges: ranges
                .iter()
                .map(|&(start, end)| KeyGroupRange { start, end })
                .collect(),
        }
    }

    #[test]
    fn a_segment_list_round_trips_and_a_flipped_byte_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let list = vec![
            entry("00112233445566aa", &[(0, 9), (20, 29)]),
            entry("ffeeddccbbaa9988", &[(10, 19)]),
        ];
        assert_eq!(read(tmp.path()).unwrap(), None, "no list: a snapshot of one store");
        write(tmp.path(), &list).unwrap();
        assert_eq!(read(tmp.path()).unwrap(), Some(list));
        let path = tmp.path().join(SEGMENTS_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let e = read(tmp.path()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Checkpoint, "{e}");
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn overlapping_or_duplicate_segments_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for (list, why) in [
            (
                vec![
                    entry("00112233445566aa", &[(0, 9)]),
                    entry("ffeeddccbbaa9988", &[(9, 19)]),
                ],
                "same key group",
            ),
            (
                vec![
                    entry("00112233445566aa", &[(0, 9)]),
                    entry("00112233445566aa", &[(10, 19)]),
                ],
                "twice",
            ),
            (
                vec![entry("", &[(0, 9)]), entry("ffeeddccbbaa9988", &[(10, 19)])],
                "unnamed",
            ),
            (vec![entry("../x", &[(0, 9)])], "malformed"),
        ] {
            write(tmp.path(), &list).unwrap();
            let e = read(tmp.path()).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn fresh_ids_differ() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| fresh_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 16));
    }
}
