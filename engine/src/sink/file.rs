//! An exactly-once file sink: records become lines of files that appear atomically, one file
//! per sink subtask and checkpoint, when the checkpoint completes.
//!
//! # Layout
//!
//! For job `<job>` (its name made file-safe and one-to-one: `<name>-<crc32c of the name>`, as
//! state directories are named), sink step `<sink>` (its name made file-safe: characters other
//! than ASCII letters, digits, `-`, `_` and `.` become `_`) and subtask `<subtask>`, in
//! directory `dir`:
//!
//! ```text
//! dir/.locks/<job>+<sink>-<subtask>.lock                  held by the process writing the subtask
//! dir/.in-progress/<job>+<sink>-<subtask>-<attempt>.tmp   records since the last barrier (one attempt)
//! dir/.pending/<job>+<sink>-<subtask>-<n>.jsonl           pre-committed at barrier n, not visible yet
//! dir/<job>+<sink>-<subtask>-<n>.jsonl                    committed: checkpoint n is complete
//! ```
//!
//! `<n>` is the checkpoint id, zero-padded to 10 digits, so that the final files of one subtask
//! listed in name order are in checkpoint order, which is the order the subtask wrote their
//! records in. Only the final files are output; [`read_committed_lines`] reads them all.
//!
//! # The protocol
//!
//! * `write`: records are formatted (JSON by default) and appended to the in-progress file,
//!   which is created on the first record after a barrier under a name unique to the attempt.
//! * `pre_commit(n)`: the in-progress file is flushed, fsynced and renamed to the pending file
//!   of checkpoint `n`, and `.pending` is fsynced. The committable names the pending and the
//!   final file.
//! * `commit`: each pending file is renamed to its final name and the directory fsynced. A
//!   final file that exists while its pending file does not is already committed (commit is
//!   repeated after a restore); if neither exists, the output is lost and commit fails with an
//!   `External` error rather than going on silently.
//! * Creating a writer first locks `.locks/<job>+<sink>-<subtask>.lock`: while a process writes
//!   a sink subtask, another process of the same job does not start it and deletes none of its
//!   files. It waits up to 15 s for the holder to let go (a cluster worker the job failed over
//!   from stops once it learns its attempt is over), then fails with a retryable error naming
//!   the holder. The OS releases the lock when the process dies.
//! * It then applies the restore rules to the subtask's committed files (see
//!   [`SinkContext::check_committed_output`]): a final file of a checkpoint newer than the
//!   restored one, or any final file when the job restored nothing and is not an explicit
//!   fresh start, stops the start before anything is deleted.
//! * Creating a writer then cleans up after an earlier attempt of the same sink subtask: it deletes
//!   the subtask's in-progress files, and at the first barrier (once every subtask of the job
//!   started) the pending files of checkpoints after the restored one (or all its pending
//!   files, when the job did not restore a checkpoint). Pending files
//!   of the restored checkpoint or earlier are left for the engine, which commits the restored
//!   committables again. Files of other subtasks, other sinks and other jobs are never touched,
//!   except those of subtasks at or above the parallelism that an earlier run at a higher
//!   parallelism left: subtask `j` of `p` takes over subtask `k >= p` when `k mod p == j`
//!   (it commits their restored committables, see [`SinkWriter::commit_taken_over`]), and
//!   locks, checks and cleans up their files as its own. Their final files stay.
//!
//! Several jobs can share a directory: every file name starts with its job's identity. A
//! directory holds the output of one lineage of each job, and two sink steps of a job whose
//! file-safe names are equal must not share a directory.

mod removed_subtasks;

use super::{Sink, SinkContext, SinkWriter};
use crate::data::{Data, Record};
use crate::durable::checksum_file;
use crate::message::CheckpointId;
use crate::ownership::dir_lock::DirLock;
use crate::ownership::{OwnerInfo, OwnerRecord};
use crate::state::backend::{dir_name, sanitize};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Subdirectory of in-progress files.
pub const IN_PROGRESS_DIR: &str = ".in-progress";
/// Subdirectory of pending (pre-committed) files.
pub const PENDING_DIR: &str = ".pending";
/// How long a sink subtask waits for another process of its job to let go of the subtask's
/// lock before its attempt fails.
const SAME_JOB_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Subdirectory of the lock files of the sink subtasks writing into the directory.
pub const LOCKS_DIR: &str = ".locks";
/// Separates the job's identity from the rest of a file name (never part of a file-safe name).
const JOB_SEPARATOR: char = '+';
/// Extension of pending and final files.
const EXTENSION: &str = ".jsonl";
/// Extension of in-progress files.
const TMP_EXTENSION: &str = ".tmp";

/// Distinguishes writers created by one process.
static WRITER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Turns a record into one line of output (without the line break).
type FormatFn<T> = Arc<dyn Fn(&T) -> Result<String> + Send + Sync>;

/// An exactly-once sink writing records as lines of files in a directory: JSON lines
/// (`serde_json`) by default, or whatever [`with_formatter`](FileSink::with_formatter) makes
/// of a record. See the [module documentation](self) for the file layout and the protocol.
///
/// ```no_run
/// use weir_engine::prelude::*;
/// let p = Pipeline::new("copy").checkpoint_storage("/tmp/chk");
/// p.source("numbers", VecSource::new(vec![1u64, 2, 3]))
///     .sink("out", FileSink::exactly_once("/tmp/out").with_formatter(|n: &u64| n.to_string()));
/// p.run().unwrap();
/// ```
///
/// # Checkpointing
/// After a crash at any point, the final files in the directory hold exactly the records of
/// the completed checkpoints that have been committed; after the job restores checkpoint `r`
/// and commits its committables again, they hold every record up to `r`, each once. Records
/// after `r` exist only in pending or in-progress files, which the restarted writers delete;
/// replay writes them again.
pub struct FileSink<T> {
    dir: PathBuf,
    format: FormatFn<T>,
}

impl<T> std::fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for FileSink<T> {
    fn clone(&self) -> Self {
        FileSink {
            dir: self.dir.clone(),
            format: self.format.clone(),
        }
    }
}

impl<T: Data> FileSink<T> {
    /// An exactly-once sink writing each record as one line of JSON into files under `dir`
    /// (created if missing).
    ///
    /// # Checkpointing
    /// See [`FileSink`]: committed files hold each record of the completed checkpoints once.
    pub fn exactly_once(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            format: Arc::new(|record: &T| {
                serde_json::to_string(record)
                    .map_err(|e| Error::data("encoding a record as JSON for the file sink").with_source(e))
            }),
        }
    }
}

impl<T> FileSink<T> {
    /// Formats each record with `format` instead of JSON. The result is one line: it must not
    /// contain a line break (writing such a record fails with a `Data` error). Files keep the
    /// `.jsonl` extension.
    ///
    /// # Checkpointing
    /// The formatter must be deterministic for replayed records to produce the same lines.
    pub fn with_formatter(self, format: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        self.with_fallible_formatter(move |record: &T| Ok(format(record)))
    }

    /// Like [`with_formatter`](Self::with_formatter), for a formatter that can reject a record
    /// (the error fails the job).
    ///
    /// # Checkpointing
    /// As for [`with_formatter`](Self::with_formatter).
    pub fn with_fallible_formatter(mut self, format: impl Fn(&T) -> Result<String> + Send + Sync + 'static) -> Self {
        self.format = Arc::new(format);
        self
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What a file sink subtask pre-commits at a barrier: its pending file, to be renamed to the
/// final file on commit. Both names are relative to the sink's directory.
///
/// # Checkpointing
/// Stored in the checkpoint; committing it again after a restore is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCommittable {
    /// The pending file (`.pending/<job>+<sink>-<subtask>-<n>.jsonl`).
    pub pending: String,
    /// The final file (`<job>+<sink>-<subtask>-<n>.jsonl`).
    pub final_name: String,
    /// Records in the file.
    pub records: u64,
    /// Bytes in the file.
    pub bytes: u64,
}

impl<T: Data> Sink<T> for FileSink<T> {
    type Committable = FileCommittable;

    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T, FileCommittable>>> {
        let writer = FileWriter::open(self, ctx)?;
        Ok(Box::new(writer))
    }
}

/// The file being written since the last barrier.
struct InProgress {
    path: PathBuf,
    out: BufWriter<File>,
    records: u64,
    bytes: u64,
}

struct FileWriter<T> {
    dir: PathBuf,
    /// `<job>+<sink>-<subtask>-`: the start of every file name of this subtask.
    prefix: String,
    /// The same for the subtasks above the parallelism this one takes over (module
    /// `removed_subtasks`): their files are cleaned up as this subtask's own.
    taken_over: Vec<String>,
    /// Held while this writer lives, for its subtask and those it takes over: no other process
    /// writes these sink subtasks meanwhile.
    _locks: Vec<DirLock>,
    /// Unique to this writer (the attempt), for the in-progress file name.
    token: String,
    format: FormatFn<T>,
    current: Option<InProgress>,
    line: String,
    /// Pending files of abandoned checkpoints are still to be deleted (after the restored
    /// checkpoint, given here): done at the first barrier.
    abandoned_pending: Option<Option<CheckpointId>>,
}

/// Locks sink subtask `subtask` (file names starting with `base`, `<job>+<sink>-`) for this
/// process.
///
/// A process of this job that ran the subtask before (a worker the job failed over from) lets
/// go once it learns its attempt is over: wait for it a while rather than fail attempt after
/// attempt.
fn lock_subtask(dir: &Path, base: &str, subtask: usize, ctx: &SinkContext) -> Result<DirLock> {
    let record = OwnerRecord {
        epoch: 0,
        owner: OwnerInfo::this_process(&ctx.job),
    };
    let lock_path = dir.join(LOCKS_DIR).join(format!("{base}{subtask}.lock"));
    let resource = format!(
        "file sink directory {} (sink \"{}\" subtask {subtask} of job \"{}\")",
        dir.display(),
        ctx.name,
        ctx.job
    );
    let deadline = std::time::Instant::now() + SAME_JOB_LOCK_WAIT;
    loop {
        match DirLock::acquire_for_subtask(&lock_path, &record, &resource) {
            Err(e)
                if e.kind() == crate::ErrorKind::External { retryable: true }
                    && std::time::Instant::now() < deadline
                    && !ctx.cancellation.is_cancelled() =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// The file name of checkpoint `n`'s pending and final file for `prefix`.
fn file_name(prefix: &str, n: CheckpointId) -> String {
    format!("{prefix}{n:010}{EXTENSION}")
}

/// The checkpoint of a pending or final file of `prefix`, if `name` is one.
fn checkpoint_of(prefix: &str, name: &str) -> Option<CheckpointId> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(EXTENSION)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` is an in-progress file of `prefix` (any attempt).
fn is_in_progress_of(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(TMP_EXTENSION))
        .is_some_and(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// File names in `dir` (empty if it does not exist).
fn file_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    crate::durable::fsync_dir(dir)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("deleting {}", path.display()), e)),
    }
}

fn exists(path: &Path) -> Result<bool> {
    path.try_exists()
        .map_err(|e| Error::io(format!("checking {}", path.display()), e))
}

/// Whether two files have the same content (size and CRC-32C).
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    Ok(checksum_file(a)? == checksum_file(b)?)
}

impl<T> FileWriter<T> {
    fn open(sink: &FileSink<T>, ctx: &SinkContext) -> Result<Self> {
        let dir = sink.dir.clone();
        for d in [dir.clone(), dir.join(IN_PROGRESS_DIR), dir.join(PENDING_DIR)] {
            fs::create_dir_all(&d)
                .map_err(|e| Error::config(format!("file sink directory {} cannot be created: {e}", d.display())))?;
        }
        let token = format!(
            "p{}t{}n{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            WRITER_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let base = format!("{}{JOB_SEPARATOR}{}-", dir_name(&ctx.job), sanitize(&ctx.name));
        // Before anything is deleted: another process may still be writing these subtasks.
        let mut locks = vec![lock_subtask(&dir, &base, ctx.subtask, ctx)?];
        let removed = removed_subtasks::removed_subtasks_of(&dir, &base, ctx.subtask, ctx.parallelism)?;
        for &k in &removed {
            locks.push(lock_subtask(&dir, &base, k, ctx)?);
        }
        if !removed.is_empty() {
            tracing::info!(sink = %ctx.name, subtask = ctx.subtask, taken_over = ?removed, "file sink: taking over the files of subtasks above the parallelism");
        }
        let writer = FileWriter {
            prefix: format!("{base}{}-", ctx.subtask),
            taken_over: removed.iter().map(|k| format!("{base}{k}-")).collect(),
            _locks: locks,
            dir,
            token,
            format: sink.format.clone(),
            current: None,
            line: String::new(),
            abandoned_pending: Some(ctx.restored_checkpoint),
        };
        writer.check_committed_output(ctx)?;
        writer.clean_up_in_progress()?;
        Ok(writer)
    }

    /// The file name prefixes of this subtask and of those it takes over.
    fn prefixes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.prefix.as_str()).chain(self.taken_over.iter().map(String::as_str))
    }

    /// Applies the restore rules to this subtask's committed files (and those of the subtasks
    /// it takes over), before anything is deleted: the newest final file names the newest
    /// checkpoint whose output it committed.
    fn check_committed_output(&self, ctx: &SinkContext) -> Result<()> {
        let names = file_names(&self.dir)?;
        let newest = names
            .iter()
            .filter_map(|name| Some((self.prefixes().find_map(|p| checkpoint_of(p, name))?, name.clone())))
            .max();
        match newest {
            Some((n, name)) => {
                ctx.check_committed_output(n, &format!("committed file {name} in {}", self.dir.display()))
            }
            None => Ok(()),
        }
    }

    /// Deletes the in-progress files earlier attempts of this subtask left: no committable
    /// refers to them.
    fn clean_up_in_progress(&self) -> Result<()> {
        let in_progress = self.dir.join(IN_PROGRESS_DIR);
        let mut deleted = false;
        for name in file_names(&in_progress)? {
            if self.prefixes().any(|p| is_in_progress_of(p, &name)) {
                tracing::debug!(file = %name, "file sink: deleting an in-progress file of an earlier attempt");
                remove(&in_progress.join(&name))?;
                deleted = true;
            }
        }
        if deleted {
            fsync_dir(&in_progress)?;
        }
        Ok(())
    }

    /// Deletes the pending files of checkpoints after `restored` (all, without one) that
    /// earlier attempts of this subtask left: their checkpoints were abandoned.
    ///
    /// Runs at the first barrier, not when the writer is created: the first barrier comes only
    /// once every subtask of the job started, so when another sink subtask refuses the start
    /// (its committed output is ahead of `restored`), nothing is deleted, and the pending files
    /// of a complete checkpoint whose metadata was lost are still there if it is recovered.
    fn clean_up_pending(&self, restored: Option<CheckpointId>) -> Result<()> {
        let pending = self.dir.join(PENDING_DIR);
        let mut deleted = false;
        for name in file_names(&pending)? {
            let Some(n) = self.prefixes().find_map(|p| checkpoint_of(p, &name)) else {
                continue;
            };
            if restored.is_none_or(|r| n > r) {
                tracing::info!(file = %name, ?restored, "file sink: deleting a pending file of an abandoned checkpoint");
                remove(&pending.join(&name))?;
                deleted = true;
            }
        }
        if deleted {
            fsync_dir(&pending)?;
        }
        Ok(())
    }

    fn in_progress(&mut self) -> Result<&mut InProgress> {
        if self.current.is_none() {
            let path = self
                .dir
                .join(IN_PROGRESS_DIR)
                .join(format!("{}{}{TMP_EXTENSION}", self.prefix, self.token));
            let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            self.current = Some(InProgress {
                path,
                out: BufWriter::with_capacity(1 << 16, file),
                records: 0,
                bytes: 0,
            });
        }
        Ok(self.current.as_mut().expect("just created"))
    }

    /// Commits one committable; `true` if it renamed a file (the directory needs an fsync).
    fn commit_one(&self, id: CheckpointId, c: &FileCommittable) -> Result<bool> {
        let pending = self.dir.join(&c.pending);
        let fin = self.dir.join(&c.final_name);
        match (exists(&pending)?, exists(&fin)?) {
            (true, false) => {
                fs::rename(&pending, &fin).map_err(|e| {
                    Error::io(
                        format!(
                            "committing checkpoint {id}: renaming {} to {}",
                            pending.display(),
                            fin.display()
                        ),
                        e,
                    )
                })?;
                Ok(true)
            }
            // Committed before (the commit is repeated after a restore).
            (false, true) => Ok(false),
            (true, true) => {
                // Only a crash in the middle of the rename can leave both names; if they hold
                // the same content, the rename happened.
                if same_content(&pending, &fin)? {
                    remove(&pending)?;
                    return Ok(true);
                }
                Err(Error::external(
                    false,
                    format!(
                        "committing checkpoint {id}: {} already exists with other content than {}; \
                         the directory holds output of another run of this sink",
                        fin.display(),
                        pending.display()
                    ),
                ))
            }
            (false, false) => Err(Error::external(
                false,
                format!(
                    "committing checkpoint {id}: neither the pending file {} nor the final file {} exists: \
                     {} pre-committed records are lost (were files deleted from the output directory?)",
                    pending.display(),
                    fin.display(),
                    c.records
                ),
            )),
        }
    }
}

impl<T: Data> SinkWriter<T, FileCommittable> for FileWriter<T> {
    fn write(&mut self, records: Vec<Record<T>>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let format = self.format.clone();
        let mut line = std::mem::take(&mut self.line);
        let result = (|| {
            let current = self.in_progress()?;
            for r in &records {
                line.clear();
                line.push_str(&format(&r.value)?);
                if line.contains('\n') {
                    return Err(Error::data(format!(
                        "the file sink's formatter produced a line break in a record's line: {line:?}"
                    )));
                }
                line.push('\n');
                current
                    .out
                    .write_all(line.as_bytes())
                    .map_err(|e| Error::io(format!("writing {}", current.path.display()), e))?;
                current.records += 1;
                current.bytes += line.len() as u64;
            }
            Ok(())
        })();
        self.line = line;
        result
    }

    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<FileCommittable>> {
        if let Some(restored) = self.abandoned_pending {
            self.clean_up_pending(restored)?;
            self.abandoned_pending = None;
        }
        let Some(mut current) = self.current.take() else {
            return Ok(None);
        };
        let name = file_name(&self.prefix, checkpoint);
        let fin = self.dir.join(&name);
        if exists(&fin)? {
            let _ = fs::remove_file(&current.path);
            return Err(Error::external(
                false,
                format!(
                    "pre-committing checkpoint {checkpoint}: {} already exists; the directory holds output of \
                     another run of this sink (use a new directory, or restore the job from its checkpoints)",
                    fin.display()
                ),
            ));
        }
        current
            .out
            .flush()
            .and_then(|_| current.out.get_ref().sync_all())
            .map_err(|e| Error::io(format!("flushing {}", current.path.display()), e))?;
        let pending_dir = self.dir.join(PENDING_DIR);
        let pending = pending_dir.join(&name);
        drop(current.out);
        fs::rename(&current.path, &pending).map_err(|e| {
            Error::io(
                format!(
                    "pre-committing checkpoint {checkpoint}: renaming {} to {}",
                    current.path.display(),
                    pending.display()
                ),
                e,
            )
        })?;
        fsync_dir(&pending_dir)?;
        Ok(Some(FileCommittable {
            pending: format!("{PENDING_DIR}/{name}"),
            final_name: name,
            records: current.records,
            bytes: current.bytes,
        }))
    }

    fn commit(&mut self, committables: Vec<(CheckpointId, FileCommittable)>) -> Result<()> {
        let mut renamed = false;
        for (id, c) in &committables {
            renamed |= self.commit_one(*id, c)?;
        }
        if renamed {
            fsync_dir(&self.dir)?;
            fsync_dir(&self.dir.join(PENDING_DIR))?;
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        if let Some(current) = self.current.take() {
            drop(current.out);
            remove(&current.path)?;
        }
        Ok(())
    }
}

/// A committed file of a file sink directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommittedFile {
    /// The job's file-safe identity (`<name>-<crc32c of the name>`); `None` for files written
    /// before file names carried it.
    pub job: Option<String>,
    /// The sink's file-safe name.
    pub sink: String,
    /// The sink subtask that wrote it.
    pub subtask: usize,
    /// The checkpoint whose completion committed it.
    pub checkpoint: CheckpointId,
    /// Its path.
    pub path: PathBuf,
}

/// Parses a final file name `<job>+<sink>-<subtask>-<n>.jsonl` (or `<sink>-<subtask>-<n>.jsonl`,
/// as written before names carried the job).
fn parse_final(name: &str) -> Option<(Option<String>, String, usize, CheckpointId)> {
    let stem = name.strip_suffix(EXTENSION)?;
    let (job, stem) = match stem.split_once(JOB_SEPARATOR) {
        Some((job, rest)) if !job.is_empty() => (Some(job.to_string()), rest),
        Some(_) => return None,
        None => (None, stem),
    };
    let (rest, n) = stem.rsplit_once('-')?;
    let (sink, subtask) = rest.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if sink.is_empty() || !digits(n) || !digits(subtask) {
        return None;
    }
    Some((job, sink.to_string(), subtask.parse().ok()?, n.parse().ok()?))
}

/// Every committed (final) file in file sink directory `dir`, in (job, sink, subtask,
/// checkpoint) order: per subtask, the order its records were written in.
///
/// # Errors
/// `External` if the directory cannot be listed.
///
/// # Checkpointing
/// Pending and in-progress files are not listed: they are not output (yet).
pub fn committed_files(dir: impl AsRef<Path>) -> Result<Vec<CommittedFile>> {
    let dir = dir.as_ref();
    let mut files: Vec<CommittedFile> = file_names(dir)?
        .into_iter()
        .filter_map(|name| {
            let (job, sink, subtask, checkpoint) = parse_final(&name)?;
            Some(CommittedFile {
                job,
                sink,
                subtask,
                checkpoint,
                path: dir.join(name),
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Every committed line in file sink directory `dir`: the lines of all final files, in
/// (job, sink, subtask, checkpoint) order, for tests and audits.
///
/// # Errors
/// `External` if the directory or a file cannot be read.
///
/// # Checkpointing
/// Reads committed output only: after any crash and restore, each record of the committed
/// checkpoints is in the result exactly once.
pub fn read_committed_lines(dir: impl AsRef<Path>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for f in committed_files(dir)? {
        let text = fs::read_to_string(&f.path).map_err(|e| Error::io(format!("reading {}", f.path.display()), e))?;
        lines.extend(text.lines().map(str::to_string));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    type Writer = Box<dyn SinkWriter<(u64, String), FileCommittable>>;

    fn ctx(name: &str, subtask: usize, restored: Option<CheckpointId>) -> SinkContext {
        SinkContext {
            job: "test".into(),
            name: name.to_string(),
            subtask,
            parallelism: 2,
            max_parallelism: 128,
            attempt: 1,
            restored_checkpoint: restored,
            checkpoint_timing: None,
            committed_output: Default::default(),
            cancellation: Default::default(),
            fail_points: crate::fail::FailPoints::new(),
        }
    }

    fn writer(dir: &Path, name: &str, subtask: usize, restored: Option<CheckpointId>) -> Writer {
        FileSink::<(u64, String)>::exactly_once(dir)
            .create_writer(&ctx(name, subtask, restored))
            .unwrap()
    }

    fn recs(range: std::ops::Range<u64>) -> Vec<Record<(u64, String)>> {
        range.map(|i| Record::new((i, format!("v{i}")))).collect()
    }

    fn lines(range: std::ops::Range<u64>) -> Vec<String> {
        range.map(|i| format!("[{i},\"v{i}\"]")).collect()
    }

    /// A file name of job "test".
    fn n(rest: &str) -> String {
        format!("{}+{rest}", dir_name("test"))
    }

    fn names(dir: &Path) -> Vec<String> {
        file_names(dir).unwrap()
    }

    /// Sink subtask 3 of 4 is taken over by subtask 1 of 2: its restored committable is
    /// committed once, its abandoned pending file and its in-progress file are deleted, its
    /// committed files stay, and they count for the restore rules.
    #[test]
    fn a_subtask_above_a_lower_parallelism_is_taken_over_by_its_owner() {
        let d = tempfile::tempdir().unwrap();
        let at = |subtask, parallelism, restored: Option<u64>| {
            FileSink::<(u64, String)>::exactly_once(d.path()).create_writer(&SinkContext {
                parallelism,
                committed_output: super::super::CommittedOutputCheck::new(
                    crate::checkpoint::RestoreMode::Latest,
                    false,
                    "test storage".into(),
                    None,
                ),
                ..ctx("out", subtask, restored.map(CheckpointId::new))
            })
        };
        let mut w = at(3, 4, None).unwrap();
        w.write(recs(0..2)).unwrap();
        let c1 = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        w.commit(vec![(CheckpointId::new(1), c1)]).unwrap();
        w.write(recs(2..4)).unwrap();
        let c2 = w.pre_commit(CheckpointId::new(2)).unwrap().unwrap();
        w.write(recs(4..6)).unwrap();
        w.pre_commit(CheckpointId::new(3)).unwrap().unwrap();
        w.write(recs(6..8)).unwrap();
        drop(w); // crash: checkpoint 2 completed, 3 did not
        let mut w = at(1, 2, Some(2)).unwrap();
        assert!(
            names(&d.path().join(IN_PROGRESS_DIR)).is_empty(),
            "the in-progress file of subtask 3 is deleted"
        );
        w.commit_taken_over(3, vec![(CheckpointId::new(2), c2)]).unwrap();
        assert_eq!(w.pre_commit(CheckpointId::new(3)).unwrap(), None);
        assert!(
            names(&d.path().join(PENDING_DIR)).is_empty(),
            "the pending file of abandoned checkpoint 3 is deleted"
        );
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(0..4));
        drop(w);
        // Subtask 0 of 2 takes over subtasks 2 (none here), not 3.
        drop(at(0, 2, Some(2)).unwrap());
        // Subtask 3 committed checkpoint 2: restoring checkpoint 1 would produce it again.
        let e = match at(1, 2, Some(1)) {
            Ok(_) => panic!("output ahead of the restored checkpoint must stop the start"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
        assert!(e.to_string().contains(&n("out-3-0000000002.jsonl")), "{e}");
    }

    #[test]
    fn records_become_visible_on_commit_only() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..3)).unwrap();
        assert_eq!(names(&d.path().join(IN_PROGRESS_DIR)).len(), 1);
        let c = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        assert_eq!(c.final_name, n("out-0-0000000001.jsonl"));
        assert_eq!(c.pending, format!(".pending/{}", n("out-0-0000000001.jsonl")));
        assert_eq!(c.records, 3);
        assert!(read_committed_lines(d.path()).unwrap().is_empty());
        assert!(names(&d.path().join(IN_PROGRESS_DIR)).is_empty());
        w.commit(vec![(CheckpointId::new(1), c)]).unwrap();
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(0..3));
        assert!(names(&d.path().join(PENDING_DIR)).is_empty());
        // Nothing written: nothing to pre-commit.
        assert_eq!(w.pre_commit(CheckpointId::new(2)).unwrap(), None);
        w.abort().unwrap();
    }

    #[test]
    fn crash_after_pre_commit_before_commit_is_recommitted_on_restore() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..5)).unwrap();
        let c = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        drop(w); // crash: checkpoint 1 completes but commit never ran
        let mut w = writer(d.path(), "out", 0, Some(CheckpointId::new(1)));
        // The pending file of the restored checkpoint survived the clean-up.
        assert_eq!(names(&d.path().join(PENDING_DIR)), vec![n("out-0-0000000001.jsonl")]);
        w.commit(vec![(CheckpointId::new(1), c)]).unwrap();
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(0..5));
    }

    #[test]
    fn crash_during_commit_then_repeated_commit_does_not_duplicate() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..2)).unwrap();
        let c1 = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        w.write(recs(2..4)).unwrap();
        let c2 = w.pre_commit(CheckpointId::new(2)).unwrap().unwrap();
        // Crash during the commit of [1, 2]: the first rename happened, the second did not.
        w.commit(vec![(CheckpointId::new(1), c1.clone())]).unwrap();
        drop(w);
        let mut w = writer(d.path(), "out", 0, Some(CheckpointId::new(2)));
        w.commit(vec![(CheckpointId::new(1), c1), (CheckpointId::new(2), c2)])
            .unwrap();
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(0..4));
        assert!(names(&d.path().join(PENDING_DIR)).is_empty());
    }

    #[test]
    fn both_names_with_equal_content_count_as_committed() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..2)).unwrap();
        let c = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        // A crash in the middle of the rename left both directory entries.
        fs::hard_link(d.path().join(&c.pending), d.path().join(&c.final_name)).unwrap();
        w.commit(vec![(CheckpointId::new(1), c)]).unwrap();
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(0..2));
        assert!(names(&d.path().join(PENDING_DIR)).is_empty());
    }

    #[test]
    fn commit_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 1, None);
        w.write(recs(0..3)).unwrap();
        let c = w.pre_commit(CheckpointId::new(7)).unwrap().unwrap();
        w.commit(vec![(CheckpointId::new(7), c.clone())]).unwrap();
        w.commit(vec![(CheckpointId::new(7), c.clone())]).unwrap();
        w.commit(vec![(CheckpointId::new(7), c.clone()), (CheckpointId::new(7), c)])
            .unwrap();
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(0..3));
        assert_eq!(names(d.path()), vec![n("out-1-0000000007.jsonl")]);
    }

    #[test]
    fn missing_pending_and_final_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..3)).unwrap();
        let c = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        fs::remove_file(d.path().join(&c.pending)).unwrap();
        let e = w.commit(vec![(CheckpointId::new(1), c)]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::External { retryable: false });
        assert!(e.to_string().contains("lost"), "{e}");
    }

    #[test]
    fn abandoned_files_are_deleted_on_restore_and_others_kept() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..2)).unwrap();
        let c1 = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        w.commit(vec![(CheckpointId::new(1), c1)]).unwrap();
        w.write(recs(2..4)).unwrap();
        let _c2 = w.pre_commit(CheckpointId::new(2)).unwrap().unwrap(); // checkpoint 2 never completes
        w.write(recs(4..6)).unwrap();
        let c3 = w.pre_commit(CheckpointId::new(3)).unwrap().unwrap(); // completes, not yet committed
        w.write(recs(6..8)).unwrap();
        let _c4 = w.pre_commit(CheckpointId::new(4)).unwrap().unwrap(); // abandoned
        w.write(recs(8..9)).unwrap(); // in progress
        drop(w); // crash (no abort)

        // Another subtask and another sink (whose name extends this one's) in the same directory.
        let mut other = writer(d.path(), "out", 1, None);
        other.write(recs(100..101)).unwrap();
        let _ = other.pre_commit(CheckpointId::new(4)).unwrap().unwrap();
        other.write(recs(101..102)).unwrap();
        let mut other_sink = writer(d.path(), "out-0", 0, None);
        other_sink.write(recs(200..201)).unwrap();
        let _ = other_sink.pre_commit(CheckpointId::new(4)).unwrap().unwrap();
        other_sink.write(recs(201..202)).unwrap();

        // Restore checkpoint 3: the in-progress file goes at once; pending 4 goes at the first
        // barrier (once the whole job started); pending 2 and 3 stay (checkpoint 3's
        // committables hold both: the engine commits them again).
        let mut w = writer(d.path(), "out", 0, Some(CheckpointId::new(3)));
        assert_eq!(
            names(&d.path().join(PENDING_DIR)).len(),
            5,
            "nothing pending deleted before a barrier"
        );
        assert_eq!(w.pre_commit(CheckpointId::new(5)).unwrap(), None);
        assert_eq!(
            names(&d.path().join(PENDING_DIR)),
            vec![
                n("out-0-0-0000000004.jsonl"),
                n("out-0-0000000002.jsonl"),
                n("out-0-0000000003.jsonl"),
                n("out-1-0000000004.jsonl")
            ]
        );
        let in_progress = names(&d.path().join(IN_PROGRESS_DIR));
        assert_eq!(in_progress.len(), 2, "{in_progress:?}");
        assert!(in_progress.iter().any(|f| f.starts_with(&n("out-1-"))));
        assert!(in_progress.iter().any(|f| f.starts_with(&n("out-0-0-"))));
        w.commit(vec![(CheckpointId::new(3), c3)]).unwrap();
        assert_eq!(
            read_committed_lines(d.path()).unwrap(),
            [lines(0..2), lines(4..6)].concat()
        );

        // Without a restored checkpoint every leftover of the subtask goes.
        drop(w);
        let mut w = writer(d.path(), "out", 0, None);
        assert_eq!(w.pre_commit(CheckpointId::new(6)).unwrap(), None);
        assert_eq!(
            names(&d.path().join(PENDING_DIR)),
            vec![n("out-0-0-0000000004.jsonl"), n("out-1-0000000004.jsonl")]
        );
        other.abort().unwrap();
        other_sink.abort().unwrap();
        assert!(names(&d.path().join(IN_PROGRESS_DIR)).is_empty());
    }

    #[test]
    fn abort_deletes_the_in_progress_file() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..3)).unwrap();
        w.abort().unwrap();
        assert!(names(&d.path().join(IN_PROGRESS_DIR)).is_empty());
        assert_eq!(w.pre_commit(CheckpointId::new(1)).unwrap(), None);
        w.write(recs(3..4)).unwrap();
        let c = w.pre_commit(CheckpointId::new(2)).unwrap().unwrap();
        w.commit(vec![(CheckpointId::new(2), c)]).unwrap();
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(3..4));
    }

    #[test]
    fn output_of_another_run_is_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(0..1)).unwrap();
        let c = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        w.commit(vec![(CheckpointId::new(1), c)]).unwrap();
        drop(w);
        // A new run (say without checkpoint storage, so ids start at 1 again).
        let mut w = writer(d.path(), "out", 0, None);
        w.write(recs(5..6)).unwrap();
        let e = w.pre_commit(CheckpointId::new(1)).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(read_committed_lines(d.path()).unwrap(), lines(0..1));
        assert!(names(&d.path().join(IN_PROGRESS_DIR)).is_empty());
    }

    #[test]
    fn committed_files_are_in_sink_subtask_checkpoint_order() {
        let d = tempfile::tempdir().unwrap();
        for (name, subtask, ids) in [
            ("b", 0, vec![9, 10, 11]),
            ("a-1", 2, vec![3]),
            ("a", 10, vec![1]),
            ("a", 2, vec![5]),
        ] {
            let mut w = writer(d.path(), name, subtask, None);
            for id in ids {
                w.write(recs(id..id + 1)).unwrap();
                let id = CheckpointId::new(id);
                let c = w.pre_commit(id).unwrap().unwrap();
                w.commit(vec![(id, c)]).unwrap();
            }
        }
        let files: Vec<_> = committed_files(d.path())
            .unwrap()
            .into_iter()
            .map(|f| (f.sink, f.subtask, f.checkpoint.get()))
            .collect();
        assert_eq!(
            files,
            vec![
                ("a".into(), 2, 5),
                ("a".into(), 10, 1),
                ("a-1".into(), 2, 3),
                ("b".into(), 0, 9),
                ("b".into(), 0, 10),
                ("b".into(), 0, 11)
            ]
        );
        assert_eq!(
            read_committed_lines(d.path()).unwrap(),
            [lines(5..6), lines(1..2), lines(3..4), lines(9..12)].concat()
        );
    }

    #[test]
    fn custom_formatter_and_line_breaks() {
        let d = tempfile::tempdir().unwrap();
        let sink = FileSink::<(u64, String)>::exactly_once(d.path()).with_formatter(|(i, s)| format!("{i}\t{s}"));
        let mut w = sink.create_writer(&ctx("tsv", 0, None)).unwrap();
        w.write(recs(0..2)).unwrap();
        let c = w.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
        w.commit(vec![(CheckpointId::new(1), c)]).unwrap();
        assert_eq!(read_committed_lines(d.path()).unwrap(), vec!["0\tv0", "1\tv1"]);

        let sink = FileSink::<(u64, String)>::exactly_once(d.path()).with_formatter(|(_, s)| s.clone());
        let mut w = sink.create_writer(&ctx("raw", 0, None)).unwrap();
        let e = w.write(vec![Record::new((0, "a\nb".to_string()))]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Data);
    }

    #[test]
    fn odd_sink_names_are_made_file_safe() {
        let d = tempfile::tempdir().unwrap();
        let mut w = writer(d.path(), "my sink/1", 3, None);
        w.write(recs(0..1)).unwrap();
        let c = w.pre_commit(CheckpointId::new(12)).unwrap().unwrap();
        w.commit(vec![(CheckpointId::new(12), c)]).unwrap();
        assert_eq!(names(d.path()), vec![n("my_sink_1-3-0000000012.jsonl")]);
    }
}
