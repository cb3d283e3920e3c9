//! The label sets of Weir's metrics: `job`, `step`, `subtask`, and `name`, `topic`,
//! `partition` where they apply.

use prometheus_client::encoding::EncodeLabelSet;

/// The label of job-wide metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct JobLabels {
    pub(crate) job: String,
}

/// The labels of one subtask of one step.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SubtaskLabels {
    pub(crate) job: String,
    pub(crate) step: String,
    pub(crate) subtask: u32,
}

/// The labels of a named counter of one subtask (`ctx.count(name, n)`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CounterLabels {
    pub(crate) job: String,
    pub(crate) step: String,
    pub(crate) subtask: u32,
    pub(crate) name: String,
}

/// The labels of one partition a source subtask reads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PartitionLabels {
    pub(crate) job: String,
    pub(crate) step: String,
    pub(crate) subtask: u32,
    pub(crate) topic: String,
    pub(crate) partition: i32,
}
