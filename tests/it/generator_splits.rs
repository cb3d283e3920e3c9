//! The generator's contiguous splits (`GeneratorSource::contiguous`, Flink's data generator
//! layout): each split produces its own range of indices, in order, and a job reading them
//! counts every index exactly once across failures and a rescale.

use crate::common::wait_until;
use std::sync::Arc;
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::prelude::*;

const COUNT: u64 = 10_001;
const SPLITS: usize = 4;

fn pipeline(
    dir: &std::path::Path,
    parallelism: usize,
    rate: Option<f64>,
    failures: &[(&'static str, u64)],
    out: &CollectSink<(u64, u64)>,
) -> Pipeline {
    let points = FailPoints::new();
    for (p, n) in failures {
        points.arm(p, *n, FailAction::Error);
    }
    let p = Pipeline::new("contiguous")
        .fail_points(points)
        .parallelism(parallelism)
        .batch_size(32)
        .state_dir(dir.join("state"))
        .checkpoint_storage(dir.join(format!("checkpoints-{parallelism}")))
        .checkpoint_interval(Duration::from_millis(20))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 20,
            delay: Duration::from_millis(1),
        });
    let mut source = GeneratorSource::new(|i| i).bounded(COUNT).splits(SPLITS).contiguous();
    if let Some(r) = rate {
        source = source.rate_per_second(r);
    }
    // Per split (range), a running count: an index read twice would repeat a count.
    let len = COUNT.div_ceil(SPLITS as u64);
    p.source("indices", source)
        .key_by("by-range", move |i: &u64| i / len)
        .process("count", RangeCount)
        .sink("out", out.clone());
    p
}

/// Emits `(index, how many indices of its range came so far)`.
#[derive(Clone)]
struct RangeCount;

impl KeyedProcess<u64, u64> for RangeCount {
    type Out = (u64, u64);

    fn process(&mut self, i: u64, ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        let mut n = ctx.value_state::<u64>("n");
        let next = n.get()?.unwrap_or(0) + 1;
        n.set(&next)?;
        ctx.emit((i, next));
        Ok(())
    }
}

fn check(out: &CollectSink<(u64, u64)>, ctx: &str) {
    let mut got = out.records();
    got.sort_unstable();
    let indices: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indices,
        (0..COUNT).collect::<Vec<_>>(),
        "{ctx}: every index exactly once"
    );
    // Each split reads its range in order, so within a range the count follows the index.
    let len = COUNT.div_ceil(SPLITS as u64);
    for (i, n) in got {
        assert_eq!(n, i % len + 1, "{ctx}: index {i} was the {n}th of its range");
    }
}

#[test]
fn contiguous_splits_read_each_index_once_across_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let out = CollectSink::new();
    let report = pipeline(
        dir.path(),
        2,
        Some(50_000.0),
        &[(fail::PROCESS_RECORD, 100), (fail::SNAPSHOT_SYNC, 3)],
        &out,
    )
    .run()
    .unwrap();
    assert!(report.restarts >= 1, "no failure happened");
    check(&out, "p 2 with failures");

    let dir = tempfile::tempdir().unwrap();
    let out = CollectSink::new();
    let handle = pipeline(dir.path(), 3, Some(2_000.0), &[], &out).start().unwrap();
    wait_until("a third of the indices read and a checkpoint", 90, || {
        let p = handle.progress();
        handle.is_finished() || p.source_records >= COUNT / 3 && p.last_checkpoint.is_some()
    });
    assert!(!handle.is_finished(), "the first run ended before it was stopped");
    let at = dir.path().join("savepoint");
    handle.stop_with_savepoint(Arc::new(LocalDirStorage::new(&at))).unwrap();
    handle.join().unwrap();
    let report = pipeline(dir.path(), 2, None, &[], &out)
        .from_savepoint(SavepointRestore::dir(&at))
        .run()
        .unwrap();
    assert!(report.restored_from_savepoint.is_some());
    check(&out, "3 -> 2");
}

#[test]
fn an_unbounded_contiguous_generator_is_a_configuration_error() {
    let p = Pipeline::new("unbounded-contiguous");
    p.source("g", GeneratorSource::new(|i| i).splits(2).contiguous())
        .sink("out", DiscardSink::new());
    let err = p.run().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("bounded"), "{err}");
}
