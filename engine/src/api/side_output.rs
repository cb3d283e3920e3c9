//! Reading side outputs: `stream.side_output(&TAG)` on the main output of a step that has them
//! (keyed process and co-process functions, window steps, fallible steps). See
//! [`crate::side_output`] for how they travel and what holds after a crash.

use super::stream::{add_operator, factory, Stream};
use crate::data::{BatchCodec, Data};
use crate::graph::side_outputs::SideOutputSource;
use crate::graph::{ParallelismRule, Partitioning};
use crate::operator::side_outputs::{MainOutputOp, SideOutputOp};
use crate::side_output::{DeadLetter, OutputTag, Tagged};
use crate::Error;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Ties hidden step `part` to `owner`: it always runs at the owner's parallelism (their edge
/// stays forward, so they chain), and `.parallelism(n)` on `part` sets the owner's.
pub(crate) fn follow<O>(part: Stream<O>, owner: &Stream<impl Sized>) -> Stream<O> {
    if let ([p], [w]) = (part.nodes.as_slice(), owner.nodes.as_slice()) {
        part.graph.borrow_mut().nodes[*p].rule = ParallelismRule::SameAs(*w);
    }
    part
}

/// A fresh flag for a step that may get side outputs: its operator factory reads it when the
/// job is built (after the whole pipeline is), to know whether to tag its output.
pub(crate) fn tag_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// Whether the step of `flag` emits tagged records (read when building its operators).
pub(crate) fn is_tagged(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// Adds the hidden step `name` that keeps the main output of `step` (a step whose operators
/// read `tagged`) and registers `step` as one with side outputs. The returned stream is what
/// the user sees as the step's output.
pub(crate) fn main_output<O: Data>(step: Stream<O>, name: &str, tagged: Arc<AtomicBool>) -> Stream<O> {
    let Some(&id) = step.nodes.first() else {
        return step;
    };
    let flag = tagged.clone();
    let main = add_operator(
        &step.graph,
        name,
        &[(&step.nodes, Partitioning::Forward)],
        false,
        false,
        factory(move || MainOutputOp::<O> {
            tagged: is_tagged(&flag),
            _o: PhantomData,
        }),
    );
    let main = follow(
        Stream::new(step.graph.clone(), vec![main], Partitioning::Forward),
        &step,
    );
    step.graph.borrow_mut().side_outputs.insert(
        main.nodes[0],
        SideOutputSource {
            step: id,
            tagged,
            tagged_codec: BatchCodec::of::<Tagged<O>>(),
            read: HashMap::new(),
        },
    );
    main
}

impl<O: Data> Stream<O> {
    /// The side output `tag` of the step that produced this stream: the records its function
    /// emitted with `ctx.output(&tag, value)`, with their event time, through a hidden step
    /// named `"{step}.{tag name}"` at the step's parallelism. Asking twice for the same tag
    /// returns the same stream.
    ///
    /// A configuration error (reported when the job starts) if the step has no side outputs:
    /// they come from keyed process and co-process functions, window steps and fallible
    /// steps (`try_map`, ...).
    pub fn side_output<T: Data>(&self, tag: &OutputTag<T>) -> Stream<T> {
        let mut g = self.graph.borrow_mut();
        let source = match self.nodes.as_slice() {
            [main] => g
                .side_outputs
                .get(main)
                .map(|s| (*main, s.step, s.read.get(&tag.id()).copied())),
            _ => None,
        };
        let Some((main, step, read)) = source else {
            let steps: Vec<String> = self.nodes.iter().map(|&n| g.nodes[n].name.clone()).collect();
            g.errors.push(Error::config(format!(
                "side_output(\"{}\") on the output of {}: side outputs come from keyed process and co-process \
                 functions, window steps and try_map/try_filter/try_flat_map, read on the stream they return",
                tag.name(),
                if steps.is_empty() {
                    "no step".to_string()
                } else {
                    format!("step \"{}\"", steps.join("+"))
                }
            )));
            drop(g);
            return Stream::new(self.graph.clone(), Vec::new(), Partitioning::Forward);
        };
        if let Some(n) = read {
            drop(g);
            return Stream::new(self.graph.clone(), vec![n], Partitioning::Forward);
        }
        let codec = {
            let s = &g.side_outputs[&main];
            s.tagged.store(true, Ordering::Relaxed);
            s.tagged_codec
        };
        g.set_output_codec(step, codec);
        let name = format!("{}.{}", g.nodes[step].name, tag.name());
        drop(g);
        let (id, tag_name) = (tag.id(), tag.name());
        let node = add_operator(
            &self.graph,
            &name,
            &[(&[step], Partitioning::Forward)],
            false,
            false,
            factory(move || SideOutputOp::<O, T> {
                id,
                name: tag_name,
                _ot: PhantomData,
            }),
        );
        let mut g = self.graph.borrow_mut();
        g.nodes[node].rule = ParallelismRule::SameAs(step);
        if let Some(s) = g.side_outputs.get_mut(&main) {
            s.read.insert(id, node);
        }
        drop(g);
        Stream::new(self.graph.clone(), vec![node], Partitioning::Forward)
    }

    /// The dead letters of a fallible step (`try_map`, `try_filter`, `try_flat_map`, `async_map`) run with
    /// [`BadRecordPolicy::DeadLetter`](crate::side_output::BadRecordPolicy::DeadLetter): each
    /// rejected input record of type `I` with the error, exactly once. The side output
    /// [`DeadLetter::TAG`].
    pub fn dead_letters<I: Data>(&self) -> Stream<DeadLetter<I>> {
        self.side_output(&DeadLetter::<I>::TAG)
    }
}
