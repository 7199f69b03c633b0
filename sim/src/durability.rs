//! Durability checks that name the loss. Every server's outgoing frames
//! are read off the wire ([`FrameTap`]): a granted vote, an append
//! acknowledgement and the acknowledgement of an installed snapshot each
//! promise the receiver that something is durable. Each restart then
//! checks that what the server recovered from its disk still keeps its
//! promises ([`Promises::check`]); a broken one is a
//! [`Violation::DurabilityLost`] naming the server, the promise and the
//! crash that lost it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use oar::core::{AppendResponse, Entry, LogId, LogIndex, Message, MessageBody, NodeId, Term};
use oar::runtime::GroupId;
use oar::runtime::wire::convert::from_proto;
use oar::runtime::wire::proto;
use prost::Message as _;

use crate::observe::Violation;

/// What one server promised.
#[derive(Clone, Debug, Default)]
struct Promised {
    /// The newest granted vote: (term, candidate).
    vote: Option<(Term, NodeId)>,
    /// The newest append acknowledgement: in its term, every entry up to
    /// the index is durable.
    appended: Option<Acknowledged>,
    /// The newest acknowledged snapshot install (a later append
    /// acknowledgement covers it, but a loss names it).
    installed: Option<Acknowledged>,
    /// Snapshots offered to this server: (term, leader) → last index.
    offers: BTreeMap<(Term, NodeId), LogIndex>,
    /// The newest term it sent appends or heartbeats in as leader: a
    /// leader's term is durable before it leads (else a restart forgets it,
    /// and the voters that elected it may elect it in that term again).
    led: Option<Term>,
    /// How it last went down, for the report.
    crash: Option<String>,
}

/// An append (or snapshot install) acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Acknowledged {
    term: Term,
    leader: NodeId,
    index: LogIndex,
    /// It acknowledged a snapshot offered through `index`.
    snapshot: bool,
}

/// What a server recovered from its disk at a start.
#[derive(Clone, Copy, Debug)]
pub struct RecoveredState {
    /// The durable term.
    pub term: Term,
    /// The durable vote in that term.
    pub voted_for: Option<NodeId>,
    /// The last durable log entry (the purge point if the log is empty).
    pub last_log: LogId,
    /// The log's purge point: entries up to it must be in the snapshot.
    pub purged: LogIndex,
    /// The newest durable snapshot's last index.
    pub snapshot: Option<LogIndex>,
}

/// Every server's promises in one run, group by group (a server hosts a
/// member of each); shared by the taps and the checks.
#[derive(Clone, Debug, Default)]
pub struct Promises {
    inner: Arc<Mutex<BTreeMap<(GroupId, NodeId), Promised>>>,
    checked: Arc<Mutex<Checked>>,
}

/// How much the restarts of a run checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checked {
    /// Restarts that recovered with something promised.
    pub restarts: u64,
    /// Votes checked.
    pub votes: u64,
    /// Append acknowledgements checked.
    pub appends: u64,
    /// Snapshot install acknowledgements checked.
    pub snapshots: u64,
}

impl Promises {
    /// Notes a message a server's member of `group` sent.
    pub fn sent(&self, group: GroupId, message: &Message) {
        let mut nodes = self.inner.lock().expect("promises");
        match &message.body {
            MessageBody::VoteResponse(response) if response.granted && !response.pre_vote => {
                let vote = &mut nodes.entry((group, message.from)).or_default().vote;
                if vote.is_none_or(|(term, _)| term <= message.term) {
                    *vote = Some((message.term, message.to));
                }
            }
            MessageBody::AppendResponse(AppendResponse::Success { match_index }) => {
                let promised = nodes.entry((group, message.from)).or_default();
                let offered = promised.offers.get(&(message.term, message.to));
                let ack = Acknowledged {
                    term: message.term,
                    leader: message.to,
                    index: *match_index,
                    snapshot: offered == Some(match_index),
                };
                if ack.snapshot {
                    promised.installed = Some(ack);
                }
                // Within a term the promise is the largest index; a newer
                // term's supersedes (its leader may overwrite what an
                // older one was told).
                match &mut promised.appended {
                    Some(old) if (old.term, old.index) == (ack.term, ack.index) => {
                        old.snapshot |= ack.snapshot;
                    }
                    Some(old) if (old.term, old.index) > (ack.term, ack.index) => {}
                    slot => *slot = Some(ack),
                }
            }
            MessageBody::InstallSnapshot(info) => {
                let offers = &mut nodes.entry((group, message.to)).or_default().offers;
                offers.insert((message.term, message.from), info.last_included.index);
            }
            _ => {}
        }
    }

    /// Notes that `node`'s member of `group` sent an append or a heartbeat
    /// as the leader of `term`.
    pub fn led(&self, group: GroupId, node: NodeId, term: Term) {
        let mut nodes = self.inner.lock().expect("promises");
        let led = &mut nodes.entry((group, node)).or_default().led;
        *led = (*led).max(Some(term));
    }

    /// `node`'s member of `group` is about to write `entries` over its log
    /// from their first index on. A write holding an entry of a newer term
    /// than the append acknowledgement is a newer leader's, and where it
    /// starts at an index the acknowledgement covered, it conflicts with
    /// the entry acknowledged there, which therefore was never committed
    /// (leader completeness): the promise ends before it. Called before the
    /// write: its truncation may reach the disk and its entries not (a
    /// failed sync, then a power loss) — a shorter log that breaks no promise.
    pub fn replacing(&self, group: GroupId, node: NodeId, entries: &[Entry]) {
        let mut nodes = self.inner.lock().expect("promises");
        let Some(ack) = nodes
            .get_mut(&(group, node))
            .and_then(|p| p.appended.as_mut())
        else {
            return;
        };
        // The write truncates from its first index: the core writes from
        // the first entry its log does not hold, so the acknowledged entry
        // there (and every one after it) conflicts.
        let Some(first) = entries.first() else {
            return;
        };
        let newer = entries.iter().any(|e| e.id.term > ack.term);
        if newer && first.id.index <= ack.index {
            ack.index = LogIndex(first.id.index.0 - 1);
            ack.snapshot = false;
        }
    }

    /// What the restarts so far checked.
    pub fn checked(&self) -> Checked {
        *self.checked.lock().expect("checked")
    }

    /// `node` went down (`how`, at `at_ns` simulated), and with it its
    /// member of every group that promised something.
    pub fn crashed(&self, node: NodeId, how: &str, at_ns: u64) {
        let mut nodes = self.inner.lock().expect("promises");
        let crash = format!("{how} at {:.3}s", at_ns as f64 / 1e9);
        for ((_, id), promised) in nodes.iter_mut() {
            if *id == node {
                promised.crash = Some(crash.clone());
            }
        }
    }

    /// The promises `node`'s member of `group` broke, given what it
    /// recovered.
    pub fn check(&self, group: GroupId, node: NodeId, recovered: RecoveredState) -> Vec<Violation> {
        let nodes = self.inner.lock().expect("promises");
        let Some(promised) = nodes.get(&(group, node)) else {
            return Vec::new();
        };
        {
            let mut checked = self.checked.lock().expect("checked");
            checked.restarts += 1;
            checked.votes += u64::from(promised.vote.is_some());
            match promised.appended {
                Some(ack) if ack.snapshot => checked.snapshots += 1,
                Some(_) => checked.appends += 1,
                None => {}
            }
        }
        let crash = promised.crash.clone().unwrap_or_else(|| "a restart".into());
        let snapshot = recovered.snapshot.unwrap_or_default();
        let log = match recovered.last_log.index > recovered.purged {
            true => format!(
                "log {}..={} (last {})",
                recovered.purged.0 + 1,
                recovered.last_log.index.0,
                recovered.last_log
            ),
            false => format!("log empty after {}", recovered.purged.0),
        };
        let mut state = format!(
            "term {} vote {:?}, {log}, snapshot through {}",
            recovered.term.0,
            recovered.voted_for.map(|v| v.0),
            snapshot.0
        );
        if recovered.purged > snapshot {
            let gap = (snapshot.0 + 1, recovered.purged.0);
            state += &format!(": entries {}..={} are nowhere", gap.0, gap.1);
        }
        let lost = |promise: String| Violation::DurabilityLost {
            node,
            promise,
            crash: crash.clone(),
            recovered: state.clone(),
        };
        let mut violations = Vec::new();
        if let Some(term) = promised.led
            && recovered.term < term
        {
            violations.push(lost(format!("its term {} as leader", term.0)));
        }
        if let Some((term, candidate)) = promised.vote {
            let kept = recovered.term > term
                || (recovered.term == term && recovered.voted_for == Some(candidate));
            if !kept {
                violations.push(lost(format!("its vote for {candidate} in term {}", term.0)));
            }
        }
        if let Some(ack) = promised.appended {
            // Entries are held in the log, or folded into the snapshot; a
            // log purged past the snapshot holds nothing before its start.
            let snapshot = recovered.snapshot.unwrap_or_default();
            let held = match recovered.purged <= snapshot {
                true => recovered.last_log.index.max(snapshot),
                false => snapshot,
            };
            // A newer leader's entries may have replaced what an older one
            // was told: then the promise no longer stands.
            let overwritten = recovered.last_log.term > ack.term;
            if held < ack.index && !overwritten {
                let through = format!(
                    "entries through {} acknowledged to leader {} in term {}",
                    ack.index.0, ack.leader, ack.term.0
                );
                // The install whose state is gone, if the gap covers one.
                let promise = match promised.installed {
                    Some(install)
                        if install.index > held
                            && (install.term, install.index) <= (ack.term, ack.index) =>
                    {
                        let snapshot = format!(
                            "the snapshot through {} installed from leader {} in term {}",
                            install.index.0, install.leader, install.term.0
                        );
                        match install == ack {
                            true => snapshot,
                            false => format!("{snapshot}, then {through}"),
                        }
                    }
                    _ => through,
                };
                violations.push(lost(promise));
            }
        }
        violations
    }
}

/// Reads the frames one server writes on one connection and hands its Raft
/// messages to the [`Promises`]. Only the messages that promise something
/// (vote and append responses, snapshot offers) are decoded; appends and
/// heartbeats are recognized by their field number and skipped.
#[derive(Debug)]
pub struct FrameTap {
    promises: Promises,
    buffer: BytesMut,
}

/// `RaftMessage` body fields worth decoding (see `proto/raft.proto`).
const VOTE_RESPONSE: u64 = 11;
const APPEND_RESPONSE: u64 = 13;
const INSTALL_SNAPSHOT_REQUEST: u64 = 16;
const APPEND_REQUEST: u64 = 12;
const HEARTBEAT_REQUEST: u64 = 14;
/// `RaftMessage` header fields (varints, before the body).
const RAFT_GROUP_ID: u64 = 1;
const RAFT_FROM: u64 = 2;
const RAFT_TERM: u64 = 4;
/// `Frame.raft`.
const FRAME_RAFT: u64 = 1;

impl FrameTap {
    /// A tap reporting to `promises`.
    pub fn new(promises: Promises) -> Self {
        FrameTap {
            promises,
            buffer: BytesMut::new(),
        }
    }

    /// Bytes the server wrote, in order.
    pub fn written(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        while self.buffer.len() >= 4 {
            let len = u32::from_be_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
            if self.buffer.len() < 4 + len {
                return;
            }
            self.buffer.advance(4);
            let body = self.buffer.split_to(len);
            if let Some((group, from, term)) = leading(&body) {
                self.promises.led(group, from, term);
            }
            if promising(&body)
                && let Ok(proto::Frame {
                    kind: Some(proto::frame::Kind::Raft(raft)),
                }) = proto::Frame::decode(body.freeze())
                && let Ok((group, message)) = from_proto(raft)
            {
                self.promises.sent(group, &message);
            }
        }
    }
}

/// Whether a frame body is a Raft message whose body field is one that
/// promises durability, found by walking the protobuf tags.
fn promising(body: &[u8]) -> bool {
    let mut at = 0;
    let Some((FRAME_RAFT, 2)) = tag(body, &mut at) else {
        return false;
    };
    let Some(len) = varint(body, &mut at) else {
        return false;
    };
    let Some(raft) = body.get(at..at + len as usize) else {
        return false;
    };
    let mut at = 0;
    while let Some((field, wire_type)) = tag(raft, &mut at) {
        match (field, wire_type) {
            (VOTE_RESPONSE | APPEND_RESPONSE | INSTALL_SNAPSHOT_REQUEST, _) => return true,
            (_, 0) if varint(raft, &mut at).is_some() => {}
            _ => return false,
        }
    }
    false
}

/// The group, sender and term of a frame that is an append, a heartbeat or
/// a snapshot offer (only a leader sends them), from the Raft message's leading
/// varint fields; the body is not decoded.
fn leading(body: &[u8]) -> Option<(GroupId, NodeId, Term)> {
    let mut at = 0;
    let (FRAME_RAFT, 2) = tag(body, &mut at)? else {
        return None;
    };
    let len = varint(body, &mut at)?;
    let raft = body.get(at..at + usize::try_from(len).ok()?)?;
    let (mut group, mut from, mut term) = (0, 0, 0);
    let mut at = 0;
    while let Some((field, wire_type)) = tag(raft, &mut at) {
        match (field, wire_type) {
            (APPEND_REQUEST | HEARTBEAT_REQUEST | INSTALL_SNAPSHOT_REQUEST, 2) => {
                return Some((GroupId(group), NodeId(from), Term(term)));
            }
            (_, 0) => {
                let value = varint(raft, &mut at)?;
                match field {
                    RAFT_GROUP_ID => group = value,
                    RAFT_FROM => from = value,
                    RAFT_TERM => term = value,
                    _ => {}
                }
            }
            _ => return None,
        }
    }
    None
}

fn tag(bytes: &[u8], at: &mut usize) -> Option<(u64, u64)> {
    let key = varint(bytes, at)?;
    Some((key >> 3, key & 7))
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use oar::core::{SnapshotInfo, VoteResponse};
    use oar::runtime::wire::convert::to_proto;
    use oar::runtime::wire::frame::encode_frame;

    fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            body,
        }
    }

    fn framed(messages: &[Message]) -> BytesMut {
        let mut out = BytesMut::new();
        for m in messages {
            let frame = proto::Frame {
                kind: Some(proto::frame::Kind::Raft(to_proto(GroupId(1), m))),
            };
            encode_frame(&frame.encode_to_vec(), &mut out);
        }
        out
    }

    fn state(
        term: u64,
        vote: Option<u64>,
        last: (u64, u64),
        snapshot: Option<u64>,
    ) -> RecoveredState {
        RecoveredState {
            term: Term(term),
            voted_for: vote.map(NodeId),
            last_log: LogId::new(last.0, last.1),
            purged: LogIndex(snapshot.unwrap_or(0)),
            snapshot: snapshot.map(LogIndex),
        }
    }

    fn ack(index: u64) -> MessageBody {
        MessageBody::AppendResponse(AppendResponse::Success {
            match_index: LogIndex(index),
        })
    }

    #[test]
    fn promises_read_off_the_wire_are_checked_after_a_restart() {
        let promises = Promises::default();
        let mut tap = FrameTap::new(promises.clone());
        let grant = MessageBody::VoteResponse(VoteResponse {
            pre_vote: false,
            granted: true,
        });
        let pre = MessageBody::VoteResponse(VoteResponse {
            pre_vote: true,
            granted: true,
        });
        let bytes = framed(&[
            message(2, 1, 5, pre),
            message(2, 1, 4, grant),
            message(2, 1, 4, ack(10)),
            message(
                2,
                1,
                4,
                MessageBody::Heartbeat(oar::core::Heartbeat {
                    leader_commit: LogIndex(9),
                    round: 1,
                }),
            ),
        ]);
        // Split anywhere: frames are reassembled.
        tap.written(&bytes[..7]);
        tap.written(&bytes[7..]);
        promises.crashed(NodeId(2), "power loss", 1_500_000_000);
        assert!(
            promises
                .check(GroupId(1), NodeId(2), state(4, Some(1), (4, 10), None))
                .is_empty()
        );
        assert!(
            promises
                .check(GroupId(1), NodeId(2), state(5, None, (3, 8), Some(10)))
                .is_empty()
        );
        // A newer leader's entries replaced the tail: no longer promised.
        assert!(
            promises
                .check(GroupId(1), NodeId(2), state(6, None, (6, 7), None))
                .is_empty()
        );
        let lost = promises.check(GroupId(1), NodeId(2), state(4, None, (4, 9), None));
        assert_eq!(lost.len(), 2, "{lost:?}");
        // Another group on the same server promised nothing.
        let other = promises.check(GroupId(2), NodeId(2), state(0, None, (0, 0), None));
        assert!(other.is_empty(), "{other:?}");
        let Violation::DurabilityLost { promise, crash, .. } = &lost[1] else {
            panic!("{lost:?}");
        };
        assert_eq!(
            promise,
            "entries through 10 acknowledged to leader n1 in term 4"
        );
        assert_eq!(crash, "power loss at 1.500s");
        assert!(
            matches!(&lost[0], Violation::DurabilityLost { promise, .. } if promise == "its vote for n1 in term 4")
        );
    }

    #[test]
    fn a_leader_that_forgot_its_term_is_named() {
        let promises = Promises::default();
        let mut tap = FrameTap::new(promises.clone());
        let append = MessageBody::AppendRequest(oar::core::AppendRequest {
            prev_log_id: LogId::new(5, 9),
            entries: Vec::new().into(),
            leader_commit: LogIndex(9),
        });
        tap.written(&framed(&[message(1, 2, 6, append)]));
        let lost = promises.check(GroupId(1), NodeId(1), state(5, Some(1), (5, 9), None));
        assert!(
            matches!(&lost[..], [Violation::DurabilityLost { promise, .. }] if promise == "its term 6 as leader"),
            "{lost:?}"
        );
        assert!(
            promises
                .check(GroupId(1), NodeId(1), state(6, Some(1), (5, 9), None))
                .is_empty()
        );
    }

    #[test]
    fn an_acknowledged_install_is_named_as_a_snapshot() {
        let promises = Promises::default();
        let offer = MessageBody::InstallSnapshot(SnapshotInfo {
            last_included: LogId::new(3, 40),
            membership: oar::core::Membership::with_voters([NodeId(1), NodeId(2)]).into(),
        });
        promises.sent(GroupId(1), &message(1, 2, 3, offer));
        promises.sent(GroupId(1), &message(2, 1, 3, ack(40)));
        let lost = promises.check(GroupId(1), NodeId(2), state(3, None, (2, 12), Some(12)));
        assert!(
            matches!(&lost[..], [Violation::DurabilityLost { promise, .. }] if promise == "the snapshot through 40 installed from leader n1 in term 3"),
            "{lost:?}"
        );
        assert!(
            promises
                .check(GroupId(1), NodeId(2), state(3, None, (3, 40), Some(40)))
                .is_empty()
        );
        // The log reset to the snapshot, which never reached the disk.
        let reset = RecoveredState {
            purged: LogIndex(40),
            snapshot: Some(LogIndex(12)),
            ..state(3, None, (3, 40), None)
        };
        assert_eq!(promises.check(GroupId(1), NodeId(2), reset).len(), 1);
        // Entries acknowledged on top of the install: the loss still names it.
        promises.sent(GroupId(1), &message(2, 1, 3, ack(45)));
        let lost = promises.check(
            GroupId(1),
            NodeId(2),
            RecoveredState {
                last_log: LogId::new(3, 45),
                ..reset
            },
        );
        let Violation::DurabilityLost {
            promise, recovered, ..
        } = &lost[0]
        else {
            panic!("{lost:?}");
        };
        assert_eq!(
            promise,
            "the snapshot through 40 installed from leader n1 in term 3, then entries through 45 acknowledged to leader n1 in term 3"
        );
        assert!(
            recovered.ends_with("entries 13..=40 are nowhere"),
            "{recovered}"
        );
    }

    /// Seed 1057 at 5 servers on 54ea817: a learner cut off with a deposed
    /// leader acknowledged its uncommitted entries through 118 in term 1;
    /// the term-3 leader's entries from 116 on replaced them, the
    /// truncation reached the disk, then a sync of the new entries failed
    /// and a power loss took them. Nothing promised was lost.
    #[test]
    fn a_newer_leaders_entries_end_the_promise_where_they_conflict() {
        let noop = |term, index| Entry {
            id: LogId::new(term, index),
            payload: oar::core::EntryPayload::Noop,
        };
        let promises = Promises::default();
        promises.sent(GroupId(1), &message(4, 2, 1, ack(118)));
        let truncated = state(3, None, (1, 115), Some(80));
        // The old leader's entries written again (its term, or older):
        // the promise still stands.
        promises.replacing(GroupId(1), NodeId(4), &[noop(1, 116)]);
        let lost = promises.check(GroupId(1), NodeId(4), truncated);
        assert!(
            matches!(&lost[..], [Violation::DurabilityLost { promise, .. }] if promise == "entries through 118 acknowledged to leader n2 in term 1"),
            "{lost:?}"
        );
        // Another node's write is not this one's.
        promises.replacing(GroupId(1), NodeId(3), &[noop(2, 116)]);
        assert_eq!(promises.check(GroupId(1), NodeId(4), truncated).len(), 1);
        // A newer leader's write from 116 (matching entries are never
        // rewritten, so its 1@116 replaces another entry there): nothing
        // from 116 on is promised, whatever the term of its first entry.
        promises.replacing(
            GroupId(1),
            NodeId(4),
            &[noop(1, 116), noop(2, 117), noop(3, 118)],
        );
        assert!(promises.check(GroupId(1), NodeId(4), truncated).is_empty());
        // A write from past the acknowledged entries ends nothing.
        let other = Promises::default();
        other.sent(GroupId(1), &message(4, 2, 1, ack(118)));
        other.replacing(GroupId(1), NodeId(4), &[noop(2, 119)]);
        assert_eq!(other.check(GroupId(1), NodeId(4), truncated).len(), 1);
    }
}
