//! Conversion between the core's messages and their protobuf wire form: the
//! only file that sees both, so codec errors never reach the core.

use bytes::Bytes;
use prost::Message as _;

use super::proto;
use crate::core::{
    AppendRequest, AppendResponse, Entry, EntryPayload, Heartbeat, LogId, LogIndex, Membership,
    Message, MessageBody, NodeId, ReadIndexRequest, ReadIndexResponse, RejectHint, SnapshotInfo,
    Term, VoteRequest, VoteResponse,
};
use crate::runtime::group_id::GroupId;

/// Why bytes from the network are not a valid Raft message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a protobuf `RaftMessage` at all.
    #[error("malformed protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A field the message kind requires is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// An entry type this version does not know.
    #[error("unknown entry type {0}")]
    UnknownEntryType(i32),
    /// A message kind this version of the core does not handle yet.
    #[error("unsupported message kind {0}")]
    Unsupported(&'static str),
    /// Node id 0 is reserved for "no node".
    #[error("node id 0 in field {0}")]
    ZeroNodeId(&'static str),
}

/// Encodes a core message for `group` into protobuf bytes.
pub fn encode_message(group: GroupId, message: &Message) -> Vec<u8> {
    to_proto(group, message).encode_to_vec()
}

/// Decodes protobuf bytes into the group id and a core message.
///
/// # Errors
/// [`DecodeError`] for anything that is not a complete, supported message.
pub fn decode_message(bytes: &[u8]) -> Result<(GroupId, Message), DecodeError> {
    from_proto(proto::RaftMessage::decode(bytes)?)
}

fn log_id_to_proto(id: LogId) -> Option<proto::LogId> {
    Some(proto::LogId {
        term: id.term.0,
        index: id.index.0,
    })
}

fn log_id_from_proto(id: Option<proto::LogId>, field: &'static str) -> Result<LogId, DecodeError> {
    let id = id.ok_or(DecodeError::MissingField(field))?;
    Ok(LogId::new(id.term, id.index))
}

/// A membership in its wire form.
pub fn membership_to_proto(m: &Membership) -> proto::Configuration {
    proto::Configuration {
        voters: m.voters.iter().map(|id| id.0).collect(),
        learners: m.learners.iter().map(|id| id.0).collect(),
        outgoing_voters: m.outgoing_voters.iter().map(|id| id.0).collect(),
    }
}

/// A membership from its wire form.
///
/// # Errors
/// `ZeroNodeId` if any id is 0.
pub fn membership_from_proto(c: proto::Configuration) -> Result<Membership, DecodeError> {
    let ids = |raw: Vec<u64>, field| {
        raw.into_iter()
            .map(|id| {
                if id == 0 {
                    Err(DecodeError::ZeroNodeId(field))
                } else {
                    Ok(NodeId(id))
                }
            })
            .collect::<Result<_, _>>()
    };
    Ok(Membership {
        voters: ids(c.voters, "configuration.voters")?,
        learners: ids(c.learners, "configuration.learners")?,
        outgoing_voters: ids(c.outgoing_voters, "configuration.outgoing_voters")?,
    })
}

fn entry_to_proto(e: &Entry) -> proto::LogEntry {
    let (kind, data, configuration) = match &e.payload {
        EntryPayload::Noop => (proto::EntryType::Noop, Bytes::new(), None),
        EntryPayload::Command(data) => (proto::EntryType::Data, data.clone(), None),
        EntryPayload::Config(m) => (
            proto::EntryType::Configuration,
            Bytes::new(),
            Some(membership_to_proto(m)),
        ),
    };
    proto::LogEntry {
        id: log_id_to_proto(e.id),
        r#type: kind as i32,
        data,
        configuration,
    }
}

fn entry_from_proto(e: proto::LogEntry) -> Result<Entry, DecodeError> {
    let id = log_id_from_proto(e.id, "entry.id")?;
    let payload = match proto::EntryType::try_from(e.r#type) {
        Ok(proto::EntryType::Noop) => EntryPayload::Noop,
        Ok(proto::EntryType::Data) => EntryPayload::Command(e.data),
        Ok(proto::EntryType::Configuration) => {
            let c = e
                .configuration
                .ok_or(DecodeError::MissingField("entry.configuration"))?;
            EntryPayload::Config(membership_from_proto(c)?.into())
        }
        Ok(proto::EntryType::Unspecified) | Err(_) => {
            return Err(DecodeError::UnknownEntryType(e.r#type));
        }
    };
    Ok(Entry { id, payload })
}

/// A core message in its wire form.
pub fn to_proto(group: GroupId, m: &Message) -> proto::RaftMessage {
    use proto::raft_message::Body;
    let body = match &m.body {
        MessageBody::VoteRequest(r) => Body::VoteRequest(proto::VoteRequest {
            pre_vote: r.pre_vote,
            last_log_id: log_id_to_proto(r.last_log_id),
            leadership_transfer: r.leadership_transfer,
        }),
        MessageBody::VoteResponse(r) => Body::VoteResponse(proto::VoteResponse {
            pre_vote: r.pre_vote,
            granted: r.granted,
            removed: None,
        }),
        MessageBody::AppendRequest(r) => Body::AppendRequest(proto::AppendEntriesRequest {
            prev_log_id: log_id_to_proto(r.prev_log_id),
            entries: r.entries.iter().map(entry_to_proto).collect(),
            leader_commit: r.leader_commit.0,
        }),
        MessageBody::AppendResponse(AppendResponse::Success { match_index }) => {
            Body::AppendResponse(proto::AppendEntriesResponse {
                success: true,
                match_index: match_index.0,
                ..Default::default()
            })
        }
        MessageBody::AppendResponse(AppendResponse::Reject { rejected, hint }) => {
            let (conflict_term, conflict_first_index) =
                hint.conflict.map_or((0, 0), |(t, i)| (t.0, i.0));
            Body::AppendResponse(proto::AppendEntriesResponse {
                success: false,
                match_index: 0,
                rejected_index: rejected.0,
                hint: Some(proto::RejectHint {
                    last_index: hint.last_index.0,
                    conflict_term,
                    conflict_first_index,
                }),
            })
        }
        MessageBody::Heartbeat(h) => Body::HeartbeatRequest(proto::HeartbeatRequest {
            leader_commit: h.leader_commit.0,
            round: h.round,
            quiesce: false,
        }),
        MessageBody::Quiesce(h) => Body::HeartbeatRequest(proto::HeartbeatRequest {
            leader_commit: h.leader_commit.0,
            round: h.round,
            quiesce: true,
        }),
        MessageBody::HeartbeatResponse { round } => {
            Body::HeartbeatResponse(proto::HeartbeatResponse { round: *round })
        }
        MessageBody::ReadIndexRequest(r) => Body::ReadIndexRequest(proto::ReadIndexRequest {
            request: r.request,
            lease: r.lease,
        }),
        MessageBody::ReadIndexResponse(r) => Body::ReadIndexResponse(proto::ReadIndexResponse {
            request: r.request,
            granted: r.read_index.is_some(),
            read_index: r.read_index.map_or(0, |i| i.0),
        }),
        MessageBody::TimeoutNow => Body::TimeoutNowRequest(proto::TimeoutNowRequest {}),
        MessageBody::InstallSnapshot(info) => {
            Body::InstallSnapshotRequest(proto::InstallSnapshotRequest {
                last_included: log_id_to_proto(info.last_included),
                configuration: Some(membership_to_proto(&info.membership)),
                // Files are pulled from the sender's server address.
                uri: String::new(),
            })
        }
        MessageBody::SnapshotFailed { last } => {
            Body::InstallSnapshotResponse(proto::InstallSnapshotResponse {
                success: false,
                last_included: log_id_to_proto(*last),
            })
        }
        // A refusal on the wire, so that a peer without the notice still
        // reads a refused vote.
        MessageBody::Removed { config } => Body::VoteResponse(proto::VoteResponse {
            pre_vote: false,
            granted: false,
            removed: Some(proto::RemovedNotice {
                config_index: config.0,
            }),
        }),
    };
    proto::RaftMessage {
        group_id: group.0,
        from: m.from.0,
        to: m.to.0,
        term: m.term.0,
        body: Some(body),
    }
}

/// A core message from its wire form.
///
/// # Errors
/// [`DecodeError`] for a missing body or field, an unknown entry type, a
/// zero node id, or a kind the core does not handle yet.
pub fn from_proto(m: proto::RaftMessage) -> Result<(GroupId, Message), DecodeError> {
    use proto::raft_message::Body;
    if m.from == 0 {
        return Err(DecodeError::ZeroNodeId("from"));
    }
    if m.to == 0 {
        return Err(DecodeError::ZeroNodeId("to"));
    }
    let body = match m.body.ok_or(DecodeError::MissingField("body"))? {
        Body::VoteRequest(r) => MessageBody::VoteRequest(VoteRequest {
            pre_vote: r.pre_vote,
            last_log_id: log_id_from_proto(r.last_log_id, "vote_request.last_log_id")?,
            leadership_transfer: r.leadership_transfer,
        }),
        Body::VoteResponse(proto::VoteResponse {
            removed: Some(notice),
            ..
        }) => MessageBody::Removed {
            config: LogIndex(notice.config_index),
        },
        Body::VoteResponse(r) => MessageBody::VoteResponse(VoteResponse {
            pre_vote: r.pre_vote,
            granted: r.granted,
        }),
        Body::AppendRequest(r) => MessageBody::AppendRequest(AppendRequest {
            prev_log_id: log_id_from_proto(r.prev_log_id, "append_request.prev_log_id")?,
            entries: r
                .entries
                .into_iter()
                .map(entry_from_proto)
                .collect::<Result<Vec<_>, _>>()?
                .into(),
            leader_commit: LogIndex(r.leader_commit),
        }),
        Body::AppendResponse(r) if r.success => {
            MessageBody::AppendResponse(AppendResponse::Success {
                match_index: LogIndex(r.match_index),
            })
        }
        Body::AppendResponse(r) => {
            let hint = r
                .hint
                .ok_or(DecodeError::MissingField("append_response.hint"))?;
            let conflict = (hint.conflict_term != 0).then_some((
                Term(hint.conflict_term),
                LogIndex(hint.conflict_first_index),
            ));
            MessageBody::AppendResponse(AppendResponse::Reject {
                rejected: LogIndex(r.rejected_index),
                hint: RejectHint {
                    last_index: LogIndex(hint.last_index),
                    conflict,
                },
            })
        }
        Body::HeartbeatRequest(h) => {
            let beat = Heartbeat {
                leader_commit: LogIndex(h.leader_commit),
                round: h.round,
            };
            match h.quiesce {
                true => MessageBody::Quiesce(beat),
                false => MessageBody::Heartbeat(beat),
            }
        }
        Body::HeartbeatResponse(h) => MessageBody::HeartbeatResponse { round: h.round },
        Body::ReadIndexRequest(r) => MessageBody::ReadIndexRequest(ReadIndexRequest {
            request: r.request,
            lease: r.lease,
        }),
        Body::ReadIndexResponse(r) => MessageBody::ReadIndexResponse(ReadIndexResponse {
            request: r.request,
            read_index: r.granted.then_some(LogIndex(r.read_index)),
        }),
        Body::InstallSnapshotRequest(r) => {
            let c = r
                .configuration
                .ok_or(DecodeError::MissingField("install_snapshot.configuration"))?;
            MessageBody::InstallSnapshot(SnapshotInfo {
                last_included: log_id_from_proto(
                    r.last_included,
                    "install_snapshot.last_included",
                )?,
                membership: membership_from_proto(c)?.into(),
            })
        }
        Body::InstallSnapshotResponse(r) if !r.success => MessageBody::SnapshotFailed {
            last: log_id_from_proto(r.last_included, "install_snapshot_response.last_included")?,
        },
        // Success travels as an append acknowledgement.
        Body::InstallSnapshotResponse(_) => {
            return Err(DecodeError::Unsupported(
                "install_snapshot_response.success",
            ));
        }
        Body::TimeoutNowRequest(_) => MessageBody::TimeoutNow,
        // The core needs no answer: the target's vote request is the answer.
        Body::TimeoutNowResponse(_) => {
            return Err(DecodeError::Unsupported("timeout_now_response"));
        }
    };
    let message = Message {
        from: NodeId(m.from),
        to: NodeId(m.to),
        term: Term(m.term),
        body,
    };
    Ok((GroupId(m.group_id), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let entry = |t, i, payload| Entry {
            id: LogId::new(t, i),
            payload,
        };
        let bodies = vec![
            MessageBody::VoteRequest(VoteRequest {
                pre_vote: true,
                last_log_id: LogId::new(3, 9),
                leadership_transfer: false,
            }),
            MessageBody::VoteResponse(VoteResponse {
                pre_vote: false,
                granted: true,
            }),
            MessageBody::AppendRequest(AppendRequest {
                prev_log_id: LogId::new(2, 4),
                entries: vec![
                    entry(2, 5, EntryPayload::Noop),
                    entry(3, 6, EntryPayload::Command(Bytes::from_static(b"set x 1"))),
                    entry(
                        3,
                        7,
                        EntryPayload::Config(
                            Membership::with_voters([NodeId(1), NodeId(2)]).into(),
                        ),
                    ),
                ]
                .into(),
                leader_commit: LogIndex(4),
            }),
            MessageBody::AppendResponse(AppendResponse::Success {
                match_index: LogIndex(7),
            }),
            MessageBody::AppendResponse(AppendResponse::Reject {
                rejected: LogIndex(9),
                hint: RejectHint {
                    last_index: LogIndex(12),
                    conflict: Some((Term(2), LogIndex(5))),
                },
            }),
            MessageBody::AppendResponse(AppendResponse::Reject {
                rejected: LogIndex(9),
                hint: RejectHint {
                    last_index: LogIndex(3),
                    conflict: None,
                },
            }),
            MessageBody::Heartbeat(Heartbeat {
                leader_commit: LogIndex(8),
                round: 17,
            }),
            MessageBody::Quiesce(Heartbeat {
                leader_commit: LogIndex(8),
                round: 18,
            }),
            MessageBody::HeartbeatResponse { round: 17 },
            MessageBody::ReadIndexRequest(ReadIndexRequest {
                request: 5,
                lease: true,
            }),
            MessageBody::ReadIndexResponse(ReadIndexResponse {
                request: 5,
                read_index: Some(LogIndex(9)),
            }),
            MessageBody::ReadIndexResponse(ReadIndexResponse {
                request: 6,
                read_index: None,
            }),
            MessageBody::TimeoutNow,
            MessageBody::AppendRequest(AppendRequest {
                prev_log_id: LogId::new(3, 7),
                entries: vec![entry(
                    3,
                    8,
                    EntryPayload::Config(
                        Membership {
                            voters: [NodeId(1), NodeId(4)].into(),
                            outgoing_voters: [NodeId(1), NodeId(2), NodeId(3)].into(),
                            learners: [NodeId(5)].into(),
                        }
                        .into(),
                    ),
                )]
                .into(),
                leader_commit: LogIndex(7),
            }),
            MessageBody::Removed {
                config: LogIndex(17),
            },
        ];
        bodies
            .into_iter()
            .map(|body| Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(3),
                body,
            })
            .collect()
    }

    #[test]
    fn every_message_kind_round_trips() {
        for m in samples() {
            let bytes = encode_message(GroupId(7), &m);
            let (group, back) = decode_message(&bytes).expect("decodes");
            assert_eq!(group, GroupId(7));
            assert_eq!(back, m);
        }
    }

    #[test]
    fn malformed_bytes_are_a_typed_error() {
        // A length-delimited field whose length runs past the end.
        assert!(matches!(
            decode_message(&[0x52, 0xff, 0x01]),
            Err(DecodeError::Protobuf(_))
        ));
        // Valid protobuf with no body.
        let empty = proto::RaftMessage {
            group_id: 1,
            from: 1,
            to: 2,
            term: 1,
            body: None,
        }
        .encode_to_vec();
        assert!(matches!(
            decode_message(&empty),
            Err(DecodeError::MissingField("body"))
        ));
        // Node id 0.
        let mut zero = to_proto(GroupId(1), &samples()[0]);
        zero.from = 0;
        assert!(matches!(
            from_proto(zero),
            Err(DecodeError::ZeroNodeId("from"))
        ));
        // An entry type from the future.
        let mut future = to_proto(GroupId(1), &samples()[2]);
        if let Some(proto::raft_message::Body::AppendRequest(r)) = &mut future.body {
            r.entries[0].r#type = 42;
        }
        assert!(matches!(
            from_proto(future),
            Err(DecodeError::UnknownEntryType(42))
        ));
    }

    #[test]
    fn truncated_and_random_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for m in samples() {
            let bytes = encode_message(GroupId(1), &m);
            for cut in 0..bytes.len() {
                let _ = decode_message(&bytes[..cut]);
            }
            // Flip each byte to pseudo-random values.
            for i in 0..bytes.len() {
                let mut mangled = bytes.clone();
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                mangled[i] = seed as u8;
                let _ = decode_message(&mangled);
            }
        }
    }
}
