//! Named fail points: places in the checkpoint lifecycle where tests (and the payment
//! example's disaster-recovery drill) inject failures.
//!
//! A disarmed fail point costs one relaxed atomic load. An armed one triggers on its n-th hit
//! with an [`FailAction`]: return an error from that phase, panic there, or end the whole
//! process at once (`abort`, as a `kill -9` would, without unwinding or flushing anything).

use crate::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// While processing a record (user functions usually fail here on their own).
pub const PROCESS_RECORD: &str = "process-record";
/// In a subtask's synchronous snapshot, before it acknowledges the barrier.
pub const SNAPSHOT_SYNC: &str = "snapshot-sync";
/// In the asynchronous upload of a checkpoint's files.
pub const UPLOAD: &str = "upload";
/// In a sink, right after its pre-commit produced a committable.
pub const AFTER_PRE_COMMIT: &str = "after-pre-commit";
/// After the checkpoint's metadata became durable, before any sink is told to commit.
pub const AFTER_METADATA: &str = "after-metadata";
/// In a sink's commit.
pub const DURING_COMMIT: &str = "during-commit";
/// While restoring state from a checkpoint.
pub const DURING_RESTORE: &str = "during-restore";

/// Every fail point the engine checks.
pub const ALL: [&str; 7] = [
    PROCESS_RECORD,
    SNAPSHOT_SYNC,
    UPLOAD,
    AFTER_PRE_COMMIT,
    AFTER_METADATA,
    DURING_COMMIT,
    DURING_RESTORE,
];

/// What an armed fail point does when it triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// Returns an error from the phase (an I/O error, a failed call).
    Error,
    /// Panics in the phase.
    Panic,
    /// Ends the process immediately, like `kill -9`.
    Abort,
}

#[derive(Debug)]
struct Armed {
    /// Hits left before it triggers (it triggers when this reaches 0).
    remaining: u64,
    action: FailAction,
}

static ANY_ARMED: AtomicBool = AtomicBool::new(false);
static POINTS: Mutex<Option<HashMap<String, Armed>>> = Mutex::new(None);

/// Arms fail point `name` to trigger on its `nth` hit (1 = the next one), once.
pub fn arm(name: &str, nth: u64, action: FailAction) {
    let mut g = POINTS.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashMap::new).insert(
        name.to_string(),
        Armed {
            remaining: nth.max(1),
            action,
        },
    );
    ANY_ARMED.store(true, Ordering::SeqCst);
}

/// Disarms every fail point.
pub fn disarm_all() {
    let mut g = POINTS.lock().unwrap_or_else(|e| e.into_inner());
    *g = None;
    ANY_ARMED.store(false, Ordering::SeqCst);
}

/// Whether fail point `name` is still armed (has not triggered yet).
pub fn is_armed(name: &str) -> bool {
    let g = POINTS.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().map(|m| m.contains_key(name)).unwrap_or(false)
}

/// Checks fail point `name`: returns an error, panics or aborts if it is armed and due.
pub fn hit(name: &str) -> Result<()> {
    if !ANY_ARMED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let action = {
        let mut g = POINTS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(map) = g.as_mut() else { return Ok(()) };
        let Some(a) = map.get_mut(name) else { return Ok(()) };
        a.remaining -= 1;
        if a.remaining > 0 {
            return Ok(());
        }
        let action = a.action;
        map.remove(name);
        if map.is_empty() {
            ANY_ARMED.store(false, Ordering::SeqCst);
        }
        action
    };
    tracing::warn!(fail_point = name, ?action, "injected failure");
    match action {
        FailAction::Error => Err(Error::new(
            ErrorKind::External { retryable: true },
            format!("injected failure at fail point {name}"),
        )),
        FailAction::Panic => panic!("injected panic at fail point {name}"),
        FailAction::Abort => {
            eprintln!("weir: injected process abort at fail point {name}");
            std::process::abort()
        }
    }
}
