//! The window operator: a [`KeyedProcess`] that keeps each key's windows in keyed state and
//! fires them with event-time timers, so windows are checkpointed like any keyed state.
//!
//! # State of a key
//! * `window.index`: map state from each live window (encoded by [`WindowKey`], which orders by
//!   end, then start) to `()`;
//! * the window contents, owned by a [`WindowContents`] (accumulators, reduced values or the
//!   records themselves).
//!
//! # Timers
//! A window `w` has a timer at `w.max_timestamp()` (fire) and, with allowed lateness `L > 0`,
//! one at `w.max_timestamp() + L` (clean-up); with `L = 0` the first does both. Timers are only
//! registered for times after the current watermark, so a timer at `t` concerns exactly the
//! windows whose fire or clean-up time is `t`. Timers identify (key, time) only: windows of a
//! key may share one, so a merged-away session deletes its timers only when no remaining window
//! of the key needs them.

pub(crate) mod contents;

use crate::data::{Data, Key, Timestamp};
use crate::keyed::{KeyedContext, TimeDomain, Timer};
use crate::operator::keyed_process::KeyedProcess;
use crate::side_output::late_records;
use crate::window::{TimeWindow, WindowAssigner};
use crate::{Error, Result};
use std::marker::PhantomData;
use std::sync::Arc;

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
    /// Allowed lateness in ms.
    lateness: i64,
    contents: Arc<C>,
    scratch: Vec<TimeWindow>,
    _kt: PhantomData<fn(K, T)>,
}

impl<K, W: Clone, C, T> Clone for WindowOperator<K, W, C, T> {
    fn clone(&self) -> Self {
        WindowOperator {
            assigner: self.assigner.clone(),
            lateness: self.lateness,
            contents: self.contents.clone(),
            scratch: Vec::new(),
            _kt: PhantomData,
        }
    }
}

impl<K, W, C, T> WindowOperator<K, W, C, T> {
    /// A window operator; `lateness` in ms (negative counts as zero).
    pub(crate) fn new(assigner: W, lateness: i64, contents: C) -> Self {
        WindowOperator {
            assigner,
            lateness: lateness.max(0),
            contents: Arc::new(contents),
            scratch: Vec::new(),
            _kt: PhantomData,
        }
    }

    /// When `w`'s state is dropped: `max_timestamp + lateness` (saturating, as in Flink).
    fn cleanup_time(&self, w: &TimeWindow) -> Timestamp {
        w.max_timestamp().saturating_add(self.lateness)
    }

    /// Whether `w` is past its clean-up time at watermark `wm`: records for it are late.
    fn is_late(&self, w: &TimeWindow, wm: Timestamp) -> bool {
        self.cleanup_time(w) <= wm
    }

    /// Whether `w` needs a timer at `t`.
    fn needs_timer(&self, w: &TimeWindow, t: Timestamp) -> bool {
        w.max_timestamp() == t || self.cleanup_time(w) == t
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

    /// Registers the timers of a new (not late) window.
    fn register_timers(&self, ctx: &mut KeyedContext<'_, K, C::Out>, w: &TimeWindow) -> Result<()> {
        let wm = ctx.current_watermark();
        let fire_at = w.max_timestamp();
        if fire_at > wm {
            ctx.register_event_time_timer(fire_at)?;
        }
        let cleanup = self.cleanup_time(w);
        if cleanup != fire_at {
            ctx.register_event_time_timer(cleanup)?;
        }
        Ok(())
    }

    /// Adds `value` to `w` (not late), creating the window if needed; fires it at once if the
    /// watermark already passed its end (a record within the allowed lateness).
    fn add_to(&self, ctx: &mut KeyedContext<'_, K, C::Out>, w: TimeWindow, value: T) -> Result<()> {
        let k = window_key(w);
        if !ctx.map_state::<WindowKey, ()>(INDEX).contains(&k)? {
            ctx.map_state::<WindowKey, ()>(INDEX).put(&k, &())?;
            self.register_timers(ctx, &w)?;
        }
        self.contents.add(ctx, w, value)?;
        if w.max_timestamp() <= ctx.current_watermark() {
            self.fire(ctx, w)?;
        }
        Ok(())
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
            for s in &sources {
                ctx.map_state::<WindowKey, ()>(INDEX).remove(&window_key(*s))?;
            }
            let remaining: Vec<TimeWindow> = existing.iter().copied().filter(|w| !sources.contains(w)).collect();
            for s in &sources {
                for t in [s.max_timestamp(), self.cleanup_time(s)] {
                    if !remaining.iter().any(|w| self.needs_timer(w, t)) {
                        ctx.delete_event_time_timer(t)?;
                    }
                }
            }
            if !absorbed.contains(&merged) {
                ctx.map_state::<WindowKey, ()>(INDEX).put(&window_key(merged), &())?;
                self.register_timers(ctx, &merged)?;
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
        let ts = ctx.timestamp().ok_or_else(|| {
            Error::data("a window step got a record without timestamp; assign timestamps and watermarks upstream")
        })?;
        let mut windows = std::mem::take(&mut self.scratch);
        windows.clear();
        self.assigner.assign_windows(ts, &mut windows);
        let result = self.route(ctx, &windows, value);
        self.scratch = windows;
        result
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()> {
        if timer.domain != TimeDomain::EventTime {
            return Ok(());
        }
        let t = timer.time;
        for k in ctx.map_state::<WindowKey, ()>(INDEX).keys()? {
            let w = key_window(k);
            if w.max_timestamp() == t {
                self.fire(ctx, w)?;
            }
            if self.cleanup_time(&w) == t {
                self.contents.clear(ctx, w)?;
                ctx.map_state::<WindowKey, ()>(INDEX).remove(&k)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
