//! Weir checkpoint storage on object stores: Amazon S3 and S3-compatible servers, Google
//! Cloud Storage, Azure Blob Storage, through the [`object_store`] crate; and the one place
//! that turns a location a user writes (`s3://bucket/prefix`, a path) into a
//! [`CheckpointStorage`].
//!
//! ```no_run
//! let storage = weir_object_storage::open("s3://payments-checkpoints/prod/payments").unwrap();
//! let config = weir_engine::checkpoint::CheckpointConfig::with_storage(storage);
//! ```
//!
//! What holds after a crash is documented on [`ObjectStoreStorage`]: a checkpoint is complete
//! exactly when its metadata object exists, and every file it references was stored before.

mod bridge;
mod connect;
mod errors;
pub mod location;
mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod transfer;

pub use connect::{connect, ClientSettings};
pub use location::{Location, Provider};
pub use storage::ObjectStoreStorage;
pub use transfer::{MULTIPART_THRESHOLD, PART_SIZE};

use std::sync::Arc;
use weir_engine::checkpoint::{CheckpointStorage, LocalDirStorage};
use weir_engine::Result;

/// The checkpoint storage at `location`: a local directory for a path or `file://` URL, an
/// [`ObjectStoreStorage`] for `s3://`, `gs://`, `az://` and `abfs[s]://` URLs (credentials
/// and endpoint from the environment, see [`connect`]).
///
/// Nothing is contacted: call [`CheckpointStorage::validate`] (the job does, at start) to
/// find a missing bucket or rejected credentials.
///
/// # Errors
/// `Config` for a location that cannot be parsed or a provider configuration that is
/// incomplete.
pub fn open(location: &str) -> Result<Arc<dyn CheckpointStorage>> {
    install();
    let parsed = Location::parse(location)?;
    match &parsed {
        Location::Local(dir) => Ok(Arc::new(LocalDirStorage::new(dir))),
        Location::Object { .. } => {
            let store = connect(&parsed, &ClientSettings::from_env()?)?;
            Ok(Arc::new(ObjectStoreStorage::new(store, &parsed)?))
        }
    }
}

/// Lets this process's engine open object-storage locations it is given by name
/// ([`weir_engine::checkpoint::open_location`]): a local cluster's master opens the savepoint
/// location its launcher forwards that way. [`open`] installs it too; a program that gives a
/// local cluster savepoint locations on object storage without opening any before the job
/// starts calls this first.
pub fn install() {
    weir_engine::checkpoint::install_opener(open);
}

/// Deletes everything at `location`: the directory, or every object under the prefix. What a
/// disaster-recovery drill does to the site it destroys; never called by a job.
///
/// # Errors
/// `Config` for a location that cannot be parsed; `External` when deleting fails.
pub fn destroy(location: &str) -> Result<()> {
    let parsed = Location::parse(location)?;
    match &parsed {
        Location::Local(dir) => match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(weir_engine::Error::io(format!("deleting {}", dir.display()), e)),
        },
        Location::Object { .. } => {
            let store = connect(&parsed, &ClientSettings::from_env()?)?;
            ObjectStoreStorage::new(store, &parsed)?.delete_everything()
        }
    }
}
