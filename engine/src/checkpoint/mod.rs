//! Checkpoints: configuration, storage, metadata, the coordinator's durable bookkeeping,
//! and restore.

pub mod config;
pub(crate) mod coordinator;
pub mod dir_lock;
pub mod identity;
pub mod metadata;
pub mod ownership;
pub(crate) mod restore;
pub mod storage;
pub(crate) mod upload;

pub use config::{CheckpointConfig, CheckpointTiming, RestoreMode};
pub use metadata::{CheckpointMetadata, CheckpointStats};
pub use ownership::{OwnerInfo, OwnerLease};
pub use storage::{CheckpointStorage, LocalDirStorage};
pub use upload::read_metadata;
