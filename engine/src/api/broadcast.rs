//! Connecting a stream to a broadcast stream: `keyed.connect_broadcast(&rules)` and
//! `stream.connect_broadcast(&rules)`, then `process` with a function that keeps the broadcast
//! records in [`BroadcastState`](crate::operator::broadcast::BroadcastState).

use super::keyed::{per_subtask, KeyedStream};
use super::side_output::{is_tagged, main_output, tag_flag};
use super::stream::{add_operator, Stream};
use crate::data::{Data, Key};
use crate::graph::{Partitioning, StateSharing};
use crate::operator::broadcast::{
    BroadcastOperator, BroadcastProcess, BroadcastState, KeyedBroadcastLogic, KeyedBroadcastProcess,
};
use crate::operator::keyed_process::KeyedOperator;
use std::marker::PhantomData;

/// A keyed stream connected to a broadcast stream of `B`.
#[derive(Debug)]
pub struct BroadcastConnectedKeyedStream<K, T, B> {
    keyed: KeyedStream<K, T>,
    broadcast: Stream<B>,
}

/// A stream connected to a broadcast stream of `B`.
#[derive(Debug)]
pub struct BroadcastConnectedStream<T, B> {
    main: Stream<T>,
    broadcast: Stream<B>,
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// Connects this keyed stream to `broadcast`: every record of `broadcast` reaches every
    /// subtask of the next step, which keeps them in its broadcast state.
    pub fn connect_broadcast<B: Data>(&self, broadcast: &Stream<B>) -> BroadcastConnectedKeyedStream<K, T, B> {
        BroadcastConnectedKeyedStream {
            keyed: self.clone(),
            broadcast: broadcast.clone(),
        }
    }
}

impl<T: Data> Stream<T> {
    /// Connects this stream to `broadcast`: every record of `broadcast` reaches every subtask
    /// of the next step, which keeps them in its broadcast state.
    pub fn connect_broadcast<B: Data>(&self, broadcast: &Stream<B>) -> BroadcastConnectedStream<T, B> {
        BroadcastConnectedStream {
            main: self.clone(),
            broadcast: broadcast.clone(),
        }
    }
}

impl<K: Key, T: Data, B: Data> BroadcastConnectedKeyedStream<K, T, B> {
    /// Runs `process` on the keyed records (with their key's state and timers, reading the
    /// broadcast state) and on the broadcast records (updating the broadcast state). Its main
    /// output goes through a hidden step `"{name}.main"`; its side outputs (`ctx.output(&TAG, v)`
    /// on the keyed side) are read with [`Stream::side_output`] on the returned stream.
    pub fn process<P: KeyedBroadcastProcess<K, T, B> + Clone>(&self, name: &str, process: P) -> Stream<P::Out> {
        let tagged = tag_flag();
        let flag = tagged.clone();
        let key_fn = self.keyed.key_fn.clone();
        let graph = &self.keyed.stream.graph;
        let id = add_operator(
            graph,
            name,
            &[
                (&self.keyed.stream.nodes, self.keyed.hash()),
                (&self.broadcast.nodes, Partitioning::Broadcast),
            ],
            true,
            false,
            per_subtask(process, move |p| {
                KeyedOperator::new(KeyedBroadcastLogic {
                    key_fn: key_fn.clone(),
                    process: p,
                    state: BroadcastState::default(),
                    subtask: 0,
                    _b: PhantomData,
                })
                .tagged(is_tagged(&flag))
            }),
        );
        graph.borrow_mut().share_operator_state(id, StateSharing::Replicated);
        let step = Stream::new(graph.clone(), vec![id], Partitioning::Forward);
        main_output(step, &format!("{name}.main"), tagged)
    }
}

impl<T: Data, B: Data> BroadcastConnectedStream<T, B> {
    /// Runs `process` on the main records (reading the broadcast state) and on the broadcast
    /// records (updating it). The main input keeps its partitioning (forward by default).
    pub fn process<P: BroadcastProcess<T, B> + Clone>(&self, name: &str, process: P) -> Stream<P::Out> {
        let graph = &self.main.graph;
        let id = add_operator(
            graph,
            name,
            &[
                (&self.main.nodes, self.main.partitioning.clone()),
                (&self.broadcast.nodes, Partitioning::Broadcast),
            ],
            false,
            false,
            per_subtask(process, |p| BroadcastOperator {
                process: p,
                state: BroadcastState::default(),
                subtask: 0,
                _tb: PhantomData,
            }),
        );
        graph.borrow_mut().share_operator_state(id, StateSharing::Replicated);
        Stream::new(graph.clone(), vec![id], Partitioning::Forward)
    }
}
