//! Trigger decisions as pure functions of their inputs and an in-memory state.

use super::*;
use crate::window::trigger::TriggerBackend;
use std::collections::BTreeMap;

/// Keyed state of one key and the timers it registered.
#[derive(Default)]
struct Memory {
    state: BTreeMap<(String, TimeWindow), Vec<u8>>,
    event_timers: Vec<Timestamp>,
    processing_timers: Vec<Timestamp>,
    watermark: Timestamp,
    now: Timestamp,
}

impl TriggerBackend for Memory {
    fn get(&mut self, name: &str, w: TimeWindow) -> Result<Option<Vec<u8>>> {
        Ok(self.state.get(&(name.to_string(), w)).cloned())
    }
    fn put(&mut self, name: &str, w: TimeWindow, v: Vec<u8>) -> Result<()> {
        self.state.insert((name.to_string(), w), v);
        Ok(())
    }
    fn remove(&mut self, name: &str, w: TimeWindow) -> Result<()> {
        self.state.remove(&(name.to_string(), w));
        Ok(())
    }
    fn register_event_time_timer(&mut self, t: Timestamp) -> Result<()> {
        self.event_timers.push(t);
        Ok(())
    }
    fn register_processing_time_timer(&mut self, t: Timestamp) -> Result<()> {
        self.processing_timers.push(t);
        Ok(())
    }
    fn watermark(&self) -> Timestamp {
        self.watermark
    }
    fn processing_time(&self) -> Timestamp {
        self.now
    }
}

const W: TimeWindow = TimeWindow { start: 0, end: 1000 };
use TriggerResult::{Continue, Fire, FireAndPurge};

fn element<Tr: Trigger<u8>>(t: &Tr, m: &mut Memory, w: TimeWindow, ts: Option<Timestamp>) -> TriggerResult {
    t.on_element(&0u8, ts, &mut TriggerContext::new(m, w)).unwrap()
}

fn event<Tr: Trigger<u8>>(t: &Tr, m: &mut Memory, w: TimeWindow, time: Timestamp) -> TriggerResult {
    m.watermark = m.watermark.max(time);
    t.on_event_time(time, &mut TriggerContext::new(m, w)).unwrap()
}

fn processing<Tr: Trigger<u8>>(t: &Tr, m: &mut Memory, w: TimeWindow, time: Timestamp) -> TriggerResult {
    m.now = m.now.max(time);
    t.on_processing_time(time, &mut TriggerContext::new(m, w)).unwrap()
}

#[test]
fn event_time_fires_at_the_window_end_and_at_once_for_late_records() {
    let mut m = Memory {
        watermark: 10,
        ..Memory::default()
    };
    assert_eq!(element(&EventTimeTrigger, &mut m, W, Some(5)), Continue);
    assert_eq!(m.event_timers, vec![999]);
    assert_eq!(event(&EventTimeTrigger, &mut m, W, 500), Continue);
    assert_eq!(event(&EventTimeTrigger, &mut m, W, 999), Fire);
    // Within the allowed lateness: fires again with each record.
    assert_eq!(element(&EventTimeTrigger, &mut m, W, Some(7)), Fire);
    assert_eq!(processing(&EventTimeTrigger, &mut m, W, 999), Continue);
}

#[test]
fn processing_time_fires_when_the_clock_reaches_the_window_end() {
    let mut m = Memory::default();
    assert_eq!(element(&ProcessingTimeTrigger, &mut m, W, None), Continue);
    assert_eq!(m.processing_timers, vec![999]);
    assert_eq!(processing(&ProcessingTimeTrigger, &mut m, W, 998), Continue);
    assert_eq!(processing(&ProcessingTimeTrigger, &mut m, W, 999), Fire);
    assert_eq!(event(&ProcessingTimeTrigger, &mut m, W, 999), Continue);
}

#[test]
fn count_fires_every_n_records_and_resets() {
    let t = count(3);
    let mut m = Memory::default();
    let g = TimeWindow::global();
    let got: Vec<TriggerResult> = (0..7).map(|_| element(&t, &mut m, g, None)).collect();
    assert_eq!(got, vec![Continue, Continue, Fire, Continue, Continue, Fire, Continue]);
    assert_eq!(event(&t, &mut m, g, i64::MAX - 1), Continue);
    Trigger::<u8>::clear(&t, &mut TriggerContext::new(&mut m, g)).unwrap();
    assert!(m.state.is_empty(), "clear drops the count");
    assert!(Trigger::<u8>::validate(&count(0)).is_err());
    // The count is state, not a field: a second trigger over the same state continues it.
    let mut m = Memory::default();
    element(&count(3), &mut m, g, None);
    element(&count(3), &mut m, g, None);
    assert_eq!(element(&count(3), &mut m, g, None), Fire);
}

#[test]
fn count_merges_the_counts_of_merged_windows() {
    let t = count(5);
    let mut m = Memory::default();
    let (a, b, merged) = (TimeWindow::new(0, 10), TimeWindow::new(8, 20), TimeWindow::new(0, 20));
    element(&t, &mut m, a, None);
    element(&t, &mut m, a, None);
    element(&t, &mut m, b, None);
    Trigger::<u8>::on_merge(&t, &[a, b], &mut TriggerContext::new(&mut m, merged)).unwrap();
    assert_eq!(element(&t, &mut m, merged, None), Continue);
    assert_eq!(element(&t, &mut m, merged, None), Fire);
}

#[test]
fn purging_turns_fire_into_fire_and_purge() {
    let t = purging(count(2));
    let mut m = Memory::default();
    let g = TimeWindow::global();
    assert_eq!(element(&t, &mut m, g, None), Continue);
    assert_eq!(element(&t, &mut m, g, None), FireAndPurge);
    let mut m = Memory::default();
    assert_eq!(event(&purging(EventTimeTrigger), &mut m, W, 999), FireAndPurge);
    assert_eq!(event(&purging(EventTimeTrigger), &mut m, W, 5), Continue);
    assert!(Trigger::<u8>::validate(&purging(count(0))).is_err());
}

#[test]
fn continuous_event_time_fires_at_each_interval_and_at_the_end() {
    let t = continuous_event_time(Duration::from_millis(100));
    let mut m = Memory::default();
    assert_eq!(element(&t, &mut m, W, Some(150)), Continue);
    assert_eq!(m.event_timers, vec![999, 200]);
    assert_eq!(event(&t, &mut m, W, 200), Fire);
    assert_eq!(m.event_timers.last(), Some(&300));
    // A timer of another window of the key at some other time changes nothing.
    assert_eq!(event(&t, &mut m, W, 250), Continue);
    // The watermark jumped past several intervals: one firing, the next one after it.
    m.watermark = 650;
    assert_eq!(event(&t, &mut m, W, 300), Fire);
    assert_eq!(m.event_timers.last(), Some(&700));
    assert_eq!(event(&t, &mut m, W, 700), Fire);
    assert_eq!(event(&t, &mut m, W, 800), Fire);
    assert_eq!(event(&t, &mut m, W, 900), Fire);
    assert_eq!(m.state.len(), 0, "no early firing left before the end");
    assert_eq!(event(&t, &mut m, W, 999), Fire);
    assert!(element(&t, &mut m, W, None) == Fire, "late records fire at once");
    let err = t.on_element(&0u8, None, &mut TriggerContext::new(&mut Memory::default(), W));
    assert!(err.unwrap_err().to_string().contains("without timestamp"));
    assert!(Trigger::<u8>::validate(&continuous_event_time(Duration::ZERO)).is_err());
}

#[test]
fn continuous_event_time_in_the_global_window_ends_at_the_final_watermark() {
    let t = continuous_event_time(Duration::from_millis(100));
    let g = TimeWindow::global();
    let mut m = Memory::default();
    assert_eq!(element(&t, &mut m, g, Some(50)), Continue);
    assert_eq!(event(&t, &mut m, g, 100), Fire);
    // The final watermark: no early firing after it, the end fires.
    m.watermark = i64::MAX;
    assert_eq!(event(&t, &mut m, g, 200), Fire);
    assert!(m.state.is_empty());
    assert_eq!(event(&t, &mut m, g, i64::MAX - 1), Fire);
}

#[test]
fn continuous_processing_time_fires_on_interval_boundaries_while_records_arrive() {
    let t = continuous_processing_time(Duration::from_millis(100));
    let g = TimeWindow::global();
    let mut m = Memory {
        now: 1_234,
        ..Memory::default()
    };
    assert_eq!(element(&t, &mut m, g, None), Continue);
    assert_eq!(element(&t, &mut m, g, None), Continue);
    assert_eq!(m.processing_timers, vec![1_300], "armed once");
    assert_eq!(processing(&t, &mut m, g, 1_250), Continue);
    assert_eq!(processing(&t, &mut m, g, 1_300), Fire);
    // Nothing new: no firing until a record arrives.
    assert_eq!(processing(&t, &mut m, g, 1_400), Continue);
    m.now = 1_450;
    assert_eq!(element(&t, &mut m, g, None), Continue);
    assert_eq!(m.processing_timers.last(), Some(&1_500));
    // A window ending earlier fires at its end.
    let mut m = Memory {
        now: 950,
        ..Memory::default()
    };
    element(&t, &mut m, W, None);
    assert_eq!(m.processing_timers, vec![999]);
    assert_eq!(processing(&t, &mut m, W, 999), Fire);
}
