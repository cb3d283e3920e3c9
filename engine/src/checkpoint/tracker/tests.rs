//! Table-driven tests of the checkpoint protocol: each scenario is a list of events at times
//! of a manual clock (ms since the attempt started) with the actions (and ack outcomes) the
//! tracker must answer, in order. No threads, no files, no clock.
//!
//! The harness plays the master: it answers `Trigger` with the next id, and it checks on every
//! scenario that no sink is told to commit a persisted checkpoint before its publication
//! succeeded.

use super::*;
use crate::checkpoint::metadata::{CheckpointStats, FORMAT_VERSION};
use std::collections::BTreeSet;
use std::time::Duration;

/// Subtask 0 reads the source; subtask 1 is downstream.
const SUBTASKS: usize = 2;

fn config() -> TrackerConfig {
    TrackerConfig {
        interval: Duration::from_millis(100),
        min_pause: Duration::from_millis(40),
        timeout: Some(Duration::from_millis(1_000)),
        tolerable_failed_checkpoints: 1,
        persisted: true,
        restored: false,
    }
}

/// One event of a scenario.
#[derive(Debug, Clone, Copy)]
enum Ev {
    Tick,
    /// Every subtask reports running.
    AllRunning,
    Running(usize),
    Exhausted(usize),
    /// Subtask acknowledges checkpoint.
    Ack(usize, CheckpointId),
    /// Upload of checkpoint ended: ok or not.
    Uploaded(CheckpointId, bool),
    /// Publication of checkpoint ended: ok or not.
    Published(CheckpointId, bool),
    AttemptEnding,
    /// The user asks for a savepoint: `true` to stop the job after it.
    SavepointAsked(bool),
}
use Ev::*;

/// (at ms, event, expected answers in order; an expected answer matches an actual one that
/// starts with it).
type Step = (u64, Ev, &'static [&'static str]);

struct Harness {
    tracker: CheckpointTracker,
    start: Instant,
    persisted: bool,
    next_id: CheckpointId,
    /// Checkpoints whose publication succeeded.
    durable: BTreeSet<CheckpointId>,
    /// Checkpoints the tracker asked to publish, with their kind.
    to_publish: BTreeMap<CheckpointId, BarrierKind>,
    /// Barriers sent, by id.
    barriers: BTreeMap<CheckpointId, Barrier>,
}

impl Harness {
    fn new(cfg: TrackerConfig) -> Self {
        let start = Instant::now();
        let persisted = cfg.persisted;
        Harness {
            tracker: CheckpointTracker::new(cfg, SUBTASKS, BTreeSet::from([0]), start),
            start,
            persisted,
            next_id: CheckpointId::new(1),
            durable: BTreeSet::new(),
            to_publish: BTreeMap::new(),
            barriers: BTreeMap::new(),
        }
    }

    fn ack(&self, task: usize, id: CheckpointId) -> CheckpointAck {
        let barrier = self.barriers.get(&id).copied().unwrap_or(Barrier {
            id,
            kind: BarrierKind::Checkpoint,
            triggered_at_ms: 0,
        });
        CheckpointAck {
            task,
            barrier,
            operators: Vec::new(),
            source: None,
            alignment: Duration::ZERO,
            sync_duration: Duration::ZERO,
        }
    }

    fn metadata(id: CheckpointId, kind: BarrierKind) -> CheckpointMetadata {
        CheckpointMetadata {
            version: FORMAT_VERSION,
            job: "job".into(),
            id,
            owner_epoch: Some(1),
            kind,
            max_parallelism: 128,
            sources: Vec::new(),
            operators: Vec::new(),
            stats: CheckpointStats {
                id,
                ..CheckpointStats::default()
            },
        }
    }

    /// Feeds one event; returns the answers, summarized.
    fn feed(&mut self, at: u64, ev: Ev) -> Vec<String> {
        let now = self.start + Duration::from_millis(at);
        let mut answers = Vec::new();
        let actions = match ev {
            Tick => self.tracker.on_tick(now),
            AllRunning => {
                for t in 0..SUBTASKS {
                    self.tracker.on_running(t);
                }
                Vec::new()
            }
            Running(t) => {
                self.tracker.on_running(t);
                Vec::new()
            }
            Exhausted(t) => self.tracker.on_source_exhausted(t, now),
            Ack(t, id) => {
                let (outcome, actions) = self.tracker.on_ack(self.ack(t, id));
                answers.push(match outcome {
                    AckOutcome::Recorded { remaining } => format!("ack recorded, {remaining} left"),
                    AckOutcome::Duplicate => "ack duplicate".into(),
                    AckOutcome::UnknownSubtask => "ack unknown subtask".into(),
                    AckOutcome::LateForAborted => "ack late".into(),
                    AckOutcome::NotInFlight => "ack not in flight".into(),
                });
                actions
            }
            Uploaded(id, ok) => {
                let kind = self.barriers.get(&id).map_or(BarrierKind::Checkpoint, |b| b.kind);
                let result = if ok {
                    Ok(Self::metadata(id, kind))
                } else {
                    Err(Error::checkpoint("disk full"))
                };
                self.tracker.on_upload_finished(id, result, now)
            }
            Published(id, ok) => {
                assert!(
                    self.to_publish.contains_key(&id),
                    "publication of {id} was never asked for"
                );
                let result = if ok {
                    self.durable.insert(id);
                    Ok(())
                } else {
                    Err(Error::checkpoint("lost ownership"))
                };
                self.tracker.on_published(id, result, now)
            }
            AttemptEnding => {
                self.tracker.on_attempt_ending();
                Vec::new()
            }
            SavepointAsked(stop) => self.tracker.request_savepoint(stop, now),
        };
        for a in actions {
            answers.push(self.answer(a, now));
        }
        answers
    }

    /// Plays the master's part of `action` and summarizes it.
    fn answer(&mut self, action: Action, now: Instant) -> String {
        match action {
            Action::Trigger { kind } => {
                let id = self.next_id;
                self.next_id = id.next();
                let barrier = Barrier {
                    id,
                    kind,
                    triggered_at_ms: 0,
                };
                self.barriers.insert(id, barrier);
                self.tracker.on_triggered(barrier, now);
                match kind {
                    BarrierKind::Final => format!("trigger {id} final"),
                    BarrierKind::Savepoint => format!("trigger {id} savepoint"),
                    BarrierKind::StopWithSavepoint => format!("trigger {id} stop with savepoint"),
                    _ => format!("trigger {id}"),
                }
            }
            Action::StartUpload { barrier, acks } => {
                let tasks: Vec<usize> = acks.iter().map(|a| a.task).collect();
                assert_eq!(tasks, (0..SUBTASKS).collect::<Vec<_>>(), "one ack per subtask");
                format!("upload {}", barrier.id)
            }
            Action::Publish { metadata, .. } => {
                self.to_publish.insert(metadata.id, metadata.kind);
                format!("publish {}", metadata.id)
            }
            Action::NotifyComplete { id } => {
                assert!(
                    !self.persisted || self.durable.contains(&id),
                    "sinks told to commit checkpoint {id} before its metadata is durable"
                );
                format!("notify {id}")
            }
            Action::ApplyRetention { id } => format!("retain {id}"),
            Action::Abort {
                id,
                reason,
                failed_in_a_row,
                ..
            } => format!("abort {id}: {} ({failed_in_a_row} in a row)", reason.describe()),
            Action::DiscardStaged { id } => format!("discard {id}"),
            Action::FailAttempt { error } => format!("fail: {}", error.message()),
        }
    }
}

fn run(name: &str, cfg: TrackerConfig, steps: &[Step]) {
    let mut h = Harness::new(cfg);
    for (i, &(at, ev, expected)) in steps.iter().enumerate() {
        let actual = h.feed(at, ev);
        let matches =
            actual.len() == expected.len() && actual.iter().zip(expected.iter()).all(|(a, e)| a.starts_with(e));
        assert!(
            matches,
            "{name}, step {i} ({ev:?} at {at} ms): expected {expected:?}, got {actual:?}"
        );
    }
}

#[test]
fn a_fresh_start_triggers_its_first_checkpoint_once_every_subtask_runs() {
    run(
        "fresh start",
        config(),
        &[
            (0, Tick, &[]),
            (0, Running(0), &[]),
            (1, Tick, &[]),
            (2, Running(1), &[]),
            (3, Tick, &["trigger 1"]),
        ],
    );
    run(
        "restored",
        TrackerConfig {
            restored: true,
            ..config()
        },
        &[
            (0, AllRunning, &[]),
            (1, Tick, &[]),
            (99, Tick, &[]),
            (100, Tick, &["trigger 1"]),
        ],
    );
}

#[test]
fn one_checkpoint_in_flight() {
    run(
        "one in flight",
        TrackerConfig {
            interval: Duration::from_millis(10),
            min_pause: Duration::ZERO,
            ..config()
        },
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            // The interval passed many times while 1 aligns, uploads and publishes.
            (50, Tick, &[]),
            (60, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (70, Tick, &[]),
            (80, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (90, Tick, &[]),
            (100, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            (110, Tick, &[]),
            (
                120,
                Published(CheckpointId::new(1), true),
                &["notify 1", "retain 1", "trigger 2"],
            ),
            (130, Tick, &[]),
        ],
    );
}

#[test]
fn minimum_pause_after_completion_and_failure() {
    // Interval 100 ms, minimum pause 40 ms.
    run(
        "pause after completion",
        config(),
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (90, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            (90, Published(CheckpointId::new(1), true), &["notify 1", "retain 1"]),
            // Due by the interval at 100, but the pause lasts until 130.
            (100, Tick, &[]),
            (129, Tick, &[]),
            (130, Tick, &["trigger 2"]),
        ],
    );
    run(
        "pause after a failed upload",
        TrackerConfig {
            tolerable_failed_checkpoints: 5,
            ..config()
        },
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (
                200,
                Uploaded(CheckpointId::new(1), false),
                &["abort 1: its upload failed: disk full (1 in a row)"],
            ),
            (239, Tick, &[]),
            (240, Tick, &["trigger 2"]),
        ],
    );
}

#[test]
fn a_timeout_aborts_and_counts_as_failed() {
    run(
        "timeouts",
        TrackerConfig {
            timeout: Some(Duration::from_millis(60)),
            tolerable_failed_checkpoints: 5,
            ..config()
        },
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (60, Tick, &[]),
            (61, Tick, &["abort 1: timed out (1 in a row)"]),
            (100, Tick, &[]),
            (101, Tick, &["trigger 2"]),
            (110, Ack(0, CheckpointId::new(2)), &["ack recorded, 1 left"]),
            (110, Ack(1, CheckpointId::new(2)), &["ack recorded, 0 left", "upload 2"]),
            (162, Tick, &["abort 2: its upload timed out (2 in a row)"]),
            // The abandoned upload's result is ignored; the pause starts when it arrives.
            (170, Uploaded(CheckpointId::new(2), true), &[]),
            (209, Tick, &[]),
            (210, Tick, &["trigger 3"]),
        ],
    );
}

#[test]
fn more_failed_checkpoints_in_a_row_than_tolerable_fail_the_attempt() {
    let cfg = TrackerConfig {
        timeout: Some(Duration::from_millis(60)),
        tolerable_failed_checkpoints: 1,
        ..config()
    };
    run(
        "two in a row",
        cfg.clone(),
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (61, Tick, &["abort 1: timed out (1 in a row)"]),
            (101, Tick, &["trigger 2"]),
            (
                162,
                Tick,
                &[
                    "abort 2: timed out (2 in a row)",
                    "fail: 2 checkpoints failed in a row (the last, 2, timed out), more than tolerable_failed_checkpoints = 1",
                ],
            ),
            (1_000, Tick, &[]),
        ],
    );
    run(
        "a completion resets the count",
        cfg,
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (61, Tick, &["abort 1: timed out (1 in a row)"]),
            (101, Tick, &["trigger 2"]),
            (110, Ack(0, CheckpointId::new(2)), &["ack recorded, 1 left"]),
            (110, Ack(1, CheckpointId::new(2)), &["ack recorded, 0 left", "upload 2"]),
            (120, Uploaded(CheckpointId::new(2), true), &["publish 2"]),
            (120, Published(CheckpointId::new(2), true), &["notify 2", "retain 2"]),
            (201, Tick, &["trigger 3"]),
            (262, Tick, &["abort 3: timed out (1 in a row)"]),
        ],
    );
}

#[test]
fn the_final_checkpoint() {
    run(
        "final",
        TrackerConfig {
            timeout: Some(Duration::from_millis(60)),
            // No periodic checkpoint is due before the sources end.
            restored: true,
            ..config()
        },
        &[
            (0, AllRunning, &[]),
            // Subtask 1 reads no source: its end of input is not a source's.
            (5, Exhausted(1), &[]),
            (5, Exhausted(0), &["trigger 1 final"]),
            // Its barrier always arrives: it is never aborted while aligning.
            (5_000, Tick, &[]),
            (5_000, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (
                5_000,
                Ack(1, CheckpointId::new(1)),
                &["ack recorded, 0 left", "upload 1"],
            ),
            (5_010, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            (5_010, Published(CheckpointId::new(1), true), &["notify 1", "retain 1"]),
            // Nothing after the final checkpoint.
            (50_000, Tick, &[]),
        ],
    );
    run(
        "final after the one in flight",
        config(),
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (5, Exhausted(0), &[]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (20, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            (
                20,
                Published(CheckpointId::new(1), true),
                &["notify 1", "retain 1", "trigger 2 final"],
            ),
        ],
    );
    let final_upload = |outcome: Step| -> Vec<Step> {
        vec![
            (0, AllRunning, &[]),
            (0, Exhausted(0), &["trigger 1 final"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            outcome,
            (10_000, Tick, &[]),
        ]
    };
    let cfg = TrackerConfig {
        timeout: Some(Duration::from_millis(60)),
        tolerable_failed_checkpoints: 100,
        ..config()
    };
    run(
        "final upload timed out",
        cfg.clone(),
        &final_upload((
            61,
            Tick,
            &["abort 1: its upload timed out", "fail: the final checkpoint timed out"],
        )),
    );
    run(
        "final upload failed",
        cfg,
        &final_upload((
            20,
            Uploaded(CheckpointId::new(1), false),
            &["abort 1: its upload failed", "fail: disk full"],
        )),
    );
}

#[test]
fn late_duplicate_and_unknown_acks_are_answered() {
    run(
        "acks",
        TrackerConfig {
            timeout: Some(Duration::from_millis(60)),
            tolerable_failed_checkpoints: 5,
            ..config()
        },
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (11, Ack(0, CheckpointId::new(1)), &["ack duplicate"]),
            (12, Ack(7, CheckpointId::new(1)), &["ack unknown subtask"]),
            (13, Ack(1, CheckpointId::new(9)), &["ack not in flight"]),
            (61, Tick, &["abort 1: timed out (1 in a row)"]),
            (101, Tick, &["trigger 2"]),
            (102, Ack(0, CheckpointId::new(1)), &["ack duplicate"]),
            // The last ack of aborted 1: nobody writes below its staging any more. It does
            // not count for checkpoint 2.
            (103, Ack(1, CheckpointId::new(1)), &["ack late", "discard 1"]),
            (104, Ack(1, CheckpointId::new(1)), &["ack not in flight"]),
            (105, Ack(0, CheckpointId::new(2)), &["ack recorded, 1 left"]),
            (106, Ack(1, CheckpointId::new(2)), &["ack recorded, 0 left", "upload 2"]),
            (107, Ack(1, CheckpointId::new(2)), &["ack not in flight"]),
        ],
    );
}

#[test]
fn no_sink_is_told_to_commit_before_the_metadata_is_durable() {
    run(
        "persisted",
        config(),
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (20, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            (30, Published(CheckpointId::new(1), true), &["notify 1", "retain 1"]),
            (130, Tick, &["trigger 2"]),
            (140, Ack(0, CheckpointId::new(2)), &["ack recorded, 1 left"]),
            (140, Ack(1, CheckpointId::new(2)), &["ack recorded, 0 left", "upload 2"]),
            (150, Uploaded(CheckpointId::new(2), true), &["publish 2"]),
            // Publishing failed (ownership lost): 2 is never committed.
            (160, Published(CheckpointId::new(2), false), &["fail: lost ownership"]),
            (1_000, Tick, &[]),
        ],
    );
    run(
        "without storage, the barrier alone marks what sinks may commit",
        TrackerConfig {
            persisted: false,
            timeout: None,
            tolerable_failed_checkpoints: u32::MAX,
            ..config()
        },
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "notify 1"]),
            (99, Tick, &[]),
            (100, Tick, &["trigger 2"]),
        ],
    );
}

#[test]
fn an_ending_attempt_triggers_nothing_and_waits_for_its_upload() {
    let mut h = Harness::new(config());
    h.feed(0, AllRunning);
    assert_eq!(h.feed(0, Tick), ["trigger 1"]);
    h.feed(10, Ack(0, CheckpointId::new(1)));
    h.feed(10, Ack(1, CheckpointId::new(1)));
    h.feed(11, AttemptEnding);
    assert!(h.tracker.uploading(), "the attempt waits for its upload");
    assert!(h.feed(500, Tick).is_empty());
    assert!(
        h.feed(510, Uploaded(CheckpointId::new(1), true)).is_empty(),
        "nothing is published"
    );
    assert!(matches!(h.tracker.in_flight(), InFlight::Idle));
    assert!(!h.tracker.uploading());

    let mut h = Harness::new(config());
    h.feed(0, AllRunning);
    h.feed(0, Tick);
    h.feed(10, Ack(0, CheckpointId::new(1)));
    h.feed(11, AttemptEnding);
    assert!(matches!(h.tracker.in_flight(), InFlight::Idle));
    assert_eq!(h.feed(12, Ack(1, CheckpointId::new(1))), ["ack not in flight"]);
    assert!(h.feed(10_000, Exhausted(0)).is_empty());
}

#[test]
fn a_savepoint_is_triggered_once_nothing_is_in_flight() {
    run(
        "savepoint while running",
        config(),
        &[
            (0, AllRunning, &[]),
            (0, Tick, &["trigger 1"]),
            // Asked while checkpoint 1 is in flight: it waits.
            (5, SavepointAsked(false), &[]),
            (6, Tick, &[]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (20, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            // Not after the interval: at once.
            (
                20,
                Published(CheckpointId::new(1), true),
                &["notify 1", "retain 1", "trigger 2 savepoint"],
            ),
            (30, Ack(0, CheckpointId::new(2)), &["ack recorded, 1 left"]),
            (30, Ack(1, CheckpointId::new(2)), &["ack recorded, 0 left", "upload 2"]),
            (40, Uploaded(CheckpointId::new(2), true), &["publish 2"]),
            (40, Published(CheckpointId::new(2), true), &["notify 2", "retain 2"]),
            // The job goes on: periodic checkpoints continue.
            (200, Tick, &["trigger 3"]),
        ],
    );
}

#[test]
fn stop_with_savepoint_is_the_last_checkpoint_and_fails_the_attempt_when_it_times_out() {
    run(
        "stop with savepoint",
        config(),
        &[
            (0, AllRunning, &[]),
            (0, SavepointAsked(true), &["trigger 1 stop with savepoint"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (20, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            (20, Published(CheckpointId::new(1), true), &["notify 1", "retain 1"]),
            // Nothing after it.
            (5_000, Tick, &[]),
        ],
    );
    run(
        "stop with savepoint timed out",
        config(),
        &[
            (0, AllRunning, &[]),
            (0, SavepointAsked(true), &["trigger 1 stop with savepoint"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (
                1_001,
                Tick,
                &[
                    "abort 1: timed out",
                    "fail: stop with savepoint 1 timed out while aligning",
                ],
            ),
            (5_000, Tick, &[]),
        ],
    );
    run(
        "stop with savepoint not published",
        config(),
        &[
            (0, AllRunning, &[]),
            (0, SavepointAsked(true), &["trigger 1 stop with savepoint"]),
            (10, Ack(0, CheckpointId::new(1)), &["ack recorded, 1 left"]),
            (10, Ack(1, CheckpointId::new(1)), &["ack recorded, 0 left", "upload 1"]),
            (20, Uploaded(CheckpointId::new(1), true), &["publish 1"]),
            (20, Published(CheckpointId::new(1), false), &["fail: lost ownership"]),
            (5_000, Tick, &[]),
        ],
    );
}
