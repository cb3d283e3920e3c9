//! The descriptor of a step's broadcast state (Flink's `MapStateDescriptor` for
//! `getBroadcastState`): its name and the schema of its values, and the versioned encoding a
//! checkpoint holds it in.
//!
//! ```
//! use weir_engine::operator::broadcast::BroadcastStateDescriptor;
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct LimitV1 { cents: u64 }
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Limit { cents: u64, currency: String }
//! // Adding a field with `#[serde(default)]` needs nothing more (self-describing values);
//! // another change bumps the version and reads the old values through a migration.
//! fn limits() -> BroadcastStateDescriptor<String, Limit> {
//!     BroadcastStateDescriptor::new("limits")
//!         .version(1)
//!         .migrate_from::<LimitV1>(0, |old| Limit { cents: old.cents, currency: "EUR".into() })
//! }
//! ```
//!
//! # Encoding
//! Encoding 2 (written now): a version byte, then with bincode the state's name, the codec and
//! schema version of its values, and the entries in key order, each key in bincode (a key type
//! must not change) and each value with the codec (see [`schema`](crate::keyed::schema)).
//! Encoding 1 (written before descriptors): a version byte, then the entries with bincode; it
//! is still read, as version 0 of positional values of the function's current types.
//!
//! # After a crash
//! The copy that subtask 0 wrote at the restored checkpoint is decoded by every subtask, at any
//! parallelism, through the descriptor the restoring job declares: values of older versions go
//! through its migrations; a state it cannot read (another name, a value type changed without
//! a new version and a migration, a key type changed, a newer version) fails the step's open
//! with an error naming the step and the state, before the first record.

use super::BroadcastState;
use crate::data::Data;
use crate::keyed::schema::{decode_with, encode_with, Format, StateCodec, StateSchema};
use crate::{Error, Result};
use std::marker::PhantomData;

/// Encoding 1: the entries with bincode, no name or format (before descriptors).
const ENCODING_UNDESCRIBED: u8 = 1;
/// Encoding 2: name, format and entries (see the [module docs](self)).
const ENCODING_DESCRIBED: u8 = 2;

/// The name of the broadcast state of a function that does not declare a descriptor.
pub const DEFAULT_BROADCAST_STATE: &str = "broadcast";

/// Declares a step's broadcast state: its name and the schema of its values (version, codec,
/// migrations from older versions). A broadcast function returns it from
/// `broadcast_state()`; without one, the state is named [`DEFAULT_BROADCAST_STATE`] and its
/// values are self-describing, version 0.
pub struct BroadcastStateDescriptor<SK, SV> {
    name: &'static str,
    schema: StateSchema<SV>,
    _k: PhantomData<fn() -> SK>,
}

impl<SK, SV> Clone for BroadcastStateDescriptor<SK, SV> {
    fn clone(&self) -> Self {
        BroadcastStateDescriptor {
            name: self.name,
            schema: self.schema.clone(),
            _k: PhantomData,
        }
    }
}

impl<SK: Data + Ord, SV: Data> BroadcastStateDescriptor<SK, SV> {
    /// A broadcast state `name` of self-describing values ([`StateCodec::SelfDescribing`]:
    /// a field added with `#[serde(default)]` reads old checkpoints), schema version 0.
    pub const fn new(name: &'static str) -> Self {
        BroadcastStateDescriptor {
            name,
            schema: StateSchema::declared(),
            _k: PhantomData,
        }
    }

    crate::keyed::schema::schema_methods!(SV);

    /// The versions it migrates from, ascending.
    pub fn migrates_from(&self) -> Vec<u32> {
        self.schema.migrates_from()
    }

    /// The checkpointed form of `state` (encoding 2).
    pub(crate) fn encode(&self, state: &BroadcastState<SK, SV>) -> Result<Vec<u8>> {
        let format = self.schema.format();
        let mut entries = Vec::with_capacity(state.len());
        for (k, v) in state.iter() {
            let mut value = Vec::new();
            encode_with(format.codec, v, &mut value)?;
            entries.push((bincode::serde::encode_to_vec(k, bincode::config::standard())?, value));
        }
        let envelope = Envelope {
            name: self.name.to_string(),
            codec: format.codec.tag(),
            version: format.version,
            entries,
        };
        let mut bytes = vec![ENCODING_DESCRIBED];
        bincode::serde::encode_into_std_write(&envelope, &mut bytes, bincode::config::standard())?;
        Ok(bytes)
    }

    /// Reads a checkpointed copy (encoding 1 or 2) of the broadcast state of step `step`;
    /// anything this job cannot read is a `Config` error naming the step and the state.
    pub(crate) fn decode(&self, step: &str, bytes: &[u8]) -> Result<BroadcastState<SK, SV>> {
        let unreadable = |why: String| {
            Error::config(format!(
                "step \"{step}\": the broadcast state \"{}\" in the restored checkpoint cannot be read by this job as a \
                 map from {} to {}: {why}",
                self.name,
                std::any::type_name::<SK>(),
                std::any::type_name::<SV>()
            ))
        };
        let Some((&encoding, body)) = bytes.split_first() else {
            return Err(unreadable("it is empty".into()));
        };
        match encoding {
            ENCODING_UNDESCRIBED => {
                let entries = decode_with::<Vec<(SK, SV)>>(StateCodec::Positional, body).map_err(|why| {
                    unreadable(format!(
                        "it was written before broadcast state descriptors (encoding 1, bincode) and does not decode \
                         ({why}): restore it with the types of the job that wrote it and take a new checkpoint \
                         before changing them"
                    ))
                })?;
                Ok(BroadcastState {
                    entries: entries.into_iter().collect(),
                })
            }
            ENCODING_DESCRIBED => {
                let envelope = decode_with::<Envelope>(StateCodec::Positional, body)
                    .map_err(|why| unreadable(format!("malformed encoding 2 ({why})")))?;
                if envelope.name != self.name {
                    return Err(unreadable(format!(
                        "the checkpoint holds broadcast state \"{}\", the job declares \"{}\": keep the state's name \
                         in its descriptor",
                        envelope.name, self.name
                    )));
                }
                let codec = StateCodec::from_tag(envelope.codec).ok_or_else(|| {
                    unreadable(format!(
                        "values written with codec {}, unknown to this version of Weir",
                        envelope.codec
                    ))
                })?;
                let format = Format {
                    codec,
                    version: envelope.version,
                };
                self.schema
                    .check_readable(self.name, format)
                    .map_err(|e| unreadable(e.message().to_string()))?;
                let mut state = BroadcastState::default();
                for (k, v) in envelope.entries {
                    let key = decode_with::<SK>(StateCodec::Positional, &k).map_err(|why| {
                        unreadable(format!("a key does not decode ({why}): was the key type changed?"))
                    })?;
                    let value = self
                        .schema
                        .decode(self.name, "broadcast value", format, &v)
                        .map_err(|e| unreadable(e.message().to_string()))?;
                    state.insert(key, value);
                }
                Ok(state)
            }
            v => Err(unreadable(format!(
                "encoding version {v}, this build reads {ENCODING_UNDESCRIBED} and {ENCODING_DESCRIBED}: the \
                 checkpoint was written by a newer version of Weir"
            ))),
        }
    }
}

/// Encoding 2 after its version byte.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    name: String,
    codec: u8,
    version: u32,
    /// `(bincode key, value with the codec)`, in key order.
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct RuleV1 {
        limit: u64,
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct RuleV2 {
        limit: u64,
        #[serde(default)]
        region: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct RuleText {
        limit: String,
    }

    fn rules_v1() -> BroadcastState<String, RuleV1> {
        let mut s = BroadcastState::default();
        s.insert("eu".into(), RuleV1 { limit: 500 });
        s.insert("us".into(), RuleV1 { limit: 700 });
        s
    }

    /// Encoding 1, as `BroadcastState::encode` wrote it before descriptors.
    fn undescribed<SK: Data + Ord, SV: Data>(state: &BroadcastState<SK, SV>) -> Vec<u8> {
        let entries: Vec<(&SK, &SV)> = state.iter().collect();
        let mut bytes = vec![ENCODING_UNDESCRIBED];
        bincode::serde::encode_into_std_write(&entries, &mut bytes, bincode::config::standard()).unwrap();
        bytes
    }

    #[test]
    fn the_encoding_round_trips_with_either_codec() {
        for d in [
            BroadcastStateDescriptor::<String, RuleV1>::new("rules"),
            BroadcastStateDescriptor::<String, RuleV1>::new("rules").positional(),
        ] {
            let bytes = d.encode(&rules_v1()).unwrap();
            assert_eq!(bytes[0], ENCODING_DESCRIBED);
            assert_eq!(d.decode("authorize", &bytes).unwrap(), rules_v1());
        }
    }

    #[test]
    fn checkpoints_written_before_descriptors_still_restore() {
        let d = BroadcastStateDescriptor::<String, RuleV1>::new("rules");
        assert_eq!(d.decode("authorize", &undescribed(&rules_v1())).unwrap(), rules_v1());
        let e = BroadcastStateDescriptor::<String, RuleText>::new("rules")
            .decode("authorize", &undescribed(&rules_v1()))
            .unwrap_err();
        assert!(e.to_string().contains("step \"authorize\""), "{e}");
        assert!(e.to_string().contains("before broadcast state descriptors"), "{e}");
    }

    #[test]
    fn a_field_added_with_a_default_reads_old_values_without_a_migration() {
        let bytes = BroadcastStateDescriptor::<String, RuleV1>::new("rules")
            .encode(&rules_v1())
            .unwrap();
        let read = BroadcastStateDescriptor::<String, RuleV2>::new("rules")
            .decode("authorize", &bytes)
            .unwrap();
        assert_eq!(
            read.get(&"us".to_string()),
            Some(&RuleV2 {
                limit: 700,
                region: None
            })
        );
    }

    #[test]
    fn a_new_version_reads_old_values_through_its_migration() {
        let bytes = BroadcastStateDescriptor::<String, RuleV1>::new("rules")
            .positional()
            .encode(&rules_v1())
            .unwrap();
        let d = BroadcastStateDescriptor::<String, RuleText>::new("rules")
            .version(1)
            .migrate_from::<RuleV1>(0, |old| RuleText {
                limit: format!("{} EUR", old.limit),
            });
        let read = d.decode("authorize", &bytes).unwrap();
        assert_eq!(read.get(&"eu".to_string()).unwrap().limit, "500 EUR");
        // Written again, it is version 1 and reads without the migration.
        let again = d.encode(&read).unwrap();
        let plain = BroadcastStateDescriptor::<String, RuleText>::new("rules").version(1);
        assert_eq!(plain.decode("authorize", &again).unwrap(), read);
    }

    #[test]
    fn unreadable_changes_are_errors_naming_the_step_and_the_state() {
        let bytes = BroadcastStateDescriptor::<String, RuleV1>::new("rules")
            .encode(&rules_v1())
            .unwrap();
        let changed = BroadcastStateDescriptor::<String, RuleText>::new("rules")
            .decode("authorize", &bytes)
            .unwrap_err();
        let m = changed.to_string();
        assert!(
            m.contains("step \"authorize\"") && m.contains("broadcast state \"rules\""),
            "{m}"
        );
        assert!(m.contains("migration"), "{m}");
        let renamed = BroadcastStateDescriptor::<String, RuleV1>::new("limits")
            .decode("authorize", &bytes)
            .unwrap_err();
        assert!(
            renamed.to_string().contains("holds broadcast state \"rules\""),
            "{renamed}"
        );
        let newer = BroadcastStateDescriptor::<String, RuleV1>::new("rules")
            .version(2)
            .encode(&rules_v1())
            .unwrap();
        let e = BroadcastStateDescriptor::<String, RuleV1>::new("rules")
            .decode("authorize", &newer)
            .unwrap_err();
        assert!(e.to_string().contains("newer version of the job"), "{e}");
        let key_changed = BroadcastStateDescriptor::<u64, RuleV1>::new("rules")
            .decode("authorize", &bytes)
            .unwrap_err();
        assert!(key_changed.to_string().contains("key"), "{key_changed}");
        for bad in [&[][..], &[9, 0][..]] {
            let e = BroadcastStateDescriptor::<String, RuleV1>::new("rules")
                .decode("authorize", bad)
                .unwrap_err();
            assert!(e.to_string().contains("broadcast state \"rules\""), "{e}");
        }
    }
}
