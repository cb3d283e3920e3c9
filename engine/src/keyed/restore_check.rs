//! The check a keyed step runs when it opens: do the restored values of its declared states
//! decode as the job's descriptors read them?
//!
//! Each value records the format (codec and schema version) it was written with, so the check
//! needs no schema metadata besides the values: for every declared state and every key group
//! the subtask owns, it decodes the first [`SAMPLE_PER_KEY_GROUP`] entries (through the
//! migrations of the descriptor, as a read would). A state whose type changed without a new
//! version and a migration, or whose values come from a newer version of the job, fails the
//! restore with an error naming the step and the state, before the first record is processed.
//! Values outside the sample that still cannot be read fail at their first read, with an error
//! naming the state: never a garbled value.

use super::descriptors::StateDeclaration;
use crate::state::layout::TAG_USER;
use crate::state::{KeyGroupRange, KeyedStore};
use crate::{Error, Result};
use std::collections::HashMap;

/// How many entries of each state are decoded per key group when a step opens.
pub const SAMPLE_PER_KEY_GROUP: usize = 16;

/// Checks the restored values of `declared` in the key groups `key_groups` of `store`; `step`
/// names the subtask in errors.
pub(crate) fn check_restored_states(
    store: &mut dyn KeyedStore,
    key_groups: KeyGroupRange,
    declared: &[StateDeclaration],
    step: &str,
) -> Result<()> {
    let mut kinds = HashMap::new();
    for d in declared {
        if let Some(other) = kinds.insert(d.name, d.kind) {
            if other != d.kind {
                return Err(Error::config(format!(
                    "step {step} declares state \"{}\" twice, as {other:?} and as {:?} state: give each a name of its own",
                    d.name, d.kind
                )));
            }
        }
    }
    for d in declared {
        for kg in key_groups.start..=key_groups.end {
            check_key_group(store, kg, d).map_err(|e| {
                Error::config(format!(
                    "step {step}: the restored state \"{}\" ({:?} state, key group {kg}) cannot be read by this job: {e}",
                    d.name, d.kind
                ))
            })?;
        }
    }
    Ok(())
}

/// Decodes the first entries of state `d` in key group `kg`.
fn check_key_group(store: &mut dyn KeyedStore, kg: u16, d: &StateDeclaration) -> Result<()> {
    let mut prefix = Vec::with_capacity(4 + d.name.len());
    prefix.extend_from_slice(&kg.to_be_bytes());
    prefix.push(TAG_USER);
    prefix.push(d.name.len() as u8);
    prefix.extend_from_slice(d.name.as_bytes());
    let n = prefix.len();
    let mut checked = 0;
    let mut failure = None;
    store.scan_prefix(&prefix, &mut |k, v| {
        let rest = &k[n..];
        if rest.len() < 4 {
            return Err(Error::data("malformed user state key"));
        }
        let key_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(suffix) = rest.get(4 + key_len..) else {
            return Err(Error::data("malformed user state key"));
        };
        if let Err(e) = d.check_entry(suffix, v) {
            failure = Some(e);
            return Ok(false);
        }
        checked += 1;
        Ok(checked < SAMPLE_PER_KEY_GROUP)
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
