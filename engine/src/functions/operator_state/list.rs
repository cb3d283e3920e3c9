//! [`OperatorListState`]: the handle a function keeps to one of its operator lists.

use std::sync::{Arc, Mutex, MutexGuard};

/// One operator list of a function subtask (see the [module docs](super)). Cloning the handle
/// shares the list. What it holds when the engine snapshots the subtask (right after the
/// function's `snapshot_state`) is what the checkpoint keeps.
pub struct OperatorListState<T> {
    pub(super) cell: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for OperatorListState<T> {
    fn clone(&self) -> Self {
        OperatorListState {
            cell: self.cell.clone(),
        }
    }
}

impl<T: Clone> OperatorListState<T> {
    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // The list is only used by its subtask's thread; a panic there fails the attempt, and
        // the next attempt builds new lists from the checkpoint.
        self.cell.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the elements, in order.
    pub fn get(&self) -> Vec<T> {
        self.lock().clone()
    }

    /// Replaces the elements.
    pub fn update(&self, values: Vec<T>) {
        *self.lock() = values;
    }

    /// Appends one element.
    pub fn add(&self, value: T) {
        self.lock().push(value);
    }

    /// Appends elements.
    pub fn add_all(&self, values: impl IntoIterator<Item = T>) {
        self.lock().extend(values);
    }

    /// Removes and returns every element.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
    }

    /// Removes every element.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Runs `f` on the elements in place (to change some without copying them all).
    pub fn with<R>(&self, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        f(&mut self.lock())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for OperatorListState<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cell.try_lock() {
            Ok(values) => f.debug_list().entries(values.iter()).finish(),
            Err(_) => f.write_str("OperatorListState(<in use>)"),
        }
    }
}
