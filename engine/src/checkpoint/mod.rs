//! Checkpoints: configuration, storage, metadata, the coordinator's durable bookkeeping,
//! and restore.

pub mod ack;
pub mod config;
pub(crate) mod coordinator;
pub mod identity;
pub mod location;
pub mod metadata;
pub mod pointer;
pub(crate) mod reassign;
pub mod replication;
pub(crate) mod restore;
pub(crate) mod retention;
pub mod savepoint;
pub(crate) mod staging;
pub mod storage;
pub(crate) mod tracker;
pub(crate) mod upload;

pub use crate::ownership::{OwnerInfo, OwnerLease};
pub use config::{CheckpointConfig, CheckpointTiming, OnCancel, RestoreMode, SavepointRestore};
pub use location::{install_opener, open_location, StorageOpener};
pub use metadata::{CheckpointMetadata, CheckpointStats};
pub use savepoint::Savepoint;
pub use storage::{CheckpointStorage, LocalDirStorage};
pub use upload::read_metadata;
