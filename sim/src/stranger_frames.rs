//! What the stranger sends once it is on a connection: forged Raft
//! messages and admin requests, built with the runtime's own wire code so
//! that they are well framed and decode on the server.

use bytes::BytesMut;
use oar::core::{
    AppendRequest, Entry, EntryPayload, Heartbeat, LogId, LogIndex, Membership, Message,
    MessageBody, NodeId, Term, VoteRequest,
};
use oar::runtime::GroupId;
use oar::runtime::wire::frame::{encode_frame, read_frame};
use oar::runtime::wire::proto;
use prost::Message as _;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::kv_machine::KvCommand;
use crate::observe::FORGED_MARKER;

/// The largest answer the stranger reads.
const REPLY_BYTES_MAX: u32 = 1 << 20;

/// A command no client writes: applying it anywhere is a violation.
fn forged_command(n: usize) -> bytes::Bytes {
    KvCommand::Put {
        key: "k0".into(),
        value: format!("{FORGED_MARKER}-{n}"),
    }
    .encode()
}

/// Forged messages to `target` in the name of `claimed`, each with a
/// label for the trace, in a random order. `seen` is the target's term
/// and last log entry when the stranger could overhear them: the appends
/// then follow on from the target's log, as a real leader's would, and a
/// target that took them would commit and apply forged commands.
pub fn forged_messages(
    target: NodeId,
    claimed: NodeId,
    seen: Option<(Term, LogId)>,
    rng: &mut ChaCha8Rng,
) -> Vec<(&'static str, Message)> {
    let (term, last) = seen.unwrap_or((Term(1), LogId::new(0, 0)));
    let next = Term(term.0.saturating_add(1).min(Term::MAX.0));
    let message = |term: Term, body: MessageBody| Message {
        from: claimed,
        to: target,
        term,
        body,
    };
    let commands = |term: Term, count: u64| -> Vec<Entry> {
        (1..=count)
            .map(|k| Entry {
                id: LogId::new(term.0, last.index.0 + k),
                payload: EntryPayload::Command(forged_command(k as usize)),
            })
            .collect()
    };
    let append = |entries: Vec<Entry>| {
        let leader_commit = entries.last().map_or(last.index, |e| e.id.index);
        MessageBody::AppendRequest(AppendRequest {
            prev_log_id: last,
            entries: entries.into(),
            leader_commit,
        })
    };
    let heartbeat = MessageBody::Heartbeat(Heartbeat {
        leader_commit: LogIndex(last.index.0 + 3),
        round: 0,
    });
    let count = rng.random_range(1..=3);
    // A configuration naming the sender is the one way an unknown leader
    // gets past the core's own checks (a new server's first leader).
    let mut introduced = vec![Entry {
        id: LogId::new(next.0, last.index.0 + 1),
        payload: EntryPayload::Config(Membership::with_voters([claimed, target]).into()),
    }];
    introduced.push(Entry {
        id: LogId::new(next.0, last.index.0 + 2),
        payload: EntryPayload::Command(forged_command(0)),
    });
    let top = Term(u64::MAX);
    let above = Term(Term::MAX.0 + 1);
    let mut messages = vec![
        ("heartbeat@u64::MAX", message(top, heartbeat.clone())),
        ("heartbeat@MAX+1", message(above, heartbeat.clone())),
        ("heartbeat@next", message(next, heartbeat)),
        (
            "append@u64::MAX",
            message(top, append(commands(top, count))),
        ),
        (
            "append@MAX+1",
            message(above, append(commands(above, count))),
        ),
        ("append@next", message(next, append(commands(next, count)))),
        (
            "append-naming-sender@next",
            message(next, append(introduced)),
        ),
        (
            "transfer-vote@next",
            message(
                next,
                MessageBody::VoteRequest(VoteRequest {
                    pre_vote: false,
                    last_log_id: LogId::new(next.0, last.index.0 + 1000),
                    leadership_transfer: true,
                }),
            ),
        ),
        ("timeout-now@next", message(next, MessageBody::TimeoutNow)),
    ];
    for i in (1..messages.len()).rev() {
        messages.swap(i, rng.random_range(0..=i));
    }
    messages
}

/// An admin request for `group`: remove `victim`, or transfer leadership
/// to it.
pub fn admin_request(group: GroupId, victim: NodeId, remove: bool) -> proto::frame::Kind {
    use proto::admin_request::Op;
    let op = if remove {
        Op::RemovePeer(proto::AdminRemovePeer { id: victim.0 })
    } else {
        Op::TransferLeader(proto::AdminTransfer { to: victim.0 })
    };
    proto::frame::Kind::AdminRequest(proto::AdminRequest {
        group_id: group.0,
        op: Some(op),
    })
}

/// Writes one frame and flushes it (the simulated stream sends on flush).
///
/// # Errors
/// Write failures.
pub async fn send_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: proto::frame::Kind,
) -> std::io::Result<()> {
    let body = proto::Frame { kind: Some(kind) }.encode_to_vec();
    let mut out = BytesMut::new();
    encode_frame(&body, &mut out);
    writer.write_all(&out).await?;
    writer.flush().await
}

/// The server's next frame, if it sends one within a second; `None` when
/// it closes the connection (or says nothing).
pub async fn read_reply<R: AsyncRead + Unpin>(reader: &mut R) -> Option<proto::frame::Kind> {
    let wait = std::time::Duration::from_secs(1);
    let body = tokio::time::timeout(wait, read_frame(reader, REPLY_BYTES_MAX))
        .await
        .ok()?
        .ok()?;
    proto::Frame::decode(body).ok()?.kind
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn forgeries_cover_the_top_of_the_term_range_and_decode() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let seen = Some((Term(4), LogId::new(4, 17)));
        let messages = forged_messages(NodeId(2), NodeId(1), seen, &mut rng);
        let terms: Vec<u64> = messages.iter().map(|(_, m)| m.term.0).collect();
        assert!(terms.contains(&u64::MAX) && terms.contains(&(Term::MAX.0 + 1)));
        assert!(terms.contains(&5));
        for (label, m) in &messages {
            let wire = oar::runtime::wire::encode_message(oar::runtime::GroupId(1), m);
            let (_, back) = oar::runtime::wire::decode_message(&wire).expect(label);
            assert_eq!(&back, m, "{label}");
            if let MessageBody::AppendRequest(a) = &m.body {
                assert_eq!(a.prev_log_id, LogId::new(4, 17), "{label}");
                assert!(a.leader_commit.0 > 17, "{label} commits what it carries");
            }
        }
    }
}
