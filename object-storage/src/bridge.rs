//! Runs the object store's asynchronous calls for the synchronous [`CheckpointStorage`]
//! trait.
//!
//! Every call is spawned on one process-wide runtime of its own and the calling thread waits
//! for the result on a channel. Waiting on a channel (rather than `Runtime::block_on`) works
//! from any thread, including a thread of another tokio runtime (the checkpoint coordinator's,
//! a cluster worker's RPC threads).
//!
//! [`CheckpointStorage`]: weir_engine::checkpoint::CheckpointStorage

use std::future::Future;
use std::sync::OnceLock;
use weir_engine::{Error, Result};

/// The runtime object store calls run on (two threads: transfers are I/O bound).
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("weir-object-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::internal(format!("starting the object storage runtime: {e}")))
}

/// Runs `fut` to completion on the object storage runtime and returns its output.
///
/// # Errors
/// `Internal` if the runtime cannot start or the task panicked.
pub(crate) fn run<T, F>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| Error::internal("an object storage call panicked"))?
}
