//! The storage commands: `weir checkpoints list|show DIR|URL` read a job's checkpoint storage,
//! a directory or an object store URL (`s3://bucket/prefix`, `gs://...`, `az://...`;
//! credentials and endpoint from the standard environment variables, see
//! `weir_object_storage`).
//!
//! A savepoint's directory is laid out as a checkpoint directory holding one checkpoint
//! (`chk-<id>/_metadata` and its files), of kind `savepoint` or `stop-savepoint`: `list`
//! lists it, and `show` without an id shows it.
//!
//! # Checkpointing
//! These commands only read: they never change a checkpoint directory, so they are safe to run
//! against the storage of a running job. A checkpoint is listed as complete exactly when its
//! `_metadata` exists, which after a crash is the case only for checkpoints that completed.

use crate::CliError;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use weir_engine::checkpoint::metadata::{OperatorState, SourceState, StoredFile};
use weir_engine::checkpoint::{read_metadata, CheckpointMetadata, CheckpointStats, CheckpointStorage, LocalDirStorage};
use weir_engine::message::{BarrierKind, CheckpointId};
use weir_object_storage::Location;

/// `weir checkpoints list DIR|URL`: one line per checkpoint (JSON with `json`).
pub(crate) fn list(dir: &str, json: bool) -> Result<String, CliError> {
    let rows = list_rows(&open_storage(dir)?)?;
    Ok(if json {
        list_json(&rows)?
    } else {
        list_table(dir, &rows)
    })
}

/// `weir checkpoints show DIR|URL [ID]`: one checkpoint, or the only one (a savepoint's).
pub(crate) fn show(dir: &str, id: Option<u64>, json: bool) -> Result<String, CliError> {
    let storage = open_storage(dir)?;
    let id = match id {
        Some(id) => CheckpointId::new(id),
        None => only_checkpoint(&storage)?,
    };
    let meta = load_checkpoint(&storage, id)?;
    if json {
        show_json(&meta)
    } else {
        Ok(show_text(&meta))
    }
}

/// The storage at `location`: an existing directory, or an object store location that can be
/// listed.
fn open_storage(location: &str) -> Result<Arc<dyn CheckpointStorage>, CliError> {
    let parsed = Location::parse(location).map_err(|e| CliError::NotFound(e.to_string()))?;
    let dir = match parsed {
        Location::Local(dir) => dir,
        Location::Object { .. } => {
            let storage = weir_object_storage::open(location).map_err(|e| CliError::Failed(e.to_string()))?;
            storage
                .list()
                .map_err(|e| CliError::Failed(format!("listing {location}: {e}")))?;
            return Ok(storage);
        }
    };
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(CliError::NotFound(format!(
            "checkpoint directory {} {what}",
            dir.display()
        )));
    }
    Ok(Arc::new(LocalDirStorage::new(dir)))
}

/// One checkpoint of the list: its metadata when complete (or why it cannot be read).
struct Row {
    id: CheckpointId,
    complete: bool,
    meta: Option<Result<CheckpointMetadata, String>>,
}

fn list_rows(storage: &Arc<dyn CheckpointStorage>) -> Result<Vec<Row>, CliError> {
    let listed = storage
        .list()
        .map_err(|e| CliError::Failed(format!("listing {}: {e}", storage.describe())))?;
    Ok(listed
        .into_iter()
        .map(|(id, complete)| Row {
            id,
            complete,
            meta: complete.then(|| read_metadata(storage.as_ref(), id).map_err(|e| e.to_string())),
        })
        .collect())
}

/// The one completed checkpoint in `storage` (a savepoint's directory holds one); `NotFound`
/// when there is none or several (then the id must be given).
fn only_checkpoint(storage: &Arc<dyn CheckpointStorage>) -> Result<CheckpointId, CliError> {
    let complete: Vec<CheckpointId> = storage
        .list()
        .map_err(|e| CliError::Failed(format!("listing {}: {e}", storage.describe())))?
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(id, _)| id)
        .collect();
    match complete.as_slice() {
        [id] => Ok(*id),
        [] => Err(CliError::NotFound(format!(
            "{} holds no completed checkpoint or savepoint",
            storage.describe()
        ))),
        several => Err(CliError::NotFound(format!(
            "{} holds {} completed checkpoints ({}): name one",
            storage.describe(),
            several.len(),
            several.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Checkpoint `id`'s metadata; `NotFound` if it is absent or incomplete.
fn load_checkpoint(storage: &Arc<dyn CheckpointStorage>, id: CheckpointId) -> Result<CheckpointMetadata, CliError> {
    let listed = storage
        .list()
        .map_err(|e| CliError::Failed(format!("listing {}: {e}", storage.describe())))?;
    match listed.iter().find(|(i, _)| *i == id) {
        None => {
            let ids: Vec<String> = listed.iter().map(|(i, _)| i.to_string()).collect();
            let known = if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            };
            Err(CliError::NotFound(format!(
                "checkpoint {id} not found in {} (checkpoints there: {known})",
                storage.describe()
            )))
        }
        Some((_, false)) => Err(CliError::NotFound(format!(
            "checkpoint {id} in {} is not complete (it has no metadata)",
            storage.describe()
        ))),
        Some((_, true)) => read_metadata(storage.as_ref(), id).map_err(|e| CliError::Failed(e.to_string())),
    }
}

fn kind_name(kind: BarrierKind) -> &'static str {
    match kind {
        BarrierKind::Checkpoint => "checkpoint",
        BarrierKind::Final => "final",
        BarrierKind::Savepoint => "savepoint",
        BarrierKind::StopWithSavepoint => "stop-savepoint",
    }
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
fn format_time(ms: u64) -> String {
    let t = weir_engine::wall_clock::utc_timestamp(ms);
    t.trim_end_matches('Z').replacen('T', " ", 1)
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn list_table(dir: &str, rows: &[Row]) -> String {
    if rows.is_empty() {
        return format!("no checkpoints in {dir}\n");
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6}  {:<8}  {:<14}  {:<23}  {:>10}  {:>10}  {:>9}  {:>9}  {:>9}  {:>12}",
        "ID", "COMPLETE", "KIND", "CREATED (UTC)", "STATE", "UPLOADED", "SYNC ms", "ASYNC ms", "ALIGN ms", "RECORDS"
    );
    for row in rows {
        let _ = match &row.meta {
            Some(Ok(m)) => {
                let s = &m.stats;
                writeln!(
                    out,
                    "{:>6}  {:<8}  {:<14}  {:<23}  {:>10}  {:>10}  {:>9.1}  {:>9.1}  {:>9.1}  {:>12}",
                    row.id,
                    "yes",
                    kind_name(m.kind),
                    format_time(s.triggered_at_ms),
                    human_bytes(s.state_bytes),
                    human_bytes(s.uploaded_bytes),
                    s.sync_ms,
                    s.async_ms,
                    s.alignment_ms,
                    s.source_records
                )
            }
            Some(Err(e)) => writeln!(out, "{:>6}  {:<8}  unreadable metadata: {e}", row.id, "yes"),
            None => writeln!(
                out,
                "{:>6}  {:<8}  {:<14}",
                row.id,
                if row.complete { "yes" } else { "no" },
                "-"
            ),
        };
    }
    out
}

/// One checkpoint of `list --json`.
#[derive(Serialize)]
struct ListItem<'a> {
    id: CheckpointId,
    complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<&'a CheckpointStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn list_json(rows: &[Row]) -> Result<String, CliError> {
    let items: Vec<ListItem<'_>> = rows
        .iter()
        .map(|row| {
            let (kind, stats, error) = match &row.meta {
                Some(Ok(m)) => (Some(kind_name(m.kind)), Some(&m.stats), None),
                Some(Err(e)) => (None, None, Some(e.as_str())),
                None => (None, None, None),
            };
            ListItem {
                id: row.id,
                complete: row.complete,
                kind,
                stats,
                error,
            }
        })
        .collect();
    to_json(&items)
}

/// `show --json`: the checkpoint's metadata as stored, with its kind named as in the text.
#[derive(Serialize)]
struct ShowDoc<'a> {
    id: CheckpointId,
    job: &'a str,
    kind: &'static str,
    complete: bool,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_epoch: Option<u64>,
    max_parallelism: usize,
    stats: &'a CheckpointStats,
    sources: &'a [SourceState],
    operators: &'a [OperatorState],
}

fn show_json(m: &CheckpointMetadata) -> Result<String, CliError> {
    to_json(&ShowDoc {
        id: m.id,
        job: &m.job,
        kind: kind_name(m.kind),
        complete: true,
        version: m.version,
        owner_epoch: m.owner_epoch,
        max_parallelism: m.max_parallelism,
        stats: &m.stats,
        sources: &m.sources,
        operators: &m.operators,
    })
}

fn to_json(value: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CliError::Failed(format!("encoding JSON: {e}")))
}

fn file_line(out: &mut String, indent: &str, f: &StoredFile) {
    let _ = writeln!(
        out,
        "{indent}{:<24} {:>12}  crc32c {:08x}  {}",
        f.name,
        format!("{} B", f.size),
        f.crc32c,
        f.key
    );
}

fn show_text(m: &CheckpointMetadata) -> String {
    let s = &m.stats;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checkpoint {} of job \"{}\": {}, complete",
        m.id,
        m.job,
        kind_name(m.kind)
    );
    let _ = writeln!(
        out,
        "created          {} UTC ({} ms)",
        format_time(s.triggered_at_ms),
        s.triggered_at_ms
    );
    let _ = writeln!(out, "format version   {}", m.version);
    let _ = writeln!(out, "max parallelism  {} key groups", m.max_parallelism);
    let _ = writeln!(out, "\nstats");
    let _ = writeln!(
        out,
        "  state size       {} ({} bytes)",
        human_bytes(s.state_bytes),
        s.state_bytes
    );
    let _ = writeln!(
        out,
        "  uploaded         {} ({} bytes)",
        human_bytes(s.uploaded_bytes),
        s.uploaded_bytes
    );
    let _ = writeln!(out, "  sync             {:.3} ms", s.sync_ms);
    let _ = writeln!(out, "  async            {:.3} ms", s.async_ms);
    let _ = writeln!(out, "  alignment        {:.3} ms", s.alignment_ms);
    let _ = writeln!(out, "  total            {:.3} ms", s.total_ms);
    let _ = writeln!(out, "  source records   {}", s.source_records);
    let _ = writeln!(out, "\nsources");
    if m.sources.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for src in &m.sources {
        let _ = writeln!(out, "  {} ({} splits)", src.name, src.positions.len());
        for p in &src.positions {
            let _ = writeln!(out, "    split {:<24} offset {}", p.split, p.offset);
        }
    }
    let _ = writeln!(out, "\noperators");
    if m.operators.is_empty() {
        let _ = writeln!(out, "  (none with state)");
    }
    for op in &m.operators {
        let bytes: u64 = op
            .subtasks
            .iter()
            .flat_map(|st| st.keyed_files.iter().chain(st.operator_state.iter()))
            .map(|f| f.size)
            .sum();
        let _ = writeln!(
            out,
            "  {} (parallelism {}, {})",
            op.name,
            op.parallelism,
            human_bytes(bytes)
        );
        for st in &op.subtasks {
            let _ = writeln!(
                out,
                "    subtask {}  key groups {}..={}",
                st.subtask, st.key_groups.start, st.key_groups.end
            );
            for f in st.keyed_files.iter().chain(st.operator_state.iter()) {
                file_line(&mut out, "      ", f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_time(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20.000");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
