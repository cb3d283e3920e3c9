//! What a keyed user function sees: the current key, its state, timers, time and output.

use super::descriptors::{StateAccess, StateDescriptor};
use super::handles::{ListState, MapState, ValueState};
use super::schema::{decode_header, StateSchema};
use super::scope::{is_live, KeyScope, StateOps, NS_USER};
use super::timers::TimeDomain;
use crate::data::{Data, Record, Timestamp};
use crate::metrics::OperatorMetrics;
use crate::side_output::{OutputTag, SideOutputs};
use crate::Result;
use std::marker::PhantomData;

/// The context of one call of a keyed function, for key `K` and output `O`.
pub struct KeyedContext<'a, K, O> {
    pub(crate) scope: KeyScope<'a>,
    pub(crate) key: &'a K,
    pub(crate) out: &'a mut Vec<Record<O>>,
    pub(crate) side: &'a mut SideOutputs,
    pub(crate) metrics: &'a OperatorMetrics,
}

impl<K, O: Data> KeyedContext<'_, K, O> {
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// Event time of the record being processed (or of the timer firing).
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.scope.timestamp
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.scope.watermark
    }

    /// Wall-clock time, ms since the epoch.
    pub fn current_processing_time(&self) -> u64 {
        self.scope.now_ms
    }

    /// Emits `value` with the current event time.
    pub fn emit(&mut self, value: O) {
        self.out.push(Record {
            value,
            timestamp: self.scope.timestamp,
        });
    }

    /// Emits `value` with event time `timestamp`.
    pub fn emit_at(&mut self, value: O, timestamp: Timestamp) {
        self.out.push(Record::with_timestamp(value, timestamp));
    }

    /// Emits `value` to the side output `tag` with the current event time (read it with
    /// `stream.side_output(&tag)`; dropped if nobody does).
    ///
    /// # Errors
    /// `Data` if `value` cannot be encoded.
    pub fn output<T: Data>(&mut self, tag: &OutputTag<T>, value: T) -> Result<()> {
        self.side.emit(tag, &value, self.scope.timestamp)
    }

    /// Emits `value` to the side output `tag` with event time `timestamp`.
    ///
    /// # Errors
    /// `Data` if `value` cannot be encoded.
    pub fn output_at<T: Data>(&mut self, tag: &OutputTag<T>, value: T, timestamp: Timestamp) -> Result<()> {
        self.side.emit(tag, &value, Some(timestamp))
    }

    /// Adds `n` to the operator's counter `name` (shown in the job report).
    pub fn count(&self, name: &str, n: u64) {
        self.metrics.count(name, n);
    }

    /// The state `descriptor` declares, for the current key: its handle, with the
    /// descriptor's TTL and schema (values carry their schema version; older versions are read
    /// through the descriptor's migrations).
    pub fn state<'s, D: StateDescriptor>(&'s mut self, descriptor: &D) -> D::Handle<'s> {
        descriptor.handle(StateAccess { ops: &mut self.scope })
    }

    /// The value state `name` of the current key, written unversioned with bincode (as before
    /// state descriptors); prefer [`state`](Self::state) with a
    /// [`ValueStateDescriptor`](super::ValueStateDescriptor) for a state whose type may change.
    pub fn value_state<'s, V: Data>(&'s mut self, name: &'s str) -> ValueState<'s, V> {
        ValueState {
            ops: &mut self.scope,
            name,
            ttl: None,
            schema: StateSchema::unversioned(),
        }
    }

    /// The map state `name` of the current key, values written unversioned with bincode.
    pub fn map_state<'s, UK: Data, UV: Data>(&'s mut self, name: &'s str) -> MapState<'s, UK, UV> {
        MapState {
            ops: &mut self.scope,
            name,
            ttl: None,
            schema: StateSchema::unversioned(),
            _k: PhantomData,
        }
    }

    /// The list state `name` of the current key, elements written unversioned with bincode.
    pub fn list_state<'s, V: Data>(&'s mut self, name: &'s str) -> ListState<'s, V> {
        ListState {
            ops: &mut self.scope,
            name,
            ttl: None,
            schema: StateSchema::unversioned(),
        }
    }

    /// Calls `on_timer` for the current key once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: Timestamp) -> Result<()> {
        self.scope.register_timer(TimeDomain::EventTime, time, vec![NS_USER])
    }

    /// Calls `on_timer` for the current key once the wall clock reaches `time_ms`.
    pub fn register_processing_time_timer(&mut self, time_ms: Timestamp) -> Result<()> {
        self.scope
            .register_timer(TimeDomain::ProcessingTime, time_ms, vec![NS_USER])
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, time: Timestamp) -> Result<()> {
        self.scope.delete_timer(TimeDomain::EventTime, time, vec![NS_USER])
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, time_ms: Timestamp) -> Result<()> {
        self.scope
            .delete_timer(TimeDomain::ProcessingTime, time_ms, vec![NS_USER])
    }
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// The time it was registered for.
    pub time: Timestamp,
    /// Its clock.
    pub domain: TimeDomain,
}

/// Deletes the expired entries of state `name` of the scope's key (a TTL clean-up timer fired).
/// For a list (`list`), the entry without suffix is the element counter and is kept while an
/// element remains; once none does, the counter goes too, so the list reads as empty.
pub(crate) fn clean_up_expired(scope: &mut KeyScope<'_>, name: &str, list: bool) -> Result<()> {
    let mut expired = Vec::new();
    let mut raws = Vec::new();
    scope.scan_raw(name, &mut |suffix, v| {
        if !(list && suffix.is_empty()) {
            raws.push((suffix.to_vec(), v.to_vec()));
        }
        Ok(true)
    })?;
    let remaining = raws.len();
    for (suffix, v) in raws {
        if let Ok((header, _)) = decode_header(&v) {
            if header.expiry.is_some() && !is_live(header.expiry, &*scope) {
                expired.push(suffix);
            }
        }
    }
    if list && expired.len() == remaining {
        return scope.delete_all_raw(name);
    }
    for s in expired {
        scope.delete_raw(name, &s)?;
    }
    Ok(())
}
