//! End-to-end exactly-once through the file sink (and the idempotent sink) under injected
//! failures at every phase of the checkpoint lifecycle.
//!
//! Every job gets its own fail points, so these tests run in parallel with any other.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::sink::file::{committed_files, read_committed_lines, IN_PROGRESS_DIR, PENDING_DIR};
use weir::engine::sink::idempotent::UpsertMap;
use weir::prelude::*;

const RECORDS: u64 = 20_000;
const KEYS: u64 = 7;

#[derive(Clone)]
struct Sum;

impl KeyedProcess<u64, (u64, u64)> for Sum {
    type Out = (u64, u64, u64);
    fn process(&mut self, (k, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, (u64, u64, u64)>) -> Result<()> {
        let mut s = ctx.value_state::<u64>("sum");
        let n = s.get()?.unwrap_or(0) + v;
        s.set(&n)?;
        ctx.emit((k, v, n));
        Ok(())
    }
}

/// The job: key `i % 7` comes from split `i % 7` alone, so each key's records (and running
/// sums) are in a deterministic order.
fn pipeline(chk: &Path, state: Option<&Path>) -> (Pipeline, Stream<(u64, u64, u64)>) {
    let mut p = Pipeline::new("file-eo")
        .parallelism(2)
        .checkpoint_storage(chk)
        .checkpoint_interval(Duration::from_millis(30));
    if let Some(s) = state {
        p = p.state_dir(s);
    }
    let out = p
        .source(
            "gen",
            GeneratorSource::new(|i| (i % KEYS, i))
                .bounded(RECORDS)
                .splits(KEYS as usize)
                .rate_per_second(100_000.0),
        )
        .key_by("by-key", |(k, _): &(u64, u64)| *k)
        .process("sum", Sum);
    (p, out)
}

/// An armed fail point: (name, hit that triggers, action).
type Point<'a> = (&'a str, u64, FailAction);

/// Runs the job into `out` (checkpoints and state under `work`) with `points` armed.
fn run(work: &Path, out: &Path, points: &[Point<'_>], rocks: bool) -> Result<JobReport> {
    let armed = FailPoints::new();
    for &(name, nth, action) in points {
        armed.arm(name, nth, action);
    }
    let state = work.join("state");
    let (p, stream) = pipeline(&work.join("chk"), rocks.then_some(state.as_path()));
    stream.sink("out", FileSink::exactly_once(out));
    p.fail_points(armed).run()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn leftovers(out: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for sub in [IN_PROGRESS_DIR, PENDING_DIR] {
        if let Ok(entries) = std::fs::read_dir(out.join(sub)) {
            names.extend(
                entries
                    .flatten()
                    .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
            );
        }
    }
    names
}

/// Checks the committed output against the failure-free run's lines, and that each key's
/// running sums appear in order (per subtask, committed files in checkpoint order).
fn check(out: &Path, expected: &[String], what: &str) {
    let got = read_committed_lines(out).unwrap();
    assert_eq!(got.len(), expected.len(), "{what}: committed line count");
    assert!(
        sorted(got.clone()) == expected,
        "{what}: committed lines differ from the failure-free run"
    );
    assert!(leftovers(out).is_empty(), "{what}: leftovers {:?}", leftovers(out));
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for line in &got {
        let (k, _, n): (u64, u64, u64) = serde_json::from_str(line).unwrap();
        let prev = last.insert(k, n).unwrap_or(0);
        assert!(
            n > prev || (n == 0 && prev == 0),
            "{what}: key {k} out of order: {prev} then {n}"
        );
    }
}

fn baseline() -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let report = run(tmp.path(), &out, &[], false).expect("failure-free run");
    assert!(
        report.checkpoints.len() >= 2,
        "several checkpoints: {}",
        report.checkpoints.len()
    );
    let expected = sorted(read_committed_lines(&out).unwrap());
    assert_eq!(expected.len() as u64, RECORDS);
    assert!(leftovers(&out).is_empty());
    // Several files per subtask: output was committed checkpoint by checkpoint.
    assert!(committed_files(&out).unwrap().len() > 2);
    expected
}

#[test]
fn exactly_once_under_injected_failures() {
    let expected = baseline();
    // Hits: process-record once per batch, snapshot-sync once per subtask and checkpoint,
    // after-pre-commit and during-commit once per sink subtask and checkpoint, upload and
    // after-metadata once per checkpoint, during-restore once per attempt.
    let cases: Vec<Vec<(&str, u64)>> = vec![
        vec![(fail::PROCESS_RECORD, 1)],
        vec![(fail::PROCESS_RECORD, 100)],
        vec![(fail::SNAPSHOT_SYNC, 1)],
        vec![(fail::SNAPSHOT_SYNC, 7)],
        vec![(fail::UPLOAD, 2)],
        vec![(fail::AFTER_PRE_COMMIT, 1)],
        vec![(fail::AFTER_PRE_COMMIT, 5)],
        vec![(fail::AFTER_METADATA, 1)],
        vec![(fail::AFTER_METADATA, 3)],
        vec![(fail::DURING_COMMIT, 1)],
        vec![(fail::DURING_COMMIT, 4)],
        // The restore after a failure fails too.
        vec![(fail::AFTER_METADATA, 2), (fail::DURING_RESTORE, 2)],
        // A second failure after recovering from the first.
        vec![(fail::DURING_COMMIT, 3), (fail::AFTER_PRE_COMMIT, 9)],
    ];
    let (mut restarts, mut restored_checkpoints) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        for action in [FailAction::Error, FailAction::Panic] {
            let rocks = i % 2 == 1;
            let points: Vec<Point<'_>> = case.iter().map(|&(p, n)| (p, n, action)).collect();
            let what = format!("{case:?} {action:?} (rocksdb: {rocks})");
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join("out");
            let report = run(tmp.path(), &out, &points, rocks).unwrap_or_else(|e| panic!("{what}: job failed: {e}"));
            let restores: Vec<_> = report.restores.iter().map(|r| r.checkpoint).collect();
            println!(
                "{what}: {} restarts, {} checkpoints, {} aborted, restores {restores:?}",
                report.restarts,
                report.checkpoints.len(),
                report.checkpoints_aborted
            );
            restarts += report.restarts;
            restored_checkpoints += restores.iter().filter(|r| r.is_some()).count();
            check(&out, &expected, &what);
        }
    }
    assert!(restarts >= 20, "the fail points triggered ({restarts} restarts)");
    assert!(
        restored_checkpoints >= 10,
        "recoveries restored checkpoints ({restored_checkpoints})"
    );
}

/// A failed run with no restarts, then a new run (as after a process crash) that resumes from
/// the latest checkpoint in storage and cleans up what the failed run left in the directory.
#[test]
fn a_new_run_resumes_after_a_failed_one() {
    let expected = baseline();
    for (point, nth) in [
        (fail::AFTER_PRE_COMMIT, 5),
        (fail::DURING_COMMIT, 4),
        (fail::AFTER_METADATA, 3),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let points = FailPoints::new();
        points.arm(point, nth, FailAction::Error);
        let (p, stream) = pipeline(&tmp.path().join("chk"), None);
        stream.sink("out", FileSink::exactly_once(&out));
        let failed = p.restart_strategy(RestartStrategy::None).fail_points(points).run();
        assert!(failed.is_err(), "{point}: the first run fails");
        let partial = read_committed_lines(&out).unwrap().len();
        assert!((partial as u64) < RECORDS, "{point}: the first run did not finish");

        let report = run(tmp.path(), &out, &[], false).expect("the second run");
        assert!(report.restores.is_empty() && report.restarts == 0);
        check(&out, &expected, &format!("resumed after {point}"));
    }
}

/// The idempotent sink: writes happen before checkpoints complete, and replays overwrite them;
/// after failures each key holds its final running sum.
#[test]
fn idempotent_sink_converges_under_failures() {
    let mut totals = BTreeMap::new();
    for i in 0..RECORDS {
        *totals.entry(i % KEYS).or_insert(0u64) += i;
    }
    // Early hits: the input lasts a few checkpoints, fewer on a loaded machine.
    for (point, nth, action) in [
        (fail::PROCESS_RECORD, 3, FailAction::Panic),
        (fail::AFTER_PRE_COMMIT, 2, FailAction::Error),
        (fail::SNAPSHOT_SYNC, 2, FailAction::Panic),
        (fail::AFTER_METADATA, 1, FailAction::Error),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let points = FailPoints::new();
        points.arm(point, nth, action);
        let map = UpsertMap::new(|(k, _, _): &(u64, u64, u64)| format!("key-{k}"));
        let (p, stream) = pipeline(&tmp.path().join("chk"), None);
        stream.sink("totals", Idempotent::new(map.clone()));
        let report = p.fail_points(points).run();
        let report = report.unwrap_or_else(|e| panic!("{point}: {e}"));
        assert!(report.restarts >= 1, "{point}: the failure was injected");
        let got: BTreeMap<u64, u64> = map.entries().into_values().map(|(k, _, n)| (k, n)).collect();
        assert_eq!(got, totals, "{point}");
        assert!(map.state().writes >= RECORDS);
    }
}

/// The highest checkpoint id of the committed files in `out`, and the complete checkpoints.
fn newest_committed(out: &Path) -> CheckpointId {
    committed_files(out)
        .unwrap()
        .iter()
        .map(|f| f.checkpoint)
        .max()
        .unwrap()
}

fn complete_checkpoints(chk: &Path) -> Vec<CheckpointId> {
    let mut ids: Vec<CheckpointId> = std::fs::read_dir(chk)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_metadata").is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort();
    ids
}

/// The newest `_metadata` is lost (a storage that lost its last write), so the newest complete
/// checkpoint looks incomplete; the sink's committed files of it show that the sink is ahead
/// of the checkpoint the restore would pick: restoring it would commit that output again.
#[test]
fn committed_output_ahead_of_the_restored_checkpoint_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let chk = tmp.path().join("chk");
    run(tmp.path(), &out, &[], false).expect("first run");
    let before = read_committed_lines(&out).unwrap();
    let newest = newest_committed(&out);
    let complete = complete_checkpoints(&chk);
    assert!(
        complete.iter().any(|&id| id < newest),
        "an older checkpoint to restore: {complete:?}"
    );
    for id in complete.iter().filter(|&&id| id >= newest) {
        std::fs::remove_file(chk.join(format!("chk-{id}")).join("_metadata")).unwrap();
    }
    let (p, stream) = pipeline(&chk, None);
    stream.sink("out", FileSink::exactly_once(&out));
    let err = p.restart_strategy(RestartStrategy::None).run().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("checkpoint {newest}")), "{msg}");
    assert!(msg.contains(&format!("{newest:010}.jsonl")), "names the file: {msg}");
    assert_eq!(err.reason(), Some(Reason::CommittedOutputAhead), "{msg}");
    assert!(msg.contains("fallback_to_older_checkpoint_reproducing_output"), "{msg}");
    assert_eq!(
        read_committed_lines(&out).unwrap(),
        before,
        "committed output untouched"
    );

    // With the opt-in the job restores the older checkpoint, says so, and the output after it
    // is committed a second time: what the option's name warns about.
    let (p, stream) = pipeline(&chk, None);
    stream.sink("out", FileSink::exactly_once(&out));
    let report = p
        .fallback_to_older_checkpoint_reproducing_output()
        .run()
        .expect("the run that opted in");
    assert!(
        report.restore_warnings.iter().any(|w| w.newer == newest),
        "{:?}",
        report.restore_warnings
    );
    let after = read_committed_lines(&out).unwrap();
    assert!(
        after.len() as u64 > RECORDS,
        "output after the older checkpoint is there twice"
    );
    assert_eq!(
        sorted(after)
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64,
        RECORDS
    );
}

/// The checkpoint directory is empty (an unmounted volume, a wrong path), but the output
/// directory holds committed files: the job has run before and must not start from scratch.
#[test]
fn committed_output_of_an_earlier_run_stops_a_start_from_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run(tmp.path(), &out, &[], false).expect("first run");
    let before = read_committed_lines(&out).unwrap();
    std::fs::remove_dir_all(tmp.path().join("chk")).unwrap();
    let (p, stream) = pipeline(&tmp.path().join("chk"), None);
    stream.sink("out", FileSink::exactly_once(&out));
    let err = p.restart_strategy(RestartStrategy::None).run().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("RestoreMode::Fresh"), "{msg}");
    assert_eq!(err.reason(), Some(Reason::EarlierRunFound), "{msg}");
    assert!(msg.contains(".jsonl"), "names a committed file: {msg}");
    assert_eq!(
        read_committed_lines(&out).unwrap(),
        before,
        "committed output untouched"
    );
}

/// A writer of sink `out` subtask 0 of job `job`, as a process of that job creates it.
fn subtask_writer(
    dir: &Path,
    job: &str,
    restored: Option<CheckpointId>,
) -> Result<Box<dyn SinkWriter<u64, weir::engine::sink::FileCommittable>>> {
    FileSink::<u64>::exactly_once(dir).create_writer(&SinkContext {
        job: job.to_string(),
        name: "out".to_string(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        attempt: 1,
        restored_checkpoint: restored,
        checkpoint_timing: None,
        committed_output: Default::default(),
        cancellation: Default::default(),
        fail_points: FailPoints::new(),
    })
}

fn numbers(range: std::ops::Range<u64>) -> Vec<Record<u64>> {
    range.map(Record::new).collect()
}

/// Two jobs whose sink steps have the same name share an output directory: a writer's
/// clean-up deletes only its own job's pending files, and both jobs' output is committed.
#[test]
fn two_jobs_share_an_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut a = subtask_writer(&out, "job-a", None).unwrap();
    a.write(numbers(0..3)).unwrap();
    let ca = a.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
    // Job b starts fresh on the same directory while a's checkpoint 1 is pending.
    let mut b = subtask_writer(&out, "job-b", None).unwrap();
    b.write(numbers(10..12)).unwrap();
    let cb = b
        .pre_commit(CheckpointId::new(1))
        .expect("job b's files do not collide with job a's")
        .unwrap();
    a.commit(vec![(CheckpointId::new(1), ca)])
        .expect("job b's clean-up left job a's pending file alone");
    b.commit(vec![(CheckpointId::new(1), cb)]).unwrap();
    let mut lines = read_committed_lines(&out).unwrap();
    lines.sort();
    assert_eq!(lines, vec!["0", "1", "10", "11", "2"]);
    let files = committed_files(&out).unwrap();
    assert_eq!(files.len(), 2);
    assert!(
        files[0]
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("job-a"),
        "part names carry the job: {:?}",
        files[0].path
    );
}

/// While one process writes a job's sink subtask, a second writer of the same job and subtask
/// (a second process of the job) waits for the first to let go (as a cluster worker the job
/// failed over from does), and after the wait is refused with a retryable error naming the
/// first; it deletes nothing.
#[test]
fn a_second_writer_of_the_same_job_is_refused_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut first = subtask_writer(&out, "job-a", None).unwrap();
    first.write(numbers(0..3)).unwrap();
    let c = first.pre_commit(CheckpointId::new(1)).unwrap().unwrap();
    first.write(numbers(3..5)).unwrap();
    let e = subtask_writer(&out, "job-a", None)
        .err()
        .expect("a second writer of the same subtask must be refused");
    // A holder of the same job may be a cluster worker the job failed over from, which lets
    // go once it learns its attempt is over: the job's restart strategy tries again.
    assert_eq!(e.kind(), ErrorKind::External { retryable: true }, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "names the owner: {text}"
    );
    assert!(text.contains("job-a"), "{text}");
    first
        .commit(vec![(CheckpointId::new(1), c)])
        .expect("the refused writer left the pending file alone");
    let c = first.pre_commit(CheckpointId::new(2)).unwrap().unwrap();
    first.commit(vec![(CheckpointId::new(2), c)]).unwrap();
    assert_eq!(read_committed_lines(&out).unwrap(), vec!["0", "1", "2", "3", "4"]);
    drop(first);
    // Once the first writer is gone (its process ended), the next one takes over.
    subtask_writer(&out, "job-a", Some(CheckpointId::new(2))).unwrap();
}

/// Subtask 0 had not committed the checkpoints after `r` yet (its files are still pending),
/// subtask 1 had; their metadata is lost. Subtask 1 refuses the start; subtask 0 must not have
/// deleted its pending files meanwhile: if the metadata is recovered, they are what its
/// commit needs (else every later start fails with "records are lost").
#[test]
fn a_refused_start_deletes_no_pending_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let chk = tmp.path().join("chk");
    run(tmp.path(), &out, &[], false).expect("first run");
    let complete = complete_checkpoints(&chk);
    let r = complete[0];
    let files = committed_files(&out).unwrap();
    assert!(
        files.iter().any(|f| f.subtask == 1 && f.checkpoint > r),
        "subtask 1 committed output after checkpoint {r}"
    );
    let mut moved = Vec::new();
    for f in files.iter().filter(|f| f.subtask == 0 && f.checkpoint > r) {
        let name = f.path.file_name().unwrap();
        let pending = out.join(PENDING_DIR).join(name);
        std::fs::rename(&f.path, &pending).unwrap();
        moved.push(pending);
    }
    assert!(!moved.is_empty(), "subtask 0 has output after checkpoint {r}");
    for id in complete.iter().filter(|&&id| id > r) {
        std::fs::remove_file(chk.join(format!("chk-{id}")).join("_metadata")).unwrap();
    }
    let (p, stream) = pipeline(&chk, None);
    stream.sink("out", FileSink::exactly_once(&out));
    let err = p.restart_strategy(RestartStrategy::None).run().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("out[1]"), "{err}");
    for f in &moved {
        assert!(f.is_file(), "{} was deleted by a start that was refused", f.display());
    }
}
