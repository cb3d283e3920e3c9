//! When a window fires: the [`Trigger`] trait (Flink's `Trigger`), what it decides
//! ([`TriggerResult`]), and what it may do ([`TriggerContext`]).
//!
//! A trigger is asked on every record added to a window, on every event-time and
//! processing-time timer of the window's key, and once more when the window is merged or its
//! state dropped. It keeps what it needs (counts, the next fire time) in per-window keyed state
//! through its context, so that state is part of every checkpoint: after a failure and restore,
//! or a rescale, the trigger continues from the checkpoint with the window's contents (a count
//! trigger fires after exactly `n` records whatever happened in between).

use crate::data::Timestamp;
use crate::window::TimeWindow;
use crate::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a trigger decides for a window (Flink's `TriggerResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// The window function runs over the contents and its results are emitted; the contents
    /// stay (a later firing sees them again, with what arrived since).
    Fire,
    /// The contents are dropped without a result.
    Purge,
    /// The window fires, then its contents are dropped.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window fires.
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    /// Whether the contents are dropped.
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// Decides when a window fires and whether its contents are purged (Flink's `Trigger`).
///
/// Timers identify a key and a time, not a window: a timer fires `on_event_time` /
/// `on_processing_time` for *every* window of its key, so a trigger checks that the time is
/// one it registered for the window (its `max_timestamp`, or a time kept in its state).
/// Everything a trigger must remember goes into its context's state, never into fields.
pub trait Trigger<T>: Send + Sync + std::fmt::Debug + 'static {
    /// A record (with its timestamp, if it has one) was added to the window.
    ///
    /// # Errors
    /// State access failed, or the record cannot be handled (for example, an event-time
    /// trigger on a record without a timestamp).
    fn on_element(
        &self,
        value: &T,
        timestamp: Option<Timestamp>,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult>;

    /// The watermark reached `time`, an event-time timer of the window's key.
    ///
    /// # Errors
    /// State access failed.
    fn on_event_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult>;

    /// The wall clock reached `time`, a processing-time timer of the window's key.
    ///
    /// # Errors
    /// State access failed.
    fn on_processing_time(&self, time: Timestamp, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult>;

    /// The window's state is being dropped: remove what the trigger keeps for it.
    ///
    /// # Errors
    /// State access failed.
    fn clear(&self, ctx: &mut TriggerContext<'_>) -> Result<()>;

    /// Whether the trigger can be used with merging (session) windows.
    fn can_merge(&self) -> bool {
        false
    }

    /// The windows `merged` were merged into the context's window (which may have state of its
    /// own): combine their state into it. Their state is [cleared](Self::clear) afterwards.
    ///
    /// # Errors
    /// State access failed.
    fn on_merge(&self, merged: &[TimeWindow], ctx: &mut TriggerContext<'_>) -> Result<()> {
        let _ = (merged, ctx);
        Ok(())
    }

    /// Checks the parameters; the message becomes a configuration error naming the step.
    fn validate(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Where a trigger's state and timers live: the window step's keyed state of the current key.
pub(crate) trait TriggerBackend {
    /// The raw value of trigger state `name` of `window`.
    fn get(&mut self, name: &str, window: TimeWindow) -> Result<Option<Vec<u8>>>;
    /// Sets trigger state `name` of `window`.
    fn put(&mut self, name: &str, window: TimeWindow, value: Vec<u8>) -> Result<()>;
    /// Removes trigger state `name` of `window`.
    fn remove(&mut self, name: &str, window: TimeWindow) -> Result<()>;
    /// Registers an event-time timer of the current key.
    fn register_event_time_timer(&mut self, time: Timestamp) -> Result<()>;
    /// Registers a processing-time timer of the current key.
    fn register_processing_time_timer(&mut self, time: Timestamp) -> Result<()>;
    /// The step's watermark.
    fn watermark(&self) -> Timestamp;
    /// The subtask's wall clock in ms.
    fn processing_time(&self) -> Timestamp;
}

/// What a trigger sees and may do for one window of the current key: per-window state (in
/// keyed state, so checkpointed), timers, and the clocks (Flink's `TriggerContext`).
pub struct TriggerContext<'a> {
    backend: &'a mut dyn TriggerBackend,
    window: TimeWindow,
}

impl<'a> TriggerContext<'a> {
    pub(crate) fn new(backend: &'a mut dyn TriggerBackend, window: TimeWindow) -> Self {
        TriggerContext { backend, window }
    }

    /// The window the trigger is asked about.
    pub fn window(&self) -> TimeWindow {
        self.window
    }

    /// The step's current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.backend.watermark()
    }

    /// The subtask's wall clock in ms since the epoch.
    pub fn current_processing_time(&self) -> Timestamp {
        self.backend.processing_time()
    }

    /// Asks for `on_event_time(time)` once the watermark reaches `time` (for every window of
    /// the key; see [`Trigger`]).
    ///
    /// # Errors
    /// The timer could not be stored.
    pub fn register_event_time_timer(&mut self, time: Timestamp) -> Result<()> {
        self.backend.register_event_time_timer(time)
    }

    /// Asks for `on_processing_time(time)` once the wall clock reaches `time`.
    ///
    /// # Errors
    /// The timer could not be stored.
    pub fn register_processing_time_timer(&mut self, time: Timestamp) -> Result<()> {
        self.backend.register_processing_time_timer(time)
    }

    /// The trigger's state `name` of this window.
    ///
    /// # Errors
    /// State access failed, or the stored value is not a `V`.
    pub fn state<V: DeserializeOwned>(&mut self, name: &str) -> Result<Option<V>> {
        let w = self.window;
        self.state_of(w, name)
    }

    /// The trigger's state `name` of another window of the key (a window being merged).
    ///
    /// # Errors
    /// State access failed, or the stored value is not a `V`.
    pub fn state_of<V: DeserializeOwned>(&mut self, window: TimeWindow, name: &str) -> Result<Option<V>> {
        match self.backend.get(name, window)? {
            None => Ok(None),
            Some(bytes) => {
                let (v, _) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard())?;
                Ok(Some(v))
            }
        }
    }

    /// Sets the trigger's state `name` of this window.
    ///
    /// # Errors
    /// State access failed.
    pub fn set_state<V: Serialize>(&mut self, name: &str, value: &V) -> Result<()> {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())?;
        self.backend.put(name, self.window, bytes)
    }

    /// Removes the trigger's state `name` of this window.
    ///
    /// # Errors
    /// State access failed.
    pub fn clear_state(&mut self, name: &str) -> Result<()> {
        self.backend.remove(name, self.window)
    }
}
