//! The files of sink subtasks that a job at a lower parallelism no longer runs.
//!
//! After a restore at parallelism `p`, sink subtask `j` takes over every subtask `k >= p` with
//! `k mod p == j` (the subtasks whose committables it commits, see
//! [`operator_state_owner`](crate::state::rescale::operator_state_owner)). It finds them by
//! their files in the directory, from any earlier run at a higher parallelism, and treats their
//! files as its own: it holds their locks, applies the restore rules to their committed files,
//! and deletes their in-progress files and the pending files of abandoned checkpoints. Their
//! final files stay: they are output.

use super::{checkpoint_of, file_names, is_in_progress_of, IN_PROGRESS_DIR, PENDING_DIR};
use crate::state::rescale::operator_state_owner;
use crate::Result;
use std::collections::BTreeSet;
use std::path::Path;

/// The subtasks above `parallelism` that subtask `subtask` takes over and that left files in
/// `dir`; `base` is `<job>+<sink>-`, the start of the file names of every subtask of the sink.
pub(super) fn removed_subtasks_of(dir: &Path, base: &str, subtask: usize, parallelism: usize) -> Result<Vec<usize>> {
    let mut found = BTreeSet::new();
    for d in [dir.to_path_buf(), dir.join(PENDING_DIR), dir.join(IN_PROGRESS_DIR)] {
        for name in file_names(&d)? {
            if let Some(k) = subtask_of(base, &name) {
                if k >= parallelism && operator_state_owner(k, parallelism) == subtask {
                    found.insert(k);
                }
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// The subtask of a final, pending or in-progress file `name` of the sink whose names start
/// with `base`; `None` for files of other sinks (whose names may also start with `base`).
fn subtask_of(base: &str, name: &str) -> Option<usize> {
    let (digits, _) = name.strip_prefix(base)?.split_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix = format!("{base}{digits}-");
    let k = digits.parse().ok()?;
    (checkpoint_of(&prefix, name).is_some() || is_in_progress_of(&prefix, name)).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_its_subtask_only_when_it_is_of_this_sink() {
        let base = "job-0000abcd+out-";
        assert_eq!(subtask_of(base, "job-0000abcd+out-3-0000000012.jsonl"), Some(3));
        assert_eq!(subtask_of(base, "job-0000abcd+out-11-p1t2n3.tmp"), Some(11));
        // Sink "out-2", subtask 3.
        assert_eq!(subtask_of(base, "job-0000abcd+out-2-3-0000000012.jsonl"), None);
        assert_eq!(subtask_of(base, "job-0000abcd+out-2-3-p1t2n3.tmp"), None);
        assert_eq!(subtask_of(base, "job-0000abcd+other-3-0000000012.jsonl"), None);
        assert_eq!(subtask_of(base, "job-0000abcd+out--0000000012.jsonl"), None);
    }

    #[test]
    fn subtasks_above_the_parallelism_go_to_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let base = "j+out-";
        std::fs::create_dir_all(dir.path().join(PENDING_DIR)).unwrap();
        std::fs::create_dir_all(dir.path().join(IN_PROGRESS_DIR)).unwrap();
        for (d, name) in [
            ("", "j+out-0-0000000001.jsonl"),
            ("", "j+out-2-0000000001.jsonl"),
            (PENDING_DIR, "j+out-3-0000000002.jsonl"),
            (IN_PROGRESS_DIR, "j+out-5-tok.tmp"),
            ("", "j+out-2-7-0000000001.jsonl"),
        ] {
            std::fs::write(dir.path().join(d).join(name), b"").unwrap();
        }
        assert_eq!(removed_subtasks_of(dir.path(), base, 0, 2).unwrap(), vec![2]);
        assert_eq!(removed_subtasks_of(dir.path(), base, 1, 2).unwrap(), vec![3, 5]);
        assert_eq!(removed_subtasks_of(dir.path(), base, 0, 3).unwrap(), vec![3]);
        assert!(removed_subtasks_of(dir.path(), base, 0, 6).unwrap().is_empty());
    }
}
