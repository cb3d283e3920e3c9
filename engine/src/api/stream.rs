//! `Stream<T>`: a typed stream of records and the steps that transform it.

use super::connected::ConnectedStreams;
use super::keyed::KeyedStream;
use crate::data::{Data, Key};
use crate::graph::Partitioning;
use crate::graph::{Graph, NodeId, NodeKind, OperatorFactory, ParallelismRule};
use crate::operator::sink::SinkOp;
use crate::operator::stateless::{FilterOp, FlatFn, FlatMapOp, MapOp};
use crate::operator::watermarks::WatermarkOp;
use crate::operator::OperatorCore;
use crate::sink::Sink;
use crate::time::WatermarkStrategy;
use crate::Error;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

/// A stream of records of type `T`: the output of one step, or of several after `union`.
pub struct Stream<T> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) partitioning: Partitioning,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            graph: self.graph.clone(),
            nodes: self.nodes.clone(),
            partitioning: self.partitioning.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("nodes", &self.nodes).finish()
    }
}

/// Adds an operator node fed by `inputs` (stream nodes with their partitioning, per logical input).
pub(crate) fn add_operator(
    graph: &Rc<RefCell<Graph>>,
    name: &str,
    inputs: &[(&[NodeId], Partitioning)],
    keyed: bool,
    sink: bool,
    factory: OperatorFactory,
) -> NodeId {
    let mut g = graph.borrow_mut();
    g.claim_name(name);
    let id = g.add_node(
        name,
        NodeKind::Operator {
            factory,
            keyed,
            inputs: inputs.len(),
            sink,
        },
    );
    for (input, (nodes, part)) in inputs.iter().enumerate() {
        for &from in nodes.iter() {
            g.add_edge(from, id, input, part.clone());
        }
    }
    id
}

/// A factory that builds a fresh operator per subtask from a `Fn`.
pub(crate) fn factory<O: OperatorCore + 'static>(f: impl Fn() -> O + Send + Sync + 'static) -> OperatorFactory {
    Arc::new(move |_, _| Ok(Box::new(f()) as Box<dyn OperatorCore>))
}

impl<T: Data> Stream<T> {
    pub(crate) fn new(graph: Rc<RefCell<Graph>>, nodes: Vec<NodeId>, partitioning: Partitioning) -> Self {
        {
            let mut g = graph.borrow_mut();
            for &n in &nodes {
                g.set_output_codec(n, crate::data::BatchCodec::of::<T>());
            }
        }
        Stream {
            graph,
            nodes,
            partitioning,
            _t: PhantomData,
        }
    }

    pub(crate) fn then<O: Data>(&self, name: &str, factory: OperatorFactory) -> Stream<O> {
        let id = add_operator(
            &self.graph,
            name,
            &[(&self.nodes, self.partitioning.clone())],
            false,
            false,
            factory,
        );
        Stream::new(self.graph.clone(), vec![id], Partitioning::Forward)
    }

    /// Sets the parallelism of the step that produces this stream (for the stream of a
    /// window step's results: of the window step itself).
    pub fn parallelism(self, n: usize) -> Self {
        {
            let mut g = self.graph.borrow_mut();
            if let [id] = self.nodes.as_slice() {
                g.set_parallelism(*id, n);
            } else {
                g.errors.push(Error::config(
                    "parallelism() applies to a single step; set it on each stream before union()",
                ));
            }
        }
        self
    }

    /// Applies `f` to every record.
    pub fn map<O: Data>(&self, name: &str, f: impl Fn(T) -> O + Send + Sync + 'static) -> Stream<O> {
        let f: Arc<dyn Fn(T) -> O + Send + Sync> = Arc::new(f);
        self.then(name, factory(move || MapOp { f: f.clone() }))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, name: &str, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        let f: Arc<dyn Fn(&T) -> bool + Send + Sync> = Arc::new(f);
        self.then(name, factory(move || FilterOp { f: f.clone() }))
    }

    /// Emits every element of `f(record)`.
    pub fn flat_map<O: Data, I: IntoIterator<Item = O>>(
        &self,
        name: &str,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<O> {
        let f: FlatFn<T, O> = Arc::new(move |t, out: &mut Vec<O>| out.extend(f(t)));
        self.then(name, factory(move || FlatMapOp { f: f.clone() }))
    }

    /// Partitions the stream by `key`: records with equal keys reach the same subtask of the
    /// next keyed step, which sees their state. `name` labels the exchange.
    pub fn key_by<K: Key>(&self, name: &str, key: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T> {
        self.graph.borrow_mut().claim_name(name);
        KeyedStream::new(self.clone(), Arc::new(key))
    }

    /// Spreads batches round-robin over the next step's subtasks.
    pub fn rebalance(&self) -> Stream<T> {
        let mut s = self.clone();
        s.partitioning = Partitioning::Rebalance;
        s
    }

    /// Sends every record to every subtask of the next step.
    pub fn broadcast(&self) -> Stream<T> {
        let mut s = self.clone();
        s.partitioning = Partitioning::Broadcast;
        s
    }

    /// Merges this stream with `other` (same record type).
    pub fn union(&self, other: &Stream<T>) -> Stream<T> {
        if !Rc::ptr_eq(&self.graph, &other.graph) {
            self.graph
                .borrow_mut()
                .errors
                .push(Error::config("union() of streams from different pipelines"));
        }
        if !matches!(self.partitioning, Partitioning::Forward) || !matches!(other.partitioning, Partitioning::Forward) {
            self.graph.borrow_mut().errors.push(Error::config(
                "union() of a rebalanced or broadcast stream: apply rebalance()/broadcast() after union()",
            ));
        }
        // A stream unioned with itself delivers every record twice, as written.
        let mut nodes = self.nodes.clone();
        nodes.extend(other.nodes.iter().copied());
        Stream::new(self.graph.clone(), nodes, Partitioning::Forward)
    }

    /// Connects this stream with `other` for two-input processing.
    pub fn connect<B: Data>(&self, other: &Stream<B>) -> ConnectedStreams<T, B> {
        if !Rc::ptr_eq(&self.graph, &other.graph) {
            self.graph
                .borrow_mut()
                .errors
                .push(Error::config("connect() of streams from different pipelines"));
        }
        ConnectedStreams::new(self.clone(), other.clone())
    }

    /// Assigns event-time timestamps and generates watermarks after this step.
    ///
    /// The assigner runs at its input's parallelism with the input's partitioning (forward
    /// unless this stream was rebalanced or broadcast), so each of its subtasks sees one
    /// upstream subtask's records in their order, as in Flink. [`parallelism`](Self::parallelism)
    /// on the returned stream sets another one explicitly (its input edge then becomes a
    /// rebalance, and watermarks follow the arrival order of several upstream subtasks).
    pub fn assign_timestamps_and_watermarks(&self, strategy: WatermarkStrategy<T>) -> Stream<T> {
        let name = {
            let g = self.graph.borrow();
            let base = self
                .nodes
                .iter()
                .map(|&n| g.nodes[n].name.as_str())
                .collect::<Vec<_>>()
                .join("+");
            format!("{base}.watermarks#{}", g.nodes.len())
        };
        let out = self.then(name.as_str(), factory(move || WatermarkOp::new(strategy.clone())));
        if let [id] = out.nodes.as_slice() {
            self.graph.borrow_mut().nodes[*id].rule = ParallelismRule::Input;
        }
        out
    }

    /// Writes the stream to `sink`.
    pub fn sink<S: Sink<T>>(&self, name: &str, sink: S) -> SinkStep {
        let sink = Arc::new(sink);
        let f: OperatorFactory =
            Arc::new(move |_, _| Ok(Box::new(SinkOp::<T, S>::new(sink.clone())) as Box<dyn OperatorCore>));
        let id = add_operator(
            &self.graph,
            name,
            &[(&self.nodes, self.partitioning.clone())],
            false,
            true,
            f,
        );
        SinkStep {
            graph: self.graph.clone(),
            node: id,
        }
    }
}

/// A sink step, to set its parallelism.
pub struct SinkStep {
    graph: Rc<RefCell<Graph>>,
    node: NodeId,
}

impl std::fmt::Debug for SinkStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkStep").field("node", &self.node).finish()
    }
}

impl SinkStep {
    /// Sets the sink's parallelism.
    pub fn parallelism(self, n: usize) -> Self {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(n);
        self
    }
}
