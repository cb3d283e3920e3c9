//! Which worker runs which subtask: a pure decision on the job's shape and the workers
//! available, taken by the master before every attempt.
//!
//! Slot sharing, as in Flink: every worker offers slots, and slot `k` runs subtask `k` of every
//! step (one slice of the whole pipeline), so a step's subtasks spread evenly over the workers
//! and subtask `k` of connected steps share a process. Slots are numbered across workers in
//! turn (worker 0 slot 0, worker 1 slot 0, ..., worker 0 slot 1, ...), so a job with fewer
//! slices than slots still uses every worker. A chain of fused steps is one subtask and never
//! split.

use crate::net::WorkerId;
pub use crate::runtime::layout::SubtaskShape;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A worker that can take subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSlots {
    /// The worker.
    pub worker: WorkerId,
    /// How many pipeline slices it runs.
    pub slots: u32,
}

/// Where every subtask of an attempt runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The worker of each subtask, indexed by its number in the physical plan.
    pub worker_of_task: Vec<WorkerId>,
}

impl Assignment {
    /// The subtasks `worker` runs.
    pub fn tasks_of(&self, worker: WorkerId) -> Vec<usize> {
        (0..self.worker_of_task.len())
            .filter(|&t| self.worker_of_task[t] == worker)
            .collect()
    }

    /// The workers that run at least one subtask.
    pub fn workers(&self) -> Vec<WorkerId> {
        let mut w = self.worker_of_task.clone();
        w.sort_unstable();
        w.dedup();
        w
    }
}

/// Assigns `subtasks` to `workers` by slot sharing.
///
/// # Errors
/// `Config` when no worker is available, or when the widest step has more subtasks than the
/// workers have slots (naming both numbers).
pub fn assign(subtasks: &[SubtaskShape], workers: &[WorkerSlots]) -> Result<Assignment> {
    let mut by_id: BTreeMap<WorkerId, u32> = BTreeMap::new();
    for w in workers {
        if by_id.insert(w.worker, w.slots).is_some() {
            return Err(Error::internal(format!("worker {} is listed twice", w.worker)));
        }
    }
    let mut slots: Vec<WorkerId> = Vec::new();
    let most = by_id.values().copied().max().unwrap_or(0);
    for round in 0..most {
        slots.extend(by_id.iter().filter(|(_, &s)| s > round).map(|(&w, _)| w));
    }
    let needed = subtasks.iter().map(|s| s.subtask + 1).max().unwrap_or(0);
    if needed > slots.len() {
        return Err(Error::config(format!(
            "the job needs {needed} slots (its widest step has {needed} subtasks) but the {} available worker(s) offer {} slot(s) in all: add workers or slots (WEIR_SLOTS), or lower the parallelism",
            by_id.len(),
            slots.len()
        )));
    }
    let count = subtasks.iter().map(|s| s.task + 1).max().unwrap_or(0);
    let mut worker_of_task = vec![None; count];
    for s in subtasks {
        worker_of_task[s.task] = Some(slots[s.subtask]);
    }
    let worker_of_task = worker_of_task
        .into_iter()
        .enumerate()
        .map(|(t, w)| w.ok_or_else(|| Error::internal(format!("subtask number {t} is missing from the plan"))))
        .collect::<Result<_>>()?;
    Ok(Assignment { worker_of_task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use proptest::prelude::*;

    /// Steps of the given parallelisms, their subtasks numbered step by step.
    fn shape(parallelisms: &[usize]) -> Vec<SubtaskShape> {
        let mut out = Vec::new();
        for &p in parallelisms {
            for subtask in 0..p {
                out.push(SubtaskShape {
                    task: out.len(),
                    subtask,
                });
            }
        }
        out
    }

    fn workers(slots: &[u32]) -> Vec<WorkerSlots> {
        slots
            .iter()
            .enumerate()
            .map(|(i, &slots)| WorkerSlots {
                worker: i as WorkerId,
                slots,
            })
            .collect()
    }

    #[test]
    fn subtask_k_of_every_step_shares_a_worker_and_steps_spread_over_all_workers() {
        let a = assign(&shape(&[3, 3, 3]), &workers(&[2, 2, 2])).unwrap();
        assert_eq!(a.worker_of_task, vec![0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert_eq!(a.tasks_of(1), vec![1, 4, 7]);
        assert_eq!(a.workers(), vec![0, 1, 2]);
    }

    #[test]
    fn a_narrow_step_still_uses_different_workers() {
        let a = assign(&shape(&[2, 4]), &workers(&[2, 2, 2])).unwrap();
        assert_eq!(a.worker_of_task, vec![0, 1, 0, 1, 2, 0]);
    }

    #[test]
    fn workers_with_fewer_slots_drop_out_of_later_rounds() {
        let a = assign(&shape(&[4]), &workers(&[1, 3])).unwrap();
        assert_eq!(a.worker_of_task, vec![0, 1, 1, 1]);
    }

    #[test]
    fn too_few_slots_is_a_configuration_error_naming_both_numbers() {
        let e = assign(&shape(&[5]), &workers(&[2, 2])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("needs 5 slots"), "{e}");
        assert!(e.to_string().contains("offer 4 slot"), "{e}");
        let e = assign(&shape(&[1]), &[]).unwrap_err();
        assert!(e.to_string().contains("0 available worker"), "{e}");
    }

    proptest! {
        #[test]
        fn every_subtask_gets_a_worker_with_a_free_slot(
            pars in proptest::collection::vec(1usize..6, 1..5),
            slots in proptest::collection::vec(1u32..4, 1..5),
        ) {
            let subtasks = shape(&pars);
            let ws = workers(&slots);
            match assign(&subtasks, &ws) {
                Ok(a) => {
                    prop_assert_eq!(a.worker_of_task.len(), subtasks.len());
                    // No worker runs more subtasks of one step than it has slots, and
                    // subtask k of every step is on the same worker.
                    let mut slice_worker: BTreeMap<usize, WorkerId> = BTreeMap::new();
                    for s in &subtasks {
                        let w = a.worker_of_task[s.task];
                        prop_assert_eq!(*slice_worker.entry(s.subtask).or_insert(w), w);
                    }
                    for w in &ws {
                        let slices = slice_worker.values().filter(|&&x| x == w.worker).count();
                        prop_assert!(slices as u32 <= w.slots);
                    }
                    // Spread: per step, workers' subtask counts differ by at most one while
                    // every worker has slots left (equal slots).
                    if slots.iter().all(|&s| s == slots[0]) {
                        let mut start = 0;
                        for &p in &pars {
                            let mut counts = vec![0usize; ws.len()];
                            for t in start..start + p {
                                counts[a.worker_of_task[t] as usize] += 1;
                            }
                            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                            prop_assert!(hi - lo <= 1, "step of {} subtasks: {:?}", p, counts);
                            start += p;
                        }
                    }
                }
                Err(e) => {
                    let total: u32 = slots.iter().sum();
                    prop_assert!(*pars.iter().max().unwrap() > total as usize, "{}", e);
                }
            }
        }
    }
}
