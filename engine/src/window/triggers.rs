//! The built-in triggers (Flink's): event time (the default of event-time windows), processing
//! time (the default of processing-time windows), never (the default of the global window),
//! count, continuous event and processing time (early firings), and purging.
//!
//! Their state (a count, the next fire time) is per-window keyed state through the
//! [`TriggerContext`], checkpointed with the window's contents.

use super::trigger::{Trigger, TriggerContext, TriggerResult};
use super::{millis, TimeWindow, WindowTime};
use crate::data::Timestamp;
use crate::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// The trigger of windows of `time` when none is given: event time, processing time, or
/// never (a global window fires only on a trigger of one's own).
pub fn default_trigger<T: 'static>(time: WindowTime) -> Arc<dyn Trigger<T>> {
    match time {
        WindowTime::EventTime => Arc::new(EventTimeTrigger),
        WindowTime::ProcessingTime => Arc::new(ProcessingTimeTrigger),
        WindowTime::Global => Arc::new(NeverTrigger),
    }
}

/// State of [`CountTrigger`]: records since the last firing.
const COUNT: &str = "count";
/// State of the continuous triggers: the next early firing.
const NEXT_FIRE: &str = "next-fire";

/// Fires a window once the watermark reaches its `max_timestamp`, and at once for every record
/// added after that (within the allowed lateness): Flink's `EventTimeTrigger`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventTimeTrigger;

impl<T> Trigger<T> for EventTimeTrigger {
    fn on_element(&self, _: &T, _: Option<Timestamp>, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let end = ctx.window().max_timestamp();
        if end <= ctx.current_watermark() {
            return Ok(TriggerResult::Fire);
        }
        ctx.register_event_time_timer(end)?;
        Ok(TriggerResult::Continue)
    }

    fn on_event_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(fire_if(time == ctx.window().max_timestamp()))
    }

    fn on_processing_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn clear(&self, _: &mut TriggerContext<'_>) -> Result<()> {
        Ok(())
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, _: &[TimeWindow], ctx: &mut TriggerContext<'_>) -> Result<()> {
        let end = ctx.window().max_timestamp();
        if end > ctx.current_watermark() {
            ctx.register_event_time_timer(end)?;
        }
        Ok(())
    }
}

/// Fires a window once the wall clock reaches its `max_timestamp`: Flink's
/// `ProcessingTimeTrigger`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessingTimeTrigger;

impl<T> Trigger<T> for ProcessingTimeTrigger {
    fn on_element(&self, _: &T, _: Option<Timestamp>, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let end = ctx.window().max_timestamp();
        ctx.register_processing_time_timer(end)?;
        Ok(TriggerResult::Continue)
    }

    fn on_event_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn on_processing_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(fire_if(time == ctx.window().max_timestamp()))
    }

    fn clear(&self, _: &mut TriggerContext<'_>) -> Result<()> {
        Ok(())
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, _: &[TimeWindow], ctx: &mut TriggerContext<'_>) -> Result<()> {
        let end = ctx.window().max_timestamp();
        ctx.register_processing_time_timer(end)
    }
}

/// Never fires: the default trigger of [`GlobalWindows`](super::global::GlobalWindows).
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverTrigger;

impl<T> Trigger<T> for NeverTrigger {
    fn on_element(&self, _: &T, _: Option<Timestamp>, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn on_event_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn on_processing_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn clear(&self, _: &mut TriggerContext<'_>) -> Result<()> {
        Ok(())
    }

    fn can_merge(&self) -> bool {
        true
    }
}

/// Fires a window on every `n`-th record added to it since it last fired (Flink's
/// `CountTrigger`). The count is keyed state: a restored or rescaled job fires after exactly
/// `n` records all the same.
#[derive(Debug, Clone, Copy)]
pub struct CountTrigger {
    n: u64,
}

/// A [`CountTrigger`] firing every `n` records (`n` at least 1).
pub fn count(n: u64) -> CountTrigger {
    CountTrigger { n }
}

impl<T> Trigger<T> for CountTrigger {
    fn on_element(&self, _: &T, _: Option<Timestamp>, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let seen = ctx.state::<u64>(COUNT)?.unwrap_or(0) + 1;
        if seen >= self.n {
            ctx.clear_state(COUNT)?;
            return Ok(TriggerResult::Fire);
        }
        ctx.set_state(COUNT, &seen)?;
        Ok(TriggerResult::Continue)
    }

    fn on_event_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn on_processing_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn clear(&self, ctx: &mut TriggerContext<'_>) -> Result<()> {
        ctx.clear_state(COUNT)
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, merged: &[TimeWindow], ctx: &mut TriggerContext<'_>) -> Result<()> {
        let mut total = ctx.state::<u64>(COUNT)?.unwrap_or(0);
        for w in merged {
            total += ctx.state_of::<u64>(*w, COUNT)?.unwrap_or(0);
        }
        if total > 0 {
            ctx.set_state(COUNT, &total)?;
        }
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.n == 0 {
            return Err("count trigger: the count must be at least 1, got 0".into());
        }
        Ok(())
    }
}

/// The first multiple of `interval` after `t` (exact for negative `t`); `None` past `i64::MAX`.
fn next_boundary(t: Timestamp, interval: i64) -> Option<Timestamp> {
    let next = t as i128 - (t as i128).rem_euclid(interval as i128) + interval as i128;
    Timestamp::try_from(next).ok()
}

/// The next early firing after a firing (or first record) at `from`, no earlier than the first
/// boundary after `now` (firings that would see the same contents again are skipped), and only
/// if it comes before the window's own end. `None`: no early firing is left.
fn next_early_fire(from: Timestamp, now: Timestamp, interval: i64, window: TimeWindow) -> Option<Timestamp> {
    let next = next_boundary(from, interval)?.max(next_boundary(now, interval)?);
    (next < window.max_timestamp()).then_some(next)
}

/// Fires a window at every multiple of `interval` of event time (early firings) and when the
/// watermark reaches its end (Flink's `ContinuousEventTimeTrigger`). Firings that would repeat
/// the same contents because the watermark jumped several intervals at once are skipped: one
/// firing per watermark advance.
#[derive(Debug, Clone, Copy)]
pub struct ContinuousEventTimeTrigger {
    interval: Duration,
}

/// A [`ContinuousEventTimeTrigger`] firing every `interval` of event time.
pub fn continuous_event_time(interval: Duration) -> ContinuousEventTimeTrigger {
    ContinuousEventTimeTrigger { interval }
}

impl<T> Trigger<T> for ContinuousEventTimeTrigger {
    fn on_element(&self, _: &T, ts: Option<Timestamp>, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let w = ctx.window();
        let wm = ctx.current_watermark();
        if w.max_timestamp() <= wm {
            return Ok(TriggerResult::Fire);
        }
        ctx.register_event_time_timer(w.max_timestamp())?;
        if ctx.state::<Timestamp>(NEXT_FIRE)?.is_none() {
            let ts = ts.ok_or_else(|| {
                Error::data("continuous_event_time trigger got a record without timestamp; assign timestamps upstream")
            })?;
            if let Some(next) = next_early_fire(ts, wm, millis(self.interval), w) {
                ctx.set_state(NEXT_FIRE, &next)?;
                ctx.register_event_time_timer(next)?;
            }
        }
        Ok(TriggerResult::Continue)
    }

    fn on_event_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let w = ctx.window();
        if time == w.max_timestamp() {
            return Ok(TriggerResult::Fire);
        }
        if ctx.state::<Timestamp>(NEXT_FIRE)? != Some(time) {
            return Ok(TriggerResult::Continue);
        }
        match next_early_fire(time, ctx.current_watermark(), millis(self.interval), w) {
            Some(next) => {
                ctx.set_state(NEXT_FIRE, &next)?;
                ctx.register_event_time_timer(next)?;
            }
            None => ctx.clear_state(NEXT_FIRE)?,
        }
        Ok(TriggerResult::Fire)
    }

    fn on_processing_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn clear(&self, ctx: &mut TriggerContext<'_>) -> Result<()> {
        ctx.clear_state(NEXT_FIRE)
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, merged: &[TimeWindow], ctx: &mut TriggerContext<'_>) -> Result<()> {
        on_merge_earliest(merged, ctx, TimerClock::Event)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        positive("continuous_event_time", self.interval)
    }
}

/// Fires a window every `interval` of the subtask's wall clock while it has contents, aligned
/// to multiples of `interval`, and at its `max_timestamp` (Flink's
/// `ContinuousProcessingTimeTrigger`; for an event-time window that end is compared with the
/// wall clock, as in Flink: use it for early firings of processing-time or global windows).
#[derive(Debug, Clone, Copy)]
pub struct ContinuousProcessingTimeTrigger {
    interval: Duration,
}

/// A [`ContinuousProcessingTimeTrigger`] firing every `interval` of processing time.
pub fn continuous_processing_time(interval: Duration) -> ContinuousProcessingTimeTrigger {
    ContinuousProcessingTimeTrigger { interval }
}

impl<T> Trigger<T> for ContinuousProcessingTimeTrigger {
    fn on_element(&self, _: &T, _: Option<Timestamp>, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        if ctx.state::<Timestamp>(NEXT_FIRE)?.is_none() {
            let now = ctx.current_processing_time();
            let w = ctx.window();
            let next = next_boundary(now, millis(self.interval))
                .unwrap_or(Timestamp::MAX)
                .min(w.max_timestamp());
            ctx.set_state(NEXT_FIRE, &next)?;
            ctx.register_processing_time_timer(next)?;
        }
        Ok(TriggerResult::Continue)
    }

    fn on_event_time(&self, _: Timestamp, _: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }

    fn on_processing_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        if ctx.state::<Timestamp>(NEXT_FIRE)? != Some(time) {
            return Ok(TriggerResult::Continue);
        }
        // The next firing is armed by the next record: a window without new records since
        // its last firing is not fired again.
        ctx.clear_state(NEXT_FIRE)?;
        Ok(TriggerResult::Fire)
    }

    fn clear(&self, ctx: &mut TriggerContext<'_>) -> Result<()> {
        ctx.clear_state(NEXT_FIRE)
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, merged: &[TimeWindow], ctx: &mut TriggerContext<'_>) -> Result<()> {
        on_merge_earliest(merged, ctx, TimerClock::Processing)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        positive("continuous_processing_time", self.interval)
    }
}

#[derive(Clone, Copy)]
enum TimerClock {
    Event,
    Processing,
}

/// Keeps the earliest next fire time of the merged windows and the target, and arms it.
fn on_merge_earliest(merged: &[TimeWindow], ctx: &mut TriggerContext<'_>, clock: TimerClock) -> Result<()> {
    let mut earliest = ctx.state::<Timestamp>(NEXT_FIRE)?;
    for w in merged {
        if let Some(t) = ctx.state_of::<Timestamp>(*w, NEXT_FIRE)? {
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
        }
    }
    if let Some(t) = earliest {
        ctx.set_state(NEXT_FIRE, &t)?;
        match clock {
            TimerClock::Event => ctx.register_event_time_timer(t)?,
            TimerClock::Processing => ctx.register_processing_time_timer(t)?,
        }
    }
    if let TimerClock::Event = clock {
        let end = ctx.window().max_timestamp();
        if end > ctx.current_watermark() {
            ctx.register_event_time_timer(end)?;
        }
    }
    Ok(())
}

fn positive(what: &str, interval: Duration) -> std::result::Result<(), String> {
    if millis(interval) <= 0 {
        return Err(format!(
            "{what} trigger: the interval must be at least 1 ms, got {interval:?}"
        ));
    }
    Ok(())
}

/// Turns every firing of the inner trigger into fire-and-purge (Flink's `PurgingTrigger`): each
/// firing sees only the records since the previous one.
#[derive(Debug, Clone, Copy)]
pub struct PurgingTrigger<Tr> {
    inner: Tr,
}

/// `inner`, purging the window's contents whenever it fires.
pub fn purging<Tr>(inner: Tr) -> PurgingTrigger<Tr> {
    PurgingTrigger { inner }
}

fn purge_on_fire(r: TriggerResult) -> TriggerResult {
    match r {
        TriggerResult::Fire => TriggerResult::FireAndPurge,
        other => other,
    }
}

impl<T, Tr: Trigger<T>> Trigger<T> for PurgingTrigger<Tr> {
    fn on_element(&self, value: &T, ts: Option<Timestamp>, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        self.inner.on_element(value, ts, ctx).map(purge_on_fire)
    }

    fn on_event_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        self.inner.on_event_time(time, ctx).map(purge_on_fire)
    }

    fn on_processing_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        self.inner.on_processing_time(time, ctx).map(purge_on_fire)
    }

    fn clear(&self, ctx: &mut TriggerContext<'_>) -> Result<()> {
        self.inner.clear(ctx)
    }

    fn can_merge(&self) -> bool {
        self.inner.can_merge()
    }

    fn on_merge(&self, merged: &[TimeWindow], ctx: &mut TriggerContext<'_>) -> Result<()> {
        self.inner.on_merge(merged, ctx)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        self.inner.validate()
    }
}

fn fire_if(cond: bool) -> TriggerResult {
    if cond {
        TriggerResult::Fire
    } else {
        TriggerResult::Continue
    }
}

#[cfg(test)]
mod tests;
