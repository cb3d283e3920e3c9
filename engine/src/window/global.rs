//! The global window: every record of a key in one window, which fires only when a trigger
//! says so (the base of count windows).

use super::{TimeWindow, WindowAssigner, WindowTime};
use crate::data::Timestamp;

/// Puts every record of a key into the one window [`TimeWindow::global`] (Flink's
/// `GlobalWindows`). Its default trigger never fires: give one with `.trigger(..)`, for
/// example [`count`](super::triggers::count) (what `count_window` does). Records need no
/// timestamp. The window's state is kept for as long as the key has one; purging triggers empty
/// its contents when they fire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalWindows;

impl GlobalWindows {
    /// The global window assigner.
    pub fn create() -> Self {
        GlobalWindows
    }
}

impl WindowAssigner for GlobalWindows {
    fn assign_windows(&self, _timestamp: Timestamp, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::global());
    }

    fn time(&self) -> WindowTime {
        WindowTime::Global
    }
}
