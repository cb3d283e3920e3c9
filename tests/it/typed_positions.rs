//! A source of one's own whose position is not a single number: each split is a directory of
//! rotating log segments (`seg-000.log`, `seg-001.log`, ...), and its position is the segment
//! being read plus a byte offset in it, checkpointed as a typed `LogCursor`
//! (`SplitPosition::with_state`, `AssignedSplit::state`). The job counts records per key with
//! no deduplication, so a record read twice or skipped after a restore changes the committed
//! counts; the output is compared with a sequential model across failures and a rescale.

use crate::common::{wait_until, Backend};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::generator::mix;
use weir::prelude::*;

const SPLITS: u64 = 5;
const SEGMENTS: u64 = 4;
const LINES_PER_SEGMENT: u64 = 300;
const KEYS: u64 = 8;
const RECORDS: u64 = SPLITS * SEGMENTS * LINES_PER_SEGMENT;

/// Where a split's reader is: the segment file and the byte offset of the next line in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LogCursor {
    segment: String,
    byte: u64,
}

/// Writes the log directories: split `s` holds `SEGMENTS` files of lines `id,payload`, with
/// lines of varying length so that byte offsets are not a multiple of a record count.
fn write_logs(root: &Path) {
    for s in 0..SPLITS {
        let dir = root.join(format!("split-{s}"));
        fs::create_dir_all(&dir).unwrap();
        for g in 0..SEGMENTS {
            let mut f = File::create(dir.join(format!("seg-{g:03}.log"))).unwrap();
            for l in 0..LINES_PER_SEGMENT {
                let id = (s * SEGMENTS + g) * LINES_PER_SEGMENT + l;
                let pad = "x".repeat((mix(3, id) % 40) as usize);
                writeln!(f, "{id},{pad}").unwrap();
            }
        }
    }
}

#[derive(Clone)]
struct RotatingLogSource {
    root: PathBuf,
    /// Records per second per reader, to stop a run halfway.
    rate: Option<u64>,
}

struct SplitReader {
    id: SplitId,
    dir: PathBuf,
    cursor: LogCursor,
    read: u64,
    done: bool,
}

struct LogReader {
    splits: Vec<SplitReader>,
    rate: Option<u64>,
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

impl Source for RotatingLogSource {
    type Out = u64;

    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok((0..SPLITS).map(|s| format!("split-{s}")).collect())
    }

    fn create_reader(&self, splits: Vec<AssignedSplit>, _subtask: SubtaskInfo) -> Result<Box<dyn SourceReader<u64>>> {
        let mut readers = Vec::new();
        for split in splits {
            let dir = self.root.join(&split.id);
            let cursor = match split.state::<LogCursor>()? {
                Some(c) => c,
                None => LogCursor {
                    segment: segments(&dir)[0].clone(),
                    byte: 0,
                },
            };
            readers.push(SplitReader {
                id: split.id.clone(),
                dir,
                cursor,
                read: split.offset.unwrap_or(0),
                done: false,
            });
        }
        Ok(Box::new(LogReader {
            splits: readers,
            rate: self.rate,
        }))
    }
}

impl SplitReader {
    /// Reads up to `max` lines from the cursor on, moving to the next segment at the end of one.
    fn read(&mut self, out: &mut Vec<Record<u64>>, max: usize) {
        while !self.done && out.len() < max {
            let path = self.dir.join(&self.cursor.segment);
            let mut f = BufReader::new(File::open(&path).unwrap());
            f.seek(SeekFrom::Start(self.cursor.byte)).unwrap();
            let mut line = String::new();
            while out.len() < max {
                line.clear();
                let n = f.read_line(&mut line).unwrap();
                if n == 0 {
                    break;
                }
                self.cursor.byte += n as u64;
                self.read += 1;
                let id: u64 = line.split(',').next().unwrap().parse().unwrap();
                out.push(Record::new(id));
            }
            if out.len() < max {
                // The end of this segment: the next one, or the end of the split.
                match segments(&self.dir).into_iter().find(|s| *s > self.cursor.segment) {
                    Some(next) => {
                        self.cursor = LogCursor { segment: next, byte: 0 };
                    }
                    None => self.done = true,
                }
            }
        }
    }
}

impl SourceReader<u64> for LogReader {
    fn poll(&mut self, out: &mut Vec<Record<u64>>, max: usize) -> Result<ReadStatus> {
        let max = match self.rate {
            Some(r) => max.min((r / 100).max(1) as usize),
            None => max,
        };
        for s in self.splits.iter_mut().filter(|s| !s.done) {
            s.read(out, max);
            if !out.is_empty() {
                break;
            }
        }
        if self.splits.iter().all(|s| s.done) && out.is_empty() {
            return Ok(ReadStatus::Finished);
        }
        Ok(match self.rate {
            Some(_) => ReadStatus::Pending(Duration::from_millis(10)),
            None => ReadStatus::More,
        })
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits
            .iter()
            .map(|s| {
                SplitPosition::at(s.id.clone(), s.read)
                    .with_state(&s.cursor)
                    .expect("a cursor serializes")
            })
            .collect()
    }
}

/// Counts records per key and emits `(key, id, count so far)`.
#[derive(Clone)]
struct CountPerKey;

impl KeyedProcess<u64, u64> for CountPerKey {
    type Out = (u64, u64, u64);

    fn process(&mut self, id: u64, ctx: &mut KeyedContext<'_, u64, (u64, u64, u64)>) -> Result<()> {
        let mut count = ctx.value_state::<u64>("count");
        let n = count.get()?.unwrap_or(0) + 1;
        count.set(&n)?;
        let key = *ctx.key();
        ctx.emit((key, id, n));
        Ok(())
    }
}

/// Checks the committed output against the model: every record once, and each key's counts
/// exactly 1..=n in the key's records (a record counted twice repeats or shifts a count).
fn check(out: &CollectSink<(u64, u64, u64)>, ctx: &str) {
    let mut got = out.records();
    got.sort_by_key(|(_, id, _)| *id);
    let ids: Vec<u64> = got.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len() as u64, RECORDS, "{ctx}: committed records");
    assert_eq!(
        ids,
        (0..RECORDS).collect::<Vec<_>>(),
        "{ctx}: every record exactly once"
    );
    for k in 0..KEYS {
        let mut counts: Vec<u64> = got.iter().filter(|(key, _, _)| *key == k).map(|(_, _, n)| *n).collect();
        counts.sort_unstable();
        let want: Vec<u64> = (1..=(0..RECORDS).filter(|i| i % KEYS == k).count() as u64).collect();
        assert_eq!(counts, want, "{ctx}: counts of key {k}");
    }
}

fn pipeline(
    dir: &Path,
    backend: Backend,
    parallelism: usize,
    rate: Option<u64>,
    checkpoints: &Path,
    failures: &[(&'static str, u64)],
    out: &CollectSink<(u64, u64, u64)>,
) -> Pipeline {
    let points = FailPoints::new();
    for (p, n) in failures {
        points.arm(p, *n, FailAction::Error);
    }
    let mut p = Pipeline::new("typed-positions")
        .fail_points(points)
        .parallelism(parallelism)
        .batch_size(16)
        .checkpoint_storage(checkpoints)
        .checkpoint_interval(Duration::from_millis(20))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        });
    p = match backend {
        Backend::Memory => p.state_backend(MemoryBackend::new()),
        Backend::Rocks => p.state_dir(dir.join("state")),
    };
    p.source(
        "logs",
        RotatingLogSource {
            root: dir.join("logs"),
            rate,
        },
    )
    .key_by("by-key", |id: &u64| id % KEYS)
    .process("count", CountPerKey)
    .sink("out", out.clone());
    p
}

#[test]
fn a_compound_position_resumes_exactly_across_failures() {
    for (parallelism, backend, failures) in [
        (1, Backend::Memory, vec![(fail::PROCESS_RECORD, 100)]),
        (
            2,
            Backend::Rocks,
            vec![(fail::PROCESS_RECORD, 150), (fail::SNAPSHOT_SYNC, 4)],
        ),
        (
            3,
            Backend::Memory,
            vec![(fail::AFTER_PRE_COMMIT, 3), (fail::PROCESS_RECORD, 200)],
        ),
    ] {
        let ctx = format!("p {parallelism} {backend:?} {failures:?}");
        let dir = tempfile::tempdir().unwrap();
        write_logs(&dir.path().join("logs"));
        let out = CollectSink::new();
        let report = pipeline(
            dir.path(),
            backend,
            parallelism,
            Some(20_000),
            &dir.path().join("checkpoints"),
            &failures,
            &out,
        )
        .run()
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(report.restarts >= 1, "{ctx}: no failure happened");
        check(&out, &ctx);
    }
}

#[test]
fn a_compound_position_moves_with_its_split_across_a_rescale() {
    for (from, to) in [(2, 3), (3, 1)] {
        let ctx = format!("{from} -> {to}");
        let dir = tempfile::tempdir().unwrap();
        write_logs(&dir.path().join("logs"));
        let out = CollectSink::new();
        let handle = pipeline(
            dir.path(),
            Backend::Rocks,
            from,
            Some(2_000),
            &dir.path().join("checkpoints-0"),
            &[],
            &out,
        )
        .start()
        .unwrap();
        wait_until("the first run read a third of the logs and checkpointed", 90, || {
            let p = handle.progress();
            handle.is_finished() || p.source_records >= RECORDS / 3 && p.last_checkpoint.is_some()
        });
        assert!(
            !handle.is_finished(),
            "{ctx}: the first run ended before it was stopped"
        );
        let at = dir.path().join("savepoint");
        handle.stop_with_savepoint(Arc::new(LocalDirStorage::new(&at))).unwrap();
        handle.join().unwrap();
        let halfway = out.records().len() as u64;
        assert!(halfway > 0 && halfway < RECORDS, "{ctx}: stopped halfway ({halfway})");
        // The savepoint's positions carry the typed cursors.
        let second = pipeline(
            dir.path(),
            Backend::Rocks,
            to,
            None,
            &dir.path().join("checkpoints-1"),
            &[],
            &out,
        )
        .from_savepoint(SavepointRestore::dir(&at));
        let report = second.run().unwrap();
        assert!(report.restored_from_savepoint.is_some(), "{ctx}: restored");
        check(&out, &ctx);
    }
}

#[test]
fn a_position_that_no_longer_reads_is_a_clear_error_naming_the_split() {
    let position = SplitPosition::at("split-3", 42)
        .with_state(&LogCursor {
            segment: "seg-001.log".into(),
            byte: 812,
        })
        .unwrap();
    let split = AssignedSplit::restored(position.clone());
    assert_eq!(
        split.state::<LogCursor>().unwrap(),
        Some(LogCursor {
            segment: "seg-001.log".into(),
            byte: 812
        })
    );
    // A later version of the source that added a field with a default still reads it.
    #[derive(Debug, Deserialize)]
    struct CursorV2 {
        segment: String,
        byte: u64,
        #[serde(default)]
        generation: u32,
    }
    let v2 = split.state::<CursorV2>().unwrap().unwrap();
    assert_eq!((v2.segment.as_str(), v2.byte, v2.generation), ("seg-001.log", 812, 0));
    // A position type that changed incompatibly fails the restore, naming the split.
    let err = split.state::<u64>().unwrap_err().to_string();
    assert!(err.contains("split-3") && err.contains("seg-001.log"), "{err}");
    assert_eq!(AssignedSplit::fresh("split-0").state::<LogCursor>().unwrap(), None);
}
