//! Helpers shared by the `storage_*` integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod crash_fs;
pub mod driver;
pub mod model;
pub mod shared_driver;

use bytes::Bytes;
use oar::core::{Entry, EntryPayload, LogId, Membership, NodeId};

/// An entry whose payload names its id, `len` bytes long, so that a stale or
/// misplaced entry never compares equal to the one expected.
pub fn entry(term: u64, index: u64, len: usize) -> Entry {
    let mut data = format!("{term}.{index}:").into_bytes();
    data.resize(len.max(data.len()), b'a' + (index % 26) as u8);
    Entry {
        id: LogId::new(term, index),
        payload: EntryPayload::Command(Bytes::from(data)),
    }
}

/// A configuration entry.
pub fn config_entry(term: u64, index: u64) -> Entry {
    Entry {
        id: LogId::new(term, index),
        payload: EntryPayload::Config(
            Membership::with_voters([NodeId(1), NodeId(2), NodeId(index)]).into(),
        ),
    }
}
