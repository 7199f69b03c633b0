//! [`SnapshotMeta`]: what a snapshot covers and which files it holds.
//!
//! Stored as `__raft_snapshot_meta` (braft's name) in the snapshot directory,
//! inside the [`atomic_file`](super::atomic_file) frame with magic `OARS`.
//! Payload: `last_included` (term u64, index u64), the configuration (as in a
//! configuration record), then `count u32` and per file `name_len u16, name,
//! len u64, crc32c u32`.

use crate::core::{LogId, Membership};

use super::record::{decode_membership, encode_membership};
use super::segment_log::{decode_log_id, encode_log_id};

/// The meta file's name inside a snapshot directory.
pub const SNAPSHOT_META_NAME: &str = "__raft_snapshot_meta";

/// A file of a snapshot, with what it must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file name inside the snapshot directory.
    pub name: String,
    /// Its length in bytes.
    pub len: u64,
    /// The CRC32C of its contents.
    pub crc: u32,
}

/// What a snapshot covers (braft's `SnapshotMeta`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log entry the snapshot includes.
    pub last_included: LogId,
    /// The configuration as of `last_included`.
    pub membership: Membership,
    /// The state machine's data files, by name ascending.
    pub files: Vec<SnapshotFile>,
}

impl SnapshotMeta {
    /// The payload bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = encode_log_id(self.last_included).to_vec();
        let membership_start = out.len();
        encode_membership(&self.membership, &mut out);
        let membership_len = (out.len() - membership_start) as u32;
        out.splice(
            membership_start..membership_start,
            membership_len.to_le_bytes(),
        );
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            out.extend_from_slice(&(f.name.len() as u16).to_le_bytes());
            out.extend_from_slice(f.name.as_bytes());
            out.extend_from_slice(&f.len.to_le_bytes());
            out.extend_from_slice(&f.crc.to_le_bytes());
        }
        out
    }

    /// Parses payload bytes; `None` if malformed. Every count is bounded by
    /// the bytes present.
    pub(crate) fn decode(b: &[u8]) -> Option<SnapshotMeta> {
        let (id, b) = b.split_at_checked(16)?;
        let last_included = decode_log_id(id)?;
        let (len, b) = b.split_first_chunk::<4>()?;
        let (membership, mut b) = b.split_at_checked(u32::from_le_bytes(*len) as usize)?;
        let membership = decode_membership(membership)?;
        let (count, rest) = b.split_first_chunk::<4>()?;
        b = rest;
        let mut files = Vec::new();
        for _ in 0..u32::from_le_bytes(*count) {
            let (name_len, rest) = b.split_first_chunk::<2>()?;
            let (name, rest) = rest.split_at_checked(u16::from_le_bytes(*name_len) as usize)?;
            let (len, rest) = rest.split_first_chunk::<8>()?;
            let (crc, rest) = rest.split_first_chunk::<4>()?;
            b = rest;
            files.push(SnapshotFile {
                name: String::from_utf8(name.to_vec()).ok()?,
                len: u64::from_le_bytes(*len),
                crc: u32::from_le_bytes(*crc),
            });
        }
        b.is_empty().then_some(SnapshotMeta {
            last_included,
            membership,
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::NodeId;

    #[test]
    fn meta_round_trips_and_truncations_are_refused() {
        let meta = SnapshotMeta {
            last_included: LogId::new(3, 42),
            membership: Membership::with_voters([NodeId(1), NodeId(2)]),
            files: vec![SnapshotFile {
                name: "data".into(),
                len: 5,
                crc: 9,
            }],
        };
        let bytes = meta.encode();
        assert_eq!(SnapshotMeta::decode(&bytes), Some(meta));
        for cut in 0..bytes.len() {
            assert_eq!(SnapshotMeta::decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }
}
