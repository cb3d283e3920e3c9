//! The shape of an attempt's physical plan, decided from the graph and the configuration
//! alone: each step's parallelism and partitioning, which steps fuse into chains, how subtasks
//! are numbered, and every channel between subtasks. Every process of a job computes the same
//! layout, so a subtask number or a [`ChannelId`] means the same thing in all of them.

use crate::config::JobConfig;
use crate::graph::{Graph, NodeId};
use crate::net::ChannelId;
use crate::runtime::exchange::Partitioning;
use crate::Result;

/// One subtask of the physical plan: a chain's subtask `subtask`, numbered `task` in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubtaskShape {
    /// Its index in the physical plan.
    pub task: usize,
    /// Its index among the subtasks of its chain.
    pub subtask: usize,
}

/// A chain of fused steps and the numbers of its subtasks.
#[derive(Debug, Clone)]
pub(crate) struct ChainLayout {
    /// Its steps, head first.
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) parallelism: usize,
    /// The number of its subtask 0; subtask `s` is `first_task + s`.
    pub(crate) first_task: usize,
}

/// One channel between two subtasks (an edge not fused into a chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelLayout {
    pub(crate) id: ChannelId,
    /// The subtask that sends on it.
    pub(crate) from_task: usize,
    /// The subtask that reads it.
    pub(crate) to_task: usize,
    /// The operator input of the reading step it feeds.
    pub(crate) input: usize,
}

/// The physical plan's shape.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Parallelism per node.
    pub(crate) par: Vec<usize>,
    /// Effective partitioning per edge.
    pub(crate) parts: Vec<Partitioning>,
    /// For each node, the node it is fused behind.
    pub(crate) chained_into: Vec<Option<NodeId>>,
    pub(crate) chains: Vec<ChainLayout>,
    /// For each node, the chain it belongs to.
    chain_of: Vec<usize>,
}

impl Layout {
    /// Lays out `graph` under `cfg` (validating both).
    pub(crate) fn of(graph: &Graph, cfg: &JobConfig) -> Result<Self> {
        let par = super::plan::validate(graph, cfg)?;
        let n = graph.nodes.len();
        // Effective partitioning: forward between different parallelisms becomes rebalance.
        let parts = graph.effective_partitioning(&par);
        // Chaining: `to` joins `from`'s chain when it is `from`'s only consumer, its only input
        // is that forward edge, and both have the same parallelism.
        let out_count = |id: NodeId| graph.edges.iter().filter(|e| e.from == id).count();
        let mut chained_into: Vec<Option<NodeId>> = vec![None; n];
        for (id, chained) in chained_into.iter_mut().enumerate() {
            let ins: Vec<_> = graph.edges.iter().enumerate().filter(|(_, e)| e.to == id).collect();
            if let [(ei, e)] = ins.as_slice() {
                if matches!(parts[*ei], Partitioning::Forward) && out_count(e.from) == 1 && par[e.from] == par[id] {
                    *chained = Some(e.from);
                }
            }
        }
        let next_in_chain = |id: NodeId| (0..n).find(|&c| chained_into[c] == Some(id));
        let mut chains = Vec::new();
        let mut chain_of = vec![usize::MAX; n];
        let mut next_task = 0;
        for head in (0..n).filter(|&id| chained_into[id].is_none()) {
            let mut nodes = vec![head];
            while let Some(next) = next_in_chain(*nodes.last().expect("non-empty")) {
                nodes.push(next);
            }
            for &node in &nodes {
                chain_of[node] = chains.len();
            }
            chains.push(ChainLayout {
                parallelism: par[head],
                first_task: next_task,
                nodes,
            });
            next_task += par[head];
        }
        Ok(Layout {
            par,
            parts,
            chained_into,
            chains,
            chain_of,
        })
    }

    /// The number of subtasks.
    pub(crate) fn task_count(&self) -> usize {
        self.chains.iter().map(|c| c.parallelism).sum()
    }

    /// The subtask that runs subtask `subtask` of `node`.
    pub(crate) fn task_of(&self, node: NodeId, subtask: usize) -> usize {
        self.chains[self.chain_of[node]].first_task + subtask
    }

    /// Every subtask with its index within its chain (for placement).
    pub(crate) fn subtasks(&self) -> Vec<SubtaskShape> {
        self.chains
            .iter()
            .flat_map(|c| {
                (0..c.parallelism).map(move |s| SubtaskShape {
                    task: c.first_task + s,
                    subtask: s,
                })
            })
            .collect()
    }

    /// Every subtask's name (its steps and subtask index), by subtask number.
    pub(crate) fn task_names(&self, graph: &Graph) -> Vec<(usize, String)> {
        self.chains
            .iter()
            .flat_map(|c| {
                let names: Vec<&str> = c.nodes.iter().map(|&n| graph.nodes[n].name.as_str()).collect();
                let joined = names.join(" -> ");
                (0..c.parallelism).map(move |s| (c.first_task + s, format!("{joined}[{s}]")))
            })
            .collect()
    }

    /// The subtasks that read a source (they receive checkpoint triggers).
    pub(crate) fn source_tasks(&self, graph: &Graph) -> Vec<usize> {
        self.chains
            .iter()
            .filter(|c| matches!(graph.nodes[c.nodes[0]].kind, crate::graph::NodeKind::Source(_)))
            .flat_map(|c| c.first_task..c.first_task + c.parallelism)
            .collect()
    }

    /// The steps subtask `task` runs, with their subtask index: what its state is stored under.
    pub(crate) fn steps_of(&self, graph: &Graph, task: usize) -> Vec<(String, usize)> {
        self.chains
            .iter()
            .find(|c| (c.first_task..c.first_task + c.parallelism).contains(&task))
            .map(|c| {
                let s = task - c.first_task;
                c.nodes.iter().map(|&n| (graph.nodes[n].name.clone(), s)).collect()
            })
            .unwrap_or_default()
    }

    /// Every channel between subtasks, edge by edge, upstream subtask by upstream subtask.
    pub(crate) fn channels(&self, graph: &Graph) -> Vec<ChannelLayout> {
        let mut out = Vec::new();
        for (ei, e) in graph.edges.iter().enumerate() {
            if self.chained_into[e.to] == Some(e.from) {
                continue;
            }
            let (pu, pd) = (self.par[e.from], self.par[e.to]);
            for u in 0..pu {
                let downstream: Vec<usize> = if matches!(self.parts[ei], Partitioning::Forward) {
                    vec![u]
                } else {
                    (0..pd).collect()
                };
                for d in downstream {
                    out.push(ChannelLayout {
                        id: ChannelId {
                            edge: ei as u32,
                            from: u as u32,
                            to: d as u32,
                        },
                        from_task: self.task_of(e.from, u),
                        to_task: self.task_of(e.to, d),
                        input: e.input,
                    });
                }
            }
        }
        out
    }
}
