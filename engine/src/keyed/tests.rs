//! State schemas, descriptors and list TTL over a real (memory) keyed store: the value header
//! stays byte-identical for states opened by name, descriptors read older values (unversioned,
//! added fields, migrations), changes that cannot be read are errors naming the state (and, at
//! restore, the step), and list elements expire one by one.

use super::descriptors::{ListStateDescriptor, MapStateDescriptor, StateAccess, StateDescriptor, ValueStateDescriptor};
use super::handles::{ListState, ValueState};
use super::restore_check::check_restored_states;
use super::schema::{decode_header, encode_header, Format, StateCodec, StateSchema};
use super::scope::{encode_value, KeyScope, Ttl, NS_TTL_LIST};
use super::timers::{TimeDomain, TimerService};
use crate::data::{Timestamp, MIN_WATERMARK};
use crate::state::{KeyGroupRange, KeyedStore, MemoryBackend, StateBackend, StoreScope};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 127 };

fn store() -> Box<dyn KeyedStore> {
    let scope = StoreScope {
        job: "schema-test".into(),
        operator: "op".into(),
        subtask: 0,
        key_groups: ALL,
    };
    MemoryBackend::new().open_store(&scope, None).unwrap()
}

/// A store, timers and the times of one key's scope.
struct Fixture {
    store: Box<dyn KeyedStore>,
    timers: TimerService,
    buf: Vec<u8>,
    watermark: Timestamp,
    timestamp: Option<Timestamp>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            store: store(),
            timers: TimerService::default(),
            buf: Vec::new(),
            watermark: MIN_WATERMARK,
            timestamp: None,
        }
    }

    /// Runs `f` with the scope of key `key` (key group 7).
    fn with<R>(&mut self, key: &[u8], f: impl FnOnce(&mut KeyScope<'_>) -> R) -> R {
        let mut scope = KeyScope {
            store: self.store.as_mut(),
            timers: &mut self.timers,
            key_group: 7,
            key,
            watermark: self.watermark,
            now_ms: 0,
            timestamp: self.timestamp,
            buf: &mut self.buf,
        };
        f(&mut scope)
    }
}

fn by_name<'s, V: crate::data::Data>(scope: &'s mut KeyScope<'_>, name: &'s str) -> ValueState<'s, V> {
    ValueState {
        ops: scope,
        name,
        ttl: None,
        schema: StateSchema::unversioned(),
    }
}

fn handle<'s, D: StateDescriptor>(scope: &'s mut KeyScope<'_>, d: &D) -> D::Handle<'s> {
    d.handle(StateAccess { ops: scope })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountV1 {
    id: u64,
    cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountV2 {
    id: u64,
    cents: i64,
    #[serde(default)]
    frozen: bool,
}

/// `AccountV1` with `cents` changed to a string: not readable from `AccountV1` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountText {
    id: u64,
    cents: String,
}

#[test]
fn headers_round_trip_every_expiry_and_version() {
    let expiries = [
        None,
        Some((TimeDomain::EventTime, -5)),
        Some((TimeDomain::ProcessingTime, 1 << 40)),
    ];
    let formats = [
        None,
        Some(Format {
            codec: StateCodec::Positional,
            version: 0,
        }),
        Some(Format {
            codec: StateCodec::SelfDescribing,
            version: 127,
        }),
        Some(Format {
            codec: StateCodec::SelfDescribing,
            version: 128,
        }),
        Some(Format {
            codec: StateCodec::Positional,
            version: u32::MAX,
        }),
    ];
    for e in expiries {
        for f in formats {
            let mut out = Vec::new();
            encode_header(&mut out, e, f);
            out.extend_from_slice(b"payload");
            let (h, payload) = decode_header(&out).unwrap();
            assert_eq!(h.expiry, e);
            assert_eq!(h.format, f.unwrap_or(Format::UNVERSIONED));
            assert_eq!(payload, b"payload");
        }
    }
    assert!(decode_header(&[0x40]).is_err(), "an unknown kind is refused");
    assert!(decode_header(&[0x10, 1, 0x80]).is_err(), "a cut version is refused");
    assert!(decode_header(&[0x10, 9, 0]).is_err(), "an unknown codec is refused");
}

#[test]
fn states_opened_by_name_keep_the_layout_of_checkpoints_taken_before_schemas() {
    // The layout before schemas: `[0] bincode` and `[1|2] expiry:i64 bincode`.
    let v = (3u64, -7i64);
    let body = bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap();
    assert_eq!(encode_value(&v, None).unwrap(), [&[0u8][..], &body].concat());
    let with_expiry = encode_value(&v, Some((TimeDomain::EventTime, 9))).unwrap();
    assert_eq!(with_expiry, [&[1u8][..], &9i64.to_be_bytes(), &body].concat());
}

#[test]
fn a_descriptor_reads_values_written_by_name_and_rewrites_them_with_its_format() {
    let mut fx = Fixture::new();
    const ACCOUNT: ValueStateDescriptor<AccountV1> = ValueStateDescriptor::new("account");
    let old = AccountV1 { id: 1, cents: 250 };
    fx.with(b"k", |s| by_name::<AccountV1>(s, "account").set(&old).unwrap());
    fx.with(b"k", |s| {
        let mut h = handle(s, &ACCOUNT);
        assert_eq!(h.get().unwrap(), Some(old.clone()));
        h.set(&AccountV1 { id: 1, cents: 300 }).unwrap();
    });
    let raw = fx.with(b"k", |s| {
        use super::scope::StateOps;
        s.get_raw("account", &[]).unwrap().unwrap()
    });
    assert_eq!(
        decode_header(&raw).unwrap().0.format,
        Format {
            codec: StateCodec::SelfDescribing,
            version: 0
        }
    );
    // And a state opened by name still reads it (same version, codec from the header).
    let back = fx.with(b"k", |s| by_name::<AccountV1>(s, "account").get().unwrap());
    assert_eq!(back, Some(AccountV1 { id: 1, cents: 300 }));
}

#[test]
fn an_added_field_with_a_default_reads_self_describing_values_without_a_migration() {
    let mut fx = Fixture::new();
    let v1: ValueStateDescriptor<AccountV1> = ValueStateDescriptor::new("account");
    let v2: ValueStateDescriptor<AccountV2> = ValueStateDescriptor::new("account");
    fx.with(b"k", |s| handle(s, &v1).set(&AccountV1 { id: 4, cents: -1 }).unwrap());
    let got = fx.with(b"k", |s| handle(s, &v2).get().unwrap());
    assert_eq!(
        got,
        Some(AccountV2 {
            id: 4,
            cents: -1,
            frozen: false
        })
    );
}

#[test]
fn a_positional_change_needs_a_migration_and_reads_through_it() {
    let mut fx = Fixture::new();
    let v1: ValueStateDescriptor<AccountV1> = ValueStateDescriptor::new("account").positional();
    fx.with(b"k", |s| handle(s, &v1).set(&AccountV1 { id: 2, cents: 10 }).unwrap());
    // Same version, new layout: an error naming the state, not a garbled value.
    let unmigrated: ValueStateDescriptor<AccountV2> = ValueStateDescriptor::new("account").positional();
    let e = fx.with(b"k", |s| handle(s, &unmigrated).get().unwrap_err());
    assert!(e.to_string().contains("state \"account\""), "{e}");
    let migrated: ValueStateDescriptor<AccountV2> = ValueStateDescriptor::new("account")
        .positional()
        .version(1)
        .migrate_from::<AccountV1>(0, |a| AccountV2 {
        id: a.id,
        cents: a.cents,
        frozen: a.cents < 0,
    });
    let got = fx.with(b"k", |s| handle(s, &migrated).get().unwrap());
    assert_eq!(
        got,
        Some(AccountV2 {
            id: 2,
            cents: 10,
            frozen: false
        })
    );
    // Written back at version 1, read at version 1 without the migration.
    fx.with(b"k", |s| {
        handle(s, &migrated)
            .set(&AccountV2 {
                id: 2,
                cents: 11,
                frozen: true,
            })
            .unwrap()
    });
    let plain_v1: ValueStateDescriptor<AccountV2> = ValueStateDescriptor::new("account").positional().version(1);
    let got = fx.with(b"k", |s| handle(s, &plain_v1).get().unwrap());
    assert_eq!(
        got,
        Some(AccountV2 {
            id: 2,
            cents: 11,
            frozen: true
        })
    );
    // A job of version 0 cannot read values of version 1.
    let e = fx.with(b"k", |s| handle(s, &v1).get().unwrap_err());
    assert!(e.to_string().contains("newer version"), "{e}");
    // Nor can version 2 without a migration from 1.
    let v3: ValueStateDescriptor<AccountV2> = ValueStateDescriptor::new("account").version(2);
    let e = fx.with(b"k", |s| handle(s, &v3).get().unwrap_err());
    assert!(e.to_string().contains("migrate_from"), "{e}");
}

#[test]
fn a_changed_field_type_is_an_error_naming_the_state() {
    let mut fx = Fixture::new();
    let v1: MapStateDescriptor<u32, AccountV1> = MapStateDescriptor::new("accounts");
    let changed: MapStateDescriptor<u32, AccountText> = MapStateDescriptor::new("accounts");
    fx.with(b"k", |s| {
        handle(s, &v1).put(&5, &AccountV1 { id: 5, cents: 1 }).unwrap()
    });
    let e = fx.with(b"k", |s| handle(s, &changed).entries().unwrap_err());
    assert!(e.to_string().contains("state \"accounts\""), "{e}");
    assert!(e.to_string().contains("AccountText"), "{e}");
}

#[test]
fn list_elements_expire_one_by_one_and_clean_up_keeps_the_live_ones() {
    let mut fx = Fixture::new();
    let recent: ListStateDescriptor<u32> =
        ListStateDescriptor::new("recent").with_ttl(Ttl::event_time(Duration::from_millis(100)));
    for (ts, v) in [(1_000, 1u32), (1_050, 2), (1_200, 3)] {
        fx.timestamp = Some(ts);
        fx.with(b"k", |s| handle(s, &recent).add(&v).unwrap());
    }
    fx.watermark = 1_100;
    let live = fx.with(b"k", |s| handle(s, &recent).get().unwrap());
    assert_eq!(live, vec![2, 3], "the element written at 1000 expired at 1100");
    // Clean-up timers were registered in the list namespace, one per slot of a quarter of the
    // TTL (25 ms here), at the end of the slot of each expiry.
    let mut due = Vec::new();
    while let Some(t) = fx
        .timers
        .pop_due(fx.store.as_mut(), TimeDomain::EventTime, 1_150)
        .unwrap()
    {
        due.push(t);
    }
    assert_eq!(due.iter().map(|t| t.time).collect::<Vec<_>>(), vec![1_100, 1_150]);
    assert!(due.iter().all(|t| t.namespace[0] == NS_TTL_LIST));
    let ttl = Ttl::event_time(Duration::from_millis(100));
    assert_eq!(
        [1_075, 1_076, 1_099, 1_100, 1_101].map(|e| super::scope::clean_up_time(e, &ttl)),
        [1_075, 1_100, 1_100, 1_100, 1_125],
        "expiries of one slot share its end"
    );
    fx.watermark = 1_150;
    fx.with(b"k", |s| super::context::clean_up_expired(s, "recent", true).unwrap());
    let stored = fx.with(b"k", |s| {
        use super::scope::StateOps;
        let mut n = 0;
        s.scan_raw("recent", &mut |_, _| {
            n += 1;
            Ok(true)
        })
        .unwrap();
        n
    });
    assert_eq!(stored, 2, "the counter and element 3 remain");
    fx.with(b"k", |s| {
        let mut h = handle(s, &recent);
        assert!(!h.is_empty().unwrap());
        assert_eq!(h.get().unwrap(), vec![3]);
    });
    // Appending after the clean-up continues the sequence.
    fx.timestamp = Some(1_300);
    fx.with(b"k", |s| handle(s, &recent).add(&4).unwrap());
    fx.watermark = 1_300;
    fx.with(b"k", |s| super::context::clean_up_expired(s, "recent", true).unwrap());
    let live = fx.with(b"k", |s| handle(s, &recent).get().unwrap());
    assert_eq!(live, vec![4]);
    fx.watermark = 2_000;
    fx.with(b"k", |s| {
        let mut h = handle(s, &recent);
        assert!(h.is_empty().unwrap(), "every element expired");
    });
    fx.with(b"k", |s| super::context::clean_up_expired(s, "recent", true).unwrap());
    fx.with(b"k", |s| {
        let mut h = ListState::<u32> {
            ops: s,
            name: "recent",
            ttl: None,
            schema: StateSchema::declared(),
        };
        assert!(h.is_empty().unwrap(), "the counter went with the last element");
    });
}

#[test]
fn the_restore_check_names_the_step_and_the_state_that_cannot_be_read() {
    let mut fx = Fixture::new();
    let v1: ValueStateDescriptor<AccountV1> = ValueStateDescriptor::new("account");
    let list: ListStateDescriptor<AccountV1> = ListStateDescriptor::new("history");
    for k in 0..40u8 {
        fx.with(&[k], |s| {
            handle(s, &v1).set(&AccountV1 { id: k as u64, cents: 1 }).unwrap();
            handle(s, &list).add(&AccountV1 { id: k as u64, cents: 2 }).unwrap();
        });
    }
    let ok = [
        ValueStateDescriptor::<AccountV2>::new("account").declare(),
        ListStateDescriptor::<AccountV2>::new("history").declare(),
    ];
    check_restored_states(fx.store.as_mut(), ALL, &ok, "tally[0]").unwrap();
    let changed = [ListStateDescriptor::<AccountText>::new("history").declare()];
    let e = check_restored_states(fx.store.as_mut(), ALL, &changed, "tally[0]").unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Config);
    assert!(e.to_string().contains("step tally[0]"), "{e}");
    assert!(e.to_string().contains("\"history\""), "{e}");
    let newer = [ValueStateDescriptor::<AccountV1>::new("account").version(3).declare()];
    let e = check_restored_states(fx.store.as_mut(), ALL, &newer, "tally[1]").unwrap_err();
    assert!(
        e.to_string().contains("\"account\"") && e.to_string().contains("migrate_from"),
        "{e}"
    );
    // A state with no values in the restored key groups passes.
    let empty = [ValueStateDescriptor::<AccountText>::new("other").declare()];
    check_restored_states(fx.store.as_mut(), ALL, &empty, "tally[0]").unwrap();
}

#[test]
fn sorted_map_descriptors_version_their_values_and_keep_the_layout_of_states_opened_by_name() {
    use super::descriptors::SortedMapStateDescriptor;
    use super::sorted::SortedMapState;
    let mut fx = Fixture::new();
    // Opened by name: unversioned bincode values, byte-identical to before descriptors.
    fx.with(b"k", |s| {
        let mut h = SortedMapState::<i64, u32> {
            ops: s,
            name: "by-name",
            ttl: None,
            schema: StateSchema::unversioned(),
            _k: std::marker::PhantomData,
        };
        h.put(&5, &50).unwrap();
    });
    let raw = fx.with(b"k", |s| {
        use super::scope::StateOps;
        s.get_raw("by-name", &super::sort_key::encode_sort_key(&5i64))
            .unwrap()
            .unwrap()
    });
    assert_eq!(raw, encode_value(&50u32, None).unwrap());

    // Declared: values carry their format; a field added with a default reads them, in order.
    let v1: SortedMapStateDescriptor<i64, AccountV1> = SortedMapStateDescriptor::new("pending");
    fx.with(b"k", |s| {
        let mut h = handle(s, &v1);
        for t in [30i64, -10, 20] {
            h.put(&t, &AccountV1 { id: t as u64, cents: t }).unwrap();
        }
    });
    let v2: SortedMapStateDescriptor<i64, AccountV2> = SortedMapStateDescriptor::new("pending");
    let (keys, first, range) = fx.with(b"k", |s| {
        let mut h = handle(s, &v2);
        let keys = h.keys().unwrap();
        let first = h.first().unwrap().unwrap();
        let range: Vec<i64> = h.range(0..=25).unwrap().into_iter().map(|(k, _)| k).collect();
        (keys, first, range)
    });
    assert_eq!(keys, vec![-10, 20, 30]);
    assert_eq!(first.1.cents, -10);
    assert!(!first.1.frozen);
    assert_eq!(range, vec![20]);
    check_restored_states(fx.store.as_mut(), ALL, &[v2.declare()], "buffer[0]").unwrap();

    // A new version reads the old values through its migration.
    let v3 = SortedMapStateDescriptor::<i64, AccountText>::new("pending")
        .version(1)
        .migrate_from::<AccountV1>(0, |a| AccountText {
            id: a.id,
            cents: a.cents.to_string(),
        });
    let migrated = fx.with(b"k", |s| handle(s, &v3).get(&30).unwrap().unwrap());
    assert_eq!(migrated.cents, "30");

    // A changed value type without a migration fails the restore, naming step and state.
    let changed = SortedMapStateDescriptor::<i64, AccountText>::new("pending").declare();
    assert_eq!(changed.kind(), super::descriptors::StateKind::SortedMap);
    let e = check_restored_states(fx.store.as_mut(), ALL, &[changed], "buffer[0]").unwrap_err();
    assert!(
        e.to_string().contains("step buffer[0]") && e.to_string().contains("\"pending\""),
        "{e}"
    );
    let e = fx
        .with(b"k", |s| {
            handle(s, &SortedMapStateDescriptor::<i64, AccountText>::new("pending")).entries()
        })
        .unwrap_err();
    assert!(e.to_string().contains("state \"pending\""), "{e}");
}
