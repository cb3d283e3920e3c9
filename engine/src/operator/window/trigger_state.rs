//! Trigger state and timers in the window step's keyed state: each trigger state `name` is the
//! map state `window.trigger.{name}` of the current key, from window (as [`WindowKey`]) to the
//! encoded value, so it is checkpointed, restored and redistributed on rescale with the
//! window's contents.

use super::{window_key, WindowKey};
use crate::data::{Data, Key, Timestamp};
use crate::keyed::KeyedContext;
use crate::window::trigger::TriggerBackend;
use crate::window::TimeWindow;
use crate::Result;

/// A [`TriggerBackend`] over the keyed context of the current key.
pub(crate) struct KeyedTriggerState<'c, 'a, K, O> {
    pub(crate) ctx: &'c mut KeyedContext<'a, K, O>,
    /// The input ended and processing time was advanced to its end: new processing-time
    /// timers are not registered (they could re-arm forever).
    pub(crate) draining: bool,
}

fn state_name(name: &str) -> String {
    format!("window.trigger.{name}")
}

impl<K: Key, O: Data> TriggerBackend for KeyedTriggerState<'_, '_, K, O> {
    fn get(&mut self, name: &str, window: TimeWindow) -> Result<Option<Vec<u8>>> {
        let name = state_name(name);
        self.ctx.map_state::<WindowKey, Vec<u8>>(&name).get(&window_key(window))
    }

    fn put(&mut self, name: &str, window: TimeWindow, value: Vec<u8>) -> Result<()> {
        let name = state_name(name);
        self.ctx
            .map_state::<WindowKey, Vec<u8>>(&name)
            .put(&window_key(window), &value)
    }

    fn remove(&mut self, name: &str, window: TimeWindow) -> Result<()> {
        let name = state_name(name);
        self.ctx
            .map_state::<WindowKey, Vec<u8>>(&name)
            .remove(&window_key(window))
    }

    fn register_event_time_timer(&mut self, time: Timestamp) -> Result<()> {
        self.ctx.register_event_time_timer(time)
    }

    fn register_processing_time_timer(&mut self, time: Timestamp) -> Result<()> {
        if self.draining {
            return Ok(());
        }
        self.ctx.register_processing_time_timer(time)
    }

    fn watermark(&self) -> Timestamp {
        self.ctx.current_watermark()
    }

    fn processing_time(&self) -> Timestamp {
        Timestamp::try_from(self.ctx.current_processing_time()).unwrap_or(Timestamp::MAX)
    }
}
