//! When a miss fills the cache: always while reads hit often enough to pay for the entries,
//! and only for a sample of misses when they do not (state far larger than the cache, read with
//! little reuse), so that such a workload costs about what the inner store alone costs.

/// Reads per measurement window.
const WINDOW: u32 = 16 * 1024;

/// Fewer hits than this in a window (1 read in 8) switch the cache to sampling: the entries it
/// fills are mostly evicted before they are read again, and a fill, its eviction and a
/// written-back write cost more than the inner store's own write.
const MIN_HITS: u32 = WINDOW / 8;

/// While sampling, one miss in this many fills an entry, so that a hot set that appears is
/// found (its hits bring the cache back to filling every miss).
const SAMPLE: u32 = 16;

/// The hit ratio of the last window and the admission decision it gives.
#[derive(Debug, Default)]
pub(super) struct Admission {
    reads: u32,
    hits: u32,
    misses: u32,
    sampling: bool,
}

impl Admission {
    /// A read found its key in the cache.
    pub(super) fn hit(&mut self) {
        self.hits += 1;
        self.read();
    }

    /// A read missed: whether its answer should fill an entry.
    pub(super) fn miss(&mut self) -> bool {
        let fill = !self.sampling || {
            self.misses = self.misses.wrapping_add(1);
            self.misses.is_multiple_of(SAMPLE)
        };
        self.read();
        fill
    }

    /// Whether misses fill only a sample: then a write of a key the cache does not hold goes to
    /// the inner store directly.
    pub(super) fn sampling(&self) -> bool {
        self.sampling
    }

    fn read(&mut self) {
        self.reads += 1;
        if self.reads == WINDOW {
            self.sampling = self.hits < MIN_HITS;
            self.reads = 0;
            self.hits = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_hits_switch_to_sampling_and_hits_switch_back() {
        let mut a = Admission::default();
        assert!((0..WINDOW).all(|_| a.miss()), "every miss fills at first");
        assert!(a.sampling());
        let filled = (0..WINDOW).filter(|_| a.miss()).count();
        assert_eq!(filled, (WINDOW / SAMPLE) as usize);
        for i in 0..WINDOW {
            if i % 4 == 0 {
                a.hit();
            } else {
                a.miss();
            }
        }
        assert!(!a.sampling(), "a quarter of the reads hit");
        assert!(a.miss());
    }
}
