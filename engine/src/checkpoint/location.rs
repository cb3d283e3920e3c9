//! Checkpoint storage named by its location (a path or URL), for a process that has to open
//! storage another process chose: a local cluster's master opens the savepoint location its
//! launcher forwards (the cluster's savepoint relay).
//!
//! The engine opens local directories itself. Other schemes (`s3://`, `gs://`, `az://`) come
//! from the crate that implements them, which installs its opener here
//! (`weir::object_storage::install`, also done by `weir::object_storage::open`): a program
//! that hands such locations to a local cluster installs it before it starts the job, so that
//! every process of the cluster has it.

use super::storage::{CheckpointStorage, LocalDirStorage};
use crate::{Error, Result};
use std::sync::{Arc, OnceLock};

/// Opens the checkpoint storage at a location (a path or a URL).
pub type StorageOpener = fn(&str) -> Result<Arc<dyn CheckpointStorage>>;

static OPENER: OnceLock<StorageOpener> = OnceLock::new();

/// Installs the opener of locations with a scheme, for this process; the first installed stays.
pub fn install_opener(opener: StorageOpener) {
    let _ = OPENER.set(opener);
}

/// The checkpoint storage at `location`: through the installed opener when there is one, a
/// local directory for a path or `file://` URL otherwise.
///
/// # Errors
/// `Config` for a location with another scheme when no opener is installed, or the opener's
/// error.
pub fn open_location(location: &str) -> Result<Arc<dyn CheckpointStorage>> {
    if let Some(open) = OPENER.get() {
        return open(location);
    }
    match scheme(location) {
        None => Ok(Arc::new(LocalDirStorage::new(location))),
        Some("file") => Ok(Arc::new(LocalDirStorage::new(&location["file://".len()..]))),
        Some(other) => Err(Error::config(format!(
            "cannot open {location}: this process knows no storage for {other}:// locations (a program that \
             gives them to a local cluster calls weir::object_storage::install() before it starts the job)"
        ))),
    }
}

/// The scheme of a URL (`s3` of `s3://b/p`); `None` for a path. Pure.
fn scheme(location: &str) -> Option<&str> {
    let (scheme, _) = location.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls_are_local_and_other_schemes_need_an_opener() {
        assert_eq!(scheme("/tmp/sp"), None);
        assert_eq!(scheme("relative/dir"), None);
        assert_eq!(scheme("s3://bucket/prefix"), Some("s3"));
        assert_eq!(scheme("abfss://c@a/p"), Some("abfss"));
        assert_eq!(scheme("/odd/dir://x"), None);
        // No opener is installed in the engine's own tests.
        assert_eq!(open_location("/tmp/sp").unwrap().describe(), "/tmp/sp");
        assert_eq!(open_location("file:///tmp/sp").unwrap().describe(), "/tmp/sp");
        let e = open_location("s3://bucket/sp").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("weir::object_storage::install"), "{e}");
    }
}
