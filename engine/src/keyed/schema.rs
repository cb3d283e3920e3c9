//! State schemas: how a state's values are encoded, which version of the state's type wrote
//! them, and the migrations that read older versions into the current type.
//!
//! # Value header
//! Every keyed state value starts with a header (see [`encode_header`]):
//!
//! ```text
//! kind:u8 [expiry:i64] [codec:u8 version:varint] payload
//! ```
//!
//! `kind & 3` is the expiry clock (0: none, 1: event time, 2: processing time, followed by the
//! expiry); `kind & 0x10` says that a format (codec and schema version) follows. Values written
//! before schemas existed (and by states opened by name, `ctx.value_state("name")`) carry no
//! format: they are read as version 0 of a [`StateCodec::Positional`] encoding, so every
//! checkpoint and savepoint taken before keeps restoring.
//!
//! # After a crash
//! The format travels with each value, in the same store entry, so a restored or rescaled
//! subtask reads every value with the codec and version that wrote it, whatever the job's
//! descriptors say now; a value the job cannot read is an error naming the state, never a
//! value decoded with the wrong layout.

use super::scope::Expiry;
use super::timers::TimeDomain;
use crate::data::Data;
use crate::{Error, Result};
use std::sync::Arc;

/// How a state's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateCodec {
    /// bincode: compact and fast, but positional: the bytes do not say which field is which,
    /// so any change of the type's layout (an added field, even with `#[serde(default)]`)
    /// needs a new schema version and a migration from the old type.
    Positional,
    /// CBOR with field and variant names: a field added with `#[serde(default)]` (or of an
    /// `Option` type), a removed field and a renamed type read old values without a
    /// migration; a field whose type changed fails to decode (an error, never a garbled
    /// value). Larger and slower than [`Positional`](Self::Positional).
    SelfDescribing,
}

impl StateCodec {
    pub(crate) fn tag(self) -> u8 {
        match self {
            StateCodec::Positional => 0,
            StateCodec::SelfDescribing => 1,
        }
    }

    pub(crate) fn from_tag(t: u8) -> Option<Self> {
        match t {
            0 => Some(StateCodec::Positional),
            1 => Some(StateCodec::SelfDescribing),
            _ => None,
        }
    }
}

/// The codec and schema version a value was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    /// The value's encoding.
    pub codec: StateCodec,
    /// The version of the state's type that wrote it.
    pub version: u32,
}

impl Format {
    /// Values without a format in their header: written before schemas, or by a state opened
    /// by name.
    pub const UNVERSIONED: Format = Format {
        codec: StateCodec::Positional,
        version: 0,
    };
}

const KIND_FORMATTED: u8 = 0x10;

/// A value's header: its expiry and the format of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueHeader {
    pub(crate) expiry: Option<Expiry>,
    pub(crate) format: Format,
}

/// Writes a header; `format: None` writes the unversioned header of states opened by name
/// (byte-identical to values written before schemas existed).
pub(crate) fn encode_header(out: &mut Vec<u8>, expiry: Option<Expiry>, format: Option<Format>) {
    let kind = match expiry {
        None => 0,
        Some((TimeDomain::EventTime, _)) => 1,
        Some((TimeDomain::ProcessingTime, _)) => 2,
    };
    out.push(kind | if format.is_some() { KIND_FORMATTED } else { 0 });
    if let Some((_, e)) = expiry {
        out.extend_from_slice(&e.to_be_bytes());
    }
    if let Some(f) = format {
        out.push(f.codec.tag());
        let mut v = f.version;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
}

/// Splits a stored value into its header and payload.
pub(crate) fn decode_header(raw: &[u8]) -> Result<(ValueHeader, &[u8])> {
    let malformed = || Error::data("malformed state value header");
    let kind = *raw.first().ok_or_else(malformed)?;
    if kind & !(KIND_FORMATTED | 3) != 0 {
        return Err(malformed());
    }
    let mut rest = &raw[1..];
    let expiry = match kind & 3 {
        0 => None,
        k @ (1 | 2) => {
            if rest.len() < 8 {
                return Err(malformed());
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&rest[..8]);
            rest = &rest[8..];
            let domain = if k == 1 {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            Some((domain, i64::from_be_bytes(a)))
        }
        _ => return Err(malformed()),
    };
    let format = if kind & KIND_FORMATTED == 0 {
        Format::UNVERSIONED
    } else {
        let (&tag, after) = rest.split_first().ok_or_else(malformed)?;
        let codec = StateCodec::from_tag(tag).ok_or_else(|| {
            Error::data(format!(
                "state value written with codec {tag}, unknown to this version of Weir"
            ))
        })?;
        rest = after;
        let mut version: u64 = 0;
        let mut shift = 0;
        loop {
            let (&b, after) = rest.split_first().ok_or_else(malformed)?;
            rest = after;
            version |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(malformed());
            }
        }
        Format {
            codec,
            version: u32::try_from(version).map_err(|_| malformed())?,
        }
    };
    Ok((ValueHeader { expiry, format }, rest))
}

/// Encodes `v` with `codec`.
pub(crate) fn encode_with<V: serde::Serialize>(codec: StateCodec, v: &V, out: &mut Vec<u8>) -> Result<()> {
    match codec {
        StateCodec::Positional => {
            bincode::serde::encode_into_std_write(v, out, bincode::config::standard())?;
        }
        StateCodec::SelfDescribing => {
            ciborium::into_writer(v, &mut *out)
                .map_err(|e| Error::data(format!("cannot encode a state value: {e}")))?;
        }
    }
    Ok(())
}

/// Decodes all of `bytes` as `V` with `codec`; the reason it does not decode otherwise.
pub(crate) fn decode_with<V: serde::de::DeserializeOwned>(
    codec: StateCodec,
    bytes: &[u8],
) -> std::result::Result<V, String> {
    match codec {
        StateCodec::Positional => match bincode::serde::decode_from_slice::<V, _>(bytes, bincode::config::standard()) {
            Ok((v, used)) if used == bytes.len() => Ok(v),
            Ok((_, used)) => Err(format!("{} of {} bytes left over", bytes.len() - used, bytes.len())),
            Err(e) => Err(e.to_string()),
        },
        StateCodec::SelfDescribing => {
            let mut rest = bytes;
            let v: V = ciborium::from_reader(&mut rest).map_err(|e| e.to_string())?;
            if rest.is_empty() {
                Ok(v)
            } else {
                Err(format!("{} of {} bytes left over", rest.len(), bytes.len()))
            }
        }
    }
}

/// Reads the payload of an older version (decoding it as the old type with the codec that
/// wrote it) into the current type.
type MigrateFn<V> = dyn Fn(StateCodec, &[u8]) -> std::result::Result<V, String> + Send + Sync;

/// A migration from one older version of a state's type to the current one.
pub struct Migration<V> {
    from: u32,
    old_type: &'static str,
    read: Arc<MigrateFn<V>>,
}

impl<V> Clone for Migration<V> {
    fn clone(&self) -> Self {
        Migration {
            from: self.from,
            old_type: self.old_type,
            read: self.read.clone(),
        }
    }
}

/// What a state's values are written as and how older versions are read.
pub struct StateSchema<V> {
    /// The codec new values are written with.
    pub(crate) codec: StateCodec,
    /// The version new values are written with.
    pub(crate) version: u32,
    /// Whether values carry their format (states declared by a descriptor) or are written
    /// unversioned (states opened by name).
    formatted: bool,
    migrations: Option<Arc<Vec<Migration<V>>>>,
}

impl<V> Clone for StateSchema<V> {
    fn clone(&self) -> Self {
        StateSchema {
            codec: self.codec,
            version: self.version,
            formatted: self.formatted,
            migrations: self.migrations.clone(),
        }
    }
}

impl<V: Data> StateSchema<V> {
    /// The schema of a state opened by name: unversioned positional values, as before schemas.
    pub(crate) const fn unversioned() -> Self {
        StateSchema {
            codec: StateCodec::Positional,
            version: 0,
            formatted: false,
            migrations: None,
        }
    }

    /// The schema of a state declared by a descriptor: self-describing values of version 0.
    pub(crate) const fn declared() -> Self {
        StateSchema {
            codec: StateCodec::SelfDescribing,
            version: 0,
            formatted: true,
            migrations: None,
        }
    }

    /// The format new values are written with.
    pub fn format(&self) -> Format {
        Format {
            codec: self.codec,
            version: self.version,
        }
    }

    /// The versions this schema migrates from, ascending.
    pub fn migrates_from(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.migrations.iter().flat_map(|m| m.iter().map(|m| m.from)).collect();
        v.sort_unstable();
        v
    }

    /// Registers a migration from version `from` (read as `Old`) to the current type.
    pub(crate) fn add_migration<Old: Data>(&mut self, from: u32, f: impl Fn(Old) -> V + Send + Sync + 'static) {
        let m = Migration {
            from,
            old_type: std::any::type_name::<Old>(),
            read: Arc::new(move |codec: StateCodec, bytes: &[u8]| decode_with::<Old>(codec, bytes).map(&f)),
        };
        let mut list: Vec<Migration<V>> = self.migrations.as_deref().cloned().unwrap_or_default();
        list.retain(|x| x.from != from);
        list.push(m);
        self.migrations = Some(Arc::new(list));
    }

    /// Encodes a value with its header.
    pub(crate) fn encode(&self, v: &V, expiry: Option<Expiry>) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16);
        encode_header(&mut out, expiry, self.formatted.then(|| self.format()));
        encode_with(self.codec, v, &mut out)?;
        Ok(out)
    }

    /// Whether a value written in `format` can be read, and why not.
    pub(crate) fn check_readable(&self, name: &str, format: Format) -> Result<()> {
        if format.version == self.version || self.migration(format.version).is_some() {
            return Ok(());
        }
        let what = std::any::type_name::<V>();
        Err(if format.version > self.version {
            Error::config(format!(
                "state \"{name}\" holds values of schema version {} but the job declares version {} ({what}): \
                 the checkpoint was written by a newer version of the job; run that version, or declare version {} \
                 with a migration",
                format.version, self.version, format.version
            ))
        } else {
            Error::config(format!(
                "state \"{name}\" holds values of schema version {} and the job declares version {} ({what}) \
                 without a migration from version {}: add `.migrate_from::<OldType>({}, |old| ...)` to the \
                 state's descriptor",
                format.version, self.version, format.version, format.version
            ))
        })
    }

    fn migration(&self, from: u32) -> Option<&Migration<V>> {
        self.migrations.as_deref()?.iter().find(|m| m.from == from)
    }

    /// Decodes the payload of a value written in `format`: as the current type if it is of the
    /// current version (whatever its codec), else through the migration from its version.
    pub(crate) fn decode(&self, name: &str, what: &str, format: Format, payload: &[u8]) -> Result<V> {
        let decoded = if format.version == self.version {
            decode_with::<V>(format.codec, payload).map_err(|why| (std::any::type_name::<V>(), why))
        } else if let Some(m) = self.migration(format.version) {
            (m.read)(format.codec, payload).map_err(|why| (m.old_type, why))
        } else {
            return Err(self.check_readable(name, format).expect_err("no migration"));
        };
        decoded.map_err(|(ty, why)| {
            Error::config(format!(
                "state \"{name}\" holds a {what} of schema version {} ({:?}) that does not decode as {ty} ({why}): \
                 was the state's type changed without a new schema version and a migration? Keep a type that \
                 reads the old values, declare a new version with `.migrate_from::<OldType>({}, ...)`, or give \
                 the new type a new state name",
                format.version, format.codec, format.version
            ))
        })
    }
}

/// The builder methods every state descriptor shares (keyed, broadcast and operator list
/// states): version, codec and migrations of its schema, its name and format. The descriptor
/// needs fields `name: &'static str` and `schema: StateSchema<$v>`.
macro_rules! schema_methods {
    ($v:ty) => {
        /// Declares the version of the state's type that new values are written as (0 by
        /// default). Values of older versions are read through [`migrate_from`](Self::migrate_from).
        pub const fn version(mut self, version: u32) -> Self {
            self.schema.version = version;
            self
        }

        /// Writes values with bincode ([`StateCodec::Positional`](crate::keyed::StateCodec::Positional)):
        /// compact, but any change of the type's layout needs a new version and a migration.
        pub const fn positional(mut self) -> Self {
            self.schema.codec = $crate::keyed::schema::StateCodec::Positional;
            self
        }

        /// Reads values of version `from` as `Old` (with the codec that wrote them) and converts
        /// them to the current type. Each older version still in checkpoints needs one; to go
        /// through several steps, compose them: `|v1| v2_to_v3(v1_to_v2(v1))`.
        pub fn migrate_from<Old: $crate::data::Data>(
            mut self,
            from: u32,
            f: impl Fn(Old) -> $v + Send + Sync + 'static,
        ) -> Self {
            self.schema.add_migration(from, f);
            self
        }

        /// The state's name.
        pub const fn name(&self) -> &'static str {
            self.name
        }

        /// The format new values are written with.
        pub fn format(&self) -> $crate::keyed::schema::Format {
            self.schema.format()
        }
    };
}
pub(crate) use schema_methods;
