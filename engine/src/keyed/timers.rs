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

    /// The registered timers of `domain`, earliest first.
    pub(crate) fn registered(&self, domain: TimeDomain) -> impl Iterator<Item = &TimerEntry> + '_ {
        match domain {
            TimeDomain::EventTime => self.event.iter(),
            TimeDomain::ProcessingTime => self.processing.iter(),
        }
    }

    /// Number of registered timers (both domains).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }
}

#[cfg(test)]
mod tests {
    //! The timer service over a real (memory) keyed store: order, dedupe, delete, the bound of
    //! `pop_due`, and rebuilding the index from the store.

    use super::*;
    use crate::state::{MemoryBackend, StateBackend, StoreScope};

    const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 127 };

    fn store() -> Box<dyn KeyedStore> {
        let scope = StoreScope {
            job: "timers-test".into(),
            operator: "op".into(),
            subtask: 0,
            key_groups: ALL,
        };
        MemoryBackend::new().open_store(&scope, None).unwrap()
    }

    fn timer(time: Timestamp, key_group: KeyGroup, key: &[u8], ns: &[u8]) -> TimerEntry {
        TimerEntry {
            time,
            key_group,
            key: key.to_vec(),
            namespace: ns.to_vec(),
        }
    }

    fn pop_all(
        svc: &mut TimerService,
        store: &mut dyn KeyedStore,
        domain: TimeDomain,
        up_to: Timestamp,
    ) -> Vec<TimerEntry> {
        let mut out = Vec::new();
        while let Some(t) = svc.pop_due(store, domain, up_to).unwrap() {
            out.push(t);
        }
        out
    }

    fn stored_timers(store: &mut dyn KeyedStore) -> usize {
        let mut n = 0;
        store
            .scan_prefix(&[], &mut |k, _| {
                if k.len() > 2 && k[2] == TAG_TIMER {
                    n += 1;
                }
                Ok(true)
            })
            .unwrap();
        n
    }

    #[test]
    fn timers_fire_in_time_order_whatever_the_registration_order() {
        let mut st = store();
        let mut svc = TimerService::default();
        let times = [30, -5, 1_000_000, 10, 0, i64::MIN + 1, 20, -1_000];
        for (i, &t) in times.iter().enumerate() {
            let kg = (i * 37 % 128) as KeyGroup;
            svc.register(st.as_mut(), TimeDomain::EventTime, timer(t, kg, &[i as u8], &[0]))
                .unwrap();
        }
        let fired: Vec<Timestamp> = pop_all(&mut svc, st.as_mut(), TimeDomain::EventTime, Timestamp::MAX)
            .iter()
            .map(|t| t.time)
            .collect();
        let mut want = times.to_vec();
        want.sort();
        assert_eq!(fired, want);
        assert_eq!(svc.len(), 0);
        assert_eq!(stored_timers(st.as_mut()), 0, "fired timers are removed from the store");
    }

    #[test]
    fn equal_times_fire_once_per_key_and_namespace() {
        let mut st = store();
        let mut svc = TimerService::default();
        for key in [b"b", b"a"] {
            for ns in [&[1u8, b'x'][..], &[0u8][..]] {
                svc.register(st.as_mut(), TimeDomain::EventTime, timer(5, 3, key, ns))
                    .unwrap();
            }
        }
        let fired = pop_all(&mut svc, st.as_mut(), TimeDomain::EventTime, 5);
        assert_eq!(fired.len(), 4);
        let mut sorted = fired.clone();
        sorted.sort();
        assert_eq!(fired, sorted);
    }

    #[test]
    fn registering_the_same_timer_twice_keeps_one() {
        let mut st = store();
        let mut svc = TimerService::default();
        let t = timer(42, 7, b"key", &[0]);
        svc.register(st.as_mut(), TimeDomain::EventTime, t.clone()).unwrap();
        svc.register(st.as_mut(), TimeDomain::EventTime, t.clone()).unwrap();
        assert_eq!(svc.len(), 1);
        assert_eq!(stored_timers(st.as_mut()), 1);
        // Same time and key in the other domain, or another namespace, is another timer.
        svc.register(st.as_mut(), TimeDomain::ProcessingTime, t.clone())
            .unwrap();
        svc.register(st.as_mut(), TimeDomain::EventTime, timer(42, 7, b"key", &[1, b'n']))
            .unwrap();
        assert_eq!(svc.len(), 3);
        assert_eq!(stored_timers(st.as_mut()), 3);
        assert_eq!(pop_all(&mut svc, st.as_mut(), TimeDomain::EventTime, 100).len(), 2);
        assert_eq!(pop_all(&mut svc, st.as_mut(), TimeDomain::ProcessingTime, 100), vec![t]);
    }

    #[test]
    fn delete_removes_only_that_timer() {
        let mut st = store();
        let mut svc = TimerService::default();
        let a = timer(10, 1, b"a", &[0]);
        let b = timer(20, 1, b"b", &[0]);
        svc.register(st.as_mut(), TimeDomain::EventTime, a.clone()).unwrap();
        svc.register(st.as_mut(), TimeDomain::EventTime, b.clone()).unwrap();
        svc.register(st.as_mut(), TimeDomain::ProcessingTime, a.clone())
            .unwrap();
        svc.delete(st.as_mut(), TimeDomain::EventTime, &a).unwrap();
        // Deleting what does not exist is fine.
        svc.delete(st.as_mut(), TimeDomain::EventTime, &a).unwrap();
        svc.delete(st.as_mut(), TimeDomain::EventTime, &timer(20, 1, b"b", &[1]))
            .unwrap();
        assert_eq!(svc.len(), 2);
        assert_eq!(stored_timers(st.as_mut()), 2);
        assert_eq!(pop_all(&mut svc, st.as_mut(), TimeDomain::EventTime, 100), vec![b]);
        assert_eq!(
            svc.next_processing_time(),
            Some(10),
            "the processing-time twin survives"
        );
        // A deleted timer does not come back on reload.
        let mut reloaded = TimerService::load(st.as_mut(), ALL).unwrap();
        assert_eq!(pop_all(&mut reloaded, st.as_mut(), TimeDomain::EventTime, 100), vec![]);
    }

    #[test]
    fn pop_due_is_bounded_inclusively_by_up_to() {
        let mut st = store();
        let mut svc = TimerService::default();
        for t in [10, 20, 30] {
            svc.register(st.as_mut(), TimeDomain::ProcessingTime, timer(t, 0, b"k", &[0]))
                .unwrap();
        }
        assert_eq!(svc.pop_due(st.as_mut(), TimeDomain::ProcessingTime, 9).unwrap(), None);
        assert_eq!(
            svc.pop_due(st.as_mut(), TimeDomain::EventTime, 100).unwrap(),
            None,
            "other domain"
        );
        let fired: Vec<Timestamp> = pop_all(&mut svc, st.as_mut(), TimeDomain::ProcessingTime, 20)
            .iter()
            .map(|t| t.time)
            .collect();
        assert_eq!(fired, vec![10, 20]);
        assert_eq!(svc.next_processing_time(), Some(30));
        assert_eq!(svc.len(), 1);
        assert_eq!(stored_timers(st.as_mut()), 1);
        assert_eq!(pop_all(&mut svc, st.as_mut(), TimeDomain::ProcessingTime, 29), vec![]);
        assert_eq!(pop_all(&mut svc, st.as_mut(), TimeDomain::ProcessingTime, 30).len(), 1);
        assert_eq!(svc.next_processing_time(), None);
    }

    #[test]
    fn load_reproduces_the_registered_timers_in_the_same_order() {
        let mut st = store();
        let mut svc = TimerService::default();
        // A spread of times (negative, equal, extreme), key groups, keys and namespaces.
        for i in 0..300u64 {
            let x = crate::source::generator::mix(7, i);
            let time = match i % 5 {
                0 => (x % 1000) as Timestamp - 500,
                1 => 100,
                2 => i64::MIN + (x % 3) as Timestamp,
                3 => i64::MAX - (x % 3) as Timestamp,
                _ => (x >> 8) as Timestamp,
            };
            let kg = (x % 128) as KeyGroup;
            let key = (x % 17).to_be_bytes()[..(1 + x % 8) as usize].to_vec();
            let ns = if x.is_multiple_of(3) {
                vec![0]
            } else {
                vec![1, b's', b'0' + (x % 4) as u8]
            };
            let domain = if x.is_multiple_of(2) {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            svc.register(st.as_mut(), domain, timer(time, kg, &key, &ns)).unwrap();
        }
        // Some fire and some are deleted before the reload.
        let early = pop_all(&mut svc, st.as_mut(), TimeDomain::EventTime, -400);
        assert!(!early.is_empty());
        let victim = svc.processing.iter().nth(10).cloned().unwrap();
        svc.delete(st.as_mut(), TimeDomain::ProcessingTime, &victim).unwrap();

        let mut reloaded = TimerService::load(st.as_mut(), ALL).unwrap();
        assert_eq!(reloaded.len(), svc.len());
        assert_eq!(reloaded.event, svc.event);
        assert_eq!(reloaded.processing, svc.processing);
        assert_eq!(reloaded.next_processing_time(), svc.next_processing_time());
        let mut st2 = store();
        for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
            let want = pop_all(&mut svc, st2.as_mut(), domain, Timestamp::MAX);
            let got = pop_all(&mut reloaded, st.as_mut(), domain, Timestamp::MAX);
            assert_eq!(got, want, "{domain:?}");
        }
        assert_eq!(stored_timers(st.as_mut()), 0);
    }

    #[test]
    fn load_takes_only_the_key_groups_of_its_range() {
        let mut st = store();
        let mut svc = TimerService::default();
        for kg in 0..128u16 {
            svc.register(
                st.as_mut(),
                TimeDomain::EventTime,
                timer(kg as Timestamp, kg, b"k", &[0]),
            )
            .unwrap();
        }
        let part = KeyGroupRange { start: 32, end: 63 };
        let mut reloaded = TimerService::load(st.as_mut(), part).unwrap();
        let fired: Vec<KeyGroup> = pop_all(&mut reloaded, st.as_mut(), TimeDomain::EventTime, Timestamp::MAX)
            .iter()
            .map(|t| t.key_group)
            .collect();
        assert_eq!(fired, (32..=63).collect::<Vec<_>>());
    }

    #[test]
    fn timers_survive_a_snapshot_and_restore_of_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let mut st = store();
        let mut svc = TimerService::default();
        for (t, kg) in [(5, 9), (-3, 100), (5, 2)] {
            svc.register(st.as_mut(), TimeDomain::EventTime, timer(t, kg, b"key", &[0]))
                .unwrap();
        }
        let dir = tmp.path().join("snap");
        st.snapshot_to(&dir).unwrap();
        let scope = StoreScope {
            job: "timers-test".into(),
            operator: "op".into(),
            subtask: 0,
            key_groups: ALL,
        };
        let mut restored = MemoryBackend::new().open_store(&scope, Some(&dir)).unwrap();
        let mut reloaded = TimerService::load(restored.as_mut(), ALL).unwrap();
        let got: Vec<(Timestamp, KeyGroup)> = pop_all(&mut reloaded, restored.as_mut(), TimeDomain::EventTime, 10)
            .iter()
            .map(|t| (t.time, t.key_group))
            .collect();
        assert_eq!(got, vec![(-3, 100), (5, 2), (5, 9)]);
    }

    #[test]
    fn a_malformed_timer_entry_is_a_checkpoint_error() {
        let mut st = store();
        st.put(&[0, 5, TAG_TIMER, 0, 1], &[]).unwrap();
        let e = TimerService::load(st.as_mut(), ALL).err().expect("malformed entry");
        assert_eq!(e.kind(), crate::ErrorKind::Checkpoint);
    }
}
