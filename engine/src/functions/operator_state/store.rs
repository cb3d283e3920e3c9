//! The operator state of one function subtask: the lists it restored, the lists its function
//! declared, and what it writes at a checkpoint.

use super::descriptor::{ListDistribution, OperatorListDescriptor};
use super::encoding::{SavedFunctionState, SavedList};
use super::list::OperatorListState;
use super::redistribute::{share, OldList};
use crate::data::Data;
use crate::functions::RuntimeContext;
use crate::keyed::event_time::EventTime;
use crate::keyed::schema::decode_header;
use crate::{Error, Result};
use std::sync::{Arc, Mutex};

/// Encodes a declared list's elements, each with its schema header.
type EncodeList = Box<dyn Fn() -> Result<Vec<Vec<u8>>> + Send>;

struct Declared {
    name: &'static str,
    distribution: ListDistribution,
    encode: EncodeList,
}

/// The operator state of one subtask of a function step (see the [module docs](super)).
pub(crate) struct FunctionOperatorState {
    runtime: RuntimeContext,
    /// What the old subtasks wrote (empty when the step starts without a checkpoint).
    restored: Vec<SavedFunctionState>,
    declared: Vec<Declared>,
    /// This subtask's share of restored lists its function did not declare.
    carried: Vec<SavedList>,
    /// The event time of the input the checkpoint held, for the input gate.
    restored_input: Option<EventTime>,
    /// How many restored elements the declared lists received.
    restored_elements: u64,
}

impl FunctionOperatorState {
    /// The state subtask `runtime` opens with: from its own state of the checkpoint (`own`,
    /// the step kept its parallelism) and the states of old subtasks (`others`, by index).
    ///
    /// # Errors
    /// `Checkpoint` if a state does not decode.
    pub(crate) fn restore(runtime: RuntimeContext, own: Option<&[u8]>, others: &[(usize, Vec<u8>)]) -> Result<Self> {
        let mut restored = Vec::new();
        if let Some(raw) = own {
            restored.push(SavedFunctionState::from_bytes(
                raw,
                runtime.subtask,
                &runtime.describe(),
            )?);
        }
        for (i, raw) in others {
            if own.is_none() || *i != runtime.subtask {
                let describe = format!("{}[{i}]", runtime.step);
                restored.push(SavedFunctionState::from_bytes(raw, *i, &describe)?);
            }
        }
        let restored_input = restored_input(&restored, &runtime);
        Ok(FunctionOperatorState {
            runtime,
            restored,
            declared: Vec::new(),
            carried: Vec::new(),
            restored_input,
            restored_elements: 0,
        })
    }

    /// What the function's `initialize_state` gets.
    pub(crate) fn context(&mut self) -> FunctionStateContext<'_> {
        FunctionStateContext { state: self }
    }

    /// After `initialize_state`: keeps this subtask's share of the restored lists the function
    /// did not declare, so that the next checkpoint still holds them.
    pub(crate) fn keep_undeclared(&mut self) {
        let mut names: Vec<(&str, ListDistribution)> = Vec::new();
        for s in &self.restored {
            for l in &s.lists {
                if !self.declared.iter().any(|d| d.name == l.name) && !names.iter().any(|(n, _)| *n == l.name) {
                    names.push((&l.name, l.distribution));
                }
            }
        }
        let carried: Vec<SavedList> = names
            .into_iter()
            .map(|(name, distribution)| SavedList {
                name: name.to_string(),
                distribution,
                elements: self.share_of(name, distribution).into_iter().cloned().collect(),
            })
            .collect();
        if !carried.is_empty() {
            tracing::warn!(
                step = %self.runtime.describe(),
                lists = ?carried.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
                "restored operator lists the function does not declare are kept and checkpointed again"
            );
        }
        self.carried = carried;
        self.restored.clear();
    }

    /// How many restored elements the lists the function declared received.
    pub(crate) fn restored_elements(&self) -> u64 {
        self.restored_elements
    }

    /// The input's event time the checkpoint held: this subtask's own at the same parallelism,
    /// otherwise the earliest of all old subtasks.
    pub(crate) fn restored_input(&self) -> Option<&EventTime> {
        self.restored_input.as_ref()
    }

    /// The encoded state of this subtask at a checkpoint, with `input` its input's event time.
    ///
    /// # Errors
    /// An element does not encode.
    pub(crate) fn to_bytes(&self, input: &EventTime) -> Result<Vec<u8>> {
        let mut lists = Vec::with_capacity(self.declared.len() + self.carried.len());
        for d in &self.declared {
            let elements = (d.encode)().map_err(|e| {
                e.context(format!(
                    "writing operator list \"{}\" of {}",
                    d.name,
                    self.runtime.describe()
                ))
            })?;
            lists.push(SavedList {
                name: d.name.to_string(),
                distribution: d.distribution,
                elements,
            });
        }
        lists.extend(self.carried.iter().cloned());
        SavedFunctionState {
            subtask: self.runtime.subtask,
            parallelism: self.runtime.parallelism,
            input: input.clone(),
            lists,
        }
        .to_bytes()
    }

    /// This subtask's share of restored list `name`, handed out as `distribution`.
    fn share_of(&self, name: &str, distribution: ListDistribution) -> Vec<&Vec<u8>> {
        let old: Vec<OldList<'_, Vec<u8>>> = self
            .restored
            .iter()
            .map(|s| OldList {
                subtask: s.subtask,
                parallelism: s.parallelism,
                elements: s
                    .lists
                    .iter()
                    .find(|l| l.name == name)
                    .map_or(&[][..], |l| &l.elements[..]),
            })
            .collect();
        share(distribution, &old, self.runtime.subtask, self.runtime.parallelism)
    }
}

/// The event time a restored subtask's input starts from.
fn restored_input(restored: &[SavedFunctionState], runtime: &RuntimeContext) -> Option<EventTime> {
    let same = restored
        .iter()
        .all(|s| s.parallelism == runtime.parallelism && s.parallelism != 0);
    if same {
        if let Some(own) = restored.iter().find(|s| s.subtask == runtime.subtask) {
            return Some(own.input.clone());
        }
    }
    restored.iter().map(|s| s.input.clone()).reduce(EventTime::min)
}

/// What a function's `initialize_state` gets (Flink's `FunctionInitializationContext`): its
/// subtask, whether it restores, and its operator lists.
pub struct FunctionStateContext<'a> {
    state: &'a mut FunctionOperatorState,
}

impl FunctionStateContext<'_> {
    /// Where the function runs.
    pub fn runtime(&self) -> &RuntimeContext {
        &self.state.runtime
    }

    /// Whether the step restores a checkpoint that held its operator state.
    pub fn is_restored(&self) -> bool {
        !self.state.restored.is_empty()
    }

    /// Declares the operator list `descriptor` and returns its handle, holding this subtask's
    /// share of the restored elements (see the [module docs](super)).
    ///
    /// # Errors
    /// `Config` if the list was declared already by this function, or if a restored element
    /// cannot be read as the descriptor's type (the message names the step and the list).
    pub fn list_state<T: Data>(&mut self, descriptor: &OperatorListDescriptor<T>) -> Result<OperatorListState<T>> {
        let name = descriptor.name();
        let describe = self.state.runtime.describe();
        if self.state.declared.iter().any(|d| d.name == name) {
            return Err(Error::config(format!(
                "operator list \"{name}\" of {describe} is declared twice: every list needs its own name"
            )));
        }
        let schema = descriptor.schema().clone();
        let mut values = Vec::new();
        for raw in self.state.share_of(name, descriptor.distribution()) {
            let value = decode_header(raw)
                .and_then(|(header, payload)| schema.decode(name, "list element", header.format, payload))
                .map_err(|e| e.context(format!("restoring operator list \"{name}\" of {describe}")))?;
            values.push(value);
        }
        self.state.restored_elements += values.len() as u64;
        let cell = Arc::new(Mutex::new(values));
        let handle = OperatorListState { cell: cell.clone() };
        self.state.declared.push(Declared {
            name,
            distribution: descriptor.distribution(),
            encode: Box::new(move || {
                let values = cell.lock().unwrap_or_else(|p| p.into_inner());
                values.iter().map(|v| schema.encode(v, None)).collect()
            }),
        });
        Ok(handle)
    }
}
