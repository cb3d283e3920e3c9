//! Errors: one [`Error`] type whose [`ErrorKind`] says who must act.
//!
//! `Config` errors are the user's to fix, `Data` errors are bad records, `External` errors come
//! from disks and brokers (some are worth a retry), `Checkpoint` errors abort one checkpoint but
//! not the job, and `Internal` errors are bugs in Weir. Context is added as an error travels up
//! (`restoring checkpoint 42, operator authorize[1]`). Outcomes that callers branch on carry a
//! [`Reason`] as well, so that nobody has to search the message for them.

use std::fmt;

/// Who must act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The pipeline or its configuration is wrong: the user must change it.
    Config,
    /// A record could not be handled (bad encoding, a user function rejected it). The job
    /// fails without restarting: replaying the same input would fail the same way.
    Data,
    /// A disk, broker or other external system failed.
    External {
        /// Whether retrying the same operation may succeed.
        retryable: bool,
    },
    /// A checkpoint could not be taken (that checkpoint is aborted; the job goes on until too
    /// many fail in a row), or a checkpoint to restore is corrupt (a file missing or failing its
    /// checksum, metadata that does not parse): a restore never skips it silently.
    Checkpoint,
    /// A user function panicked or returned an error while processing.
    UserFunction,
    /// The job was cancelled through its handle.
    Cancelled,
    /// A broken invariant inside Weir: a bug.
    Internal,
}

/// Why an error happened, for the outcomes a caller branches on (an operator's tooling, a
/// supervisor, a test). Most errors carry none: their [`ErrorKind`] says enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// No retained checkpoint can be restored (every one is corrupt, or the one asked for is
    /// missing), and the job does not start from scratch over them.
    NoUsableCheckpoint,
    /// A step's parallelism differs from the checkpoint being restored.
    ParallelismChanged,
    /// The number of key groups (max parallelism) differs from the checkpoint being restored.
    MaxParallelismChanged,
    /// The checkpoint being restored belongs to another job.
    OtherJob,
    /// The job has run before (its identity record, a sink's committed output), so it does not
    /// start from scratch without `RestoreMode::Fresh`.
    EarlierRunFound,
    /// A sink's committed output is ahead of the checkpoint being restored.
    CommittedOutputAhead,
    /// A checkpoint did not complete within its timeout.
    CheckpointTimedOut,
    /// Another process owns the resource (checkpoint storage, state or output directory), or
    /// took it over and fenced this one out.
    LostOwnership,
    /// A cluster's worker found the state of the checkpoint being restored corrupt (a file
    /// failing its checksum) where it fetched it.
    RestoredStateCorrupt,
}

/// Weir's error: a kind, a message and the context it travelled through.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    reason: Option<Reason>,
    message: String,
    context: Vec<String>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Weir's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            reason: None,
            message: message.into(),
            context: Vec::new(),
            source: None,
        }
    }

    /// A configuration error: the user must change the pipeline or its settings.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// A bad record.
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }

    /// A failure of an external system.
    pub fn external(retryable: bool, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::External { retryable }, message)
    }

    /// A checkpoint failure.
    pub fn checkpoint(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Checkpoint, message)
    }

    /// A bug in Weir.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A user function failed.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UserFunction, message)
    }

    /// An I/O error from the local filesystem; `what` says what was being done.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        Self::new(
            ErrorKind::External {
                retryable: io_is_retryable(err.kind()),
            },
            what,
        )
        .with_source(err)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Marks the error with `reason`.
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Why the error happened, where that is an outcome callers branch on.
    pub fn reason(&self) -> Option<Reason> {
        self.reason
    }

    /// Adds a line of context, outermost last.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context.push(context.into());
        self
    }

    /// Who must act on this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The innermost message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.context.iter().rev() {
            write!(f, "{c}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// Adds context to any `Result<_, Error>`.
pub trait ResultExt<T> {
    /// Adds a line of context to the error, if any.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Adds lazily built context to the error, if any.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.context(context))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.context(f()))
    }
}

/// Whether an I/O error may go away when the operation is tried again (after a restart): a
/// full disk, EIO, a stale handle or a timeout may; a malformed argument or an unsupported
/// operation will not.
fn io_is_retryable(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    !matches!(kind, K::InvalidInput | K::InvalidData | K::Unsupported)
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        use rocksdb::ErrorKind as K;
        // Corruption and misuse stay; I/O errors, busy and timed-out operations may clear.
        let retryable = !matches!(e.kind(), K::Corruption | K::NotSupported | K::InvalidArgument);
        Error::external(retryable, "RocksDB").with_source(e)
    }
}

impl From<bincode::error::EncodeError> for Error {
    fn from(e: bincode::error::EncodeError) -> Self {
        Error::data("encoding a value with bincode").with_source(e)
    }
}

impl From<bincode::error::DecodeError> for Error {
    fn from(e: bincode::error::DecodeError) -> Self {
        Error::data("decoding a value with bincode").with_source(e)
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_io_errors_are_retryable_and_misuse_is_not() {
        for kind in [
            std::io::ErrorKind::Other,
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::PermissionDenied,
            std::io::ErrorKind::StorageFull,
        ] {
            let e = Error::io("writing", std::io::Error::from(kind));
            assert_eq!(e.kind(), ErrorKind::External { retryable: true }, "{kind:?}");
        }
        let e = Error::io("parsing", std::io::Error::from(std::io::ErrorKind::InvalidData));
        assert_eq!(e.kind(), ErrorKind::External { retryable: false });
    }
}
