//! Window contents with an evictor: every record of each window with its timestamp, in one list
//! state per window (`window.evicting.{end}{start}` in hex). When the window fires the evictor
//! removes records, the remaining list is written back (eviction is part of the window's state,
//! and of the next checkpoint), and the window function runs over the rest.

use super::contents::{ProcessFn, WindowCollector};
use super::WindowContents;
use crate::data::{Data, Key, Timestamp};
use crate::keyed::KeyedContext;
use crate::window::evictor::{Evictor, EvictorContext, Stamped};
use crate::window::TimeWindow;
use crate::Result;
use std::sync::Arc;

/// The list state holding the records of `w`.
fn list_name(w: TimeWindow) -> String {
    let hex = |v: Timestamp| (v as u64) ^ (1 << 63);
    format!("window.evicting.{:016x}{:016x}", hex(w.end), hex(w.start))
}

/// Records with timestamps, evicted before `f` runs over them.
pub(crate) struct EvictingContents<K, T, O> {
    evictor: Arc<dyn Evictor<T>>,
    f: ProcessFn<K, T, O>,
}

impl<K, T, O> EvictingContents<K, T, O> {
    pub(crate) fn new(evictor: Arc<dyn Evictor<T>>, f: ProcessFn<K, T, O>) -> Self {
        EvictingContents { evictor, f }
    }
}

impl<K: Key, T: Data, O: Data> WindowContents<K, T> for EvictingContents<K, T, O> {
    type Out = O;

    fn add<X: Data>(&self, ctx: &mut KeyedContext<'_, K, X>, w: TimeWindow, value: T) -> Result<()> {
        let timestamp = ctx.timestamp();
        let name = list_name(w);
        ctx.list_state::<Stamped<T>>(&name).add(&Stamped { value, timestamp })
    }

    fn merge<X: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, X>,
        target: TimeWindow,
        sources: &[TimeWindow],
    ) -> Result<()> {
        let target = list_name(target);
        for s in sources {
            let name = list_name(*s);
            let moved = ctx.list_state::<Stamped<T>>(&name).get()?;
            ctx.list_state::<Stamped<T>>(&name).clear()?;
            let mut list = ctx.list_state::<Stamped<T>>(&target);
            for v in &moved {
                list.add(v)?;
            }
        }
        Ok(())
    }

    fn results<X: Data>(&self, ctx: &mut KeyedContext<'_, K, X>, w: TimeWindow, out: &mut Vec<O>) -> Result<()> {
        let name = list_name(w);
        let mut records = ctx.list_state::<Stamped<T>>(&name).get()?;
        if records.is_empty() {
            return Ok(());
        }
        let before = records.len();
        let clocks = EvictorContext {
            watermark: ctx.current_watermark(),
            processing_time: Timestamp::try_from(ctx.current_processing_time()).unwrap_or(Timestamp::MAX),
        };
        self.evictor.evict_before(&mut records, w, &clocks);
        if records.len() != before {
            ctx.count("evicted_records", (before - records.len()) as u64);
            ctx.list_state::<Stamped<T>>(&name).update(&records)?;
        }
        if records.is_empty() {
            return Ok(());
        }
        let values = records.into_iter().map(|r| r.value).collect();
        let mut collector = WindowCollector::new(out, &mut *ctx.side, w.max_timestamp());
        (self.f)(ctx.key, w, values, &mut collector)
    }

    fn clear<X: Data>(&self, ctx: &mut KeyedContext<'_, K, X>, w: TimeWindow) -> Result<()> {
        let name = list_name(w);
        ctx.list_state::<Stamped<T>>(&name).clear()
    }
}
