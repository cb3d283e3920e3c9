//! Window steps in a [`KeyedHarness`]: the window operator of `key_by(..).window(..)` is a
//! keyed function, run here as any other, with its state, timers and late records.

use super::builder::HarnessBuilder;
use super::keyed::KeyedHarness;
use crate::data::{Data, Key, Record};
use crate::functions::RuntimeContext;
use crate::keyed::{KeyedContext, Timer};
use crate::operator::keyed_process::KeyedProcess;
use crate::operator::rolling::AggregateFunction;
use crate::operator::window::contents::{AggContents, ProcessContents, ReduceContents, WindowCollector};
use crate::operator::window::{WindowContents, WindowOperator};
use crate::side_output::late_records;
use crate::window::{millis, TimeWindow, WindowAssigner, Windowed};
use crate::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// The window operator of a windowed step, as a keyed function (its type stays private).
pub struct WindowStep<K, T, O> {
    inner: Box<dyn KeyedProcess<K, T, Out = O>>,
}

impl<K: Key, T: Data, O: Data> KeyedProcess<K, T> for WindowStep<K, T, O> {
    type Out = O;
    fn process(&mut self, value: T, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        self.inner.process(value, ctx)
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        self.inner.on_timer(timer, ctx)
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.inner.open(ctx)
    }
    fn close(&mut self) {
        self.inner.close()
    }
}

/// A [`KeyedHarness`] running a window step, from records `T` of key `K` to results `O`.
pub type WindowHarness<K, T, O> = KeyedHarness<K, T, WindowStep<K, T, O>>;

impl<K: Key, T: Data, O: Data> WindowHarness<K, T, O> {
    /// The records that came too late for all their windows (the step's side output
    /// `"late"`, what the `*_with_late` variants return), in order.
    ///
    /// # Errors
    /// `Data` if a record does not decode.
    pub fn late_records(&mut self) -> Result<Vec<Record<T>>> {
        self.side_output(&late_records::<T>())
    }
}

/// Configures a window step for a harness (see [`HarnessBuilder::window`]), as
/// `key_by(..).window(assigner)` does in a pipeline.
#[derive(Debug, Clone)]
pub struct WindowHarnessBuilder<W> {
    settings: HarnessBuilder,
    assigner: W,
    lateness: Duration,
}

impl HarnessBuilder {
    /// A window step of `assigner` with these settings; finish with
    /// [`aggregate`](WindowHarnessBuilder::aggregate), [`reduce`](WindowHarnessBuilder::reduce)
    /// or [`process`](WindowHarnessBuilder::process).
    pub fn window<W: WindowAssigner>(self, assigner: W) -> WindowHarnessBuilder<W> {
        WindowHarnessBuilder {
            settings: self,
            assigner,
            lateness: Duration::ZERO,
        }
    }
}

impl<W: WindowAssigner> WindowHarnessBuilder<W> {
    /// Allowed lateness (see `WindowedStream::allowed_lateness`).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = lateness;
        self
    }

    fn open<K: Key, T: Data, C: WindowContents<K, T>>(self, contents: C) -> Result<WindowHarness<K, T, C::Out>> {
        self.assigner
            .validate()
            .map_err(|msg| Error::config(format!("harness for window step \"{}\": {msg}", self.settings.step)))?;
        let trigger = crate::window::triggers::default_trigger(self.assigner.time());
        let op = WindowOperator::new(self.assigner, millis(self.lateness), contents, trigger);
        self.settings.keyed(WindowStep { inner: Box::new(op) })
    }

    /// One result per window: `agg` over the window's records.
    ///
    /// # Errors
    /// As [`HarnessBuilder::keyed`]; `Config` for an invalid assigner.
    pub fn aggregate<K: Key, T: Data, A: AggregateFunction<T>>(
        self,
        agg: A,
    ) -> Result<WindowHarness<K, T, Windowed<K, A::Out>>> {
        self.open(AggContents::new(agg))
    }

    /// One result per window: its records combined with `f`.
    ///
    /// # Errors
    /// As [`aggregate`](Self::aggregate).
    pub fn reduce<K: Key, T: Data>(
        self,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> Result<WindowHarness<K, T, Windowed<K, T>>> {
        self.open(ReduceContents { f: Arc::new(f) })
    }

    /// `f` over the key, the window and all its records when the window fires, with a
    /// collector for results and side outputs (see `WindowedStream::process_with_outputs`).
    ///
    /// # Errors
    /// As [`aggregate`](Self::aggregate).
    pub fn process<K: Key, T: Data, O: Data>(
        self,
        f: impl Fn(&K, TimeWindow, Vec<T>, &mut WindowCollector<'_, O>) -> Result<()> + Send + Sync + 'static,
    ) -> Result<WindowHarness<K, T, O>> {
        self.open(ProcessContents::new(f))
    }
}
