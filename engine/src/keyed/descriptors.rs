//! Typed state descriptors: a state's name, type, TTL and schema declared once, used by every
//! access (`ctx.state(&BALANCE)`) and by the check a step runs when it restores.
//!
//! ```
//! use weir_engine::keyed::{Ttl, ValueStateDescriptor, ListStateDescriptor, SortedMapStateDescriptor};
//! use std::time::Duration;
//!
//! const BALANCE: ValueStateDescriptor<i64> = ValueStateDescriptor::new("balance");
//! const RECENT: ListStateDescriptor<u64> =
//!     ListStateDescriptor::new("recent").with_ttl(Ttl::event_time(Duration::from_secs(60)));
//! // Pending amounts by event time, iterated and range-scanned in time order.
//! const PENDING: SortedMapStateDescriptor<i64, u64> = SortedMapStateDescriptor::new("pending");
//! ```
//!
//! A descriptor writes its values with a schema format (codec and version, see
//! [`schema`](super::schema)); the default codec is [`StateCodec::SelfDescribing`](super::schema::StateCodec::SelfDescribing), so adding a
//! field with `#[serde(default)]` or renaming the type needs no migration. Other changes bump
//! the version and register a migration from each older version still in checkpoints:
//!
//! ```
//! # use weir_engine::keyed::ValueStateDescriptor;
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct AccountV1 { balance: i64 }
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Account { cents: i128 }
//! fn account() -> ValueStateDescriptor<Account> {
//!     ValueStateDescriptor::new("account")
//!         .version(1)
//!         .migrate_from::<AccountV1>(0, |old| Account { cents: old.balance as i128 * 100 })
//! }
//! ```
//!
//! # After a crash
//! Descriptors are code, not state: the job that restores decides how values are read. A step
//! whose function declares its descriptors ([`KeyedProcess::states`](crate::operator::keyed_process::KeyedProcess::states))
//! checks the restored values against them when it opens (see
//! [`restore_check`](super::restore_check)), so a change that cannot be read fails the restore
//! naming the step and the state.

use super::handles::{ListState, MapState, ValueState};
use super::schema::{decode_header, Format, StateSchema};
use super::scope::{decode_state, StateOps, Ttl};
use super::sort_key::{decode_sort_key, SortKey};
use super::sorted::SortedMapState;
use crate::data::Data;
use crate::Result;
use std::marker::PhantomData;
use std::sync::Arc;

/// Access to the current key's state, handed to [`StateDescriptor::handle`].
pub struct StateAccess<'s> {
    pub(crate) ops: &'s mut dyn StateOps,
}

/// A descriptor of a keyed state: gives the typed handle of the current key.
pub trait StateDescriptor {
    /// The handle (`ValueState`, `MapState`, `ListState`, `SortedMapState`).
    type Handle<'s>;

    /// The handle of the current key's state.
    fn handle<'s>(&self, access: StateAccess<'s>) -> Self::Handle<'s>;

    /// The state's name, kind and schema, for the check at restore.
    fn declare(&self) -> StateDeclaration;
}

/// The kind of a keyed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// [`ValueState`].
    Value,
    /// [`MapState`].
    Map,
    /// [`ListState`].
    List,
    /// [`SortedMapState`].
    SortedMap,
}

/// Checks one stored entry `(suffix, value)` of a state: decodes it as the job would.
type EntryCheck = dyn Fn(&[u8], &[u8]) -> Result<()> + Send + Sync;

/// A declared state with its type erased: what a step checks restored values against.
#[derive(Clone)]
pub struct StateDeclaration {
    pub(crate) name: &'static str,
    pub(crate) kind: StateKind,
    pub(crate) format: Format,
    pub(crate) migrates_from: Vec<u32>,
    pub(crate) check: Arc<EntryCheck>,
}

impl StateDeclaration {
    /// The state's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The state's kind.
    pub fn kind(&self) -> StateKind {
        self.kind
    }

    /// The format its values are written with.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The versions it migrates from.
    pub fn migrates_from(&self) -> &[u32] {
        &self.migrates_from
    }

    /// Decodes a stored entry of the state as the job would read it.
    pub(crate) fn check_entry(&self, suffix: &[u8], value: &[u8]) -> Result<()> {
        (self.check)(suffix, value)
    }
}

impl std::fmt::Debug for StateDeclaration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDeclaration")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("format", &self.format)
            .field("migrates_from", &self.migrates_from)
            .finish()
    }
}

/// Decodes a stored value through `schema` (skipping nothing: expired values are checked too).
fn check_value<V: Data>(schema: &StateSchema<V>, name: &str, what: &str, raw: &[u8]) -> Result<()> {
    let (header, payload) = decode_header(raw)?;
    schema.decode(name, what, header.format, payload).map(|_| ())
}

macro_rules! schema_builders {
    ($v:ty) => {
        /// Entries expire `ttl` after they were written; reads skip expired entries.
        pub const fn with_ttl(mut self, ttl: Ttl) -> Self {
            self.ttl = Some(ttl);
            self
        }

        /// The TTL, if any.
        pub const fn ttl(&self) -> Option<Ttl> {
            self.ttl
        }

        super::schema::schema_methods!($v);
    };
}

/// Declares a [`ValueState`]: name, value type, TTL and schema.
pub struct ValueStateDescriptor<V> {
    name: &'static str,
    ttl: Option<Ttl>,
    schema: StateSchema<V>,
}

impl<V: Data> ValueStateDescriptor<V> {
    /// A value state `name` of self-describing values, schema version 0, without TTL.
    pub const fn new(name: &'static str) -> Self {
        ValueStateDescriptor {
            name,
            ttl: None,
            schema: StateSchema::declared(),
        }
    }

    schema_builders!(V);
}

impl<V> Clone for ValueStateDescriptor<V> {
    fn clone(&self) -> Self {
        ValueStateDescriptor {
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
        }
    }
}

impl<V: Data> StateDescriptor for ValueStateDescriptor<V> {
    type Handle<'s> = ValueState<'s, V>;

    fn handle<'s>(&self, access: StateAccess<'s>) -> ValueState<'s, V> {
        ValueState {
            ops: access.ops,
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
        }
    }

    fn declare(&self) -> StateDeclaration {
        let schema = self.schema.clone();
        let name = self.name;
        StateDeclaration {
            name,
            kind: StateKind::Value,
            format: schema.format(),
            migrates_from: schema.migrates_from(),
            check: Arc::new(move |_, raw| check_value(&schema, name, "value", raw)),
        }
    }
}

/// Declares a [`MapState`]: name, key and value types, TTL and the values' schema (map keys
/// are always bincode: their type must not change).
pub struct MapStateDescriptor<UK, UV> {
    name: &'static str,
    ttl: Option<Ttl>,
    schema: StateSchema<UV>,
    _k: PhantomData<fn() -> UK>,
}

impl<UK: Data, UV: Data> MapStateDescriptor<UK, UV> {
    /// A map state `name` of self-describing values, schema version 0, without TTL.
    pub const fn new(name: &'static str) -> Self {
        MapStateDescriptor {
            name,
            ttl: None,
            schema: StateSchema::declared(),
            _k: PhantomData,
        }
    }

    schema_builders!(UV);
}

impl<UK, UV> Clone for MapStateDescriptor<UK, UV> {
    fn clone(&self) -> Self {
        MapStateDescriptor {
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
            _k: PhantomData,
        }
    }
}

impl<UK: Data, UV: Data> StateDescriptor for MapStateDescriptor<UK, UV> {
    type Handle<'s> = MapState<'s, UK, UV>;

    fn handle<'s>(&self, access: StateAccess<'s>) -> MapState<'s, UK, UV> {
        MapState {
            ops: access.ops,
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
            _k: PhantomData,
        }
    }

    fn declare(&self) -> StateDeclaration {
        let schema = self.schema.clone();
        let name = self.name;
        StateDeclaration {
            name,
            kind: StateKind::Map,
            format: schema.format(),
            migrates_from: schema.migrates_from(),
            check: Arc::new(move |suffix, raw| {
                decode_state::<UK>(name, "map key", suffix)?;
                check_value(&schema, name, "map value", raw)
            }),
        }
    }
}

/// Declares a [`ListState`]: name, element type, TTL (per element) and schema.
pub struct ListStateDescriptor<V> {
    name: &'static str,
    ttl: Option<Ttl>,
    schema: StateSchema<V>,
}

impl<V: Data> ListStateDescriptor<V> {
    /// A list state `name` of self-describing elements, schema version 0, without TTL.
    pub const fn new(name: &'static str) -> Self {
        ListStateDescriptor {
            name,
            ttl: None,
            schema: StateSchema::declared(),
        }
    }

    schema_builders!(V);
}

impl<V> Clone for ListStateDescriptor<V> {
    fn clone(&self) -> Self {
        ListStateDescriptor {
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
        }
    }
}

impl<V: Data> StateDescriptor for ListStateDescriptor<V> {
    type Handle<'s> = ListState<'s, V>;

    fn handle<'s>(&self, access: StateAccess<'s>) -> ListState<'s, V> {
        ListState {
            ops: access.ops,
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
        }
    }

    fn declare(&self) -> StateDeclaration {
        let schema = self.schema.clone();
        let name = self.name;
        StateDeclaration {
            name,
            kind: StateKind::List,
            format: schema.format(),
            migrates_from: schema.migrates_from(),
            // The entry without suffix is the list's element counter.
            check: Arc::new(move |suffix, raw| {
                if suffix.is_empty() {
                    return Ok(());
                }
                check_value(&schema, name, "list element", raw)
            }),
        }
    }
}

/// Declares a [`SortedMapState`]: name, key and value types, TTL and the values' schema. Map
/// keys are written with the order-preserving [`SortKey`] encoding (their type must not
/// change); the schema versions and migrates the values, as for [`MapStateDescriptor`].
pub struct SortedMapStateDescriptor<UK, UV> {
    name: &'static str,
    ttl: Option<Ttl>,
    schema: StateSchema<UV>,
    _k: PhantomData<fn() -> UK>,
}

impl<UK: SortKey, UV: Data> SortedMapStateDescriptor<UK, UV> {
    /// A sorted map state `name` of self-describing values, schema version 0, without TTL.
    pub const fn new(name: &'static str) -> Self {
        SortedMapStateDescriptor {
            name,
            ttl: None,
            schema: StateSchema::declared(),
            _k: PhantomData,
        }
    }

    schema_builders!(UV);
}

impl<UK, UV> Clone for SortedMapStateDescriptor<UK, UV> {
    fn clone(&self) -> Self {
        SortedMapStateDescriptor {
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
            _k: PhantomData,
        }
    }
}

impl<UK: SortKey + 'static, UV: Data> StateDescriptor for SortedMapStateDescriptor<UK, UV> {
    type Handle<'s> = SortedMapState<'s, UK, UV>;

    fn handle<'s>(&self, access: StateAccess<'s>) -> SortedMapState<'s, UK, UV> {
        SortedMapState {
            ops: access.ops,
            name: self.name,
            ttl: self.ttl,
            schema: self.schema.clone(),
            _k: PhantomData,
        }
    }

    fn declare(&self) -> StateDeclaration {
        let schema = self.schema.clone();
        let name = self.name;
        StateDeclaration {
            name,
            kind: StateKind::SortedMap,
            format: schema.format(),
            migrates_from: schema.migrates_from(),
            check: Arc::new(move |suffix, raw| {
                decode_sort_key::<UK>(name, suffix)?;
                check_value(&schema, name, "sorted map value", raw)
            }),
        }
    }
}
