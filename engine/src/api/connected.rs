//! Two-input steps: connected streams (stateless co-map/co-flat-map) and connected keyed
//! streams (keyed co-process with shared per-key state: joins, enrichment).

use super::keyed::{per_subtask, KeyedStream};
use super::side_output::{is_tagged, main_output, tag_flag};
use super::stream::{add_operator, factory, Stream};
use crate::data::{Data, Key};
use crate::graph::Partitioning;
use crate::operator::keyed_process::{KeyedCoProcess, KeyedOperator, TwoInputs};
use crate::operator::stateless::{CoFlatMapOp, FlatFn};
use std::sync::Arc;

/// Two streams feeding one two-input step.
#[derive(Debug)]
pub struct ConnectedStreams<A, B> {
    first: Stream<A>,
    second: Stream<B>,
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    pub(crate) fn new(first: Stream<A>, second: Stream<B>) -> Self {
        ConnectedStreams { first, second }
    }

    /// Maps each input with its own function to one output type.
    pub fn map<O: Data>(
        &self,
        name: &str,
        first: impl Fn(A) -> O + Send + Sync + 'static,
        second: impl Fn(B) -> O + Send + Sync + 'static,
    ) -> Stream<O> {
        self.flat_map(name, move |a| Some(first(a)), move |b| Some(second(b)))
    }

    /// Flat-maps each input with its own function to one output type.
    pub fn flat_map<O: Data, I1: IntoIterator<Item = O>, I2: IntoIterator<Item = O>>(
        &self,
        name: &str,
        first: impl Fn(A) -> I1 + Send + Sync + 'static,
        second: impl Fn(B) -> I2 + Send + Sync + 'static,
    ) -> Stream<O> {
        let f1: FlatFn<A, O> = Arc::new(move |a, out: &mut Vec<O>| out.extend(first(a)));
        let f2: FlatFn<B, O> = Arc::new(move |b, out: &mut Vec<O>| out.extend(second(b)));
        let id = add_operator(
            &self.first.graph,
            name,
            &[
                (&self.first.nodes, self.first.partitioning.clone()),
                (&self.second.nodes, self.second.partitioning.clone()),
            ],
            false,
            false,
            factory(move || CoFlatMapOp {
                first: f1.clone(),
                second: f2.clone(),
            }),
        );
        Stream::new(self.first.graph.clone(), vec![id], Partitioning::Forward)
    }

    /// Keys both inputs (by key functions of the same key type) for a keyed co-process.
    pub fn key_by<K: Key>(
        &self,
        name: &str,
        first: impl Fn(&A) -> K + Send + Sync + 'static,
        second: impl Fn(&B) -> K + Send + Sync + 'static,
    ) -> ConnectedKeyedStreams<K, A, B> {
        self.first.graph.borrow_mut().claim_name(name);
        ConnectedKeyedStreams {
            first: KeyedStream::new(self.first.clone(), Arc::new(first)),
            second: KeyedStream::new(self.second.clone(), Arc::new(second)),
        }
    }
}

/// Two keyed streams with the same key type, feeding one keyed two-input step.
#[derive(Debug)]
pub struct ConnectedKeyedStreams<K, A, B> {
    pub(crate) first: KeyedStream<K, A>,
    pub(crate) second: KeyedStream<K, B>,
}

impl<K: Key, A: Data, B: Data> ConnectedKeyedStreams<K, A, B> {
    /// Runs `process` on both inputs with the shared state and timers of each key. Its main
    /// output goes through a hidden step `"{name}.main"`; its side outputs are read with
    /// [`Stream::side_output`] on the returned stream.
    pub fn process<P: KeyedCoProcess<K, A, B> + Clone>(&self, name: &str, process: P) -> Stream<P::Out> {
        let tagged = tag_flag();
        let flag = tagged.clone();
        let (ka, kb) = (self.first.key_fn.clone(), self.second.key_fn.clone());
        let graph = &self.first.stream.graph;
        let id = add_operator(
            graph,
            name,
            &[
                (&self.first.stream.nodes, self.first.hash()),
                (&self.second.stream.nodes, self.second.hash()),
            ],
            true,
            false,
            per_subtask(process, move |p| {
                KeyedOperator::new(TwoInputs {
                    key_a: ka.clone(),
                    key_b: kb.clone(),
                    process: p,
                })
                .tagged(is_tagged(&flag))
            }),
        );
        let step = Stream::new(graph.clone(), vec![id], Partitioning::Forward);
        main_output(step, &format!("{name}.main"), tagged)
    }
}
