//! [`OperatorListDescriptor`]: an operator list's name, element type, distribution at a
//! restore and schema, declared once.

use crate::data::Data;
use crate::keyed::schema::{Format, StateCodec, StateSchema};
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

    /// Declares the version of the element type new elements are written as (0 by default).
    /// Elements of older versions are read through [`migrate_from`](Self::migrate_from).
    pub const fn version(mut self, version: u32) -> Self {
        self.schema.version = version;
        self
    }

    /// Writes elements with bincode ([`StateCodec::Positional`]): compact, but any change of
    /// the type's layout needs a new version and a migration.
    pub const fn positional(mut self) -> Self {
        self.schema.codec = StateCodec::Positional;
        self
    }

    /// Reads elements of version `from` as `Old` and converts them to the current type.
    pub fn migrate_from<Old: Data>(mut self, from: u32, f: impl Fn(Old) -> T + Send + Sync + 'static) -> Self {
        self.schema.add_migration(from, f);
        self
    }

    /// The list's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// How it is handed out at a restore.
    pub const fn distribution(&self) -> ListDistribution {
        self.distribution
    }

    /// The format new elements are written with.
    pub fn format(&self) -> Format {
        self.schema.format()
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
