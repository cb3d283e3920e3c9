use weir::engine::checkpoint::fail;
use weir::prelude::*;

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

fn run(point: Option<(&str, u64, FailAction)>, rocks: bool) -> (Vec<(u64, u64, u64)>, JobReport) {
    let dir = tempfile::tempdir().unwrap();
    fail::disarm_all();
    if let Some((p, n, a)) = point {
        fail::arm(p, n, a);
    }
    let sink = CollectSink::new();
    let mut pl = Pipeline::new("eo")
        .parallelism(2)
        .checkpoint_storage(dir.path().join("chk"))
        .checkpoint_interval(std::time::Duration::from_millis(30));
    if rocks {
        pl = pl.state_dir(dir.path().join("state"));
    }
    pl.source(
        "gen",
        GeneratorSource::new(|i| (i % 7, i))
            .bounded(20_000)
            .splits(7)
            .rate_per_second(100_000.0),
    )
    .key_by("k", |(k, _): &(u64, u64)| *k)
    .process("sum", Sum)
    .sink("out", sink.clone());
    let report = match pl.run() {
        Ok(r) => r,
        Err(e) => panic!("job failed: {e}"),
    };
    for f in &report.failures {
        println!("   failure attempt {}: {}", f.attempt, f.error);
    }
    let mut r = sink.records();
    r.sort();
    (r, report)
}

#[test]
fn probe() {
    let (expected, rep) = run(None, false);
    println!(
        "baseline {} records, {} checkpoints",
        expected.len(),
        rep.checkpoints.len()
    );
    for rocks in [false, true] {
        for p in fail::ALL {
            for action in [FailAction::Error, FailAction::Panic] {
                let (got, rep) = run(Some((p, 3, action)), rocks);
                println!(
                    "{p} {action:?} rocks={rocks}: restarts {} checkpoints {} restores {:?}",
                    rep.restarts,
                    rep.checkpoints.len(),
                    rep.restores
                        .iter()
                        .map(|r| (r.checkpoint, r.records_replayed))
                        .collect::<Vec<_>>()
                );
                assert_eq!(got.len(), expected.len(), "{p} {action:?}");
                assert!(got == expected, "{p} {action:?} differs");
            }
        }
    }
}
