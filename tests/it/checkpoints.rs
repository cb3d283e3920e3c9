//! Checkpoint behaviour: the restore rules (no silent fallback past a complete checkpoint, no
//! silent fresh start, unreadable is not corrupt, the metadata checksum), one writer per
//! storage, incremental uploads, retention after commit, ids across runs, restore modes,
//! timeouts, restart strategies, tolerable failed checkpoints, staged snapshot clean-up and the
//! cancellation of a failed attempt.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::engine::checkpoint::metadata::StoredFile;
use weir::engine::checkpoint::{CheckpointStorage, OwnerInfo, OwnerLease};
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::prelude::*;

use crate::common;
use common::within;

#[derive(Clone)]
struct Sum;
impl KeyedProcess<u64, (u64, u64)> for Sum {
    type Out = (u64, u64);
    fn process(&mut self, (k, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        let mut s = ctx.value_state::<u64>("sum");
        let n = s.get()?.unwrap_or(0) + v;
        s.set(&n)?;
        ctx.emit((k, n));
        Ok(())
    }
}

fn job(
    storage: &Path,
    events: u64,
    configure: impl FnOnce(Pipeline) -> Pipeline,
) -> (Result<JobReport>, CollectSink<(u64, u64)>) {
    job_into(CollectSink::new(), storage, events, configure)
}

/// Runs the job into `sink`: reuse one sink across runs to model an external system.
fn job_into(
    sink: CollectSink<(u64, u64)>,
    storage: &Path,
    events: u64,
    configure: impl FnOnce(Pipeline) -> Pipeline,
) -> (Result<JobReport>, CollectSink<(u64, u64)>) {
    let p = configure(
        Pipeline::new("checkpoints")
            .parallelism(2)
            .checkpoint_storage(storage)
            .checkpoint_interval(Duration::from_millis(20)),
    );
    p.source(
        "gen",
        GeneratorSource::new(|i| (i % 5, i))
            .bounded(events)
            .splits(5)
            .rate_per_second(40_000.0),
    )
    .key_by("k", |(k, _): &(u64, u64)| *k)
    .process("sum", Sum)
    .sink("out", sink.clone());
    (p.run(), sink)
}

fn complete_checkpoints(storage: &Path) -> Vec<CheckpointId> {
    let mut ids: Vec<CheckpointId> = std::fs::read_dir(storage)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_metadata").is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort();
    ids
}

/// The stored operator state of `op[subtask]` in checkpoint `id` (directories are named
/// `<step>-<hash>`).
fn operator_state(storage: &Path, id: CheckpointId, op: &str, subtask: usize) -> std::path::PathBuf {
    let chk = storage.join(format!("chk-{id}"));
    let dir = std::fs::read_dir(&chk)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&format!("{op}-")))
        .unwrap_or_else(|| panic!("no directory of step {op} in {}", chk.display()));
    dir.path().join(subtask.to_string()).join("operator-state")
}

fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] = bytes[mid].wrapping_add(1); // never cancels out, however often applied
    std::fs::write(path, bytes).unwrap();
}

/// Opts into restoring an older checkpoint than the newest complete one.
fn allow_fallback(p: Pipeline) -> Pipeline {
    p.fallback_to_older_checkpoint_reproducing_output()
}

#[test]
fn with_the_opt_in_a_corrupt_checkpoint_falls_back_to_the_previous_one_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let (first, _) = job(&storage, 8_000, |p| p);
    first.unwrap();
    let ids = complete_checkpoints(&storage);
    assert!(ids.len() >= 2, "need two retained checkpoints, have {ids:?}");
    let (latest, previous) = (ids[ids.len() - 1], ids[ids.len() - 2]);
    corrupt(&operator_state(&storage, latest, "out", 0));

    let (second, _) = job(&storage, 8_000, allow_fallback);
    let report = second.unwrap();
    assert_eq!(
        report.restored_from,
        Some(previous),
        "must fall back to checkpoint {previous}"
    );
    assert_eq!(report.restore_warnings.len(), 1, "{:?}", report.restore_warnings);
    let w = &report.restore_warnings[0];
    assert_eq!((w.restored, w.newer), (previous, latest));
    assert!(
        w.message.contains("corrupt") && w.message.contains("produced again"),
        "{}",
        w.message
    );
    assert!(report.to_string().contains("WARNING"), "the report shows it:\n{report}");

    // With every retained checkpoint corrupt, the job refuses to start from scratch.
    for id in complete_checkpoints(&storage) {
        corrupt(&operator_state(&storage, id, "out", 0));
    }
    let (third, sink) = job(&storage, 8_000, allow_fallback);
    let err = third.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("refusing to start from scratch"), "{err}");
    assert_eq!(err.reason(), Some(Reason::NoUsableCheckpoint), "{err}");
    assert!(sink.records().is_empty());
}

#[test]
fn a_missing_checkpoint_file_is_corruption_and_needs_the_opt_in_to_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    job(&storage, 6_000, |p| p.state_dir(dir.path().join("state")))
        .0
        .unwrap();
    let ids = complete_checkpoints(&storage);
    let latest = *ids.last().unwrap();
    std::fs::remove_file(operator_state(&storage, latest, "out", 1)).unwrap();
    let err = job(&storage, 6_000, |p| p.state_dir(dir.path().join("state")))
        .0
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    let report = job(&storage, 6_000, |p| {
        allow_fallback(p.state_dir(dir.path().join("state")))
    })
    .0
    .unwrap();
    assert_eq!(report.restored_from, Some(ids[ids.len() - 2]));
    assert_eq!(report.restore_warnings.len(), 1);
}

#[test]
fn restarting_a_finished_job_commits_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let (first, out) = job(&storage, 5_000, |p| p);
    first.unwrap();
    assert_eq!(out.records().len(), 5_000);
    let commits_before = out.collected().commits.len();
    // The latest checkpoint is the final one: every source is at its end, nothing is replayed,
    // and whatever committables it holds are committed again, which the sink ignores.
    let (second, out) = job_into(out, &storage, 5_000, |p| p);
    let report = second.unwrap();
    assert!(report.restored_from.is_some());
    assert_eq!(
        out.records().len(),
        5_000,
        "a finished job resumed must commit nothing new"
    );
    assert_eq!(
        out.collected().commits.len(),
        commits_before,
        "no new commit may happen"
    );
}

#[test]
fn checkpoint_ids_increase_across_runs_and_retention_keeps_three() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let r1 = job(&storage, 6_000, |p| p.restore_mode(RestoreMode::Fresh)).0.unwrap();
    let r2 = job(&storage, 6_000, |p| p.restore_mode(RestoreMode::Fresh)).0.unwrap();
    assert_eq!(r2.restored_from, None);
    let max1 = r1.checkpoints.iter().map(|c| c.id).max().unwrap();
    let min2 = r2.checkpoints.iter().map(|c| c.id).min().unwrap();
    assert!(
        min2 > max1,
        "ids must keep increasing: run 1 ended at {max1}, run 2 started at {min2}"
    );
    let kept = complete_checkpoints(&storage);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(*kept.last().unwrap(), r2.checkpoints.last().unwrap().id);
    // Nothing but retained checkpoints remains.
    for e in std::fs::read_dir(&storage).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_prefix("chk-") {
            assert!(kept.contains(&id.parse().unwrap()), "stale checkpoint dir {name}");
        }
    }
}

#[test]
fn restore_mode_picks_the_named_checkpoint_and_rejects_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    job(&storage, 6_000, |p| p).0.unwrap();
    let ids = complete_checkpoints(&storage);
    let report = job(&storage, 6_000, |p| p.restore_mode(RestoreMode::Checkpoint(ids[0])))
        .0
        .unwrap();
    assert_eq!(report.restored_from, Some(ids[0]));
    let err = job(&storage, 6_000, |p| {
        p.restore_mode(RestoreMode::Checkpoint(CheckpointId::new(9_999)))
    })
    .0
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[test]
fn a_job_with_other_parallelism_restores_rescaled_and_another_max_parallelism_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    job(&storage, 4_000, |p| p.state_dir(dir.path().join("s"))).0.unwrap();
    let report = job(&storage, 4_000, |p| p.parallelism(3).state_dir(dir.path().join("s")))
        .0
        .unwrap();
    assert!(report.restored_from.is_some(), "a rescaled restore");
    let err = job(&storage, 4_000, |p| {
        p.max_parallelism(64).state_dir(dir.path().join("s"))
    })
    .0
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.reason(), Some(Reason::MaxParallelismChanged), "{err}");
    assert!(err.to_string().contains("key groups cannot change"), "{err}");
}

#[test]
fn incremental_checkpoints_upload_only_new_sst_files() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let sink = DiscardSink::new();
    // 150k distinct keys with 200-byte values first (bulk state), then a trickle of updates to
    // 10 keys of one key group (a small, local change rate) while checkpoints keep coming.
    const BULK: u64 = 150_000;
    const TRICKLE: u64 = 300_000;
    let hot: Vec<u64> = (BULK..)
        .filter(|k| weir::engine::state::key_group_for(k, 128).unwrap() == 7)
        .take(10)
        .collect();
    let p = Pipeline::new("incremental")
        .parallelism(1)
        .state_backend(
            RocksDbBackend::new(dir.path().join("state"))
                .write_buffer_size(4 << 20)
                .target_file_size(1 << 20),
        )
        .checkpoint_storage(&storage)
        .checkpoint_interval(Duration::from_millis(100));
    p.source(
        "gen",
        GeneratorSource::new(move |i| if i < BULK { (i, i) } else { (hot[(i % 10) as usize], i) })
            .bounded(BULK + TRICKLE)
            .rate_per_second(150_000.0),
    )
    .key_by("k", |(k, _): &(u64, u64)| *k)
    .process("blob", Blob)
    .sink("out", sink);
    let report = p.run().unwrap();
    let cps = &report.checkpoints;
    let last = cps.last().unwrap();
    assert!(
        last.state_bytes > 10_000_000,
        "bulk state should exceed 10 MB, got {}",
        last.state_bytes
    );
    // Steady state: the second half of the trickle, once the bulk load's compactions settled.
    let after_bulk: Vec<_> = cps.iter().filter(|c| c.source_records > BULK + TRICKLE / 2).collect();
    assert!(after_bulk.len() >= 3, "need checkpoints after the bulk load: {cps:?}");
    let mut uploaded: Vec<u64> = after_bulk.iter().map(|c| c.uploaded_bytes).collect();
    uploaded.sort();
    let median = uploaded[uploaded.len() / 2];
    // A compaction now and then rewrites (and the next checkpoint uploads) some files; most
    // checkpoints upload only the freshly flushed ones.
    assert!(
        median * 5 < last.state_bytes,
        "median upload after the bulk load {median} B is not far below the state size {} B",
        last.state_bytes
    );
    assert!(
        uploaded[0] * 50 < last.state_bytes,
        "the smallest upload {} B should be a tiny fraction of the state size {} B",
        uploaded[0],
        last.state_bytes
    );
}

#[derive(Clone)]
struct Blob;
impl KeyedProcess<u64, (u64, u64)> for Blob {
    type Out = u64;
    fn process(&mut self, (k, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        // Incompressible, so the state's size on disk is what it claims.
        let payload: Vec<u8> = (0..25)
            .flat_map(|i| weir::engine::source::generator::mix(v, i).to_le_bytes())
            .collect();
        ctx.value_state::<Vec<u8>>("blob").set(&payload)?;
        ctx.emit(k);
        Ok(())
    }
}

#[test]
fn a_checkpoint_that_times_out_is_aborted_and_the_job_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = CheckpointConfig::new(dir.path().join("chk"));
    cfg.interval = Duration::from_millis(10);
    cfg.timeout = Duration::from_millis(5);
    // Every checkpoint may time out here: this test is about the job going on regardless.
    cfg.tolerable_failed_checkpoints = u32::MAX;
    let sink = CollectSink::new();
    let p = Pipeline::new("timeouts")
        .parallelism(1)
        .batch_size(10)
        .checkpointing(cfg);
    // A slow consumer behind a full channel: barriers queue behind the backlog.
    p.source("gen", GeneratorSource::new(|i| i).bounded(300))
        .map("fast", |x: u64| x)
        .rebalance()
        .map("slow", |x: u64| {
            std::thread::sleep(Duration::from_millis(1));
            x
        })
        .sink("out", sink.clone());
    let report = p.run().unwrap();
    assert!(
        report.checkpoints_aborted > 0,
        "expected aborted checkpoints: {report:?}"
    );
    let mut got = sink.records();
    got.sort();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
}

#[test]
fn restart_strategy_none_fails_the_job_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    points.arm(fail::PROCESS_RECORD, 2, FailAction::Error);
    let (r, _) = job(&dir.path().join("chk"), 4_000, |p| {
        p.restart_strategy(RestartStrategy::None).fail_points(points)
    });
    let err = r.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
}

#[test]
fn fixed_delay_gives_up_after_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    let p = Pipeline::new("always-fails")
        .checkpoint_storage(dir.path().join("chk"))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 2,
            delay: Duration::from_millis(1),
        });
    p.source("gen", VecSource::new(vec![1u64, 2, 3]))
        .map("boom", |x: u64| if x == 2 { panic!("bad record {x}") } else { x })
        .sink("out", sink);
    let err = p.run().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("gave up after 2 restarts") && msg.contains("boom[0]"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Restore rules: no silent fallback, no silent fresh start.
// ---------------------------------------------------------------------------------------------

/// Hooks a test storage runs around the calls of a [`LocalDirStorage`] (see [`Probed`]).
trait StorageProbe: Send + Sync {
    /// Before a read of `what`; an error fails the read.
    fn before_read(&self, what: &str) -> Result<()> {
        let _ = what;
        Ok(())
    }
    /// After checkpoint `id`'s metadata was published.
    fn published(&self, id: CheckpointId) {
        let _ = id;
    }
    /// Before retention deletes a checkpoint or a shared file.
    fn before_delete(&self) {}
}

/// A local directory storage with a probe's hooks around its calls.
struct Probed<P> {
    inner: LocalDirStorage,
    probe: P,
}

impl<P> Probed<P> {
    fn new(root: &Path, probe: P) -> Self {
        Probed {
            inner: LocalDirStorage::new(root),
            probe,
        }
    }
}

impl<P> std::fmt::Debug for Probed<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probed").field("inner", &self.inner).finish()
    }
}

impl<P: StorageProbe> CheckpointStorage for Probed<P> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn validate(&self) -> Result<()> {
        self.inner.validate()
    }
    fn acquire(&self, owner: &OwnerInfo) -> Result<OwnerLease> {
        self.inner.acquire(owner)
    }
    fn verify_lease(&self, lease: &OwnerLease) -> Result<()> {
        self.inner.verify_lease(lease)
    }
    fn reserve(&self, id: CheckpointId, lease: &OwnerLease) -> Result<()> {
        self.inner.reserve(id, lease)
    }
    fn put_file(&self, local: &Path, key: &str, name: &str) -> Result<StoredFile> {
        self.inner.put_file(local, key, name)
    }
    fn put_bytes(&self, key: &str, name: &str, bytes: &[u8]) -> Result<StoredFile> {
        self.inner.put_bytes(key, name, bytes)
    }
    fn read_verified(&self, file: &StoredFile) -> Result<Vec<u8>> {
        self.probe.before_read(&file.key)?;
        self.inner.read_verified(file)
    }
    fn fetch_verified(&self, file: &StoredFile, dest: &Path) -> Result<()> {
        self.probe.before_read(&file.key)?;
        self.inner.fetch_verified(file, dest)
    }
    fn write_metadata(&self, id: CheckpointId, bytes: &[u8]) -> Result<()> {
        self.inner.write_metadata(id, bytes)?;
        self.probe.published(id);
        Ok(())
    }
    fn read_metadata(&self, id: CheckpointId) -> Result<Vec<u8>> {
        self.probe.before_read(&format!("chk-{id}/_metadata"))?;
        self.inner.read_metadata(id)
    }
    fn list(&self) -> Result<Vec<(CheckpointId, bool)>> {
        self.inner.list()
    }
    fn read_identity(&self) -> Result<Option<Vec<u8>>> {
        self.inner.read_identity()
    }
    fn write_identity(&self, bytes: &[u8]) -> Result<()> {
        self.inner.write_identity(bytes)
    }
    fn delete_checkpoint(&self, id: CheckpointId) -> Result<()> {
        self.probe.before_delete();
        self.inner.delete_checkpoint(id)
    }
    fn list_shared(&self) -> Result<Vec<String>> {
        self.inner.list_shared()
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.probe.before_delete();
        self.inner.delete(key)
    }
}

/// Reads fail with an I/O error (`External { retryable: true }`, as a storage reports EIO,
/// EMFILE or a stale handle) a given number of times, then work.
struct FlakyReads {
    failures_left: std::sync::atomic::AtomicUsize,
}

impl FlakyReads {
    fn new(failures: usize) -> Self {
        FlakyReads {
            failures_left: std::sync::atomic::AtomicUsize::new(failures),
        }
    }
}

impl StorageProbe for FlakyReads {
    fn before_read(&self, what: &str) -> Result<()> {
        use std::sync::atomic::Ordering;
        let left = self.failures_left.load(Ordering::SeqCst);
        if left > 0 {
            self.failures_left.store(left - 1, Ordering::SeqCst);
            return Err(Error::external(true, format!("injected EIO reading {what}")));
        }
        Ok(())
    }
}

/// Runs the job once and returns its retained complete checkpoints (at least two).
fn two_checkpoints(storage: &Path) -> (CheckpointId, CheckpointId) {
    job(storage, 8_000, |p| p).0.unwrap();
    let ids = complete_checkpoints(storage);
    assert!(ids.len() >= 2, "need two retained checkpoints, have {ids:?}");
    (ids[ids.len() - 1], ids[ids.len() - 2])
}

#[test]
fn a_corrupt_latest_checkpoint_stops_the_start_unless_fallback_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let (latest, _previous) = two_checkpoints(&storage);
    corrupt(&operator_state(&storage, latest, "out", 0));

    let (second, sink) = job(&storage, 8_000, |p| p.restart_strategy(RestartStrategy::None));
    let err = second.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("checkpoint {latest}")), "{msg}");
    assert!(msg.contains("corrupt"), "{msg}");
    assert!(msg.contains("fallback_to_older_checkpoint_reproducing_output"), "{msg}");
    assert!(sink.records().is_empty());
}

#[test]
fn an_unreadable_checkpoint_file_fails_the_start_and_is_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let (latest, _previous) = two_checkpoints(&storage);
    // Root is not stopped by permissions: a directory in place of the file makes every read
    // fail with an I/O error (EISDIR) while the file is "there".
    let file = operator_state(&storage, latest, "out", 1);
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();

    let (second, sink) = job(&storage, 8_000, |p| p.restart_strategy(RestartStrategy::None));
    let err = second.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::External { retryable: true }, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("checkpoint {latest}")), "{msg}");
    assert!(msg.contains("operator-state"), "names the file: {msg}");
    assert!(sink.records().is_empty(), "nothing may run from an older checkpoint");
}

#[test]
fn reads_that_fail_a_few_times_are_retried_and_restore_the_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let (latest, _previous) = two_checkpoints(&storage);
    let mut cfg = CheckpointConfig::with_storage(std::sync::Arc::new(Probed::new(&storage, FlakyReads::new(2))));
    cfg.interval = Duration::from_millis(20);
    let report = pipeline_on(cfg, &CollectSink::new(), 8_000)
        .restart_strategy(RestartStrategy::None)
        .run()
        .unwrap();
    assert_eq!(report.restored_from, Some(latest));
    assert_eq!(report.restarts, 0, "retried inside the restore, not by restarting");
}

/// Changes one digit of the first split offset in `_metadata`.
fn tamper_with_an_offset(metadata: &Path) {
    let text = std::fs::read_to_string(metadata).unwrap();
    let at = text.find("\"offset\": ").expect("a split offset in the metadata") + "\"offset\": ".len();
    let mut bytes = text.into_bytes();
    assert!(bytes[at].is_ascii_digit());
    bytes[at] = if bytes[at] == b'9' { b'8' } else { bytes[at] + 1 };
    std::fs::write(metadata, bytes).unwrap();
}

#[test]
fn a_changed_digit_in_a_split_offset_of_the_metadata_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let (latest, _previous) = two_checkpoints(&storage);
    tamper_with_an_offset(&storage.join(format!("chk-{latest}")).join("_metadata"));
    let (second, _) = job(&storage, 8_000, |p| p.restart_strategy(RestartStrategy::None));
    let err = second.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("checksum"), "{msg}");
    assert!(msg.contains(&format!("checkpoint {latest}")), "{msg}");
}

#[test]
fn a_job_whose_checkpoints_are_gone_refuses_to_start_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    two_checkpoints(&storage);
    for e in std::fs::read_dir(&storage).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("chk-") {
            std::fs::remove_dir_all(e.path()).unwrap();
        }
    }
    let (second, sink) = job(&storage, 8_000, |p| p.restart_strategy(RestartStrategy::None));
    let err = second.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("_job") && msg.contains("RestoreMode::Fresh"), "{msg}");
    assert_eq!(err.reason(), Some(Reason::EarlierRunFound), "{msg}");
    assert!(sink.records().is_empty());
    // The explicit fresh start is allowed.
    let report = job(&storage, 8_000, |p| p.restore_mode(RestoreMode::Fresh)).0.unwrap();
    assert_eq!(report.restored_from, None);
}

#[test]
fn a_job_that_never_completed_a_checkpoint_starts_fresh_again() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let points = FailPoints::new();
    points.arm(fail::PROCESS_RECORD, 1, FailAction::Error);
    let (first, _) = job(&storage, 4_000, |p| {
        p.restart_strategy(RestartStrategy::None).fail_points(points)
    });
    first.unwrap_err();
    assert!(complete_checkpoints(&storage).is_empty());
    let (second, sink) = job(&storage, 4_000, |p| p);
    let report = second.unwrap();
    assert_eq!(report.restored_from, None);
    assert_eq!(sink.records().len(), 4_000);
}

/// The job of [`job_into`] on `cfg`, not yet started.
fn pipeline_on(cfg: CheckpointConfig, sink: &CollectSink<(u64, u64)>, events: u64) -> Pipeline {
    let p = Pipeline::new("checkpoints").parallelism(2).checkpointing(cfg);
    p.source(
        "gen",
        GeneratorSource::new(|i| (i % 5, i))
            .bounded(events)
            .splits(5)
            .rate_per_second(40_000.0),
    )
    .key_by("k", |(k, _): &(u64, u64)| *k)
    .process("sum", Sum)
    .sink("out", sink.clone());
    p
}

/// A second run of a job on a checkpoint storage that a running one owns fails at once with a
/// `Config` error naming the owner, and changes nothing: the first run's output is exact.
#[test]
fn a_second_run_on_an_owned_checkpoint_storage_fails_fast_naming_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("chk");
    let mut cfg = CheckpointConfig::new(&storage);
    cfg.interval = Duration::from_millis(20);
    let first_sink = CollectSink::new();
    let first = pipeline_on(cfg.clone(), &first_sink, 80_000).start().unwrap();
    let waited = std::time::Instant::now();
    while complete_checkpoints(&storage).is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(10), "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second_sink = CollectSink::new();
    let started = std::time::Instant::now();
    let second = pipeline_on(cfg, &second_sink, 40_000).run();
    let took = started.elapsed();
    let err = second.expect_err("a second writer on the same checkpoint storage must be refused");
    assert!(
        !first.is_finished(),
        "the first run must still be running for this test"
    );
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "names the owner: {text}"
    );
    assert!(text.contains("owner epoch 1"), "{text}");
    assert_eq!(err.reason(), Some(Reason::LostOwnership), "{err}");
    assert!(took < Duration::from_secs(2), "fails fast, took {took:?}");
    assert!(second_sink.records().is_empty());
    first.join().unwrap();
    let mut got = first_sink.records();
    got.sort();
    assert_eq!(got.len(), 80_000, "the first run's output is exact");
    got.dedup();
    assert_eq!(got.len(), 80_000);
    // Once the first run ended, the storage can be taken over (and resumes its checkpoint).
    let (third, _) = job(&storage, 80_000, |p| p);
    assert!(third.unwrap().restored_from.is_some());
    // Every checkpoint names the owner epoch that published it: 1 for the first run, 2 after
    // the take-over (the refused run took no epoch).
    let local = weir::engine::checkpoint::LocalDirStorage::new(&storage);
    let epochs: std::collections::BTreeSet<Option<u64>> = complete_checkpoints(&storage)
        .into_iter()
        .map(|id| weir::engine::checkpoint::read_metadata(&local, id).unwrap().owner_epoch)
        .collect();
    assert!(epochs.is_subset(&[Some(1), Some(2)].into()), "{epochs:?}");
    assert!(epochs.contains(&Some(2)), "{epochs:?}");
}

/// A sink that pre-commits at every barrier (also without records) and logs the checkpoints
/// it commits.
#[derive(Clone, Default)]
struct CommitLog(Arc<Mutex<Vec<CheckpointId>>>);

impl Sink<(u64, u64)> for CommitLog {
    type Committable = CheckpointId;
    fn create_writer(&self, _ctx: &SinkContext) -> Result<Box<dyn SinkWriter<(u64, u64), CheckpointId>>> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter<(u64, u64), CheckpointId> for CommitLog {
    fn write(&mut self, _records: Vec<Record<(u64, u64)>>) -> Result<()> {
        Ok(())
    }
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<CheckpointId>> {
        Ok(Some(checkpoint))
    }
    fn commit(&mut self, committables: Vec<(CheckpointId, CheckpointId)>) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .extend(committables.into_iter().map(|(id, _)| id));
        Ok(())
    }
}

/// Checkpoint storage that watches the order of completion: when retention deletes anything,
/// a sink must already have committed the newest published checkpoint.
struct OrderProbe {
    commits: CommitLog,
    published: Mutex<CheckpointId>,
    retention_calls: Mutex<u64>,
    violations: Mutex<Vec<String>>,
}

impl OrderProbe {
    /// Waits (up to 2 s) for a sink to commit the newest published checkpoint; records a
    /// violation if it does not (retention ran first and blocks the commit).
    fn retention_step(&self) {
        *self.retention_calls.lock().unwrap() += 1;
        if !self.violations.lock().unwrap().is_empty() {
            return; // one violation is enough; do not slow the job down further
        }
        let newest = *self.published.lock().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !self.commits.0.lock().unwrap().contains(&newest) {
            if std::time::Instant::now() > deadline {
                self.violations.lock().unwrap().push(format!(
                    "retention after checkpoint {newest} ran before any sink committed it"
                ));
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
impl StorageProbe for OrderProbe {
    fn published(&self, id: CheckpointId) {
        *self.published.lock().unwrap() = id;
    }
    fn before_delete(&self) {
        self.retention_step();
    }
}

/// Completing a checkpoint publishes it, tells the sinks to commit, and only then applies
/// retention (which may take long on slow storage): committed output is never held back by
/// clean-up.
#[test]
fn sinks_are_told_to_commit_before_retention_runs() {
    let dir = tempfile::tempdir().unwrap();
    let commits = CommitLog::default();
    let probe = Arc::new(Probed::new(
        &dir.path().join("chk"),
        OrderProbe {
            commits: commits.clone(),
            published: Mutex::new(CheckpointId::new(0)),
            retention_calls: Mutex::new(0),
            violations: Mutex::new(Vec::new()),
        },
    ));
    let mut cfg = CheckpointConfig::with_storage(probe.clone());
    cfg.interval = Duration::from_millis(20);
    cfg.retained = 1;
    let p = Pipeline::new("checkpoints").parallelism(2).checkpointing(cfg);
    p.source(
        "gen",
        GeneratorSource::new(|i| (i % 5, i))
            .bounded(10_000)
            .splits(5)
            .rate_per_second(40_000.0),
    )
    .key_by("k", |(k, _): &(u64, u64)| *k)
    .process("sum", Sum)
    .sink("out", commits.clone());
    let report = p.run().unwrap();
    assert!(
        report.checkpoints.len() >= 3,
        "{} checkpoints",
        report.checkpoints.len()
    );
    assert!(
        *probe.probe.retention_calls.lock().unwrap() >= 2,
        "retention deleted old checkpoints"
    );
    let violations = probe.probe.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:?}");
}

/// A second run of a job on a RocksDB state directory that a running one uses (with another
/// checkpoint storage, so that only the state directory is shared) fails at once naming the
/// owner, instead of deleting the working directories of the first run's live stores.
#[test]
fn a_second_run_on_a_used_state_directory_fails_fast_naming_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let configure = |chk: &str| {
        let mut cfg = CheckpointConfig::new(dir.path().join(chk));
        cfg.interval = Duration::from_millis(20);
        cfg
    };
    let first_sink = CollectSink::new();
    let first = pipeline_on(configure("chk-a"), &first_sink, 80_000)
        .state_dir(&state)
        .start()
        .unwrap();
    let waited = std::time::Instant::now();
    while complete_checkpoints(&dir.path().join("chk-a")).is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(10), "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second_sink = CollectSink::new();
    let second = pipeline_on(configure("chk-b"), &second_sink, 80_000)
        .state_dir(&state)
        .run();
    let err = second.expect_err("a second run on the same state directory must be refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(text.contains("state directory"), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "names the owner: {text}"
    );
    let report = first.join().expect("the first run is not disturbed");
    assert_eq!(report.restarts, 0);
    let mut got = first_sink.records();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 80_000);
}

// ---- liveness: restarts, failed checkpoints, staged snapshots, cancellation ---------------------

/// Rejects one record with an error marked not retryable; counts its calls on that record.
#[derive(Clone)]
struct RejectAt(u64, Arc<AtomicU64>);
impl KeyedProcess<u64, (u64, u64)> for RejectAt {
    type Out = (u64, u64);
    fn process(&mut self, (k, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        if v == self.0 {
            self.1.fetch_add(1, Ordering::SeqCst);
            return Err(Error::external(false, "the ledger rejected the credentials"));
        }
        ctx.emit((k, v));
        Ok(())
    }
}

#[test]
fn an_error_marked_not_retryable_ends_the_job_without_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let p = Pipeline::new("not-retryable")
        .checkpoint_storage(dir.path().join("chk"))
        .checkpoint_interval(Duration::from_millis(20));
    p.source("gen", GeneratorSource::new(|i| (i % 5, i)).bounded(1_000))
        .key_by("k", |(k, _): &(u64, u64)| *k)
        .process("ledger", RejectAt(500, calls.clone()))
        .sink("out", DiscardSink::new());
    let err = {
        let h = p.start().unwrap();
        within(60, move || h.join())
    }
    .expect_err("the job fails");
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::External { retryable: false }, "{msg}");
    assert!(msg.contains("the ledger rejected the credentials"), "{msg}");
    assert!(!msg.contains("gave up"), "the restart strategy was consulted: {msg}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the job restarted: {msg}");
}

/// Keeps the upload fail point of `points` armed until dropped: every checkpoint's upload
/// fails.
struct FailingUploads {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FailingUploads {
    fn start(points: &FailPoints) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let points = points.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if !points.is_armed(fail::UPLOAD) {
                    points.arm(fail::UPLOAD, 1, FailAction::Error);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            points.disarm_all();
        });
        FailingUploads {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FailingUploads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn more_failed_checkpoints_in_a_row_than_tolerable_restart_the_job_which_then_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    let points = FailPoints::new();
    let p = Pipeline::new("failing-checkpoints")
        .fail_points(points.clone())
        .parallelism(2)
        .checkpoint_storage(dir.path().join("chk"))
        .checkpoint_interval(Duration::from_millis(20))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 5,
            delay: Duration::from_millis(1),
        });
    const EVENTS: u64 = 100_000;
    p.source(
        "gen",
        GeneratorSource::new(|i| (i % 5, i))
            .bounded(EVENTS)
            .splits(5)
            .rate_per_second(50_000.0),
    )
    .key_by("k", |(k, _): &(u64, u64)| *k)
    .process("sum", Sum)
    .sink("out", sink.clone());
    let handle = p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.progress().last_checkpoint.is_none() {
        assert!(Instant::now() < deadline, "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(2));
    }
    {
        let _failing = FailingUploads::start(&points);
        while handle.progress().restarts == 0 && !handle.is_finished() {
            assert!(Instant::now() < deadline, "failing checkpoints never failed the job");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let report = within(60, move || handle.join()).unwrap();
    let failure = report.failures.first().map(|f| f.error.clone()).unwrap_or_default();
    assert!(
        failure.contains("checkpoints failed in a row"),
        "the job should fail deliberately after 4 failed checkpoints: {report:?}"
    );
    assert!(report.checkpoints_aborted >= 4, "{report:?}");
    // Restored and finished: every input record produced exactly one committed output.
    let recs = sink.records();
    assert_eq!(recs.len() as u64, EVENTS, "records lost or duplicated");
    for k in 0..5u64 {
        let total: u64 = (0..EVENTS).filter(|i| i % 5 == k).sum();
        let max = recs.iter().filter(|(kk, _)| *kk == k).map(|(_, s)| *s).max();
        assert_eq!(max, Some(total), "key {k}");
    }
}

/// The staged snapshot directories (`_snapshots/<run>/staging/chk-<id>`) under `state`.
fn staged_snapshots(state: &Path) -> usize {
    let Ok(runs) = std::fs::read_dir(state.join("_snapshots")) else {
        return 0;
    };
    runs.flatten()
        .filter_map(|r| std::fs::read_dir(r.path().join("staging")).ok())
        .map(|chks| chks.count())
        .sum()
}

#[derive(Clone)]
struct Count;
impl KeyedProcess<u64, u64> for Count {
    type Out = (u64, u64);
    fn process(&mut self, k: u64, ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        let mut s = ctx.value_state::<u64>("count");
        let n = s.get()?.unwrap_or(0) + 1;
        s.set(&n)?;
        ctx.emit((k, n));
        Ok(())
    }
}

#[test]
fn checkpoints_that_time_out_leave_no_staged_snapshots_behind() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut cfg = CheckpointConfig::new(dir.path().join("chk"));
    cfg.interval = Duration::from_millis(10);
    cfg.timeout = Duration::from_millis(5);
    cfg.tolerable_failed_checkpoints = u32::MAX;
    let p = Pipeline::new("staged-timeouts")
        .batch_size(10)
        .channel_capacity(2)
        .state_dir(&state)
        .checkpointing(cfg);
    // The keyed step (RocksDB: its snapshots hard-link the store) takes every barrier late,
    // behind a backlog held up by the slow step: each of its snapshots is of a checkpoint that
    // already timed out.
    let most = Arc::new(AtomicU64::new(0));
    let (m, st) = (most.clone(), state.clone());
    p.source("gen", GeneratorSource::new(|i| i % 50).bounded(3_000))
        .key_by("k", |k: &u64| *k)
        .process("count", Count)
        .rebalance()
        .map("slow", move |r: (u64, u64)| {
            std::thread::sleep(Duration::from_micros(500));
            m.fetch_max(staged_snapshots(&st) as u64, Ordering::SeqCst);
            r
        })
        .sink("out", DiscardSink::new());
    let report = {
        let h = p.start().unwrap();
        within(120, move || h.join())
    }
    .unwrap();
    assert!(report.checkpoints_aborted >= 10, "{report:?}");
    let most = most.load(Ordering::SeqCst);
    eprintln!(
        "at most {most} staged snapshots after {} aborted checkpoints",
        report.checkpoints_aborted
    );
    assert!(
        most <= 5,
        "{most} staged snapshots were kept at once after {} aborted checkpoints",
        report.checkpoints_aborted
    );
}

#[test]
fn staged_snapshots_of_crashed_runs_are_removed_at_start_and_a_live_runs_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let snapshots = state.join("_snapshots");
    let staged = |run: &str| {
        let d = snapshots.join(run).join("staging").join("chk-7");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("000012.sst"), b"pinned").unwrap();
        snapshots.join(run)
    };
    // Left by a process of an older version (no lock file) ...
    let legacy = staged("checkpoints-4242-0");
    // ... by a process killed with -9 (its lock file is left, the lock died with it) ...
    let crashed = staged("checkpoints-4243-0-1700000000000");
    std::fs::write(snapshots.join("checkpoints-4243-0-1700000000000.lock"), b"").unwrap();
    // ... and by a process that is still running (it holds its lock).
    let live = staged("checkpoints-4244-0-1700000000001");
    let lock = std::fs::File::create(snapshots.join("checkpoints-4244-0-1700000000001.lock")).unwrap();
    lock.try_lock().unwrap();

    let (r, _) = job(&dir.path().join("chk"), 1_000, |p| p.state_dir(&state));
    r.unwrap();
    assert!(
        !legacy.exists(),
        "the staged snapshot of an older version's run is left"
    );
    assert!(!crashed.exists(), "the staged snapshot of a crashed run is left");
    assert!(
        live.join("staging/chk-7/000012.sst").exists(),
        "a live run's staged snapshot was deleted"
    );
    drop(lock);
}

#[test]
fn a_failed_attempt_blocked_on_full_channels_is_cancelled_and_the_job_recovers() {
    let dir = tempfile::tempdir().unwrap();
    const KEYS: u64 = 100_000;
    const EVENTS: u64 = 2 * KEYS;
    let sink = CollectSink::new();
    let points = FailPoints::new();
    let p = Pipeline::new("prompt-cancel")
        .fail_points(points.clone())
        .parallelism(2)
        .batch_size(256)
        .channel_capacity(4)
        .state_dir(dir.path().join("state"))
        .checkpoint_storage(dir.path().join("chk"))
        .checkpoint_interval(Duration::from_millis(100))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 3,
            delay: Duration::from_millis(1),
        });
    // The slow step keeps every channel in front of it full: senders are blocked when the
    // failure comes.
    p.source("gen", GeneratorSource::new(|i| i % KEYS).bounded(EVENTS).splits(2))
        .key_by("k", |k: &u64| *k)
        .process("count", Count)
        .map("slow", |r: (u64, u64)| {
            if r.0.is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(300));
            }
            r
        })
        .sink("out", sink.clone());
    let handle = p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.progress().last_checkpoint.is_none() {
        assert!(Instant::now() < deadline, "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(2));
    }
    points.arm(fail::PROCESS_RECORD, 1, FailAction::Error);
    let report = within(120, move || handle.join()).unwrap();
    assert_eq!(report.restores.len(), 1, "{report:?}");
    eprintln!(
        "cancel_ms = {:.3}, detect_to_running_ms = {:.1}, restore_ms = {:.1}",
        report.restores[0].cancel_ms, report.restores[0].detect_to_running_ms, report.restores[0].restore_ms
    );
    let recs = sink.records();
    assert_eq!(recs.len() as u64, EVENTS, "records lost or duplicated");
    let mut max: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for (k, n) in recs {
        let m = max.entry(k).or_default();
        *m = (*m).max(n);
    }
    assert_eq!(max.len() as u64, KEYS);
    assert!(max.values().all(|n| *n == 2), "a key's count is wrong");
}
