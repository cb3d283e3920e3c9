//! The window operator: a [`KeyedProcess`] that keeps each key's windows in keyed state and
//! fires them when their [`Trigger`] says so, so windows and trigger state are checkpointed
//! like any keyed state.
//!
//! # State of a key
//! * `window.index`: map state from each live window (encoded by [`WindowKey`], which orders by
//!   end, then start) to `()`;
//! * the window contents, owned by a [`WindowContents`] (accumulators, reduced values, the
//!   records themselves, or the records with their timestamps when an evictor is set);
//! * the trigger's state, `window.trigger.*` (see [`trigger_state`]).
//!
//! # Timers
//! The trigger registers the timers it fires on (the event-time trigger one at
//! `w.max_timestamp()`). The step adds a clean-up timer per window: for event-time windows an
//! event-time timer at `w.max_timestamp() + L` (allowed lateness `L`), for processing-time
//! windows a processing-time timer at `w.max_timestamp()`; the global window is never cleaned
//! up. Timers identify (key, time) only: a timer asks the trigger about every window of its key,
//! and triggers check that the time is theirs. Timers of windows that no longer exist (merged
//! away) fire harmlessly.
//!
//! # After a crash
//! Everything above is keyed state: a restored subtask has each window's contents, index entry,
//! trigger state and timers as of the checkpoint, and replayed records rebuild the rest exactly
//! once. Processing-time timers that passed while the job was down fire right after the
//! restore. At the end of a bounded input processing time is advanced to the end of time (see
//! [`KeyedProcess::drain_processing_time`]): every processing-time timer fires, in order, so
//! processing-time windows fire and continuous processing-time triggers fire what arrived since
//! their last firing; triggers cannot register new processing-time timers from then on.

pub(crate) mod contents;
pub(crate) mod evicting;
pub(crate) mod trigger_state;

use crate::data::{Data, Key, Timestamp};
use crate::keyed::{KeyedContext, TimeDomain, Timer};
use crate::operator::keyed_process::KeyedProcess;
use crate::side_output::late_records;
use crate::window::trigger::{Trigger, TriggerContext, TriggerResult};
use crate::window::{TimeWindow, WindowAssigner, WindowTime};
use crate::{Error, Result};
use std::marker::PhantomData;
use std::sync::Arc;
use trigger_state::KeyedTriggerState;

/// A window as a map-state key: `(end, start)`, each an `i64` with the sign bit flipped in
/// big-endian bytes. bincode writes byte arrays verbatim, so map-state iteration (the order of
/// the encoded keys) is by end, then start.
pub(crate) type WindowKey = ([u8; 8], [u8; 8]);

fn ordered(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unordered(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// The state key of a window.
pub(crate) fn window_key(w: TimeWindow) -> WindowKey {
    (ordered(w.end), ordered(w.start))
}

/// The window of a state key.
pub(crate) fn key_window(k: WindowKey) -> TimeWindow {
    TimeWindow::new(unordered(k.1), unordered(k.0))
}

/// Where a window operator keeps what its windows hold, and what a window yields when it fires.
pub(crate) trait WindowContents<K, T>: Send + Sync + 'static {
    /// What a firing window yields.
    type Out: Data;
    /// Adds `value` to window `w` of the current key.
    fn add<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>, w: TimeWindow, value: T) -> Result<()>;
    /// Moves the contents of `sources` into `target` (which may hold contents already).
    fn merge<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        target: TimeWindow,
        sources: &[TimeWindow],
    ) -> Result<()>;
    /// Appends what window `w` yields now to `out` (nothing for an empty window).
    fn results<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>, w: TimeWindow, out: &mut Vec<Self::Out>)
        -> Result<()>;
    /// Drops the contents of `w`.
    fn clear<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>, w: TimeWindow) -> Result<()>;
}

const INDEX: &str = "window.index";

/// The keyed process behind every windowed step.
pub(crate) struct WindowOperator<K, W, C, T> {
    assigner: W,
    /// The assigner's clock.
    time: WindowTime,
    /// Allowed lateness in ms (event-time windows only).
    lateness: i64,
    contents: Arc<C>,
    trigger: Arc<dyn Trigger<T>>,
    /// Set once all inputs ended: processing-time timers then fire and drop their windows.
    draining: bool,
    scratch: Vec<TimeWindow>,
    _kt: PhantomData<fn(K, T)>,
}

impl<K, W: Clone, C, T> Clone for WindowOperator<K, W, C, T> {
    fn clone(&self) -> Self {
        WindowOperator {
            assigner: self.assigner.clone(),
            time: self.time,
            lateness: self.lateness,
            contents: self.contents.clone(),
            trigger: self.trigger.clone(),
            draining: false,
            scratch: Vec::new(),
            _kt: PhantomData,
        }
    }
}

impl<K, W: WindowAssigner, C, T> WindowOperator<K, W, C, T> {
    /// A window operator firing on `trigger`; `lateness` in ms (negative counts as zero; only
    /// event-time windows have any).
    pub(crate) fn new(assigner: W, lateness: i64, contents: C, trigger: Arc<dyn Trigger<T>>) -> Self {
        let time = assigner.time();
        WindowOperator {
            assigner,
            time,
            lateness: if time == WindowTime::EventTime {
                lateness.max(0)
            } else {
                0
            },
            contents: Arc::new(contents),
            trigger,
            draining: false,
            scratch: Vec::new(),
            _kt: PhantomData,
        }
    }

    /// When and on which clock `w`'s state is dropped: event-time windows at
    /// `max_timestamp + lateness` (saturating, as in Flink), processing-time windows at
    /// `max_timestamp`, the global window never.
    fn cleanup(&self, w: &TimeWindow) -> Option<(TimeDomain, Timestamp)> {
        match self.time {
            WindowTime::EventTime => Some((TimeDomain::EventTime, w.max_timestamp().saturating_add(self.lateness))),
            WindowTime::ProcessingTime => Some((TimeDomain::ProcessingTime, w.max_timestamp())),
            WindowTime::Global => None,
        }
    }

    /// Whether `w` is past its clean-up time at watermark `wm`: records for it are late (only
    /// event-time windows are ever late).
    fn is_late(&self, w: &TimeWindow, wm: Timestamp) -> bool {
        matches!(self.cleanup(w), Some((TimeDomain::EventTime, t)) if t <= wm)
    }
}

/// The session `new` merges into among the `existing` windows of a key: the cover of `new` and
/// every window that intersects it (repeated until nothing more intersects), and those windows,
/// in the order of `existing`.
pub(crate) fn merge_windows(existing: &[TimeWindow], new: TimeWindow) -> (TimeWindow, Vec<TimeWindow>) {
    let mut merged = new;
    let mut taken = vec![false; existing.len()];
    loop {
        let mut grew = false;
        for (i, w) in existing.iter().enumerate() {
            if !taken[i] && w.intersects(&merged) {
                taken[i] = true;
                merged = merged.cover(w);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    let absorbed = existing
        .iter()
        .zip(taken)
        .filter(|(_, t)| *t)
        .map(|(w, _)| *w)
        .collect();
    (merged, absorbed)
}

impl<K, T, W, C> WindowOperator<K, W, C, T>
where
    K: Key,
    T: Data,
    W: WindowAssigner,
    C: WindowContents<K, T>,
{
    /// Emits what `w` yields, each result at `w.max_timestamp()`.
    fn fire(&self, ctx: &mut KeyedContext<'_, K, C::Out>, w: TimeWindow) -> Result<()> {
        let mut out = Vec::new();
        self.contents.results(ctx, w, &mut out)?;
        for r in out {
            ctx.emit_at(r, w.max_timestamp());
        }
        Ok(())
    }

    /// Acts on a trigger's decision for `w`.
    fn act(&self, ctx: &mut KeyedContext<'_, K, C::Out>, w: TimeWindow, decision: TriggerResult) -> Result<()> {
        if decision.is_fire() {
            self.fire(ctx, w)?;
        }
        if decision.is_purge() {
            self.contents.clear(ctx, w)?;
        }
        Ok(())
    }

    /// Runs `f` with the trigger context of window `w` of the current key.
    fn with_trigger<R>(
        &self,
        ctx: &mut KeyedContext<'_, K, C::Out>,
        w: TimeWindow,
        f: impl FnOnce(&dyn Trigger<T>, &mut TriggerContext<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut backend = KeyedTriggerState {
            ctx,
            draining: self.draining,
        };
        let mut tctx = TriggerContext::new(&mut backend, w);
        f(self.trigger.as_ref(), &mut tctx)
    }

    /// Records a new window in the index and registers its clean-up timer.
    fn open_window(&self, ctx: &mut KeyedContext<'_, K, C::Out>, w: TimeWindow) -> Result<()> {
        ctx.map_state::<WindowKey, ()>(INDEX).put(&window_key(w), &())?;
        match self.cleanup(&w) {
            Some((TimeDomain::EventTime, t)) => ctx.register_event_time_timer(t),
            Some((TimeDomain::ProcessingTime, t)) => ctx.register_processing_time_timer(t),
            None => Ok(()),
        }
    }

    /// Drops everything of `w`: contents, trigger state and its index entry.
    fn drop_window(&self, ctx: &mut KeyedContext<'_, K, C::Out>, w: TimeWindow) -> Result<()> {
        self.contents.clear(ctx, w)?;
        self.with_trigger(ctx, w, |t, tctx| t.clear(tctx))?;
        ctx.map_state::<WindowKey, ()>(INDEX).remove(&window_key(w))
    }

    /// Adds `value` to `w` (not late), creating the window if needed, and asks the trigger.
    fn add_to(&self, ctx: &mut KeyedContext<'_, K, C::Out>, w: TimeWindow, value: T) -> Result<()> {
        if !ctx.map_state::<WindowKey, ()>(INDEX).contains(&window_key(w))? {
            self.open_window(ctx, w)?;
        }
        let ts = ctx.timestamp();
        let decision = self.with_trigger(ctx, w, |t, tctx| t.on_element(&value, ts, tctx))?;
        self.contents.add(ctx, w, value)?;
        self.act(ctx, w, decision)
    }

    /// Adds `value` to the session `new` merges into; gives `value` back if that session is late.
    fn add_merging(&self, ctx: &mut KeyedContext<'_, K, C::Out>, new: TimeWindow, value: T) -> Result<Option<T>> {
        let existing: Vec<TimeWindow> = ctx
            .map_state::<WindowKey, ()>(INDEX)
            .keys()?
            .into_iter()
            .map(key_window)
            .collect();
        let (merged, absorbed) = merge_windows(&existing, new);
        if self.is_late(&merged, ctx.current_watermark()) {
            return Ok(Some(value));
        }
        let sources: Vec<TimeWindow> = absorbed.iter().copied().filter(|w| *w != merged).collect();
        if !sources.is_empty() {
            self.contents.merge(ctx, merged, &sources)?;
            if !absorbed.contains(&merged) {
                self.open_window(ctx, merged)?;
            }
            self.with_trigger(ctx, merged, |t, tctx| t.on_merge(&sources, tctx))?;
            for s in &sources {
                self.with_trigger(ctx, *s, |t, tctx| t.clear(tctx))?;
                ctx.map_state::<WindowKey, ()>(INDEX).remove(&window_key(*s))?;
            }
        }
        self.add_to(ctx, merged, value)?;
        Ok(None)
    }

    /// Adds `value` to each of its `windows` that is not late; a record no window accepts is
    /// late.
    fn route(&self, ctx: &mut KeyedContext<'_, K, C::Out>, windows: &[TimeWindow], value: T) -> Result<()> {
        if windows.is_empty() {
            ctx.count("unwindowed_records", 1);
            return Ok(());
        }
        let wm = ctx.current_watermark();
        let merging = self.assigner.is_merging();
        let last = windows.len() - 1;
        let mut value = Some(value);
        let mut accepted = false;
        for (i, w) in windows.iter().enumerate() {
            if !merging && self.is_late(w, wm) {
                continue;
            }
            let v = if i == last { value.take() } else { value.clone() }.expect("kept until the last window");
            if merging {
                match self.add_merging(ctx, *w, v)? {
                    None => accepted = true,
                    Some(back) if i == last => value = Some(back),
                    Some(_) => {}
                }
            } else {
                self.add_to(ctx, *w, v)?;
                accepted = true;
            }
        }
        if !accepted {
            if let Some(v) = value {
                self.late(ctx, v)?;
            }
        }
        Ok(())
    }

    /// Handles a record none of whose windows accepted it: counts it and emits it to the
    /// side output of late records (read by the `*_with_late` variants).
    fn late(&self, ctx: &mut KeyedContext<'_, K, C::Out>, value: T) -> Result<()> {
        ctx.count("late_records", 1);
        ctx.output(&late_records::<T>(), value)
    }

    /// The time the assigner places the current record by.
    fn assign_time(&self, ctx: &KeyedContext<'_, K, C::Out>) -> Result<Timestamp> {
        match self.time {
            WindowTime::EventTime => ctx.timestamp().ok_or_else(|| {
                Error::data(
                    "an event-time window step got a record without timestamp; assign timestamps and watermarks \
                     upstream, or use processing-time or count windows",
                )
            }),
            WindowTime::ProcessingTime => {
                Ok(Timestamp::try_from(ctx.current_processing_time()).unwrap_or(Timestamp::MAX))
            }
            WindowTime::Global => Ok(ctx.timestamp().unwrap_or(0)),
        }
    }
}

impl<K, T, W, C> KeyedProcess<K, T> for WindowOperator<K, W, C, T>
where
    K: Key,
    T: Data,
    W: WindowAssigner,
    C: WindowContents<K, T>,
{
    type Out = C::Out;

    fn process(&mut self, value: T, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()> {
        let at = self.assign_time(ctx)?;
        let mut windows = std::mem::take(&mut self.scratch);
        windows.clear();
        self.assigner.assign_windows(at, &mut windows);
        let result = self.route(ctx, &windows, value);
        self.scratch = windows;
        result
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()> {
        let t = timer.time;
        for k in ctx.map_state::<WindowKey, ()>(INDEX).keys()? {
            let w = key_window(k);
            let decision = self.with_trigger(ctx, w, |tr, tctx| match timer.domain {
                TimeDomain::EventTime => tr.on_event_time(t, tctx),
                TimeDomain::ProcessingTime => tr.on_processing_time(t, tctx),
            })?;
            self.act(ctx, w, decision)?;
            if self.cleanup(&w) == Some((timer.domain, t)) {
                self.drop_window(ctx, w)?;
            }
        }
        Ok(())
    }

    fn drain_processing_time(&mut self) -> bool {
        self.draining = true;
        true
    }
}

#[cfg(test)]
mod tests;
