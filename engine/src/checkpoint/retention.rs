//! Which checkpoints and shared files retention deletes: pure decisions, no I/O. The
//! coordinator lists storage, asks these functions, and deletes.
//!
//! # What is never deleted
//! - the newest completed checkpoint, whatever the count and age limits say;
//! - a shared file (`shared/<op>/<subtask>/<id>-<name>`) that a retained checkpoint references;
//! - a shared file whose id prefix is greater than the newest completed checkpoint: a
//!   checkpoint in flight is storing it right now (in a cluster, workers upload their own
//!   files while the master applies retention), and its metadata will reference it;
//! - savepoints: they live in storage of their own, which retention never lists.

use crate::message::CheckpointId;
use std::collections::HashSet;
use std::time::Duration;

/// How many completed checkpoints are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetentionPolicy {
    /// At most this many (at least 1).
    pub(crate) count: usize,
    /// None older than this (measured from its completion), except the newest.
    pub(crate) max_age: Option<Duration>,
}

/// A completed checkpoint as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completed {
    pub(crate) id: CheckpointId,
    /// When it completed, ms since the epoch.
    pub(crate) completed_at_ms: u64,
}

/// The completed checkpoints (any order) that `policy` no longer keeps at `now_ms`: those
/// beyond the `count` newest and those older than `max_age`. The newest is always kept.
pub(crate) fn expired(completed: &[Completed], policy: RetentionPolicy, now_ms: u64) -> Vec<CheckpointId> {
    let mut newest_first: Vec<Completed> = completed.to_vec();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.id));
    let mut out: Vec<CheckpointId> = newest_first
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, c)| {
            let too_many = *i >= policy.count.max(1);
            let too_old = policy
                .max_age
                .is_some_and(|age| now_ms.saturating_sub(c.completed_at_ms) > age.as_millis() as u64);
            too_many || too_old
        })
        .map(|(_, c)| c.id)
        .collect();
    out.sort();
    out
}

/// The checkpoint a shared file was stored for: the id prefix of its name
/// (`shared/<op>/<subtask>/<id>-<name>`), if it has one.
pub(crate) fn shared_file_checkpoint(key: &str) -> Option<CheckpointId> {
    let name = key.rsplit('/').next()?;
    let (id, _) = name.split_once('-')?;
    id.parse().ok()
}

/// The shared files (of `listed`) to delete after checkpoint `newest` completed: those no
/// retained checkpoint references, except those stored for a checkpoint newer than `newest`
/// (one in flight, whose metadata is not published yet).
pub(crate) fn unreferenced_shared(
    listed: Vec<String>,
    referenced: &HashSet<String>,
    newest: CheckpointId,
) -> Vec<String> {
    listed
        .into_iter()
        .filter(|key| !referenced.contains(key))
        .filter(|key| shared_file_checkpoint(key).is_none_or(|id| id <= newest))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, completed_at_ms: u64) -> Completed {
        Completed {
            id: CheckpointId::new(id),
            completed_at_ms,
        }
    }

    fn ids(v: &[u64]) -> Vec<CheckpointId> {
        v.iter().copied().map(CheckpointId::new).collect()
    }

    #[test]
    fn retention_by_count_keeps_the_newest() {
        let all = [c(3, 30), c(1, 10), c(2, 20), c(4, 40)];
        let policy = RetentionPolicy {
            count: 2,
            max_age: None,
        };
        assert_eq!(expired(&all, policy, 1_000), ids(&[1, 2]));
        assert!(expired(&all, RetentionPolicy { count: 9, ..policy }, 1_000).is_empty());
    }

    #[test]
    fn retention_by_age_never_deletes_the_newest() {
        let all = [c(1, 1_000), c(2, 5_000), c(3, 9_000)];
        let policy = RetentionPolicy {
            count: 10,
            max_age: Some(Duration::from_secs(3)),
        };
        // At 10 s: 1 (9 s old) and 2 (5 s old) are too old; 3 (1 s) is kept.
        assert_eq!(expired(&all, policy, 10_000), ids(&[1, 2]));
        // Much later every checkpoint is too old, and the newest is still kept.
        assert_eq!(expired(&all, policy, 1_000_000), ids(&[1, 2]));
        // Exactly at the limit is not older than it.
        assert_eq!(expired(&all, policy, 8_000), ids(&[1]));
        // Both limits apply: count 1 keeps only the newest even if the others are young.
        let both = RetentionPolicy {
            count: 1,
            max_age: Some(Duration::from_secs(3_600)),
        };
        assert_eq!(expired(&all, both, 10_000), ids(&[1, 2]));
    }

    #[test]
    fn shared_files_of_a_checkpoint_in_flight_are_kept() {
        let listed: Vec<String> = [
            "shared/count/0/3-000010.sst", // referenced by retained checkpoint 4
            "shared/count/0/2-000007.sst", // compacted away: no retained checkpoint has it
            "shared/count/0/4-000012.sst", // stored for the newest completed checkpoint, unused
            "shared/count/1/5-000014.sst", // checkpoint 5 is uploading it right now
            "shared/count/1/12-000020.sst",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let referenced: HashSet<String> = ["shared/count/0/3-000010.sst".to_string()].into();
        let deleted = unreferenced_shared(listed, &referenced, CheckpointId::new(4));
        assert_eq!(
            deleted,
            vec![
                "shared/count/0/2-000007.sst".to_string(),
                "shared/count/0/4-000012.sst".to_string()
            ]
        );
    }

    #[test]
    fn the_checkpoint_of_a_shared_file_is_its_id_prefix() {
        assert_eq!(
            shared_file_checkpoint("shared/op-a/3/17-000123.sst"),
            Some(CheckpointId::new(17))
        );
        assert_eq!(shared_file_checkpoint("shared/op/3/000123.sst"), None);
        assert_eq!(shared_file_checkpoint("shared/op/3/x-000123.sst"), None);
    }
}
