//! The restore rules applied to what sinks find already committed when they start.
//!
//! A sink's committed output is evidence the checkpoint storage cannot fake: final files of
//! checkpoint `n`, a transaction marker at `n`. When it names a checkpoint newer than the one
//! restored (the newest `_metadata` was lost, so the newest complete checkpoint looks
//! incomplete), or exists while no checkpoint was restored at all (an empty or wrong
//! checkpoint directory), starting would produce committed output a second time.

use crate::message::CheckpointId;
use crate::recovery::{RestoreMode, RestoreWarning, SharedRestoreWarnings};
use crate::{Error, Reason, Result};
use std::sync::Arc;

/// The restore rules a sink writer applies to output an earlier run committed (see
/// [`SinkContext::check_committed_output`](super::SinkContext::check_committed_output)).
/// The default checks nothing: a job without checkpoint storage starts afresh every time.
#[derive(Debug, Clone, Default)]
pub struct CommittedOutputCheck {
    rules: Option<Arc<Rules>>,
}

#[derive(Debug)]
struct Rules {
    mode: RestoreMode,
    fallback_allowed: bool,
    storage: String,
    /// Where accepted fallbacks are reported (the job report).
    warnings: Option<SharedRestoreWarnings>,
}

/// The verdict on one sink subtask's committed output. Pure decision, no I/O.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Start,
    /// Start, reproducing output after `restored` (the user allowed it).
    StartReproducing {
        restored: CheckpointId,
    },
    Refuse(String),
}

impl CommittedOutputCheck {
    /// The rules of a job that restores by `mode` from the checkpoint storage `storage`
    /// (described for errors), falling back past a complete checkpoint only if
    /// `fallback_allowed`; fallbacks the user allowed are reported into `warnings`.
    pub(crate) fn new(
        mode: RestoreMode,
        fallback_allowed: bool,
        storage: String,
        warnings: Option<SharedRestoreWarnings>,
    ) -> Self {
        CommittedOutputCheck {
            rules: Some(Arc::new(Rules {
                mode,
                fallback_allowed,
                storage,
                warnings,
            })),
        }
    }

    /// See [`SinkContext::check_committed_output`](super::SinkContext::check_committed_output).
    pub(crate) fn check(
        &self,
        sink: &str,
        subtask: usize,
        restored: Option<CheckpointId>,
        newest: CheckpointId,
        found: &str,
    ) -> Result<()> {
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        match decide(rules, sink, subtask, restored, newest, found) {
            Verdict::Start => Ok(()),
            Verdict::StartReproducing { restored } => {
                let message = format!(
                    "sink {sink}[{subtask}] holds committed output of checkpoint {newest} ({found}) but the job \
                     restored checkpoint {restored}: the output after checkpoint {restored} is produced again, as \
                     fallback_to_older_checkpoint_reproducing_output allows"
                );
                tracing::warn!(
                    sink,
                    subtask,
                    checkpoint = restored.get(),
                    newer = newest.get(),
                    "{message}"
                );
                if let Some(w) = &rules.warnings {
                    w.lock().unwrap_or_else(|e| e.into_inner()).push(RestoreWarning {
                        restored,
                        newer: newest,
                        message,
                    });
                }
                Ok(())
            }
            Verdict::Refuse(msg) => Err(Error::config(msg).with_reason(match restored {
                Some(_) => Reason::CommittedOutputAhead,
                None => Reason::EarlierRunFound,
            })),
        }
    }
}

fn decide(
    rules: &Rules,
    sink: &str,
    subtask: usize,
    restored: Option<CheckpointId>,
    newest: CheckpointId,
    found: &str,
) -> Verdict {
    if newest == CheckpointId::new(0) {
        return Verdict::Start;
    }
    match restored {
        Some(r) if newest <= r => Verdict::Start,
        Some(r) if rules.fallback_allowed => Verdict::StartReproducing { restored: r },
        Some(r) => Verdict::Refuse(format!(
            "sink {sink}[{subtask}] holds committed output of checkpoint {newest} ({found}), newer than the \
             checkpoint {r} the job restores from {}: checkpoint {newest} completed, but its metadata is lost or \
             unusable. Restoring checkpoint {r} would produce the output after it again (append-only sinks would \
             hold it twice). Recover checkpoint {newest}'s metadata, or allow this with \
             CheckpointConfig::fallback_to_older_checkpoint_reproducing_output = true",
            rules.storage
        )),
        None if rules.mode == RestoreMode::Fresh => Verdict::Start,
        None => Verdict::Refuse(format!(
            "sink {sink}[{subtask}] holds committed output of an earlier run (checkpoint {newest}: {found}), but \
             checkpoint storage {} holds no completed checkpoint to restore (an unmounted volume, a wrong path?). \
             Starting from scratch would produce all output again. Point the job at its checkpoint storage, or \
             start over deliberately with RestoreMode::Fresh",
            rules.storage
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(mode: RestoreMode, fallback_allowed: bool) -> Rules {
        Rules {
            mode,
            fallback_allowed,
            storage: "/chk".into(),
            warnings: None,
        }
    }

    #[test]
    fn output_up_to_the_restored_checkpoint_is_expected() {
        let r = rules(RestoreMode::Latest, false);
        assert_eq!(
            decide(&r, "s", 0, Some(CheckpointId::new(5)), CheckpointId::new(5), "f"),
            Verdict::Start
        );
        assert_eq!(
            decide(&r, "s", 0, Some(CheckpointId::new(5)), CheckpointId::new(3), "f"),
            Verdict::Start
        );
        assert_eq!(decide(&r, "s", 0, None, CheckpointId::new(0), "f"), Verdict::Start);
    }

    #[test]
    fn output_ahead_of_the_restored_checkpoint_needs_the_opt_in() {
        let strict = rules(RestoreMode::Latest, false);
        let Verdict::Refuse(msg) = decide(
            &strict,
            "s",
            1,
            Some(CheckpointId::new(5)),
            CheckpointId::new(6),
            "file s-1-6",
        ) else {
            panic!("must refuse")
        };
        assert!(msg.contains("checkpoint 6") && msg.contains("file s-1-6"), "{msg}");
        assert!(msg.contains("fallback_to_older_checkpoint_reproducing_output"), "{msg}");
        let lenient = rules(RestoreMode::Latest, true);
        assert_eq!(
            decide(&lenient, "s", 1, Some(CheckpointId::new(5)), CheckpointId::new(6), "f"),
            Verdict::StartReproducing {
                restored: CheckpointId::new(5)
            }
        );
    }

    #[test]
    fn output_of_an_earlier_run_without_a_checkpoint_needs_fresh() {
        let Verdict::Refuse(msg) = decide(
            &rules(RestoreMode::Latest, true),
            "s",
            0,
            None,
            CheckpointId::new(6),
            "f",
        ) else {
            panic!("must refuse")
        };
        assert!(msg.contains("RestoreMode::Fresh"), "{msg}");
        assert_eq!(
            decide(
                &rules(RestoreMode::Fresh, false),
                "s",
                0,
                None,
                CheckpointId::new(6),
                "f"
            ),
            Verdict::Start
        );
    }
}
