//! A real pipeline split over two workers in one test process: their subtasks exchange
//! records, watermarks, barriers and end of stream over loopback data connections, and the
//! test plays the master (triggers, acknowledgements, completion) in place of the RPC.

use super::attempt::{AttemptSpec, WorkerAttempt};
use crate::checkpoint::restore::RestoreInput;
use crate::cluster::assignment::{assign, Assignment, WorkerSlots};
use crate::config::JobConfig;
use crate::graph::{Graph, NodeKind};
use crate::message::{Barrier, BarrierKind};
use crate::net::inbound::DataPlane;
use crate::net::{NetSettings, WorkerId};
use crate::prelude::*;
use crate::runtime::control::Control;
use crate::runtime::events::{TaskEvent, TaskOutcome};
use crate::runtime::layout::Layout;
use crossbeam_channel::{unbounded, Receiver};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Two workers with one slot each and their data planes.
struct TwoWorkers {
    graph: Graph,
    cfg: JobConfig,
    layout: Layout,
    assignment: Assignment,
    planes: Vec<DataPlane>,
    peers: BTreeMap<WorkerId, std::net::SocketAddr>,
}

impl TwoWorkers {
    fn new(pipeline: Pipeline) -> Self {
        let (graph, cfg) = pipeline.into_parts();
        let layout = Layout::of(&graph, &cfg).unwrap();
        let slots = [WorkerSlots { worker: 0, slots: 1 }, WorkerSlots { worker: 1, slots: 1 }];
        let assignment = assign(&layout.subtasks(), &slots).unwrap();
        let planes: Vec<DataPlane> = (0..2)
            .map(|_| DataPlane::bind("127.0.0.1:0".parse().unwrap(), NetSettings::default()).unwrap())
            .collect();
        let peers = (0..2u32).map(|w| (w, planes[w as usize].local_addr())).collect();
        TwoWorkers {
            graph,
            cfg,
            layout,
            assignment,
            planes,
            peers,
        }
    }

    /// Starts attempt `attempt` on both workers (each waits for the other's channels).
    fn start(&self, attempt: u32) -> (Vec<WorkerAttempt>, Receiver<TaskEvent>) {
        let (events, rx) = unbounded();
        let restore = RestoreInput::default();
        let net = NetSettings::default();
        let fingerprint = self.graph.fingerprint();
        let started = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2u32)
                .map(|me| {
                    let (events, restore, net) = (events.clone(), &restore, &net);
                    s.spawn(move || {
                        let spec = AttemptSpec {
                            graph: &self.graph,
                            cfg: &self.cfg,
                            fingerprint,
                            me,
                            attempt,
                            assignment: &self.assignment,
                            peers: &self.peers,
                            restore,
                            snapshot_root: None,
                            net,
                        };
                        WorkerAttempt::start(spec, &self.planes[me as usize], events)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        (started, rx)
    }

    fn source_tasks(&self) -> Vec<usize> {
        self.layout
            .chains
            .iter()
            .filter(|c| matches!(self.graph.nodes[c.nodes[0]].kind, NodeKind::Source(_)))
            .flat_map(|c| c.first_task..c.first_task + c.parallelism)
            .collect()
    }
}

/// Plays the master until every subtask finished: once all sources are exhausted it takes
/// the final checkpoint and, when every subtask acknowledged it, completes it.
fn drive_to_the_end(w: &TwoWorkers, attempts: &[WorkerAttempt], events: &Receiver<TaskEvent>) {
    let control = |task: usize, c: Control| {
        let a = &attempts[w.assignment.worker_of_task[task] as usize];
        a.control(task, c);
    };
    let sources = w.source_tasks();
    let n = w.layout.task_count();
    let (mut exhausted, mut acked, mut exited) = (BTreeSet::new(), BTreeSet::new(), 0);
    let final_barrier = Barrier {
        id: CheckpointId::new(1),
        kind: BarrierKind::Final,
        triggered_at_ms: 0,
    };
    while exited < n {
        let event = events
            .recv_timeout(Duration::from_secs(60))
            .expect("the job stalled: no event for 60 s");
        match event {
            TaskEvent::SourceExhausted { task } => {
                exhausted.insert(task);
                if exhausted.len() == sources.len() {
                    for &t in &sources {
                        control(t, Control::TriggerCheckpoint { barrier: final_barrier });
                    }
                }
            }
            TaskEvent::Ack { ack } => {
                assert_eq!(ack.barrier, final_barrier);
                assert!(acked.insert(ack.task), "subtask {} acknowledged twice", ack.task);
                if acked.len() == n {
                    for t in 0..n {
                        control(t, Control::CheckpointComplete { id: final_barrier.id });
                    }
                }
            }
            TaskEvent::Exited { task, outcome } => match outcome {
                TaskOutcome::Finished => exited += 1,
                TaskOutcome::Failed(r) => panic!("subtask {task} failed: {}", r.into_error()),
            },
            TaskEvent::AttemptFailed { report } => panic!("the attempt failed: {}", report.into_error()),
            _ => {}
        }
    }
}

#[test]
fn a_keyed_job_split_over_two_workers_commits_what_it_commits_in_one_process() {
    let sink = CollectSink::new();
    let pipeline = Pipeline::new("two-workers").parallelism(2);
    pipeline
        .source(
            "numbers",
            GeneratorSource::new(|i| (i % 10, i)).bounded(20_000).splits(4),
        )
        .key_by("by-key", |(k, _): &(u64, u64)| *k)
        .reduce("sum", |(k, a), (_, b)| (k, a + b))
        .sink("out", sink.clone());
    let w = TwoWorkers::new(pipeline);
    assert_eq!(w.assignment.workers(), vec![0, 1], "both workers run subtasks");
    let (mut attempts, events) = w.start(1);
    drive_to_the_end(&w, &attempts, &events);
    for a in &mut attempts {
        assert!(a.join(Duration::from_secs(30)));
    }
    // Every record reached the sum exactly once: the last sum of each key is its total, and
    // there is one output per input.
    let records = sink.records();
    assert_eq!(records.len(), 20_000);
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, v) in records {
        let e = last.entry(k).or_default();
        *e = (*e).max(v);
    }
    for k in 0..10u64 {
        let total: u64 = (0..20_000u64).filter(|i| i % 10 == k).sum();
        assert_eq!(last[&k], total, "key {k}");
    }
}

#[test]
fn a_worker_that_goes_away_fails_the_attempt_on_the_other() {
    let pipeline = Pipeline::new("worker-lost").parallelism(2);
    pipeline
        .source("numbers", GeneratorSource::new(|i| (i % 10, i)).splits(4))
        .key_by("by-key", |(k, _): &(u64, u64)| *k)
        .reduce("sum", |(k, a), (_, b)| (k, a + b))
        .sink("out", CollectSink::new());
    let w = TwoWorkers::new(pipeline);
    let (mut attempts, events) = w.start(1);
    // Let records flow, then worker 1 goes away: its connections close and its channels end.
    std::thread::sleep(Duration::from_millis(200));
    attempts[1].cancel(&w.planes[1]);
    assert!(attempts[1].join(Duration::from_secs(30)));
    // Worker 0 learns it without the master telling it: a connection failure or a subtask
    // whose channel from worker 1 disconnected.
    let on_worker_0: BTreeSet<usize> = attempts[0].tasks().collect();
    let failed = loop {
        match events
            .recv_timeout(Duration::from_secs(30))
            .expect("worker 0 did not notice")
        {
            TaskEvent::AttemptFailed { report } => break report.into_error(),
            TaskEvent::Exited {
                task,
                outcome: TaskOutcome::Failed(r),
            } if on_worker_0.contains(&task) => break r.into_error(),
            _ => {}
        }
    };
    assert!(
        matches!(
            failed.kind(),
            ErrorKind::Cancelled | ErrorKind::External { retryable: true }
        ),
        "{failed}"
    );
    attempts[0].cancel(&w.planes[0]);
    assert!(attempts[0].join(Duration::from_secs(30)));
    // A new attempt deploys on both again.
    let (mut again, _events) = w.start(2);
    for (a, plane) in again.iter().zip(&w.planes) {
        a.cancel(plane);
    }
    for a in &mut again {
        assert!(a.join(Duration::from_secs(30)));
    }
}
