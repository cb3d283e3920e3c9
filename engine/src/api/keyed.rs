//! `KeyedStream<K, T>`: a stream partitioned by key, with stateful keyed steps.

use super::connected::ConnectedKeyedStreams;
use super::partition::HashPartitioner;
use super::side_output::{is_tagged, main_output, tag_flag};
use super::stream::{add_operator, Stream};
use crate::data::{Data, Key};
use crate::graph::OperatorFactory;
use crate::graph::Partitioning;
use crate::operator::keyed_process::{KeyFn, KeyedOperator, KeyedProcess, OneInput};
use crate::operator::rolling::{AggregateFunction, AggregateProcess, ReduceProcess};
use crate::operator::OperatorCore;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// A stream whose records are routed by key: each key's records reach one subtask, in order
/// per upstream subtask, together with that key's state.
pub struct KeyedStream<K, T> {
    pub(crate) stream: Stream<T>,
    pub(crate) key_fn: KeyFn<K, T>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        KeyedStream {
            stream: self.stream.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K, T> std::fmt::Debug for KeyedStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStream").field("stream", &self.stream).finish()
    }
}

/// Builds one instance of a prototype per subtask. The prototype sits behind a mutex so that
/// user functions need only be `Send`.
pub(crate) fn per_subtask<P: Clone + Send + 'static, O: OperatorCore + 'static>(
    proto: P,
    build: impl Fn(P) -> O + Send + Sync + 'static,
) -> OperatorFactory {
    let proto = Mutex::new(proto);
    Arc::new(move |_, _| {
        let p = proto.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Box::new(build(p)) as Box<dyn OperatorCore>)
    })
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    pub(crate) fn new(stream: Stream<T>, key_fn: KeyFn<K, T>) -> Self {
        KeyedStream { stream, key_fn }
    }

    /// The partitioning of the edge into the next keyed step.
    pub(crate) fn hash(&self) -> Partitioning {
        Partitioning::Hash(Arc::new(HashPartitioner {
            key_fn: self.key_fn.clone(),
        }))
    }

    /// Adds a keyed step fed by this stream.
    pub(crate) fn keyed_step<O: Data>(&self, name: &str, factory: OperatorFactory) -> Stream<O> {
        let id = add_operator(
            &self.stream.graph,
            name,
            &[(&self.stream.nodes, self.hash())],
            true,
            false,
            factory,
        );
        Stream::new(self.stream.graph.clone(), vec![id], Partitioning::Forward)
    }

    /// Runs `process` on every record with the state and timers of its key. Its main output
    /// goes through a hidden step `"{name}.main"`; its side outputs (`ctx.output(&TAG, v)`) are
    /// read with [`Stream::side_output`] on the returned stream.
    pub fn process<P: KeyedProcess<K, T> + Clone>(&self, name: &str, process: P) -> Stream<P::Out> {
        let tagged = tag_flag();
        let step = self.process_step(name, process, tagged.clone());
        main_output(step, &format!("{name}.main"), tagged)
    }

    /// The keyed step running `process` itself (its operators tag their output once `tagged`
    /// is raised).
    pub(crate) fn process_step<P: KeyedProcess<K, T> + Clone>(
        &self,
        name: &str,
        process: P,
        tagged: Arc<AtomicBool>,
    ) -> Stream<P::Out> {
        let key_fn = self.key_fn.clone();
        self.keyed_step(
            name,
            per_subtask(process, move |p| {
                KeyedOperator::new(OneInput {
                    key_fn: key_fn.clone(),
                    process: p,
                })
                .tagged(is_tagged(&tagged))
            }),
        )
    }

    /// Emits, for every record, the running combination `f(previous, record)` of its key.
    pub fn reduce(&self, name: &str, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Stream<T> {
        self.process_step(name, ReduceProcess { f: Arc::new(f) }, tag_flag())
    }

    /// Emits, for every record, the running result of `agg` over its key's records.
    pub fn aggregate<A: AggregateFunction<T>>(&self, name: &str, agg: A) -> Stream<A::Out> {
        self.process_step(
            name,
            AggregateProcess {
                agg: Arc::new(agg),
                _t: PhantomData,
            },
            tag_flag(),
        )
    }

    /// Connects with another keyed stream of the same key type: both inputs of the next step
    /// share the state of each key.
    pub fn connect<B: Data>(&self, other: &KeyedStream<K, B>) -> ConnectedKeyedStreams<K, T, B> {
        ConnectedKeyedStreams {
            first: self.clone(),
            second: other.clone(),
        }
    }

    /// The unkeyed stream (records keep flowing as they were partitioned).
    pub fn into_stream(self) -> Stream<T> {
        self.stream
    }
}
