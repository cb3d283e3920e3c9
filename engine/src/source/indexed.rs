//! Splits of an indexed sequence, shared by the vector and generator sources: split `k` of
//! `stride` holds the indices `k, k + stride, k + 2·stride, …` (strided, the default), or the
//! contiguous range `k·len, …, (k+1)·len - 1` ([`IndexedSplits::contiguous`]); its offset
//! counts how many of them were read, so a position restores to exactly the next index.

use super::{ReadStatus, SplitId, SplitPosition};

/// The splits one reader owns, read in index order across splits (which keeps their event
/// times close together).
#[derive(Debug)]
pub(crate) struct IndexedSplits {
    /// (split id, split number, indices of this split read so far)
    splits: Vec<(SplitId, u64, u64)>,
    stride: u64,
    /// `Some(len)`: split `k` holds the `len` indices from `k·len` on instead of every
    /// `stride`-th.
    contiguous: Option<u64>,
}

impl IndexedSplits {
    pub(crate) fn new(splits: Vec<(SplitId, u64, u64)>, stride: u64) -> Self {
        IndexedSplits {
            splits,
            stride,
            contiguous: None,
        }
    }

    /// Splits that each hold `len` consecutive indices: split `k` holds `k·len .. (k+1)·len`.
    pub(crate) fn contiguous(splits: Vec<(SplitId, u64, u64)>, len: u64) -> Self {
        IndexedSplits {
            splits,
            stride: 1,
            contiguous: Some(len),
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

    /// Hands up to `budget` next indices below `end` (no bound if `None`) to `emit`, lowest
    /// index first: splits that are behind (after a rescale dealt out splits of readers that had
    /// read at different speeds) catch up before the others go on, so a reader's records stay
    /// in index order and a watermark derived from them never runs ahead of a lagging split.
    pub(crate) fn poll(&mut self, budget: usize, end: Option<u64>, mut emit: impl FnMut(u64)) -> ReadStatus {
        let mut emitted = 0;
        while emitted < budget {
            let (stride, contiguous) = (self.stride, self.contiguous);
            let candidates = self.splits.iter_mut().filter_map(|(_, k, read)| {
                let (index, split_end) = match contiguous {
                    None => (*k + *read * stride, end),
                    Some(len) => (
                        *k * len + *read,
                        Some(end.map_or((*k + 1) * len, |e| e.min((*k + 1) * len))),
                    ),
                };
                split_end.is_none_or(|e| index < e).then_some((index, *read, read))
            });
            // Strided splits go lowest index first; contiguous ones evenly (fewest read first,
            // then lowest split), so each split's records keep pace with the others'.
            let next = match contiguous {
                None => candidates.min_by_key(|(i, _, _)| *i),
                Some(_) => candidates.min_by_key(|(i, n, _)| (*n, *i)),
            };
            let Some((i, _, read)) = next else {
                return ReadStatus::Finished;
            };
            emit(i);
            *read += 1;
            emitted += 1;
        }
        if self.splits.is_empty() {
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
                state: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lagging_splits_catch_up_before_the_others_go_on() {
        // Split 0 of 3 read 1 index, split 2 read 4 (a rescale dealt them to one reader).
        let mut splits = IndexedSplits::new(vec![("a".into(), 0, 1), ("c".into(), 2, 4)], 3);
        let mut got = Vec::new();
        assert!(matches!(splits.poll(5, None, |i| got.push(i)), ReadStatus::More));
        assert_eq!(got, vec![3, 6, 9, 12, 14], "index order across splits");
        // Bounded: both run out below 16.
        let mut rest = Vec::new();
        assert!(matches!(
            splits.poll(10, Some(16), |i| rest.push(i)),
            ReadStatus::Finished
        ));
        assert_eq!(rest, vec![15]);
        assert_eq!(splits.read(), 1 + 4 + 5 + 1);
    }

    #[test]
    fn contiguous_splits_read_their_own_ranges_evenly() {
        // 10 indices in splits of 4: [0, 4), [4, 8), [8, 10). Split 1 had read 1 already.
        let mut splits = IndexedSplits::contiguous(vec![("a".into(), 0, 0), ("b".into(), 1, 1), ("c".into(), 2, 0)], 4);
        let mut got = Vec::new();
        assert!(matches!(
            splits.poll(100, Some(10), |i| got.push(i)),
            ReadStatus::Finished
        ));
        assert_eq!(got, vec![0, 8, 1, 5, 9, 2, 6, 3, 7]);
        assert_eq!(splits.read(), 10);
    }
}
