//! [`OperatorListDescriptor`]: an operator list's name, element type, distribution at a
//! restore and schema, declared once.

use crate::data::Data;
use crate::keyed::schema::StateSchema;
use serde::{Deserialize, Serialize};

/// How a list's elements are handed out when a step restores (see the
/// [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListDistribution {
    /// Each element to exactly one subtask: its own at the same parallelism, even contiguous
    /// shares of all old subtasks' elements at another (Flink's `getListState`).
    Split,
    /// Every element to every subtask (Flink's `getUnionListState`).
    Union,
}

/// Declares an operator list: name, element type, [`ListDistribution`] and schema.
///
/// ```
/// use weir_engine::functions::operator_state::OperatorListDescriptor;
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct OffsetV0 { at: u32 }
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Offset { at: u64 }
/// const BUFFER: OperatorListDescriptor<u64> = OperatorListDescriptor::new("buffer");
/// fn offsets() -> OperatorListDescriptor<Offset> {
///     OperatorListDescriptor::new("offsets")
///         .union()
///         .version(1)
///         .migrate_from::<OffsetV0>(0, |old| Offset { at: u64::from(old.at) })
/// }
/// ```
pub struct OperatorListDescriptor<T> {
    name: &'static str,
    distribution: ListDistribution,
    schema: StateSchema<T>,
}

impl<T: Data> OperatorListDescriptor<T> {
    /// A split list `name` of self-describing elements, schema version 0.
    pub const fn new(name: &'static str) -> Self {
        OperatorListDescriptor {
            name,
            distribution: ListDistribution::Split,
            schema: StateSchema::declared(),
        }
    }

    /// Makes it a union list: every subtask restores the elements of all old subtasks.
    pub const fn union(mut self) -> Self {
        self.distribution = ListDistribution::Union;
        self
    }

    crate::keyed::schema::schema_methods!(T);

    /// How it is handed out at a restore.
    pub const fn distribution(&self) -> ListDistribution {
        self.distribution
    }

    pub(super) fn schema(&self) -> &StateSchema<T> {
        &self.schema
    }
}

impl<T> Clone for OperatorListDescriptor<T> {
    fn clone(&self) -> Self {
        OperatorListDescriptor {
            name: self.name,
            distribution: self.distribution,
            schema: self.schema.clone(),
        }
    }
}
