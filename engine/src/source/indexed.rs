//! Splits of an indexed sequence, shared by the vector and generator sources: split `k` of
//! `stride` holds the indices `k, k + stride, k + 2·stride, …`, and its offset counts how many
//! of them were read, so a position restores to exactly the next index.

use super::{ReadStatus, SplitId, SplitPosition};

/// The splits one reader owns, read round-robin record by record (which keeps their event
/// times close together).
#[derive(Debug)]
pub(crate) struct IndexedSplits {
    /// (split id, split number, indices of this split read so far)
    splits: Vec<(SplitId, u64, u64)>,
    stride: u64,
    current: usize,
}

impl IndexedSplits {
    pub(crate) fn new(splits: Vec<(SplitId, u64, u64)>, stride: u64) -> Self {
        IndexedSplits {
            splits,
            stride,
            current: 0,
        }
    }

    /// Number of splits owned.
    pub(crate) fn len(&self) -> usize {
        self.splits.len()
    }

    /// Indices read so far over all owned splits.
    pub(crate) fn read(&self) -> u64 {
        self.splits.iter().map(|s| s.2).sum()
    }

    /// Hands up to `budget` next indices below `end` (no bound if `None`) to `emit`.
    pub(crate) fn poll(&mut self, budget: usize, end: Option<u64>, mut emit: impl FnMut(u64)) -> ReadStatus {
        let n = self.splits.len();
        let (mut emitted, mut exhausted) = (0, 0);
        while emitted < budget && exhausted < n {
            let (_, k, read) = &mut self.splits[self.current % n];
            let i = *k + *read * self.stride;
            self.current += 1;
            if end.is_some_and(|e| i >= e) {
                exhausted += 1;
                continue;
            }
            emit(i);
            *read += 1;
            emitted += 1;
            exhausted = 0;
        }
        if exhausted >= n {
            ReadStatus::Finished
        } else {
            ReadStatus::More
        }
    }

    /// The position of every owned split.
    pub(crate) fn positions(&self) -> Vec<SplitPosition> {
        self.splits
            .iter()
            .map(|(id, _, read)| SplitPosition {
                split: id.clone(),
                offset: *read,
                event_time: None,
            })
            .collect()
    }
}
