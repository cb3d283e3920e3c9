//! The logical job graph the typed API builds: named nodes (sources and operators) and the
//! edges between them with their partitioning. The runtime turns it into subtasks.

use crate::metrics::OperatorMetrics;
use crate::operator::OperatorCore;
use crate::runtime::exchange::Partitioning;
use crate::runtime::source_driver::{SourceDriver, TypedSourceDriver};
use crate::source::{Source, SplitId, SubtaskInfo};
use crate::{Error, Result};
use std::collections::HashSet;
use std::sync::Arc;

/// Index of a node in the graph.
pub type NodeId = usize;

/// Creates the operator instance of one subtask: `(subtask, parallelism)`.
pub(crate) type OperatorFactory = Arc<dyn Fn(usize, usize) -> Result<Box<dyn OperatorCore>> + Send + Sync>;

/// A source with its record type erased.
pub(crate) trait ErasedSource: Send + Sync {
    fn splits(&self) -> Result<Vec<SplitId>>;
    fn create_driver(
        &self,
        splits: Vec<(SplitId, Option<u64>)>,
        subtask: SubtaskInfo,
        metrics: OperatorMetrics,
        name: &str,
    ) -> Result<Box<dyn SourceDriver>>;
}

impl<S: Source> ErasedSource for S {
    fn splits(&self) -> Result<Vec<SplitId>> {
        Source::splits(self)
    }
    fn create_driver(
        &self,
        splits: Vec<(SplitId, Option<u64>)>,
        subtask: SubtaskInfo,
        metrics: OperatorMetrics,
        name: &str,
    ) -> Result<Box<dyn SourceDriver>> {
        let reader = self.create_reader(splits, subtask)?;
        Ok(Box::new(TypedSourceDriver::<S::Out> {
            reader,
            taken: Vec::new(),
            records: metrics,
            name: name.to_string(),
            subtask: subtask.index,
        }))
    }
}

/// What a node is.
pub(crate) enum NodeKind {
    Source(Arc<dyn ErasedSource>),
    Operator {
        factory: OperatorFactory,
        /// Whether the operator has keyed state (the runtime opens a store for it).
        keyed: bool,
        /// Number of logical inputs (1 or 2).
        inputs: usize,
        /// Whether this is a sink (a node whose output nobody consumes by design).
        sink: bool,
    },
}

/// A named step of the pipeline.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) parallelism: Option<usize>,
    pub(crate) kind: NodeKind,
}

/// A connection from one node's output to an input of another.
pub(crate) struct Edge {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) input: usize,
    pub(crate) partitioning: Partitioning,
}

/// The logical graph, plus configuration errors found while building it (reported by `run`).
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) errors: Vec<Error>,
    names: HashSet<String>,
}

impl Graph {
    /// Registers a step name; a name used twice is a configuration error (state is addressed
    /// by step name, so two steps must never share one).
    pub(crate) fn claim_name(&mut self, name: &str) {
        if name.is_empty() {
            self.errors.push(Error::config("step names must not be empty"));
        } else if name.len() > 200 {
            self.errors
                .push(Error::config(format!("step name too long (max 200 bytes): {name}")));
        } else if !self.names.insert(name.to_string()) {
            self.errors.push(Error::config(format!(
                "step name \"{name}\" is used twice; every step needs a unique, stable name because checkpointed state is addressed by it"
            )));
        }
    }

    /// Adds a node (its name must have been claimed).
    pub(crate) fn add_node(&mut self, name: &str, kind: NodeKind) -> NodeId {
        self.nodes.push(Node {
            name: name.to_string(),
            parallelism: None,
            kind,
        });
        self.nodes.len() - 1
    }

    /// Adds an edge.
    pub(crate) fn add_edge(&mut self, from: NodeId, to: NodeId, input: usize, partitioning: Partitioning) {
        self.edges.push(Edge {
            from,
            to,
            input,
            partitioning,
        });
    }

    /// A readable description of the graph: one line per node with its inputs.
    pub(crate) fn describe(&self, default_parallelism: usize) -> String {
        let mut s = String::new();
        for (id, n) in self.nodes.iter().enumerate() {
            let kind = match &n.kind {
                NodeKind::Source(_) => "source",
                NodeKind::Operator { sink: true, .. } => "sink",
                NodeKind::Operator { keyed: true, .. } => "keyed operator",
                NodeKind::Operator { .. } => "operator",
            };
            let inputs: Vec<String> = self
                .edges
                .iter()
                .filter(|e| e.to == id)
                .map(|e| format!("{} ({:?})", self.nodes[e.from].name, e.partitioning))
                .collect();
            s.push_str(&format!(
                "{} [{kind}, parallelism {}]{}{}\n",
                n.name,
                n.parallelism.unwrap_or(default_parallelism),
                if inputs.is_empty() { "" } else { " <- " },
                inputs.join(", ")
            ));
        }
        s
    }
}
