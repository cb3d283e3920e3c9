//! Keyed timers: part of keyed state, so they are checkpointed and restored with it.
//!
//! The store is the source of truth (one entry per timer, prefixed by key group, so timers
//! move with their key groups); an in-memory ordered index, rebuilt from the store when a
//! subtask opens, says which timer fires next.

use crate::data::Timestamp;
use crate::state::layout::{get_ordered_i64, key_group_of_entry, put_ordered_i64, TAG_TIMER};
use crate::state::{KeyGroup, KeyGroupRange, KeyedStore};
use crate::{Error, Result};
use std::collections::BTreeSet;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark passes the timer's time.
    EventTime,
    /// Fires when the wall clock passes the timer's time (ms since the epoch).
    ProcessingTime,
}

impl TimeDomain {
    fn tag(self) -> u8 {
        match self {
            TimeDomain::EventTime => 0,
            TimeDomain::ProcessingTime => 1,
        }
    }
}

/// A registered timer: when, for which key, and in which namespace (who registered it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerEntry {
    pub(crate) time: Timestamp,
    pub(crate) key_group: KeyGroup,
    pub(crate) key: Vec<u8>,
    pub(crate) namespace: Vec<u8>,
}

/// The timers of one keyed operator subtask.
#[derive(Default)]
pub(crate) struct TimerService {
    event: BTreeSet<TimerEntry>,
    processing: BTreeSet<TimerEntry>,
}

fn store_key(domain: TimeDomain, t: &TimerEntry) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + t.key.len() + t.namespace.len());
    k.extend_from_slice(&t.key_group.to_be_bytes());
    k.push(TAG_TIMER);
    k.push(domain.tag());
    put_ordered_i64(&mut k, t.time);
    k.extend_from_slice(&(t.key.len() as u32).to_be_bytes());
    k.extend_from_slice(&t.key);
    k.extend_from_slice(&t.namespace);
    k
}

fn parse(entry: &[u8]) -> Result<(TimeDomain, TimerEntry)> {
    let bad = || Error::checkpoint("malformed timer entry in keyed state");
    if entry.len() < 16 || entry[2] != TAG_TIMER {
        return Err(bad());
    }
    let domain = match entry[3] {
        0 => TimeDomain::EventTime,
        1 => TimeDomain::ProcessingTime,
        _ => return Err(bad()),
    };
    let time = get_ordered_i64(&entry[4..12]);
    let klen = u32::from_be_bytes([entry[12], entry[13], entry[14], entry[15]]) as usize;
    if entry.len() < 16 + klen {
        return Err(bad());
    }
    Ok((
        domain,
        TimerEntry {
            time,
            key_group: key_group_of_entry(entry),
            key: entry[16..16 + klen].to_vec(),
            namespace: entry[16 + klen..].to_vec(),
        },
    ))
}

impl TimerService {
    /// Rebuilds the index from the timers in `store` for the key groups of `range`.
    pub(crate) fn load(store: &mut dyn KeyedStore, range: KeyGroupRange) -> Result<Self> {
        let mut svc = TimerService::default();
        for kg in range.start..=range.end {
            let mut prefix = kg.to_be_bytes().to_vec();
            prefix.push(TAG_TIMER);
            let mut found = Vec::new();
            store.scan_prefix(&prefix, &mut |k, _| {
                found.push(k.to_vec());
                Ok(true)
            })?;
            for k in found {
                let (domain, t) = parse(&k)?;
                svc.set(domain).insert(t);
            }
        }
        Ok(svc)
    }

    fn set(&mut self, domain: TimeDomain) -> &mut BTreeSet<TimerEntry> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers a timer (registering the same timer twice keeps one).
    pub(crate) fn register(&mut self, store: &mut dyn KeyedStore, domain: TimeDomain, t: TimerEntry) -> Result<()> {
        let k = store_key(domain, &t);
        if self.set(domain).insert(t) {
            store.put(&k, &[])?;
        }
        Ok(())
    }

    /// Deletes a timer if it exists.
    pub(crate) fn delete(&mut self, store: &mut dyn KeyedStore, domain: TimeDomain, t: &TimerEntry) -> Result<()> {
        if self.set(domain).remove(t) {
            store.delete(&store_key(domain, t))?;
        }
        Ok(())
    }

    /// Removes and returns the earliest timer of `domain` due at `up_to`, if any.
    pub(crate) fn pop_due(
        &mut self,
        store: &mut dyn KeyedStore,
        domain: TimeDomain,
        up_to: Timestamp,
    ) -> Result<Option<TimerEntry>> {
        let set = self.set(domain);
        match set.first() {
            Some(t) if t.time <= up_to => {
                let t = set.pop_first().expect("first exists");
                store.delete(&store_key(domain, &t))?;
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }

    /// The time of the earliest processing-time timer.
    pub(crate) fn next_processing_time(&self) -> Option<Timestamp> {
        self.processing.first().map(|t| t.time)
    }

    /// Number of registered timers (both domains).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }
}
