//! The file service's wire forms: a snapshot meta in protobuf. Decoding is
//! checked field by field: bytes from a peer are a typed error at worst,
//! never a panic.

use std::collections::BTreeSet;

use crate::core::LogId;
use crate::runtime::wire::convert::{DecodeError, membership_from_proto, membership_to_proto};
use crate::runtime::wire::proto;
use crate::storage::{SnapshotFile, SnapshotMeta};

/// Why a snapshot meta from a peer is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaDecodeError {
    /// A field is missing or malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A file has an empty name.
    #[error("a snapshot file has an empty name")]
    EmptyFileName,
    /// Two files have the same name.
    #[error("snapshot file {0:?} is listed twice")]
    DuplicateFile(String),
}

pub(crate) fn log_id_to_proto(id: LogId) -> proto::LogId {
    proto::LogId {
        term: id.term.0,
        index: id.index.0,
    }
}

pub(crate) fn log_id_from_proto(id: proto::LogId) -> LogId {
    LogId::new(id.term, id.index)
}

/// A snapshot meta in its wire form.
pub fn snapshot_meta_to_proto(meta: &SnapshotMeta) -> proto::SnapshotMeta {
    proto::SnapshotMeta {
        last_included: Some(log_id_to_proto(meta.last_included)),
        configuration: Some(membership_to_proto(&meta.membership)),
        files: meta
            .files
            .iter()
            .map(|f| proto::SnapshotFile {
                name: f.name.clone(),
                len: f.len,
                crc: f.crc,
            })
            .collect(),
    }
}

/// A snapshot meta from its wire form.
///
/// # Errors
/// [`MetaDecodeError`]: a missing field, a zero node id, an empty or
/// repeated file name.
pub fn snapshot_meta_from_proto(m: proto::SnapshotMeta) -> Result<SnapshotMeta, MetaDecodeError> {
    let last_included = m
        .last_included
        .map(log_id_from_proto)
        .ok_or(DecodeError::MissingField("snapshot_meta.last_included"))?;
    let membership = membership_from_proto(
        m.configuration
            .ok_or(DecodeError::MissingField("snapshot_meta.configuration"))?,
    )?;
    let mut names = BTreeSet::new();
    let mut files = Vec::with_capacity(m.files.len());
    for f in m.files {
        if f.name.is_empty() {
            return Err(MetaDecodeError::EmptyFileName);
        }
        if !names.insert(f.name.clone()) {
            return Err(MetaDecodeError::DuplicateFile(f.name));
        }
        files.push(SnapshotFile {
            name: f.name,
            len: f.len,
            crc: f.crc,
        });
    }
    Ok(SnapshotMeta {
        last_included,
        membership,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Membership, NodeId};

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_included: LogId::new(3, 42),
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
            files: vec![
                SnapshotFile {
                    name: "a".into(),
                    len: 0,
                    crc: 0,
                },
                SnapshotFile {
                    name: "b".into(),
                    len: 7,
                    crc: 99,
                },
            ],
        }
    }

    #[test]
    fn meta_round_trips() {
        let meta = meta();
        let back = snapshot_meta_from_proto(snapshot_meta_to_proto(&meta)).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn invalid_metas_are_typed_errors() {
        let mut m = snapshot_meta_to_proto(&meta());
        m.last_included = None;
        assert!(matches!(
            snapshot_meta_from_proto(m),
            Err(MetaDecodeError::Decode(DecodeError::MissingField(_)))
        ));
        let mut m = snapshot_meta_to_proto(&meta());
        m.configuration.as_mut().unwrap().voters.push(0);
        assert!(matches!(
            snapshot_meta_from_proto(m),
            Err(MetaDecodeError::Decode(DecodeError::ZeroNodeId(_)))
        ));
        let mut m = snapshot_meta_to_proto(&meta());
        m.files[1].name = "a".into();
        assert!(matches!(
            snapshot_meta_from_proto(m),
            Err(MetaDecodeError::DuplicateFile(name)) if name == "a"
        ));
        let mut m = snapshot_meta_to_proto(&meta());
        m.files[0].name.clear();
        assert!(matches!(
            snapshot_meta_from_proto(m),
            Err(MetaDecodeError::EmptyFileName)
        ));
    }
}
