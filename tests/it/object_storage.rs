//! Checkpoint storage on an S3-compatible server (moto, started on loopback by each test):
//! the storage protocol object by object, and what a user sees for a bucket that does not
//! exist or an endpoint that does not answer.

use std::sync::Arc;
use std::time::Duration;
use weir::engine::checkpoint::{CheckpointConfig, CheckpointStorage};
use weir::engine::message::CheckpointId;
use weir::engine::ownership::OwnerInfo;
use weir::engine::{ErrorKind, Reason};
use weir::object_storage::testing::{storage_at, FaultProxy, ProxyMode, S3Server};
use weir::prelude::*;

fn id(n: u64) -> CheckpointId {
    CheckpointId::new(n)
}

#[test]
fn s3_storage_keeps_the_checkpoint_protocol() {
    let server = S3Server::start().unwrap();
    let bucket = server.create_bucket("protocol").unwrap();
    let s = server.storage(&bucket, "jobs/a").unwrap();
    s.validate().unwrap();

    // Ownership: a new owner fences the previous one.
    let first = s.acquire(&OwnerInfo::this_process("a")).unwrap();
    assert_eq!(first.epoch(), 1);
    s.verify_lease(&first).unwrap();
    let second = s.acquire(&OwnerInfo::this_process("a")).unwrap();
    assert_eq!(second.epoch(), 2);
    let fenced = s.verify_lease(&first).unwrap_err();
    assert_eq!(fenced.kind(), ErrorKind::Config);
    assert_eq!(fenced.reason(), Some(Reason::LostOwnership), "{fenced}");
    s.verify_lease(&second).unwrap();

    // Ids are reserved by a create-only PUT.
    s.reserve(id(1), &second).unwrap();
    let taken = s.reserve(id(1), &first).unwrap_err();
    assert!(
        taken.to_string().contains("checkpoint 1 is already reserved"),
        "{taken}"
    );
    assert_eq!(s.list().unwrap(), vec![(id(1), false)]);

    // Files: a small one in one PUT, a large one as a multipart upload; both come back
    // verified.
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, b"operator state").unwrap();
    let large = dir.path().join("large.sst");
    let big: Vec<u8> = (0..(weir::object_storage::MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    std::fs::write(&large, &big).unwrap();
    let f_small = s.put_file(&small, "chk-1/op/0/small", "small").unwrap();
    let f_large = s.put_file(&large, "shared/op/0/1-large.sst", "large.sst").unwrap();
    assert_eq!(f_large.size, big.len() as u64);
    assert_eq!(f_large.crc32c, crc32c::crc32c(&big));
    assert_eq!(s.read_verified(&f_small).unwrap(), b"operator state");
    let back = dir.path().join("restore/large.sst");
    s.fetch_verified(&f_large, &back).unwrap();
    assert!(std::fs::read(&back).unwrap() == big, "the multipart object differs");
    assert_eq!(s.list_shared().unwrap(), vec!["shared/op/0/1-large.sst".to_string()]);

    // Publication is create-only: the same bytes again (a retried PUT) succeed, other bytes
    // are refused.
    s.write_metadata(id(1), b"{\"meta\":1}").unwrap();
    s.write_metadata(id(1), b"{\"meta\":1}").unwrap();
    let other = s.write_metadata(id(1), b"{\"meta\":2}").unwrap_err();
    assert!(other.to_string().contains("already published"), "{other}");
    assert_eq!(s.read_metadata(id(1)).unwrap(), b"{\"meta\":1}");
    s.reserve(id(2), &second).unwrap();
    assert_eq!(s.list().unwrap(), vec![(id(1), true), (id(2), false)]);

    // A changed object is corrupt, a missing one too; neither is "could not read".
    s.put_bytes("chk-1/op/0/small", "small", b"operator stat3").unwrap();
    let corrupt = s.read_verified(&f_small).unwrap_err();
    assert_eq!(corrupt.kind(), ErrorKind::Checkpoint, "{corrupt}");
    s.delete("shared/op/0/1-large.sst").unwrap();
    let missing = s.fetch_verified(&f_large, &dir.path().join("x")).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Checkpoint, "{missing}");
    assert!(missing.to_string().contains("missing"), "{missing}");

    // Deleting a checkpoint removes its metadata first and then everything under it.
    s.delete_checkpoint(id(1)).unwrap();
    assert_eq!(s.list().unwrap(), vec![(id(2), false)]);
    s.delete_checkpoint(id(2)).unwrap();
    assert!(s.list().unwrap().is_empty());

    // The identity record is read back as written.
    assert_eq!(s.read_identity().unwrap(), None);
    s.write_identity(b"job a").unwrap();
    assert_eq!(s.read_identity().unwrap().as_deref(), Some(&b"job a"[..]));
}

/// A small keyed job whose every event changes its output: a running count per key.
fn counting_job(
    name: &str,
    storage: Arc<dyn CheckpointStorage>,
    events: u64,
    out: &CollectSink<(u64, u64)>,
) -> Pipeline {
    let p = Pipeline::new(name)
        .parallelism(2)
        .state_backend(MemoryBackend::new())
        .checkpointing(CheckpointConfig::with_storage(storage))
        .checkpoint_interval(Duration::from_millis(50));
    p.source(
        "n",
        GeneratorSource::new(|i| (i % 7, 1u64))
            .bounded(events)
            .rate_per_second(20_000.0),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .reduce("count", |(k, a), (_, b)| (k, a + b))
    .sink("out", out.clone());
    p
}

#[test]
fn a_bucket_that_does_not_exist_is_a_clear_error_at_start() {
    let server = S3Server::start().unwrap();
    let s = server.storage("no-such-bucket", "jobs/x").unwrap();
    let e = s.validate().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let out = CollectSink::new();
    let e = counting_job("no-bucket", s, 100, &out).run().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("s3://no-such-bucket/jobs/x"), "{e}");
    assert!(out.records().is_empty(), "nothing may run without checkpoint storage");
}

#[test]
fn an_unreachable_endpoint_is_an_error_at_start_never_a_fresh_start() {
    let server = S3Server::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let bucket = server.create_bucket("reach").unwrap();
    // A first run completes and leaves its checkpoints.
    let out = CollectSink::new();
    let storage = storage_at(&proxy.endpoint(), &bucket, "j").unwrap();
    counting_job("reach", storage.clone(), 2_000, &out).run().unwrap();
    assert_eq!(out.records().len(), 2_000);
    assert!(storage.list().unwrap().iter().any(|(_, c)| *c));
    // The storage stops answering: the next start fails instead of starting over.
    proxy.set(ProxyMode::Drop);
    let again = CollectSink::new();
    let e = counting_job("reach", storage, 2_000, &again).run().unwrap_err();
    assert!(e.to_string().contains(&format!("s3://{bucket}/j")), "{e}");
    assert!(
        again.records().is_empty(),
        "a job must not start fresh over an earlier run: {e}"
    );
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = storage_at(&format!("http://{closed}"), "b", "p").unwrap();
    let e = nowhere.validate().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("cannot be used"), "{e}");
}

/// Checkpoints restore from S3 with the state they saved: a job run twice on one storage
/// continues its counts where the first run's last checkpoint left them.
#[test]
fn a_second_run_resumes_from_the_checkpoint_on_s3() {
    let server = S3Server::start().unwrap();
    let bucket = server.create_bucket("resume").unwrap();
    let storage = server.storage(&bucket, "jobs/resume").unwrap();
    let out = CollectSink::new();
    counting_job("resume", storage.clone(), 700, &out).run().unwrap();
    let first: u64 = out.records().iter().map(|(_, n)| *n).max().unwrap();
    assert_eq!(first, 100, "700 events over 7 keys");
    // The same job with more input resumes from its checkpoint on S3 (state and source
    // positions) and commits into the same sink (the external system outlives runs: the
    // committables of the restored checkpoint, committed again at the restore, count once):
    // every count of the second run continues past 100, and the counts end at 200 per key.
    let report = counting_job("resume", storage, 1_400, &out).run().unwrap();
    assert!(report.restored_from.is_some(), "the second run must restore");
    let counts = out.records();
    assert_eq!(counts.len(), 1_400, "every event counted once");
    assert!(
        counts[700..].iter().all(|(_, n)| *n > 100),
        "a count started over: the state was not restored"
    );
    assert_eq!(counts.iter().map(|(_, n)| *n).max(), Some(200));
}

#[test]
fn wrong_credentials_are_a_clear_error_at_start() {
    // The server accepts one request without credentials (creating the bucket), then only
    // keys it issued itself: the test's keys are wrong.
    let server = S3Server::start_checking_credentials(1).unwrap();
    let bucket = server.create_bucket("locked").unwrap();
    let s = server.storage(&bucket, "jobs/x").unwrap();
    let e = s.validate().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    let out = CollectSink::new();
    let e = counting_job("locked", s, 100, &out).run().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(out.records().is_empty());
}
