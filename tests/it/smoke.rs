use weir::prelude::*;

#[test]
fn smoke() {
    for p in [1usize, 2, 4] {
        for backend in ["mem", "rocks"] {
            let dir = tempfile::tempdir().unwrap();
            let sink = CollectSink::new();
            let mut pl = Pipeline::new("smoke").parallelism(p);
            if backend == "rocks" {
                pl = pl.state_dir(dir.path());
            }
            pl.source(
                "numbers",
                GeneratorSource::new(|i| (i % 10, i)).bounded(10_000).splits(3),
            )
            .map("id", |x| x)
            .filter("all", |_| true)
            .key_by("by-key", |(k, _): &(u64, u64)| *k)
            .reduce("sum", |(k, a), (_, b)| (k, a + b))
            .sink("out", sink.clone());
            let report = pl.run().unwrap();
            println!("{report}");
            let recs = sink.records();
            assert_eq!(recs.len(), 10_000);
            let mut finals = std::collections::BTreeMap::new();
            for (k, v) in recs {
                let e = finals.entry(k).or_insert(0);
                if v > *e {
                    *e = v;
                }
            }
            for k in 0..10u64 {
                let expect: u64 = (0..10_000u64).filter(|i| i % 10 == k).sum();
                assert_eq!(finals[&k], expect, "key {k} p {p} {backend}");
            }
        }
    }
}
