//! How object store failures become Weir errors.
//!
//! The distinction the restore depends on (see `weir_engine::checkpoint::storage`): a
//! missing object is a **corrupt** checkpoint (`Checkpoint`), any other failure to read is
//! **could not read** (`External { retryable: true }`). Rejected credentials and missing
//! buckets are `Config`: no retry can fix them. Transient failures (timeouts, 5xx, SlowDown)
//! have already been retried with backoff by the client (see [`crate::connect`]) when they
//! reach this module.

use weir_engine::{Error, Result};

/// Whether `e` says the caller may not do this (wrong or missing credentials).
fn denied(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    )
}

/// An error reading object `key` of storage `url`.
pub(crate) fn read_error(url: &str, key: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => {
            Error::checkpoint(format!("checkpoint file {key} is missing in {url}")).with_source(e)
        }
        e if denied(&e) => credentials(url, e),
        e => Error::external(true, format!("could not read checkpoint file {key} from {url}")).with_source(e),
    }
}

/// An error writing (or deleting, or listing) under `key` of storage `url`.
pub(crate) fn write_error(url: &str, what: &str, e: object_store::Error) -> Error {
    match e {
        e if denied(&e) => credentials(url, e),
        e => Error::external(true, format!("{what} in {url}")).with_source(e),
    }
}

/// The error for rejected credentials.
pub(crate) fn credentials(url: &str, e: object_store::Error) -> Error {
    Error::config(format!(
        "checkpoint storage {url} refused the credentials (check AWS_ACCESS_KEY_ID / \
         AWS_SECRET_ACCESS_KEY, or the provider's equivalent)"
    ))
    .with_source(e)
}

/// Whether `e` means the object was not there.
pub(crate) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// Whether `e` is a failed create-only or compare-and-swap precondition.
pub(crate) fn is_conflict(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

/// `Ok(None)` for a missing object, the value otherwise.
pub(crate) fn optional<T>(
    r: std::result::Result<T, object_store::Error>,
) -> std::result::Result<Option<T>, object_store::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Decodes a JSON record stored by Weir itself (`what` names it for the message).
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(url: &str, what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::config(format!(
            "the {what} in {url} is corrupt; if no process uses this storage, delete it"
        ))
        .with_source(e)
    })
}
