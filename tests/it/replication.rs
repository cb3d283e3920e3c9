//! Cross-site replication of completed checkpoints between two local directories (the S3
//! variant with the loss of a whole site is in `exactly_once`).

use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::engine::checkpoint::replication::{ReplicationConfig, Replicator};
use weir::engine::checkpoint::{read_metadata, CheckpointConfig, CheckpointStorage, LocalDirStorage, OwnerInfo};
use weir::prelude::*;

fn counting_job(
    storage: Arc<dyn CheckpointStorage>,
    replica: Arc<dyn CheckpointStorage>,
    out: &CollectSink<(u64, u64)>,
) -> Pipeline {
    let mut config = CheckpointConfig::with_storage(storage);
    config.replication = Some(ReplicationConfig::new(replica));
    let p = Pipeline::new("replicated")
        .parallelism(2)
        .checkpointing(config)
        .checkpoint_interval(Duration::from_millis(30));
    p.source(
        "n",
        GeneratorSource::new(|i| (i % 11, 1u64))
            .bounded(4_000)
            .rate_per_second(8_000.0),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .reduce("count", |(k, a), (_, b)| (k, a + b))
    .sink("out", out.clone());
    p
}

fn complete(s: &dyn CheckpointStorage) -> Vec<weir::engine::message::CheckpointId> {
    s.list()
        .unwrap()
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn the_replica_holds_the_newest_checkpoint_verified_with_retention_and_reports_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(dir.path().join("site-a")));
    let b: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(dir.path().join("site-b")));
    let out = CollectSink::new();
    let report = counting_job(a.clone(), b.clone(), &out)
        .state_dir(dir.path().join("state"))
        .run()
        .unwrap();
    let status = report.replication.expect("a replicated job reports its replica");
    let newest = *complete(a.as_ref()).last().unwrap();
    // Sinks commit only replicated checkpoints: the final one is in the replica when the job
    // ends, and nothing is behind.
    assert_eq!(status.replicated, Some(newest), "{status:?}");
    assert_eq!(status.checkpoints_behind, 0, "{status:?}");
    assert_eq!(status.seconds_behind(), 0.0);
    assert!(status.copied >= 1 && status.bytes_copied > 0, "{status:?}");
    // Retention in the replica keeps as many as the job's storage (3), and every file they
    // reference is there, verified by its checksum.
    let replicated = complete(b.as_ref());
    assert!(!replicated.is_empty() && replicated.len() <= 3, "{replicated:?}");
    assert_eq!(replicated.last(), Some(&newest));
    for id in &replicated {
        let meta = read_metadata(b.as_ref(), *id).unwrap();
        for f in meta.files() {
            b.read_verified(f).unwrap();
        }
    }
    let referenced: std::collections::HashSet<String> = replicated
        .iter()
        .flat_map(|id| {
            read_metadata(b.as_ref(), *id)
                .unwrap()
                .files()
                .map(|f| f.key.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    for key in b.list_shared().unwrap() {
        assert!(
            referenced.contains(&key),
            "the replica keeps an unreferenced shared file {key}"
        );
    }
}

#[test]
fn a_corrupt_file_is_never_published_in_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(dir.path().join("site-a")));
    let b: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(dir.path().join("site-b")));
    // A job leaves checkpoints at site A (no replica).
    let out = CollectSink::new();
    let p = Pipeline::new("replicated")
        .parallelism(2)
        .state_dir(dir.path().join("state"))
        .checkpointing(CheckpointConfig::with_storage(a.clone()))
        .checkpoint_interval(Duration::from_millis(30));
    p.source(
        "n",
        GeneratorSource::new(|i| (i % 11, 1u64))
            .bounded(2_000)
            .rate_per_second(8_000.0),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .reduce("count", |(k, a), (_, b)| (k, a + b))
    .sink("out", out.clone());
    p.run().unwrap();
    let newest = *complete(a.as_ref()).last().unwrap();
    let meta = read_metadata(a.as_ref(), newest).unwrap();
    // One of its files rots at site A.
    let victim = meta
        .files()
        .find(|f| f.size > 0)
        .expect("the checkpoint has files")
        .clone();
    let path = dir.path().join("site-a").join(&victim.key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let replicator = Replicator::start(
        a.clone(),
        &ReplicationConfig::new(b.clone()),
        3,
        &OwnerInfo::this_process("replicated"),
        dir.path().join("scratch"),
    )
    .unwrap();
    replicator.offer(&meta);
    let deadline = Instant::now() + Duration::from_secs(20);
    while replicator.status().failures == 0 {
        assert!(Instant::now() < deadline, "the corrupt file was not noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = replicator.status();
    assert_eq!(status.replicated, None, "{status:?}");
    assert_eq!(status.checkpoints_behind, 1, "{status:?}");
    assert!(
        status.last_error.as_deref().unwrap_or("").contains("corrupt"),
        "{status:?}"
    );
    drop(replicator);
    assert!(
        complete(b.as_ref()).is_empty(),
        "a checkpoint with a corrupt file reached the replica"
    );
}
