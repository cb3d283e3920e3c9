//! Processing each key's records in event-time order, whatever order they arrive in: the
//! building block of the queries whose SQL orders rows by time (q6's `OVER (ORDER BY ...)`)
//! or whose running results must not depend on which upstream subtask was faster (q4).

use std::marker::PhantomData;
use std::sync::Arc;
use weir_engine::data::Timestamp;
use weir_engine::prelude::*;

/// Folds one record into a key's state, pushing any results.
pub(crate) type Fold<T, S, O> = Arc<dyn Fn(&mut S, T, &mut Vec<O>) + Send + Sync>;

/// The types an [`InTimeOrder`] works on, for its marker field.
type TypesOf<T, S, O> = fn() -> (T, S, O);

/// A keyed process that holds each record until the watermark reaches its timestamp, then
/// folds the key's due records into the key's state in the order (timestamp, record), and
/// emits the results at that timestamp.
///
/// Every record with a timestamp at or below the watermark has arrived by the time the
/// watermark passes it (that is what a watermark promises), so the order, and with it every
/// result, is the same at any parallelism and after any restore.
///
/// # Checkpointing
/// Waiting records and the folded state are keyed state, and the wake-ups are event-time
/// timers: a restored job holds exactly the records that had arrived by the checkpoint.
pub(crate) struct InTimeOrder<T, S, O> {
    fold: Fold<T, S, O>,
    _t: PhantomData<TypesOf<T, S, O>>,
}

impl<T, S, O> Clone for InTimeOrder<T, S, O> {
    fn clone(&self) -> Self {
        InTimeOrder {
            fold: self.fold.clone(),
            _t: PhantomData,
        }
    }
}

impl<T, S, O> InTimeOrder<T, S, O> {
    /// Folds with `fold`, starting each key from `S::default()`.
    pub(crate) fn new(fold: impl Fn(&mut S, T, &mut Vec<O>) + Send + Sync + 'static) -> Self {
        InTimeOrder {
            fold: Arc::new(fold),
            _t: PhantomData,
        }
    }
}

impl<K: Key, T: Data + Ord, S: Data + Default, O: Data> KeyedProcess<K, T> for InTimeOrder<T, S, O> {
    type Out = O;

    fn process(&mut self, value: T, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        let ts = ctx
            .timestamp()
            .ok_or_else(|| Error::config("a step ordering records by event time got a record without a timestamp"))?;
        ctx.list_state::<(Timestamp, T)>("waiting").add(&(ts, value))?;
        ctx.register_event_time_timer(ts)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        let waiting = ctx.list_state::<(Timestamp, T)>("waiting").get()?;
        let (mut due, rest): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|(t, _)| *t <= timer.time);
        if due.is_empty() {
            return Ok(());
        }
        due.sort();
        ctx.list_state("waiting").update(&rest)?;
        let mut state: S = ctx.value_state("folded").get()?.unwrap_or_default();
        let mut out = Vec::new();
        for (_, v) in due {
            (self.fold)(&mut state, v, &mut out);
        }
        ctx.value_state("folded").set(&state)?;
        for o in out {
            ctx.emit_at(o, timer.time);
        }
        Ok(())
    }
}
