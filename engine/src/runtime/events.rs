//! What the threads of a job tell the master: plain serializable messages (with the
//! failures in a form that keeps their kind), so that a runtime spread over processes only
//! swaps the transport. What the master tells subtasks is [`Control`](super::control::Control).

use crate::checkpoint::ack::CheckpointAck;
use crate::checkpoint::metadata::CheckpointMetadata;
use crate::message::CheckpointId;
use crate::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

/// Why a subtask (or a checkpoint upload) failed, in a form that can cross a wire: the error's
/// kind (which decides whether a restart may help) and its message with context. In-process,
/// the original [`Error`] travels along (it is not serialized).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FailureReport {
    /// Who must act on the failure.
    pub(crate) kind: ErrorKind,
    /// The error's message, with the context it travelled through.
    pub(crate) message: String,
    /// Why, when the error says.
    #[serde(default)]
    pub(crate) reason: Option<crate::Reason>,
    /// The original error, when sender and master share a process.
    #[serde(skip)]
    pub(crate) error: Option<Error>,
}

impl FailureReport {
    /// The report of `error`, keeping the error itself for an in-process master.
    pub(crate) fn new(error: Error) -> Self {
        FailureReport {
            kind: error.kind(),
            message: error.to_string(),
            reason: error.reason(),
            error: Some(error),
        }
    }

    /// The kind of the failure.
    pub(crate) fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The failure as an error: the original one, or one rebuilt from kind and message.
    pub(crate) fn into_error(self) -> Error {
        match self.error {
            Some(e) => e,
            None => {
                let e = Error::new(self.kind, self.message);
                match self.reason {
                    Some(r) => e.with_reason(r),
                    None => e,
                }
            }
        }
    }
}

/// How a subtask's thread ended.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskOutcome {
    /// Its input ended and its final checkpoint is complete, or it stopped cleanly.
    Finished,
    /// It failed (or stopped because the attempt was cancelled: kind `Cancelled`).
    Failed(FailureReport),
}

impl TaskOutcome {
    /// The outcome of a subtask's run.
    pub(crate) fn of(result: Result<()>) -> Self {
        match result {
            Ok(()) => TaskOutcome::Finished,
            Err(e) => TaskOutcome::Failed(FailureReport::new(e)),
        }
    }
}

/// What the job's threads tell the master: plain serializable messages, so that a later
/// runtime only swaps the transport.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskEvent {
    /// A subtask opened its operators (state restored) and runs.
    Running {
        /// The subtask.
        task: usize,
    },
    /// A barrier passed through the subtask and its snapshot is taken.
    Ack {
        /// What the snapshot produced.
        ack: Box<CheckpointAck>,
    },
    /// A source subtask read all of its input.
    SourceExhausted {
        /// The subtask.
        task: usize,
    },
    /// The subtask's thread ended.
    Exited {
        /// The subtask.
        task: usize,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// The asynchronous phase of a checkpoint ended.
    Uploaded {
        /// The attempt that started the upload.
        attempt: u32,
        /// The checkpoint.
        id: CheckpointId,
        /// The metadata to publish, or why the upload failed.
        result: Box<std::result::Result<CheckpointMetadata, FailureReport>>,
    },
    /// The user asked to cancel.
    CancelRequested,
    /// A failure outside any subtask of the attempt: a data connection to another worker
    /// broke, or a worker was lost.
    AttemptFailed {
        /// What failed.
        report: FailureReport,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::ack::{OperatorSubtaskSnapshot, SourceSnapshot};
    use crate::message::{Barrier, BarrierKind};
    use crate::runtime::control::Control;

    #[test]
    fn messages_survive_a_wire_with_the_failure_kind() {
        let failed = TaskEvent::Exited {
            task: 3,
            outcome: TaskOutcome::of(Err(Error::new(ErrorKind::External { retryable: false }, "broker gone"))),
        };
        let back: TaskEvent = serde_json::from_str(&serde_json::to_string(&failed).unwrap()).unwrap();
        let TaskEvent::Exited {
            task: 3,
            outcome: TaskOutcome::Failed(report),
        } = back
        else {
            panic!("not the event sent: {back:?}")
        };
        assert!(report.error.is_none(), "the error itself stays in-process");
        let e = report.into_error();
        assert_eq!(e.kind(), ErrorKind::External { retryable: false });
        assert!(e.to_string().contains("broker gone"), "{e}");

        let barrier = Barrier {
            id: CheckpointId::new(7),
            kind: BarrierKind::Final,
            triggered_at_ms: 1,
        };
        let ack = TaskEvent::Ack {
            ack: Box::new(CheckpointAck {
                task: 0,
                barrier,
                operators: vec![OperatorSubtaskSnapshot {
                    operator: "map".into(),
                    subtask: 0,
                    snapshot: crate::operator::OperatorSnapshot {
                        keyed_files: vec!["000001.sst".into()],
                        operator_state: Some(vec![1, 2]),
                    },
                    stored: None,
                }],
                source: Some(SourceSnapshot {
                    source: "numbers".into(),
                    positions: Vec::new(),
                    records_read: 42,
                }),
                alignment: std::time::Duration::from_millis(3),
                sync_duration: std::time::Duration::from_millis(4),
            }),
        };
        let back: TaskEvent = serde_json::from_str(&serde_json::to_string(&ack).unwrap()).unwrap();
        let TaskEvent::Ack { ack } = back else {
            panic!("not an ack")
        };
        assert_eq!(ack.barrier, barrier);
        assert_eq!(
            ack.operators[0].snapshot.keyed_files,
            vec![std::path::PathBuf::from("000001.sst")]
        );
        assert_eq!(ack.source.as_ref().map(|s| s.records_read), Some(42));

        let control = Control::CheckpointComplete {
            id: CheckpointId::new(7),
        };
        let back: Control = serde_json::from_str(&serde_json::to_string(&control).unwrap()).unwrap();
        assert!(matches!(back, Control::CheckpointComplete { id } if id == CheckpointId::new(7)));
    }
}
