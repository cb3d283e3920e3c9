//! A completed checkpoint's metadata: the single file whose atomic appearance makes the
//! checkpoint complete. It lists every file (with size and checksum), every source position
//! and every operator state, so that a restore needs nothing else.
//!
//! # On disk
//! The file is a JSON envelope `{"crc32c": <n>, "metadata": {...}}` whose checksum covers the
//! exact bytes of the `metadata` value: a changed digit anywhere in it (a split offset, a
//! file's checksum) makes the file corrupt instead of silently wrong.

use crate::message::{BarrierKind, CheckpointId};
use crate::source::SplitPosition;
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Version of the metadata format; a restore rejects other versions with a clear error.
/// Version 2 added the checksum envelope.
pub const FORMAT_VERSION: u32 = 2;

/// A stored file: where it is (relative to the storage root) and how to verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Name of the file in the subtask's snapshot directory (what the state backend expects).
    pub name: String,
    /// Key of the object in checkpoint storage.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32C of the content.
    pub crc32c: u32,
}

/// The state of one operator subtask in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtaskState {
    /// Subtask index.
    pub subtask: usize,
    /// Key groups the subtask owned.
    pub key_groups: KeyGroupRange,
    /// Files of its keyed state snapshot.
    pub keyed_files: Vec<StoredFile>,
    /// Its operator state (sink committables, ...), if any.
    pub operator_state: Option<StoredFile>,
}

/// The state of one operator (or source) in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorState {
    /// The step's name.
    pub name: String,
    /// Its parallelism when the checkpoint was taken.
    pub parallelism: usize,
    /// One entry per subtask that has state.
    pub subtasks: Vec<SubtaskState>,
}

/// The read positions of one source step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceState {
    /// The source step's name.
    pub name: String,
    /// Position of every split.
    pub positions: Vec<SplitPosition>,
}

/// Figures about how a checkpoint was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointStats {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Wall-clock time of the trigger, ms since the epoch.
    pub triggered_at_ms: u64,
    /// Longest synchronous snapshot of any subtask, ms.
    pub sync_ms: f64,
    /// Longest barrier alignment of any subtask, ms.
    pub alignment_ms: f64,
    /// Upload (asynchronous phase) duration, ms.
    pub async_ms: f64,
    /// Trigger to completion, ms.
    pub total_ms: f64,
    /// Bytes of all files the checkpoint references.
    pub state_bytes: u64,
    /// Bytes this checkpoint stored anew (the rest it shares with earlier checkpoints).
    pub uploaded_bytes: u64,
    /// Source records read when the barrier was taken (all sources).
    pub source_records: u64,
}

/// All zero, with checkpoint id 0 (before any checkpoint).
impl Default for CheckpointStats {
    fn default() -> Self {
        CheckpointStats {
            id: CheckpointId::new(0),
            triggered_at_ms: 0,
            sync_ms: 0.0,
            alignment_ms: 0.0,
            async_ms: 0.0,
            total_ms: 0.0,
            state_bytes: 0,
            uploaded_bytes: 0,
            source_records: 0,
        }
    }
}

/// The metadata of a completed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// The job's name.
    pub job: String,
    /// The checkpoint.
    pub id: CheckpointId,
    /// The owner epoch of the process that took it (see
    /// [`ownership`](crate::ownership)): which writer of the storage published the
    /// checkpoint, also where the storage cannot lock (object storage, a lease in etcd).
    /// `None` in checkpoints written before owner epochs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_epoch: Option<u64>,
    /// Periodic or final.
    pub kind: BarrierKind,
    /// Number of key groups of the job.
    pub max_parallelism: usize,
    /// Source positions.
    pub sources: Vec<SourceState>,
    /// Operator states.
    pub operators: Vec<OperatorState>,
    /// How it was taken.
    pub stats: CheckpointStats,
}

impl CheckpointMetadata {
    /// Every file the checkpoint references.
    pub fn files(&self) -> impl Iterator<Item = &StoredFile> {
        self.operators
            .iter()
            .flat_map(|o| o.subtasks.iter())
            .flat_map(|s| s.keyed_files.iter().chain(s.operator_state.iter()))
    }
}

/// The stored form of the metadata: the metadata's JSON text and its CRC-32C.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    crc32c: u32,
    #[serde(borrow)]
    metadata: &'a RawValue,
}

/// Just the version, to tell an old format from a corrupt file.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// Encodes `meta` for storage, with the checksum of its text.
///
/// # Errors
/// `Internal` if it cannot be encoded (a bug).
pub fn encode_metadata(meta: &CheckpointMetadata) -> Result<Vec<u8>> {
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::internal("encoding checkpoint metadata").with_source(e))?;
    let raw =
        RawValue::from_string(text).map_err(|e| Error::internal("encoding checkpoint metadata").with_source(e))?;
    let envelope = Envelope {
        crc32c: crc32c::crc32c(raw.get().as_bytes()),
        metadata: &raw,
    };
    let mut bytes =
        serde_json::to_vec(&envelope).map_err(|e| Error::internal("encoding checkpoint metadata").with_source(e))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Decodes and verifies checkpoint `id`'s stored metadata.
///
/// # Errors
/// `Checkpoint` (the checkpoint is corrupt) if the file does not parse, fails its checksum or
/// names another checkpoint; `Config` if it was written in another format version (a
/// different Weir version must read it).
pub fn decode_metadata(id: CheckpointId, bytes: &[u8]) -> Result<CheckpointMetadata> {
    let envelope: Envelope<'_> = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes) {
                if v.version != FORMAT_VERSION {
                    return Err(unsupported(id, v.version));
                }
            }
            return Err(
                Error::checkpoint(format!("checkpoint {id}: metadata is corrupt (it does not parse)")).with_source(e),
            );
        }
    };
    let text = envelope.metadata.get();
    let crc = crc32c::crc32c(text.as_bytes());
    if crc != envelope.crc32c {
        return Err(Error::checkpoint(format!(
            "checkpoint {id}: metadata is corrupt (checksum {crc:08x}, expected {:08x})",
            envelope.crc32c
        )));
    }
    if let Ok(v) = serde_json::from_str::<VersionOnly>(text) {
        if v.version != FORMAT_VERSION {
            return Err(unsupported(id, v.version));
        }
    }
    let meta: CheckpointMetadata = serde_json::from_str(text).map_err(|e| {
        Error::checkpoint(format!("checkpoint {id}: metadata is corrupt (it does not decode)")).with_source(e)
    })?;
    if meta.id != id {
        return Err(Error::checkpoint(format!(
            "checkpoint {id}: metadata is corrupt (it describes checkpoint {})",
            meta.id
        )));
    }
    Ok(meta)
}

fn unsupported(id: CheckpointId, version: u32) -> Error {
    Error::config(format!(
        "checkpoint {id}: metadata format version {version} is not supported (expected {FORMAT_VERSION}); \
         restore it with the Weir version that wrote it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> CheckpointMetadata {
        CheckpointMetadata {
            owner_epoch: Some(3),
            version: FORMAT_VERSION,
            job: "j".into(),
            id: CheckpointId::new(7),
            kind: BarrierKind::Checkpoint,
            max_parallelism: 128,
            sources: vec![SourceState {
                name: "gen".into(),
                positions: vec![SplitPosition {
                    split: "0".into(),
                    offset: 1234,
                    event_time: Some(-5),
                    state: None,
                }],
            }],
            operators: Vec::new(),
            stats: CheckpointStats::default(),
        }
    }

    #[test]
    fn metadata_round_trips_and_every_changed_digit_is_detected() {
        let bytes = encode_metadata(&meta()).unwrap();
        let back = decode_metadata(CheckpointId::new(7), &bytes).unwrap();
        assert_eq!(back.sources[0].positions[0].offset, 1234);
        assert_eq!(back.sources[0].positions[0].event_time, Some(-5));
        assert_eq!(back.owner_epoch, Some(3));
        let text = String::from_utf8(bytes).unwrap();
        let tampered = text.replace("1234", "1235");
        assert_ne!(tampered, text);
        let e = decode_metadata(CheckpointId::new(7), tampered.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Checkpoint);
        assert!(e.to_string().contains("checksum"), "{e}");
        let e = decode_metadata(CheckpointId::new(8), text.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Checkpoint);
        let e = decode_metadata(CheckpointId::new(7), &text.as_bytes()[..text.len() / 2]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Checkpoint);
    }

    #[test]
    fn an_older_format_is_a_config_error_not_corruption() {
        let mut m = meta();
        m.version = 1;
        let e = decode_metadata(CheckpointId::new(7), &serde_json::to_vec(&m).unwrap()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
    }
}
