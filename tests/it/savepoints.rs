//! Savepoints and retention.
//!
//! The job is count-sensitive, as the second half of `exactly_once.rs`: a running count and sum
//! per region with no deduplication, every event committed as `(region, id, count, sum)`. An
//! event processed twice or lost changes the committed output, which is compared with a
//! sequential model. RocksDB keeps the state, so checkpoints share SST files (`shared/`) and a
//! savepoint has to copy them to be self-contained.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weir::engine::checkpoint::metadata::StoredFile;
use weir::engine::checkpoint::{read_metadata, CheckpointStorage, OwnerInfo, OwnerLease};
use weir::engine::source::generator::mix;
use weir::prelude::*;

use crate::common::{wait_until, within};

pub(crate) const EVENTS: u64 = 4_000;
const REGIONS: u64 = 5;
const SPLITS: usize = 4;
/// Events per second while a test stops or snapshots the job midway: the job takes 4 s, so
/// that a loaded machine still asks for the savepoint well before the input ends.
pub(crate) const SLOW: f64 = 1_000.0;
/// Events per second to finish a job.
pub(crate) const FAST: f64 = 200_000.0;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Txn {
    id: u64,
    region: u64,
    cents: i64,
}

fn txn(i: u64) -> Txn {
    let r = mix(0x5AFE, i);
    Txn {
        id: i,
        region: (r >> 8) % REGIONS,
        cents: 1 + ((r >> 16) % 1000) as i64,
    }
}

/// What the tally step commits per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tallied {
    pub(crate) region: u64,
    pub(crate) id: u64,
    /// The region's event count after this event.
    pub(crate) count: u64,
    /// The region's sum after this event.
    pub(crate) sum: i64,
}

/// Running count and sum per region: no deduplication, so every event processed counts.
#[derive(Clone)]
struct Tally;

impl KeyedProcess<u64, Txn> for Tally {
    type Out = Tallied;
    fn process(&mut self, t: Txn, ctx: &mut KeyedContext<'_, u64, Tallied>) -> Result<()> {
        let mut state = ctx.value_state::<(u64, i64)>("count-and-sum");
        let (count, sum) = state.get()?.unwrap_or((0, 0));
        let (count, sum) = (count + 1, sum + t.cents);
        state.set(&(count, sum))?;
        ctx.emit(Tallied {
            region: t.region,
            id: t.id,
            count,
            sum,
        });
        Ok(())
    }
}

/// One run of the job.
pub(crate) struct Job<'a> {
    /// Output (`tallied/`) and RocksDB state (`state/`) live here.
    pub(crate) dir: &'a Path,
    pub(crate) checkpoints: PathBuf,
    /// The name of the stateful step ("tally"; a changed job renames it).
    pub(crate) step: &'static str,
    pub(crate) rate: f64,
    /// Every step's parallelism (2 unless a test rescales).
    pub(crate) parallelism: usize,
    pub(crate) from_savepoint: Option<SavepointRestore>,
    pub(crate) tune: fn(&mut CheckpointConfig),
    /// Checkpoint storage other than the `checkpoints` directory (an S3 bucket).
    pub(crate) storage: Option<Arc<dyn CheckpointStorage>>,
}

impl<'a> Job<'a> {
    pub(crate) fn new(dir: &'a Path, checkpoints: &str) -> Self {
        Job {
            dir,
            checkpoints: dir.join(checkpoints),
            step: "tally",
            rate: SLOW,
            parallelism: 2,
            from_savepoint: None,
            tune: |_| {},
            storage: None,
        }
    }

    pub(crate) fn pipeline(&self) -> Pipeline {
        let mut cfg = match &self.storage {
            Some(s) => CheckpointConfig::with_storage(s.clone()),
            None => CheckpointConfig::new(&self.checkpoints),
        };
        cfg.interval = Duration::from_millis(40);
        (self.tune)(&mut cfg);
        let mut p = Pipeline::new("savepoints")
            .parallelism(self.parallelism)
            .batch_size(32)
            .state_dir(self.dir.join("state"))
            .checkpointing(cfg);
        if let Some(sp) = &self.from_savepoint {
            p = p.from_savepoint(sp.clone());
        }
        p.source(
            "txns",
            GeneratorSource::new(txn)
                .bounded(EVENTS)
                .splits(SPLITS)
                .rate_per_second(self.rate),
        )
        .key_by("by-region", |t: &Txn| t.region)
        .process(self.step, Tally)
        .sink("tallied-out", FileSink::exactly_once(self.dir.join("tallied")));
        p
    }

    pub(crate) fn start(&self) -> JobHandle {
        self.pipeline().start().unwrap()
    }
}

pub(crate) fn local(dir: &Path) -> Arc<dyn CheckpointStorage> {
    Arc::new(LocalDirStorage::new(dir))
}

/// Waits until the job has read `records` and completed a checkpoint.
fn wait_for_progress(handle: &JobHandle, records: u64) {
    wait_until("the job made progress", 60, || {
        let p = handle.progress();
        p.source_records >= records && p.last_checkpoint.is_some()
    });
}

pub(crate) fn committed(dir: &Path) -> Vec<Tallied> {
    weir::engine::sink::read_committed_lines(dir.join("tallied"))
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The committed tally against a sequential model: per region, each event once, the counts
/// exactly `1..=n`, and the model's sum at `n`.
pub(crate) fn check_against_model(dir: &Path) {
    let mut got: BTreeMap<u64, Vec<Tallied>> = BTreeMap::new();
    for t in committed(dir) {
        got.entry(t.region).or_default().push(t);
    }
    let mut model: BTreeMap<u64, (Vec<u64>, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let t = txn(i);
        let m = model.entry(t.region).or_default();
        m.0.push(t.id);
        m.1 += t.cents;
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        model.keys().collect::<Vec<_>>(),
        "regions"
    );
    for (region, (ids, sum)) in &model {
        let got = &got[region];
        let n = ids.len() as u64;
        assert_eq!(
            got.len(),
            ids.len(),
            "region {region}: an event was processed twice or lost"
        );
        let mut got_ids: Vec<u64> = got.iter().map(|t| t.id).collect();
        got_ids.sort_unstable();
        assert!(got_ids == *ids, "region {region}: committed event ids differ");
        let mut counts: Vec<u64> = got.iter().map(|t| t.count).collect();
        counts.sort_unstable();
        assert!(
            counts == (1..=n).collect::<Vec<_>>(),
            "region {region}: counts must be 1..={n}"
        );
        let last = got.iter().find(|t| t.count == n).unwrap();
        assert_eq!(last.sum, *sum, "region {region}: final sum");
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Every file of every completed checkpoint in `storage` is there and verifies; returns the
/// completed ids.
pub(crate) fn verify_all(storage: &LocalDirStorage) -> Vec<CheckpointId> {
    let complete: Vec<CheckpointId> = storage
        .list()
        .unwrap()
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(id, _)| id)
        .collect();
    for &id in &complete {
        let m = read_metadata(storage, id).unwrap();
        for f in m.files() {
            storage
                .read_verified(f)
                .unwrap_or_else(|e| panic!("checkpoint {id} in {}: {e}", storage.describe()));
        }
    }
    complete
}

#[test]
fn a_job_stopped_with_a_savepoint_resumes_from_a_copy_elsewhere_with_exact_output() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let taken_at = dir.join("savepoints/first");
        let first = Job::new(dir, "checkpoints-a");
        let handle = first.start();
        wait_for_progress(&handle, EVENTS / 3);
        let sp = handle.stop_with_savepoint(local(&taken_at)).unwrap();
        assert!(sp.stopped_job && sp.files > 0, "{sp:?}");
        let report = handle.join().unwrap();
        assert!(!report.cancelled);
        assert_eq!(report.stopped_with_savepoint.as_ref(), Some(&sp));
        // The sinks committed the savepoint's output, and the job stopped midway.
        let before = committed(dir).len() as u64;
        assert!((EVENTS / 3..EVENTS).contains(&before), "{before} events committed");

        // Self-contained and relocatable: copied elsewhere, with the original and every
        // checkpoint of the job gone.
        let elsewhere = dir.join("moved/savepoint");
        copy_dir(&taken_at, &elsewhere);
        std::fs::remove_dir_all(dir.join("savepoints")).unwrap();
        std::fs::remove_dir_all(dir.join("checkpoints-a")).unwrap();
        // `weir checkpoints show` takes a savepoint's directory without an id.
        let shown = std::process::Command::new(crate::common::weir_bin())
            .args(["checkpoints", "show", elsewhere.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
        assert!(
            text.starts_with(&format!("checkpoint {} of job \"savepoints\": stop-savepoint", sp.id)),
            "{text}"
        );
        assert!(
            !text.contains("shared/"),
            "a savepoint names only its own files:\n{text}"
        );
        let second = Job {
            rate: FAST,
            from_savepoint: Some(SavepointRestore::dir(&elsewhere)),
            ..Job::new(dir, "checkpoints-b")
        };
        let report = second.start().join().unwrap();
        assert_eq!(report.restored_from, Some(sp.id));
        assert_eq!(report.restored_from_savepoint, Some(elsewhere.display().to_string()));
        // Ids continue after the savepoint's, and the first checkpoint stores everything anew.
        let first_checkpoint = &report.checkpoints[0];
        assert!(first_checkpoint.id > sp.id);
        assert_eq!(first_checkpoint.uploaded_bytes, first_checkpoint.state_bytes);
        check_against_model(dir);
        // The job's checkpoints do not need the savepoint.
        std::fs::remove_dir_all(&elsewhere).unwrap();
        assert!(!verify_all(&LocalDirStorage::new(dir.join("checkpoints-b"))).is_empty());
    });
}

#[test]
fn a_savepoint_with_state_of_a_removed_step_is_refused_unless_allowed() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let at = dir.join("savepoint");
        let handle = Job::new(dir, "checkpoints-a").start();
        wait_for_progress(&handle, EVENTS / 4);
        let sp = handle.stop_with_savepoint(local(&at)).unwrap();
        handle.join().unwrap();
        // The changed job has no step "tally" (its stateful step is called otherwise).
        let changed = |allow: bool| Job {
            step: "tally-v2",
            rate: FAST,
            from_savepoint: Some(SavepointRestore::dir(&at).allow_non_restored_state(allow)),
            ..Job::new(dir, "checkpoints-b")
        };
        let e = changed(false).pipeline().start().and_then(|h| h.join()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("\"tally\""), "the error names the step: {e}");
        assert!(e.to_string().contains("allow_non_restored_state"), "{e}");
        // Allowed: the state of "tally" is dropped, the sources and the sink continue where
        // the savepoint was, so every event is committed once.
        let report = changed(true).start().join().unwrap();
        assert_eq!(report.restored_from, Some(sp.id));
        let mut ids: Vec<u64> = committed(dir).iter().map(|t| t.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..EVENTS).collect::<Vec<_>>());
    });
}

#[test]
fn a_savepoint_taken_while_running_does_not_stop_the_job_and_survives_retention() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let at = dir.join("savepoint");
        let job = Job {
            tune: |c| c.retained = 1,
            ..Job::new(dir, "checkpoints")
        };
        let handle = job.start();
        wait_for_progress(&handle, EVENTS / 5);
        let sp = handle.savepoint(local(&at)).unwrap();
        assert!(!sp.stopped_job);
        assert!(!handle.is_finished(), "a savepoint does not stop the job");
        // Later checkpoints complete, and retention (1 kept) deletes the job's checkpoint the
        // savepoint was copied from.
        wait_until("later checkpoints completed", 60, || {
            handle.is_finished()
                || handle
                    .progress()
                    .last_checkpoint
                    .is_some_and(|(id, _)| id.get() >= sp.id.get() + 3)
        });
        let report = handle.join().unwrap();
        assert_eq!(report.savepoints, vec![sp.clone()]);
        assert!(report.stopped_with_savepoint.is_none());
        check_against_model(dir);
        let kept = verify_all(&LocalDirStorage::new(dir.join("checkpoints")));
        assert!(
            !kept.contains(&sp.id),
            "retention deleted the job's checkpoint {}: {kept:?}",
            sp.id
        );
        assert_eq!(
            verify_all(&LocalDirStorage::new(&at)),
            vec![sp.id],
            "the savepoint survives"
        );
    });
}

#[test]
fn retention_by_age_keeps_only_recent_checkpoints_and_the_newest() {
    crate::common::trace_if_asked();
    within(120, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let job = Job {
            tune: |c| {
                c.interval = Duration::from_millis(20);
                c.retained = 1_000;
                c.retained_max_age = Some(Duration::from_millis(300));
            },
            rate: 500.0,
            ..Job::new(dir, "checkpoints")
        };
        let handle = job.start();
        wait_until("many checkpoints completed", 60, || {
            handle.is_finished() || handle.progress().last_checkpoint.is_some_and(|(id, _)| id.get() >= 20)
        });
        handle.cancel();
        let report = handle.join().unwrap();
        let storage = LocalDirStorage::new(dir.join("checkpoints"));
        let kept = verify_all(&storage);
        assert!(!kept.is_empty());
        assert!(
            kept.len() < report.checkpoints.len(),
            "{} kept of {} completed",
            kept.len(),
            report.checkpoints.len()
        );
        let completed_at = |id: CheckpointId| {
            let s = read_metadata(&storage, id).unwrap().stats;
            s.triggered_at_ms + s.total_ms as u64
        };
        let newest = completed_at(*kept.last().unwrap());
        for &id in &kept {
            let age = newest - completed_at(id);
            assert!(
                age <= 301,
                "checkpoint {id} was {age} ms older than the newest when retention ran"
            );
        }
    });
}

#[test]
fn checkpoints_are_retained_on_cancel_unless_deletion_is_asked_and_savepoints_always_are() {
    crate::common::trace_if_asked();
    within(240, || {
        for delete in [false, true] {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path();
            let job = Job {
                tune: if delete {
                    |c| c.on_cancel = OnCancel::Delete
                } else {
                    |c| c.on_cancel = OnCancel::Retain
                },
                ..Job::new(dir, "checkpoints")
            };
            let handle = job.start();
            wait_for_progress(&handle, EVENTS / 5);
            let sp = handle.savepoint(local(&dir.join("savepoint"))).unwrap();
            handle.cancel();
            let report = handle.join().unwrap();
            assert!(report.cancelled);
            assert_eq!(report.checkpoints_deleted_on_cancel, delete);
            let storage = LocalDirStorage::new(dir.join("checkpoints"));
            let kept = verify_all(&storage);
            if delete {
                assert!(storage.list().unwrap().is_empty(), "{:?}", storage.list());
                assert!(storage.list_shared().unwrap().is_empty());
                // The job knows it ran: a plain restart does not start over silently.
                let e = Job::new(dir, "checkpoints").pipeline().start().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Config, "{e}");
                assert!(e.to_string().contains("RestoreMode::Fresh"), "{e}");
            } else {
                assert!(!kept.is_empty());
            }
            assert_eq!(verify_all(&LocalDirStorage::new(dir.join("savepoint"))), vec![sp.id]);
        }
    });
}

#[test]
fn a_savepoint_location_in_use_is_refused_without_disturbing_the_job() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let at = dir.join("savepoint");
        let handle = Job::new(dir, "checkpoints").start();
        wait_for_progress(&handle, EVENTS / 5);
        handle.savepoint(local(&at)).unwrap();
        let e = handle.stop_with_savepoint(local(&at)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("already holds"), "{e}");
        assert!(!handle.is_finished(), "the job goes on");
        let report = handle.join().unwrap();
        assert_eq!((report.restarts, report.stopped_with_savepoint.is_none()), (0, true));
        check_against_model(dir);
    });
}

/// Local storage whose metadata writes fail: a savepoint copy that cannot be published.
#[derive(Debug)]
struct UnpublishableStorage(LocalDirStorage);

impl CheckpointStorage for UnpublishableStorage {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn validate(&self) -> Result<()> {
        self.0.validate()
    }
    fn acquire(&self, owner: &OwnerInfo) -> Result<OwnerLease> {
        self.0.acquire(owner)
    }
    fn verify_lease(&self, lease: &OwnerLease) -> Result<()> {
        self.0.verify_lease(lease)
    }
    fn reserve(&self, id: CheckpointId, lease: &OwnerLease) -> Result<()> {
        self.0.reserve(id, lease)
    }
    fn put_file(&self, local: &Path, key: &str, name: &str) -> Result<StoredFile> {
        self.0.put_file(local, key, name)
    }
    fn put_bytes(&self, key: &str, name: &str, bytes: &[u8]) -> Result<StoredFile> {
        self.0.put_bytes(key, name, bytes)
    }
    fn read_verified(&self, file: &StoredFile) -> Result<Vec<u8>> {
        self.0.read_verified(file)
    }
    fn fetch_verified(&self, file: &StoredFile, dest: &Path) -> Result<()> {
        self.0.fetch_verified(file, dest)
    }
    fn write_metadata(&self, _id: CheckpointId, _bytes: &[u8]) -> Result<()> {
        Err(Error::external(true, "injected: the metadata PUT fails"))
    }
    fn read_metadata(&self, id: CheckpointId) -> Result<Vec<u8>> {
        self.0.read_metadata(id)
    }
    fn list(&self) -> Result<Vec<(CheckpointId, bool)>> {
        self.0.list()
    }
    fn read_identity(&self) -> Result<Option<Vec<u8>>> {
        self.0.read_identity()
    }
    fn write_identity(&self, bytes: &[u8]) -> Result<()> {
        self.0.write_identity(bytes)
    }
    fn delete_checkpoint(&self, id: CheckpointId) -> Result<()> {
        self.0.delete_checkpoint(id)
    }
    fn list_shared(&self) -> Result<Vec<String>> {
        self.0.list_shared()
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key)
    }
}

#[test]
fn a_stop_with_savepoint_whose_copy_fails_keeps_the_job_running_exactly_once() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let at = dir.join("savepoint");
        let handle = Job::new(dir, "checkpoints").start();
        wait_for_progress(&handle, EVENTS / 5);
        let e = handle
            .stop_with_savepoint(Arc::new(UnpublishableStorage(LocalDirStorage::new(&at))))
            .unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        // The attempt that had stopped its sources fails; the job restarts from the savepoint's
        // checkpoint and runs to the end.
        let report = handle.join().unwrap();
        assert!(report.restarts >= 1 && report.stopped_with_savepoint.is_none());
        check_against_model(dir);
        // What was copied is no savepoint: it has no metadata.
        assert!(LocalDirStorage::new(&at)
            .list()
            .unwrap()
            .iter()
            .all(|(_, complete)| !complete));
    });
}

/// The savepoint round trip on object storage: stop with a savepoint into one bucket, copy it
/// (verified, file by file) into another bucket, delete the original and the job's
/// checkpoints, start from the copy with checkpoints in a new prefix: the output equals the
/// model.
#[test]
fn a_savepoint_on_s3_copied_to_another_bucket_resumes_with_exact_output() {
    use weir::engine::checkpoint::replication::{ReplicationConfig, Replicator};
    use weir::engine::checkpoint::{read_metadata, OwnerInfo};
    use weir::object_storage::testing::{object_storage_at, S3Server};
    within(240, || {
        let server = S3Server::start().unwrap();
        let (checkpoints, savepoints, other) = (
            server.create_bucket("checkpoints").unwrap(),
            server.create_bucket("savepoints").unwrap(),
            server.create_bucket("elsewhere").unwrap(),
        );
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let first = Job {
            storage: Some(server.storage(&checkpoints, "run-a").unwrap()),
            ..Job::new(dir, "unused")
        };
        let handle = first.start();
        wait_for_progress(&handle, EVENTS / 3);
        let taken = server.storage(&savepoints, "ledger/first").unwrap();
        let sp = handle.stop_with_savepoint(taken.clone()).unwrap();
        assert!(sp.stopped_job && sp.files > 0, "{sp:?}");
        handle.join().unwrap();
        // Copied to another bucket, every file verified there.
        let moved = server.storage(&other, "restore/first").unwrap();
        let meta = read_metadata(taken.as_ref(), sp.id).unwrap();
        assert!(
            meta.files().all(|f| !f.key.starts_with("shared/")),
            "a savepoint is self-contained"
        );
        let copier = Replicator::start(
            taken.clone(),
            &ReplicationConfig::new(moved.clone()),
            1,
            &OwnerInfo::this_process("savepoint-copy"),
            dir.join("copy"),
        )
        .unwrap();
        copier.offer(&meta);
        wait_until("the savepoint copied", 60, || copier.replicated() == Some(sp.id));
        drop(copier);
        // The original and the job's checkpoints are gone.
        for (bucket, prefix) in [(&savepoints, "ledger/first"), (&checkpoints, "run-a")] {
            object_storage_at(&server.endpoint(), bucket, prefix)
                .unwrap()
                .delete_everything()
                .unwrap();
        }
        let second = Job {
            rate: FAST,
            from_savepoint: Some(SavepointRestore::new(moved)),
            storage: Some(server.storage(&checkpoints, "run-b").unwrap()),
            ..Job::new(dir, "unused")
        };
        let report = second.start().join().unwrap();
        assert_eq!(report.restored_from, Some(sp.id));
        check_against_model(dir);
    });
}
