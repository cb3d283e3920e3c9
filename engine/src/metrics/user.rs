//! Named counters of one subtask (`ctx.count(name, n)`): found without a lock once a name was
//! seen, registered (and exported) under a lock the first time.

use crate::metrics::registry::{self, CounterLabels, SubtaskLabels};
use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One named counter: its total for reports and its exported series.
#[derive(Debug)]
struct Named {
    name: Box<str>,
    total: AtomicU64,
    exported: Counter,
}

/// The named counters of one subtask. Reads (the per-record path) load an immutable list and
/// scan it: subtasks have a handful of names, compared without hashing.
#[derive(Debug, Default)]
pub(crate) struct NamedCounters {
    list: ArcSwap<Vec<Arc<Named>>>,
    /// Serializes additions of new names.
    adding: Mutex<()>,
    labels: Option<SubtaskLabels>,
}

impl NamedCounters {
    pub(crate) fn new(labels: Option<SubtaskLabels>) -> Self {
        NamedCounters {
            labels,
            ..Default::default()
        }
    }

    pub(crate) fn add(&self, name: &str, n: u64) {
        let list = self.list.load();
        if let Some(c) = list.iter().find(|c| &*c.name == name) {
            c.total.fetch_add(n, Ordering::Relaxed);
            c.exported.inc_by(n);
            return;
        }
        drop(list);
        let c = self.register(name);
        c.total.fetch_add(n, Ordering::Relaxed);
        c.exported.inc_by(n);
    }

    #[cold]
    fn register(&self, name: &str) -> Arc<Named> {
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.list.load_full();
        if let Some(c) = current.iter().find(|c| &*c.name == name) {
            return c.clone();
        }
        let exported = match &self.labels {
            None => Counter::default(),
            Some(l) => {
                let f = &registry::global().families;
                match name {
                    "late_records" => f.late_records.get_or_create_owned(l),
                    "dead_letters" => f.dead_letters.get_or_create_owned(l),
                    "skipped_records" => f.skipped_records.get_or_create_owned(l),
                    _ => f.user_counter.get_or_create_owned(&CounterLabels {
                        job: l.job.clone(),
                        step: l.step.clone(),
                        subtask: l.subtask,
                        name: name.to_string(),
                    }),
                }
            }
        };
        let named = Arc::new(Named {
            name: name.into(),
            total: AtomicU64::new(0),
            exported,
        });
        let mut next = Vec::clone(&current);
        next.push(named.clone());
        self.list.store(Arc::new(next));
        named
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.list
            .load()
            .iter()
            .map(|c| (c.name.to_string(), c.total.load(Ordering::Relaxed)))
            .collect()
    }
}
