//! Turns the logical graph into subtasks: resolves parallelism, fuses forward-connected steps
//! into chains, creates the channels of every exchange and opens keyed state.

use crate::checkpoint::reassign::OperatorStateRule;
use crate::config::JobConfig;
use crate::graph::{Graph, NodeKind, StateSharing};
use crate::message::Message;
use crate::metrics::{OperatorMetrics, TaskClock};
use crate::net::inbound::InboundEnd;
use crate::net::{ChannelId, WorkerId};
use crate::operator::{OperatorContext, StoreOpener};
use crate::runtime::attempt::JobShared;
use crate::runtime::chain::Chain;
use crate::runtime::control::Control;
use crate::runtime::events::TaskEvent;
use crate::runtime::exchange::{OutputEdge, Outputs};
use crate::runtime::gate::{GateInput, InputGate};
use crate::runtime::layout::Layout;
use crate::runtime::task::{Head, Task};
use crate::source::{AssignedSplit, SubtaskInfo};
use crate::state::{KeyGroupRange, StoreScope};
use crate::{Error, Result, ResultExt};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Channels into each subtask, by subtask number.
type InputChannels = HashMap<usize, Vec<GateInput>>;

pub(crate) use crate::checkpoint::restore::RestoreInput;
pub(crate) use crate::runtime::report::MetricsEntry;

/// The subtasks of a job, ready to run.
pub(crate) struct PhysicalPlan {
    pub(crate) tasks: Vec<Task>,
    /// The control channel of every subtask built, by subtask number.
    pub(crate) controls: BTreeMap<usize, Sender<Control>>,
    pub(crate) source_tasks: Vec<usize>,
    pub(crate) metrics: Vec<MetricsEntry>,
    /// Channels to subtasks on other workers (none in-process).
    pub(crate) outbound: OutboundQueues,
}

/// How step `node`'s operator state is handed out at a restore.
pub(crate) fn operator_state_rule(graph: &Graph, node: &crate::graph::Node) -> OperatorStateRule {
    if matches!(node.kind, NodeKind::Operator { sink: true, .. }) {
        return OperatorStateRule::Sink;
    }
    match graph.operator_state_sharing(&node.name) {
        Some(StateSharing::Replicated) => OperatorStateRule::Replicated,
        Some(StateSharing::Redistributed) => OperatorStateRule::Redistributed,
        None => OperatorStateRule::Combined,
    }
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

/// Where the subtasks of an attempt run, seen from the process that builds its share.
pub(crate) struct Placement {
    /// This process.
    pub(crate) me: WorkerId,
    /// The worker of every subtask.
    pub(crate) worker_of_task: Vec<WorkerId>,
    /// The ends of the channels that come from other workers, as the data plane deployed them.
    pub(crate) inbound: HashMap<ChannelId, InboundEnd>,
}

/// The channels of a process's subtasks that lead to other workers: by receiving worker, each
/// channel with the queue its upstream subtask sends into.
pub(crate) type OutboundQueues = BTreeMap<WorkerId, Vec<(ChannelId, Receiver<Message>)>>;

/// Builds every subtask of the job, or with a `placement` those that run in this process.
pub(crate) fn build(
    graph: &Graph,
    cfg: &JobConfig,
    job: Arc<JobShared>,
    events: Sender<TaskEvent>,
    restore: &RestoreInput,
    placement: Option<Placement>,
) -> Result<PhysicalPlan> {
    let layout = Layout::of(graph, cfg)?;
    let (par, parts) = (&layout.par, &layout.parts);
    let (me, worker_of_task, mut inbound) = match placement {
        Some(p) => (Some(p.me), p.worker_of_task, p.inbound),
        None => (None, Vec::new(), HashMap::new()),
    };
    let here = |task: usize| me.is_none() || worker_of_task.get(task).copied() == me;

    // Channels for every edge that is not fused into a chain.
    // senders[edge][upstream subtask] -> senders indexed by downstream subtask (or one, forward)
    let mut senders: HashMap<usize, Vec<Vec<Sender<Message>>>> = HashMap::new();
    let mut receivers: InputChannels = HashMap::new();
    let mut outbound: OutboundQueues = BTreeMap::new();
    for c in layout.channels(graph) {
        let edge = c.id.edge as usize;
        match (here(c.from_task), here(c.to_task)) {
            (true, to_here) => {
                let (tx, rx) = bounded(cfg.channel_capacity);
                let per_up = senders
                    .entry(edge)
                    .or_insert_with(|| vec![Vec::new(); par[graph.edges[edge].from]]);
                per_up[c.id.from as usize].push(tx);
                if to_here {
                    receivers.entry(c.to_task).or_default().push(GateInput {
                        rx,
                        input: c.input,
                        credit: None,
                    });
                } else {
                    outbound.entry(worker_of_task[c.to_task]).or_default().push((c.id, rx));
                }
            }
            (false, true) => {
                let end = inbound
                    .remove(&c.id)
                    .ok_or_else(|| Error::internal(format!("channel {} from another worker was not deployed", c.id)))?;
                receivers.entry(c.to_task).or_default().push(GateInput {
                    rx: end.rx,
                    input: c.input,
                    credit: Some(end.credit),
                });
            }
            (false, false) => {}
        }
    }

    let mut plan = PhysicalPlan {
        tasks: Vec::new(),
        controls: BTreeMap::new(),
        source_tasks: Vec::new(),
        metrics: Vec::new(),
        outbound: BTreeMap::new(),
    };
    let backend_checked = std::cell::Cell::new(false);
    for chain in &layout.chains {
        let chain_nodes = &chain.nodes;
        let head = chain_nodes[0];
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
            let task_id = chain.first_task + s;
            if !here(task_id) {
                continue;
            }
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
            let mut ops = Vec::new();
            let mut head_kind = None;
            let mut source_metrics = None;
            let mut tail_metrics = OperatorMetrics::default();
            for &node_id in chain_nodes {
                let node = &graph.nodes[node_id];
                let metrics = OperatorMetrics::new(&cfg.name, &node.name, s);
                tail_metrics = metrics.clone();
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
                        source_metrics = Some(metrics.clone());
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
                                restore: restore.keyed_restore(&node.name, s, p, cfg.max_parallelism),
                            })
                        } else {
                            None
                        };
                        let op = factory(s, p).with_context(|| format!("creating operator {}[{s}]", node.name))?;
                        let rule = operator_state_rule(graph, node);
                        let operator_state = restore.operator_state_for(&node.name, s, p, rule);
                        let ctx = OperatorContext {
                            job: cfg.name.clone(),
                            operator: node.name.clone(),
                            subtask: s,
                            parallelism: p,
                            max_parallelism: cfg.max_parallelism,
                            attempt: job.attempt(),
                            key_groups,
                            store: None,
                            store_opener,
                            metrics: metrics.clone(),
                            restored_state: operator_state.own,
                            rescaled_state: operator_state.rescaled,
                            // A step the checkpoint did not have restores nothing.
                            restored_checkpoint: restore
                                .checkpoint
                                .filter(|_| restore.parallelism.contains_key(&node.name)),
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
                    step: node_id,
                    subtask: s,
                    operator: node.name.clone(),
                    is_source: matches!(node.kind, NodeKind::Source(_)),
                    is_sink: matches!(node.kind, NodeKind::Operator { sink: true, .. }),
                    metrics,
                });
            }
            let head_kind = match head_kind {
                Some(h) => h,
                None => Head::Gate(InputGate::with_inputs(receivers.remove(&task_id).unwrap_or_default())),
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
            // A chain's time is reported under its first step.
            let clock = TaskClock::new(&cfg.name, names[0], s);
            plan.tasks.push(Task {
                id: task_id,
                name: format!("{}[{s}]", names.join(" -> ")),
                head: head_kind,
                chain: Chain::new(
                    ops,
                    Outputs {
                        edges,
                        job: job.clone(),
                        metrics: tail_metrics,
                        backpressured: clock.backpressure_counter(),
                    },
                )
                .with_source_metrics(source_metrics),
                control: ctl_rx,
                events: events.clone(),
                job: job.clone(),
                batch_size: cfg.batch_size,
                clock,
            });
            plan.controls.insert(task_id, ctl_tx);
        }
    }
    plan.outbound = outbound;
    Ok(plan)
}
