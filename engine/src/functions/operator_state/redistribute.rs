//! Which elements of a list each new subtask restores: the decision of the
//! [module docs](super), separated from decoding. Pure.

use super::descriptor::ListDistribution;

/// One old subtask's copy of a list.
#[derive(Debug, Clone, Copy)]
pub(super) struct OldList<'a, E> {
    /// The old subtask's index.
    pub(super) subtask: usize,
    /// The step's parallelism when it was written (0: not recorded).
    pub(super) parallelism: usize,
    /// Its elements, in order.
    pub(super) elements: &'a [E],
}

/// The elements new subtask `subtask` of `parallelism` restores from the lists of the old
/// subtasks `old` (any order; each old subtask at most once).
///
/// A split list restores each subtask's own elements when every old copy was written at
/// `parallelism`; otherwise the elements of all old subtasks, in old subtask order, are cut
/// into `parallelism` contiguous shares whose sizes differ by at most one. A union list
/// restores every element everywhere.
pub(super) fn share<'a, E>(
    distribution: ListDistribution,
    old: &[OldList<'a, E>],
    subtask: usize,
    parallelism: usize,
) -> Vec<&'a E> {
    let mut old: Vec<&OldList<'a, E>> = old.iter().collect();
    old.sort_by_key(|l| l.subtask);
    let all = || old.iter().flat_map(|l| l.elements.iter());
    match distribution {
        ListDistribution::Union => all().collect(),
        ListDistribution::Split if old.iter().all(|l| l.parallelism == parallelism) => old
            .iter()
            .filter(|l| l.subtask == subtask)
            .flat_map(|l| l.elements.iter())
            .collect(),
        ListDistribution::Split => {
            let total = all().count();
            let (from, to) = (total * subtask / parallelism, total * (subtask + 1) / parallelism);
            all().skip(from).take(to - from).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn old(lists: &[Vec<u32>], parallelism: usize) -> Vec<OldList<'_, u32>> {
        lists
            .iter()
            .enumerate()
            .map(|(subtask, elements)| OldList {
                subtask,
                parallelism,
                elements,
            })
            .collect()
    }

    fn shares(d: ListDistribution, lists: &[Vec<u32>], old_p: usize, new_p: usize) -> Vec<Vec<u32>> {
        let old = old(lists, old_p);
        (0..new_p)
            .map(|s| share(d, &old, s, new_p).into_iter().copied().collect())
            .collect()
    }

    #[test]
    fn a_split_list_stays_with_its_subtask_at_the_same_parallelism() {
        let lists = vec![vec![1, 2, 3, 4], vec![], vec![9]];
        assert_eq!(shares(ListDistribution::Split, &lists, 3, 3), lists);
    }

    #[test]
    fn a_split_list_is_cut_into_even_contiguous_shares_at_another_parallelism() {
        let lists = vec![vec![1, 2, 3, 4], vec![], vec![9]];
        assert_eq!(
            shares(ListDistribution::Split, &lists, 3, 2),
            vec![vec![1, 2], vec![3, 4, 9]]
        );
        assert_eq!(
            shares(ListDistribution::Split, &lists, 3, 4),
            vec![vec![1], vec![2], vec![3], vec![4, 9]]
        );
    }

    #[test]
    fn a_union_list_goes_whole_to_every_subtask() {
        let lists = vec![vec![5], vec![6, 7]];
        for p in [1, 2, 3] {
            assert_eq!(shares(ListDistribution::Union, &lists, 2, p), vec![vec![5, 6, 7]; p]);
        }
    }

    #[test]
    fn lists_written_before_parallelism_was_recorded_are_split_evenly() {
        let lists = vec![vec![1, 2], vec![3, 4]];
        assert_eq!(
            shares(ListDistribution::Split, &lists, 0, 2),
            vec![vec![1, 2], vec![3, 4]]
        );
        assert_eq!(shares(ListDistribution::Split, &lists, 0, 1), vec![vec![1, 2, 3, 4]]);
    }

    proptest! {
        /// Every element of a split list reaches exactly one new subtask, in its order, and the
        /// shares differ by at most one element.
        #[test]
        fn split_shares_partition_the_elements(
            sizes in proptest::collection::vec(0usize..20, 1..6),
            new_p in 1usize..8,
        ) {
            let mut next = 0u32;
            let lists: Vec<Vec<u32>> = sizes
                .iter()
                .map(|&n| (0..n).map(|_| { next += 1; next }).collect())
                .collect();
            let old_p = lists.len();
            let got = shares(ListDistribution::Split, &lists, old_p, new_p);
            let flat: Vec<u32> = got.iter().flatten().copied().collect();
            prop_assert_eq!(flat, (1..=next).collect::<Vec<_>>());
            if old_p != new_p {
                let lens: Vec<usize> = got.iter().map(Vec::len).collect();
                prop_assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{:?}", lens);
            }
        }
    }
}
