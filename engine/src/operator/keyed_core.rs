//! What every keyed operator shares: its store and timers, the current key's encoding and key
//! group, the watermark, and firing timers in order.
//!
//! The watermark is part of the keyed state (see [`EventTime`]): a subtask restored from a
//! checkpoint continues at the watermark it had when the checkpoint was taken.

use crate::data::{Key, Record, Timestamp};
use crate::keyed::context::clean_up_expired;
use crate::keyed::descriptors::StateDeclaration;
use crate::keyed::event_time::EventTime;
use crate::keyed::restore_check::check_restored_states;
use crate::keyed::scope::{KeyScope, NS_TTL, NS_TTL_LIST, NS_USER};
use crate::keyed::timers::{TimeDomain, TimerService};
use crate::keyed::{KeyedContext, Timer};
use crate::metrics::OperatorMetrics;
use crate::operator::{ChannelWatermark, OperatorContext, OperatorSnapshot, SnapshotTarget};
use crate::side_output::SideOutputs;
use crate::state::{key_group_of, KeyGroup, KeyGroupRange, KeyedStore};
use crate::{Error, Result};
use std::marker::PhantomData;

/// Handles a user timer with the context of its key.
pub(crate) type TimerHandler<'h, K, O> = dyn FnMut(&mut KeyedContext<'_, K, O>, Timer) -> Result<()> + 'h;

/// Store, timers and per-key scratch space of a keyed operator subtask.
pub(crate) struct KeyedCore<K> {
    store: Box<dyn KeyedStore>,
    timers: TimerService,
    key_buf: Vec<u8>,
    scratch: Vec<u8>,
    /// What the user function emitted to side outputs since the operator last took it.
    pub(crate) side: SideOutputs,
    /// The watermark the operator acted on last (restored from the checkpoint it opened from).
    pub(crate) watermark: Timestamp,
    /// The watermark of each input channel when the runtime last reported them.
    pub(crate) input_channels: Vec<ChannelWatermark>,
    /// What the store holds already (so an unchanged event time is not written again).
    stored: EventTime,
    max_parallelism: usize,
    key_groups: KeyGroupRange,
    pub(crate) metrics: OperatorMetrics,
    describe: String,
    /// The attempt, checked while timers fire: a timer that re-arms itself at the time it
    /// fires must not keep a cancelled subtask from stopping.
    cancellation: crate::cancellation::Cancellation,
    /// The processing time a test harness drives by hand (`None`: the wall clock). Records,
    /// timers and TTLs of the operator all read [`now_ms`](Self::now_ms).
    pub(crate) manual_processing_time: Option<u64>,
    _k: PhantomData<fn() -> K>,
}

impl<K: Key> KeyedCore<K> {
    /// Takes the store the runtime opened and rebuilds the timer index and the watermark from
    /// it.
    pub(crate) fn open(ctx: &mut OperatorContext) -> Result<Self> {
        let mut store = ctx
            .store
            .take()
            .ok_or_else(|| Error::internal(format!("keyed operator {} has no state store", ctx.describe())))?;
        let timers = TimerService::load(store.as_mut(), ctx.key_groups)?;
        let stored = EventTime::load(store.as_mut(), ctx.key_groups)?;
        Ok(KeyedCore {
            store,
            timers,
            key_buf: Vec::with_capacity(64),
            side: SideOutputs::default(),
            scratch: Vec::with_capacity(128),
            watermark: stored.watermark,
            input_channels: stored.channels.clone(),
            stored,
            max_parallelism: ctx.max_parallelism,
            key_groups: ctx.key_groups,
            metrics: ctx.metrics.clone(),
            describe: ctx.describe(),
            cancellation: ctx.cancellation.clone(),
            manual_processing_time: None,
            _k: PhantomData,
        })
    }

    /// The operator's processing time: the wall clock, or the time a test harness set.
    pub(crate) fn now_ms(&self) -> u64 {
        self.manual_processing_time.unwrap_or_else(crate::wall_clock::now_ms)
    }

    /// The timers of `domain` registered by the user function (not TTL clean-ups), earliest
    /// first, as `(time, encoded key)`.
    pub(crate) fn user_timers(&self, domain: TimeDomain) -> impl Iterator<Item = (Timestamp, &[u8])> + '_ {
        self.timers
            .registered(domain)
            .filter(|t| t.namespace.first() == Some(&NS_USER))
            .map(|t| (t.time, t.key.as_slice()))
    }

    fn encode_key(&mut self, key: &K) -> Result<KeyGroup> {
        self.key_buf.clear();
        bincode::serde::encode_into_std_write(key, &mut self.key_buf, bincode::config::standard())?;
        let kg = key_group_of(&self.key_buf, self.max_parallelism);
        if !self.key_groups.contains(kg) {
            return Err(Error::internal(format!(
                "{}: key {key:?} (key group {kg}) was routed to a subtask owning key groups {}..={}",
                self.describe, self.key_groups.start, self.key_groups.end
            )));
        }
        Ok(kg)
    }

    /// Runs `f` with the context of `key` and event time `ts`; output goes to `out`.
    pub(crate) fn with_key<O, R>(
        &mut self,
        key: &K,
        ts: Option<Timestamp>,
        now_ms: u64,
        out: &mut Vec<Record<O>>,
        f: impl FnOnce(&mut KeyedContext<'_, K, O>) -> Result<R>,
    ) -> Result<R> {
        let kg = self.encode_key(key)?;
        let mut ctx = KeyedContext {
            scope: KeyScope {
                store: self.store.as_mut(),
                timers: &mut self.timers,
                key_group: kg,
                key: &self.key_buf,
                watermark: self.watermark,
                now_ms,
                timestamp: ts,
                buf: &mut self.scratch,
            },
            key,
            out,
            side: &mut self.side,
            metrics: &self.metrics,
        };
        f(&mut ctx)
    }

    /// Fires every timer of `domain` due at `up_to`, earliest first; user timers go to
    /// `on_timer`, TTL clean-up timers are handled here.
    pub(crate) fn fire_timers<O>(
        &mut self,
        domain: TimeDomain,
        up_to: Timestamp,
        now_ms: u64,
        out: &mut Vec<Record<O>>,
        on_timer: &mut TimerHandler<'_, K, O>,
    ) -> Result<()> {
        while let Some(t) = self.timers.pop_due(self.store.as_mut(), domain, up_to)? {
            if self.cancellation.is_cancelled() {
                return Err(Error::new(
                    crate::ErrorKind::Cancelled,
                    format!("{}: cancelled while firing timers", self.describe),
                ));
            }
            let key: K = crate::keyed::scope::decode(&t.key)?;
            let ts = match domain {
                TimeDomain::EventTime => Some(t.time),
                TimeDomain::ProcessingTime => None,
            };
            let mut ctx = KeyedContext {
                scope: KeyScope {
                    store: self.store.as_mut(),
                    timers: &mut self.timers,
                    key_group: t.key_group,
                    key: &t.key,
                    watermark: self.watermark,
                    now_ms,
                    timestamp: ts,
                    buf: &mut self.scratch,
                },
                key: &key,
                out,
                side: &mut self.side,
                metrics: &self.metrics,
            };
            match t.namespace.first() {
                Some(&NS_USER) => on_timer(&mut ctx, Timer { time: t.time, domain })?,
                Some(&ns @ (NS_TTL | NS_TTL_LIST)) => {
                    let name = std::str::from_utf8(&t.namespace[1..])
                        .map_err(|_| Error::internal("TTL timer with a non-UTF-8 state name"))?;
                    clean_up_expired(&mut ctx.scope, name, ns == NS_TTL_LIST)?;
                }
                _ => return Err(Error::internal("timer with an unknown namespace")),
            }
        }
        Ok(())
    }

    /// Checks the restored values of the states the function declares (see
    /// [`check_restored_states`]): a state the job cannot read fails the open.
    pub(crate) fn check_declared_states(&mut self, declared: &[StateDeclaration]) -> Result<()> {
        if declared.is_empty() {
            return Ok(());
        }
        check_restored_states(self.store.as_mut(), self.key_groups, declared, &self.describe)
    }

    /// The earliest processing-time timer.
    pub(crate) fn next_processing_time(&self) -> Option<u64> {
        self.timers.next_processing_time().map(|t| t.max(0) as u64)
    }

    /// The event time restored when the subtask opened (or last snapshotted).
    pub(crate) fn restored_event_time(&self) -> &EventTime {
        &self.stored
    }

    /// Writes the store's snapshot for a checkpoint, with the current event time in it.
    pub(crate) fn snapshot(&mut self, target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        let now = EventTime {
            watermark: self.watermark,
            channels: self.input_channels.clone(),
        };
        if now != self.stored {
            now.store(self.store.as_mut(), self.key_groups)?;
            self.stored = now;
        }
        let mut snap = OperatorSnapshot::default();
        if let Some(dir) = &target.dir {
            snap.keyed_files = self.store.snapshot_to(dir)?;
        }
        Ok(snap)
    }
}
