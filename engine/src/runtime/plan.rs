//! Turns the logical graph into subtasks: resolves parallelism, fuses forward-connected steps
//! into chains, creates the channels of every exchange and opens keyed state.

use crate::config::JobConfig;
use crate::graph::{Graph, NodeId, NodeKind};
use crate::message::Message;
use crate::metrics::OperatorMetrics;
use crate::operator::{OperatorContext, StoreOpener};
use crate::runtime::attempt::JobShared;
use crate::runtime::chain::Chain;
use crate::runtime::control::Control;
use crate::runtime::events::TaskEvent;
use crate::runtime::exchange::{OutputEdge, Outputs, Partitioning};
use crate::runtime::gate::InputGate;
use crate::runtime::task::{Head, Task};
use crate::source::{AssignedSplit, SubtaskInfo};
use crate::state::{KeyGroupRange, StoreScope};
use crate::{Error, Result, ResultExt};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::sync::Arc;

/// Channels into one subtask: (receiver, logical input), by (node, subtask).
type InputChannels = HashMap<(NodeId, usize), Vec<(Receiver<Message>, usize)>>;

pub(crate) use crate::checkpoint::restore::{RestoreInput, SubtaskKey};
pub(crate) use crate::runtime::report::MetricsEntry;

/// The subtasks of a job, ready to run.
pub(crate) struct PhysicalPlan {
    pub(crate) tasks: Vec<Task>,
    pub(crate) controls: Vec<Sender<Control>>,
    pub(crate) source_tasks: Vec<usize>,
    pub(crate) metrics: Vec<MetricsEntry>,
}

/// The parallelism of every step, by name.
pub(crate) fn parallelism_by_name(graph: &Graph, cfg: &JobConfig) -> Result<HashMap<String, usize>> {
    let par = validate(graph, cfg)?;
    Ok(graph.nodes.iter().zip(par).map(|(n, p)| (n.name.clone(), p)).collect())
}

/// Checks the graph's shape and resolves each node's parallelism.
pub(crate) fn validate(graph: &Graph, cfg: &JobConfig) -> Result<Vec<usize>> {
    cfg.validate()?;
    if let Some(e) = graph.errors.first() {
        return Err(Error::config(e.to_string()));
    }
    if !graph.nodes.iter().any(|n| matches!(n.kind, NodeKind::Source(_))) {
        return Err(Error::config("the pipeline has no source"));
    }
    if !graph
        .nodes
        .iter()
        .any(|n| matches!(n.kind, NodeKind::Operator { sink: true, .. }))
    {
        return Err(Error::config(
            "the pipeline has no sink: add one with .sink(name, sink)",
        ));
    }
    let par = graph.resolve_parallelism(cfg.parallelism);
    for (n, &p) in graph.nodes.iter().zip(&par) {
        if p == 0 {
            return Err(Error::config(format!(
                "step \"{}\": parallelism must be at least 1, got 0",
                n.name
            )));
        }
        if p > cfg.max_parallelism {
            return Err(Error::config(format!(
                "step \"{}\": parallelism {p} exceeds max parallelism {} (the number of key groups)",
                n.name, cfg.max_parallelism
            )));
        }
    }
    for (id, n) in graph.nodes.iter().enumerate() {
        if let NodeKind::Operator { inputs, .. } = n.kind {
            for i in 0..inputs {
                if !graph.edges.iter().any(|e| e.to == id && e.input == i) {
                    return Err(Error::internal(format!("step \"{}\" has no input {i}", n.name)));
                }
            }
        }
    }
    Ok(par)
}

/// Builds every subtask of the job.
pub(crate) fn build(
    graph: &Graph,
    cfg: &JobConfig,
    job: Arc<JobShared>,
    events: Sender<TaskEvent>,
    restore: &RestoreInput,
) -> Result<PhysicalPlan> {
    let par = validate(graph, cfg)?;
    let n = graph.nodes.len();

    // Effective partitioning: forward between different parallelisms becomes rebalance.
    let parts = graph.effective_partitioning(&par);

    // Chaining: `to` joins `from`'s chain when it is `from`'s only consumer, its only input
    // is that forward edge, and both have the same parallelism.
    let out_count = |id: NodeId| graph.edges.iter().filter(|e| e.from == id).count();
    let in_edges = |id: NodeId| graph.edges.iter().enumerate().filter(move |(_, e)| e.to == id);
    let mut chained_into: Vec<Option<NodeId>> = vec![None; n];
    for (id, chained) in chained_into.iter_mut().enumerate() {
        let ins: Vec<_> = in_edges(id).collect();
        if let [(ei, e)] = ins.as_slice() {
            if matches!(parts[*ei], Partitioning::Forward) && out_count(e.from) == 1 && par[e.from] == par[id] {
                *chained = Some(e.from);
            }
        }
    }
    let next_in_chain = |id: NodeId| (0..n).find(|&c| chained_into[c] == Some(id));

    // Channels for every edge that is not fused into a chain.
    // senders[edge][upstream subtask] -> senders indexed by downstream subtask (or one, forward)
    let mut senders: HashMap<usize, Vec<Vec<Sender<Message>>>> = HashMap::new();
    let mut receivers: InputChannels = HashMap::new();
    for (ei, e) in graph.edges.iter().enumerate() {
        if chained_into[e.to] == Some(e.from) {
            continue;
        }
        let (pu, pd) = (par[e.from], par[e.to]);
        let mut per_up: Vec<Vec<Sender<_>>> = vec![Vec::new(); pu];
        if matches!(parts[ei], Partitioning::Forward) {
            for (u, s) in per_up.iter_mut().enumerate() {
                let (tx, rx) = bounded(cfg.channel_capacity);
                s.push(tx);
                receivers.entry((e.to, u)).or_default().push((rx, e.input));
            }
        } else {
            for s in per_up.iter_mut() {
                for d in 0..pd {
                    let (tx, rx) = bounded(cfg.channel_capacity);
                    s.push(tx);
                    receivers.entry((e.to, d)).or_default().push((rx, e.input));
                }
            }
        }
        senders.insert(ei, per_up);
    }

    let mut plan = PhysicalPlan {
        tasks: Vec::new(),
        controls: Vec::new(),
        source_tasks: Vec::new(),
        metrics: Vec::new(),
    };
    let backend_checked = std::cell::Cell::new(false);
    for head in (0..n).filter(|&id| chained_into[id].is_none()) {
        let mut chain_nodes = vec![head];
        while let Some(next) = next_in_chain(*chain_nodes.last().expect("non-empty")) {
            chain_nodes.push(next);
        }
        let tail = *chain_nodes.last().expect("non-empty");
        let p = par[head];
        let split_assignment = match &graph.nodes[head].kind {
            NodeKind::Source(src) => Some(
                src.splits()
                    .with_context(|| format!("listing the splits of source \"{}\"", graph.nodes[head].name))?,
            ),
            _ => None,
        };
        for s in 0..p {
            let task_id = plan.tasks.len();
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
            let mut ops = Vec::new();
            let mut head_kind = None;
            for &node_id in &chain_nodes {
                let node = &graph.nodes[node_id];
                let metrics = OperatorMetrics::default();
                match &node.kind {
                    NodeKind::Source(src) => {
                        let splits = split_assignment.as_ref().expect("source splits listed");
                        let mine: Vec<AssignedSplit> = splits
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| i % p == s)
                            .map(
                                |(_, id)| match restore.positions.get(&node.name).and_then(|p| p.get(id)) {
                                    Some(position) => AssignedSplit::restored(position.clone()),
                                    None => AssignedSplit::fresh(id.clone()),
                                },
                            )
                            .collect();
                        let driver = src
                            .create_driver(
                                mine,
                                SubtaskInfo {
                                    index: s,
                                    parallelism: p,
                                    restored: restore.positions.contains_key(&node.name),
                                },
                                metrics.clone(),
                                &node.name,
                            )
                            .with_context(|| format!("creating source reader {}[{s}]", node.name))?;
                        head_kind = Some(Head::Source(driver));
                        plan.source_tasks.push(task_id);
                    }
                    NodeKind::Operator { factory, keyed, .. } => {
                        let key_groups = KeyGroupRange::for_subtask(s, p, cfg.max_parallelism);
                        // Stores are opened by each subtask's own thread, in parallel.
                        let store_opener = if *keyed {
                            if !backend_checked.get() {
                                cfg.state_backend.validate()?;
                                backend_checked.set(true);
                            }
                            Some(StoreOpener {
                                backend: cfg.state_backend.clone(),
                                scope: StoreScope {
                                    job: cfg.name.clone(),
                                    operator: node.name.clone(),
                                    subtask: s,
                                    key_groups,
                                },
                                restore_from: restore.keyed.get(&SubtaskKey::new(&node.name, s)).cloned(),
                            })
                        } else {
                            None
                        };
                        let op = factory(s, p).with_context(|| format!("creating operator {}[{s}]", node.name))?;
                        let ctx = OperatorContext {
                            job: cfg.name.clone(),
                            operator: node.name.clone(),
                            subtask: s,
                            parallelism: p,
                            max_parallelism: cfg.max_parallelism,
                            key_groups,
                            store: None,
                            store_opener,
                            metrics: metrics.clone(),
                            restored_state: restore.operator_state.get(&SubtaskKey::new(&node.name, s)).cloned(),
                            checkpoint_timing: cfg.checkpoint.as_ref().map(|c| c.timing()),
                            committed_output: cfg
                                .checkpoint
                                .as_ref()
                                .map(|c| {
                                    crate::sink::CommittedOutputCheck::new(
                                        c.restore,
                                        c.fallback_to_older_checkpoint_reproducing_output,
                                        c.storage.describe(),
                                        restore.restore_warnings.clone(),
                                    )
                                })
                                .unwrap_or_default(),
                            cancellation: job.cancellation(),
                            fail_points: job.fail_points().clone(),
                        };
                        ops.push((op, ctx));
                    }
                }
                plan.metrics.push(MetricsEntry {
                    operator: node.name.clone(),
                    is_source: matches!(node.kind, NodeKind::Source(_)),
                    is_sink: matches!(node.kind, NodeKind::Operator { sink: true, .. }),
                    metrics,
                });
            }
            let head_kind = match head_kind {
                Some(h) => h,
                None => Head::Gate(InputGate::new(receivers.remove(&(head, s)).unwrap_or_default())),
            };
            let edges = graph
                .edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.from == tail)
                .map(|(ei, _)| OutputEdge {
                    partitioning: parts[ei].clone(),
                    senders: senders
                        .get_mut(&ei)
                        .map(|v| std::mem::take(&mut v[s]))
                        .unwrap_or_default(),
                    next: s,
                    max_parallelism: cfg.max_parallelism,
                })
                .collect();
            let names: Vec<&str> = chain_nodes.iter().map(|&i| graph.nodes[i].name.as_str()).collect();
            plan.tasks.push(Task {
                id: task_id,
                name: format!("{}[{s}]", names.join(" -> ")),
                head: head_kind,
                chain: Chain::new(
                    ops,
                    Outputs {
                        edges,
                        job: job.clone(),
                    },
                ),
                control: ctl_rx,
                events: events.clone(),
                job: job.clone(),
                batch_size: cfg.batch_size,
            });
            plan.controls.push(ctl_tx);
        }
    }
    Ok(plan)
}
