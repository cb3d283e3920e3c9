//! The logical job graph the typed API builds: named nodes (sources and operators) and the
//! edges between them with their partitioning. The runtime turns it into subtasks.

pub mod partitioning;
pub(crate) mod side_outputs;

use crate::data::BatchCodec;
use crate::metrics::OperatorMetrics;
use crate::operator::OperatorCore;
use crate::source::driver::{SourceDriver, TypedSourceDriver};
use crate::source::{AssignedSplit, Source, SplitId, SubtaskInfo};
use crate::{Error, Result};
pub use partitioning::Partitioning;
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
        splits: Vec<AssignedSplit>,
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
        splits: Vec<AssignedSplit>,
        subtask: SubtaskInfo,
        metrics: OperatorMetrics,
        name: &str,
    ) -> Result<Box<dyn SourceDriver>> {
        let mut reader = self.create_reader(splits, subtask)?;
        reader.attach_metrics(&metrics);
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

/// Where a step's parallelism comes from when the user did not set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParallelismRule {
    /// The pipeline's default parallelism.
    Default,
    /// Its input's parallelism, so that a forward edge stays forward (a watermark assigner
    /// must see one source subtask's records in their order, as in Flink).
    Input,
    /// Always that of another step: the hidden results and late-record steps of a window step
    /// run at the window step's parallelism, and setting theirs sets the window step's.
    SameAs(NodeId),
}

/// A named step of the pipeline.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) parallelism: Option<usize>,
    pub(crate) rule: ParallelismRule,
    pub(crate) kind: NodeKind,
    /// Reads the node's output batches back from their wire form (set for every node whose
    /// output is a typed stream; sinks have none).
    pub(crate) output: Option<BatchCodec>,
}

/// A connection from one node's output to an input of another.
pub(crate) struct Edge {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) input: usize,
    pub(crate) partitioning: Partitioning,
}

/// How a step's operator state is shared between its subtasks at a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateSharing {
    /// One copy for all subtasks (broadcast state): subtask 0's.
    Replicated,
    /// Every subtask reads every old subtask's state and takes its share (operator lists of
    /// function steps, some of which go to every subtask).
    Redistributed,
}

/// The logical graph, plus configuration errors found while building it (reported by `run`).
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) errors: Vec<Error>,
    names: HashSet<String>,
    /// Steps whose operator state is not each subtask's own at a restore, by step name.
    state_sharing: std::collections::HashMap<String, StateSharing>,
    /// Steps with side outputs, by the hidden step of their main output.
    pub(crate) side_outputs: std::collections::HashMap<NodeId, side_outputs::SideOutputSource>,
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
            rule: ParallelismRule::Default,
            kind,
            output: None,
        });
        self.nodes.len() - 1
    }

    /// Marks how step `id`'s operator state is shared between its subtasks at a restore.
    pub(crate) fn share_operator_state(&mut self, id: NodeId, sharing: StateSharing) {
        let name = self.nodes[id].name.clone();
        self.state_sharing.insert(name, sharing);
    }

    /// How step `name`'s operator state is shared at a restore (`None`: each subtask its own).
    pub(crate) fn operator_state_sharing(&self, name: &str) -> Option<StateSharing> {
        self.state_sharing.get(name).copied()
    }

    /// Records the record type of `id`'s output, so that its batches can cross processes.
    pub(crate) fn set_output_codec(&mut self, id: NodeId, codec: BatchCodec) {
        self.nodes[id].output = Some(codec);
    }

    /// A hash of the graph's shape: step names and kinds, parallelism settings, edges with
    /// their partitioning, and record types. Processes of one job compare it to be sure they
    /// run the same program.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for n in &self.nodes {
            let kind = match &n.kind {
                NodeKind::Source(_) => "source".to_string(),
                NodeKind::Operator {
                    keyed, inputs, sink, ..
                } => format!("operator keyed={keyed} inputs={inputs} sink={sink}"),
            };
            let line = format!(
                "node {} {kind} parallelism={:?} rule={:?} output={}\n",
                n.name,
                n.parallelism,
                n.rule,
                n.output.map_or("-", |c| c.type_name())
            );
            h.update(line.as_bytes());
        }
        for e in &self.edges {
            let part = match e.partitioning {
                Partitioning::Forward => "forward",
                Partitioning::Rebalance => "rebalance",
                Partitioning::Broadcast => "broadcast",
                Partitioning::Hash(_) => "hash",
            };
            h.update(format!("edge {} {} {} {part}\n", e.from, e.to, e.input).as_bytes());
        }
        h.digest()
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

    /// Sets the parallelism of `id`, or of the step it follows (see [`ParallelismRule::SameAs`]).
    pub(crate) fn set_parallelism(&mut self, id: NodeId, n: usize) {
        let mut target = id;
        while let ParallelismRule::SameAs(owner) = self.nodes[target].rule {
            target = owner;
        }
        self.nodes[target].parallelism = Some(n);
    }

    /// The parallelism of every node: its own, else per its [`ParallelismRule`]. Nodes are
    /// added after their inputs, so one pass in order resolves them all.
    pub(crate) fn resolve_parallelism(&self, default_parallelism: usize) -> Vec<usize> {
        let mut par: Vec<usize> = Vec::with_capacity(self.nodes.len());
        for (id, n) in self.nodes.iter().enumerate() {
            let p = match (n.parallelism, n.rule) {
                (_, ParallelismRule::SameAs(owner)) if owner < id => par[owner],
                (Some(p), _) => p,
                (None, ParallelismRule::Input) => {
                    let inputs: Vec<usize> = self
                        .edges
                        .iter()
                        .filter(|e| e.to == id && e.from < id)
                        .map(|e| par[e.from])
                        .collect();
                    match inputs.split_first() {
                        Some((first, rest)) if rest.iter().all(|p| p == first) => *first,
                        _ => default_parallelism,
                    }
                }
                (None, _) => default_parallelism,
            };
            par.push(p);
        }
        par
    }

    /// The partitioning every edge really has: a forward edge between steps of different
    /// parallelism becomes a rebalance.
    pub(crate) fn effective_partitioning(&self, par: &[usize]) -> Vec<Partitioning> {
        self.edges
            .iter()
            .map(|e| match &e.partitioning {
                Partitioning::Forward if par[e.from] != par[e.to] => Partitioning::Rebalance,
                p => p.clone(),
            })
            .collect()
    }

    /// A readable description of the graph: one line per node with its resolved parallelism
    /// and its inputs with the partitioning their edges really have.
    pub(crate) fn describe(&self, default_parallelism: usize) -> String {
        let par = self.resolve_parallelism(default_parallelism);
        let parts = self.effective_partitioning(&par);
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
                .zip(&parts)
                .filter(|(e, _)| e.to == id)
                .map(|(e, p)| format!("{} ({p:?})", self.nodes[e.from].name))
                .collect();
            s.push_str(&format!(
                "{} [{kind}, parallelism {}]{}{}\n",
                n.name,
                par[id],
                if inputs.is_empty() { "" } else { " <- " },
                inputs.join(", ")
            ));
        }
        s
    }
}
