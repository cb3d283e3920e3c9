//! What windows hold: an accumulator (`aggregate`), a reduced value (`reduce`) or every record
//! (`process`), each in keyed state of the current key.

use super::{window_key, WindowContents, WindowKey};
use crate::data::{Data, Key, Timestamp};
use crate::keyed::KeyedContext;
use crate::operator::rolling::AggregateFunction;
use crate::side_output::{OutputTag, SideOutputs};
use crate::window::{TimeWindow, Windowed};
use crate::Result;
use std::marker::PhantomData;
use std::sync::Arc;

const ACC: &str = "window.acc";
const REDUCED: &str = "window.reduced";

/// An [`AggregateFunction`]'s accumulator per window, in map state `window.acc`.
pub(crate) struct AggContents<T, A> {
    agg: A,
    _t: PhantomData<fn(T)>,
}

impl<T, A> AggContents<T, A> {
    pub(crate) fn new(agg: A) -> Self {
        AggContents { agg, _t: PhantomData }
    }
}

impl<K: Key, T: Data, A: AggregateFunction<T>> WindowContents<K, T> for AggContents<T, A> {
    type Out = Windowed<K, A::Out>;

    fn add<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>, w: TimeWindow, value: T) -> Result<()> {
        let k = window_key(w);
        let mut st = ctx.map_state::<WindowKey, A::Acc>(ACC);
        let mut acc = st.get(&k)?.unwrap_or_else(|| self.agg.create());
        self.agg.add(&mut acc, &value);
        st.put(&k, &acc)
    }

    fn merge<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        target: TimeWindow,
        sources: &[TimeWindow],
    ) -> Result<()> {
        let k = window_key(target);
        let mut st = ctx.map_state::<WindowKey, A::Acc>(ACC);
        let mut acc = st.get(&k)?.unwrap_or_else(|| self.agg.create());
        for s in sources {
            let sk = window_key(*s);
            if let Some(other) = st.get(&sk)? {
                self.agg.merge(&mut acc, other);
                st.remove(&sk)?;
            }
        }
        st.put(&k, &acc)
    }

    fn results<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        w: TimeWindow,
        out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        if let Some(acc) = ctx.map_state::<WindowKey, A::Acc>(ACC).get(&window_key(w))? {
            out.push(Windowed {
                key: ctx.key().clone(),
                window: w,
                value: self.agg.result(&acc),
            });
        }
        Ok(())
    }

    fn clear<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>, w: TimeWindow) -> Result<()> {
        ctx.map_state::<WindowKey, A::Acc>(ACC).remove(&window_key(w))
    }
}

/// The records of each window combined with a function, in map state `window.reduced`.
pub(crate) struct ReduceContents<T> {
    pub(crate) f: Arc<dyn Fn(T, T) -> T + Send + Sync>,
}

impl<K: Key, T: Data> WindowContents<K, T> for ReduceContents<T> {
    type Out = Windowed<K, T>;

    fn add<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>, w: TimeWindow, value: T) -> Result<()> {
        let k = window_key(w);
        let mut st = ctx.map_state::<WindowKey, T>(REDUCED);
        let next = match st.get(&k)? {
            Some(prev) => (self.f)(prev, value),
            None => value,
        };
        st.put(&k, &next)
    }

    fn merge<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        target: TimeWindow,
        sources: &[TimeWindow],
    ) -> Result<()> {
        let k = window_key(target);
        let mut st = ctx.map_state::<WindowKey, T>(REDUCED);
        let mut acc = st.get(&k)?;
        for s in sources {
            let sk = window_key(*s);
            if let Some(other) = st.get(&sk)? {
                acc = Some(match acc {
                    Some(a) => (self.f)(a, other),
                    None => other,
                });
                st.remove(&sk)?;
            }
        }
        match acc {
            Some(a) => st.put(&k, &a),
            None => Ok(()),
        }
    }

    fn results<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        w: TimeWindow,
        out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        if let Some(value) = ctx.map_state::<WindowKey, T>(REDUCED).get(&window_key(w))? {
            out.push(Windowed {
                key: ctx.key().clone(),
                window: w,
                value,
            });
        }
        Ok(())
    }

    fn clear<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>, w: TimeWindow) -> Result<()> {
        ctx.map_state::<WindowKey, T>(REDUCED).remove(&window_key(w))
    }
}

/// A window function over all records of a window.
pub(crate) type ProcessFn<K, T, O> =
    Arc<dyn Fn(&K, TimeWindow, Vec<T>, &mut WindowCollector<'_, O>) -> Result<()> + Send + Sync>;

/// Every record of each window, in one list state per window (so appending is O(1) and a
/// window's records are read with one prefix scan), named by [`list_name`].
pub(crate) struct ProcessContents<K, T, O> {
    f: ProcessFn<K, T, O>,
}

impl<K, T, O> ProcessContents<K, T, O> {
    pub(crate) fn new(
        f: impl Fn(&K, TimeWindow, Vec<T>, &mut WindowCollector<'_, O>) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        ProcessContents { f: Arc::new(f) }
    }
}

/// Where a window `process` function emits: the window's results and side outputs, all at
/// the window's [`max_timestamp`](TimeWindow::max_timestamp).
pub struct WindowCollector<'a, O> {
    results: &'a mut Vec<O>,
    side: &'a mut SideOutputs,
    timestamp: Timestamp,
}

impl<'a, O> WindowCollector<'a, O> {
    pub(crate) fn new(results: &'a mut Vec<O>, side: &'a mut SideOutputs, timestamp: Timestamp) -> Self {
        WindowCollector {
            results,
            side,
            timestamp,
        }
    }

    /// Emits a result of the window.
    pub fn emit(&mut self, result: O) {
        self.results.push(result);
    }

    /// Emits `value` to the side output `tag`.
    ///
    /// # Errors
    /// `Data` if `value` cannot be encoded.
    pub fn output<T: Data>(&mut self, tag: &OutputTag<T>, value: T) -> Result<()> {
        self.side.emit(tag, &value, Some(self.timestamp))
    }
}

/// The name of the list state holding the records of `w`: `window.elements.` and the window's
/// order-preserving encoding (end, start) in hex.
pub(crate) fn list_name(w: TimeWindow) -> String {
    let hex = |v: Timestamp| (v as u64) ^ (1 << 63);
    format!("window.elements.{:016x}{:016x}", hex(w.end), hex(w.start))
}

impl<K: Key, T: Data, O: Data> WindowContents<K, T> for ProcessContents<K, T, O> {
    type Out = O;

    fn add<X: Data>(&self, ctx: &mut KeyedContext<'_, K, X>, w: TimeWindow, value: T) -> Result<()> {
        let name = list_name(w);
        ctx.list_state::<T>(&name).add(&value)
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
            let moved = ctx.list_state::<T>(&name).get()?;
            ctx.list_state::<T>(&name).clear()?;
            let mut list = ctx.list_state::<T>(&target);
            for v in &moved {
                list.add(v)?;
            }
        }
        Ok(())
    }

    fn results<X: Data>(&self, ctx: &mut KeyedContext<'_, K, X>, w: TimeWindow, out: &mut Vec<O>) -> Result<()> {
        let name = list_name(w);
        let values = ctx.list_state::<T>(&name).get()?;
        if !values.is_empty() {
            let mut collector = WindowCollector {
                results: out,
                side: &mut *ctx.side,
                timestamp: w.max_timestamp(),
            };
            (self.f)(ctx.key, w, values, &mut collector)?;
        }
        Ok(())
    }

    fn clear<X: Data>(&self, ctx: &mut KeyedContext<'_, K, X>, w: TimeWindow) -> Result<()> {
        let name = list_name(w);
        ctx.list_state::<T>(&name).clear()
    }
}
