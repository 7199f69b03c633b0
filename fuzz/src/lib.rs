//! The fuzz targets' bodies, shared by the libFuzzer binaries in
//! `fuzz_targets/` and by `tests/fuzz_regression.rs`, which runs them on a
//! seeded corpus in every `cargo test` (no libFuzzer needed).
//!
//! Each body asserts what must hold for any input: bad bytes from the
//! network or the disk give a typed error, never a panic, and what decodes
//! re-encodes to itself.

#![allow(clippy::missing_panics_doc)]

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use oar::core::{
    Action, AppendResponse, InitialState, Instant, Membership, Message, MessageBody, NodeId,
    RaftNode, RaftOptions, ReadPolicy, Role, VoteResponse,
};
use oar::runtime::auth::Identity;
use oar::runtime::inbound::{FirstContact, decode_frame, first_contact};
use oar::runtime::wire::convert::from_proto;
use oar::runtime::wire::frame::{FRAME_BYTES_MAX, read_frame};
use oar::runtime::wire::proto;
use oar::runtime::wire::{decode_message, encode_message};
use oar::runtime::{Credential, Insecure, Security};
use oar::storage::{FileSystem, LogOptions, MemFileSystem, SegmentLog};

// The kv example's RESP parser, compiled here as it is in the example.
#[allow(dead_code, reason = "the reply encoders serve the example only")]
#[path = "../../examples/kv/resp.rs"]
mod resp;

/// Bytes of one Raft message from the network: a typed error or a message,
/// and a decoded message survives a round trip unchanged.
pub fn decode_raft_message(data: &[u8]) {
    if let Ok((group, message)) = decode_message(data) {
        let again = encode_message(group, &message);
        let decoded = decode_message(&again).expect("an encoded message decodes");
        assert_eq!(decoded, (group, message), "round trip changed the message");
    }
}

/// One segment file of arbitrary bytes, open (the first input byte is odd)
/// or closed under a name promising three entries: recovery returns entries
/// or a typed error, never panics nor allocates a claimed length; a log
/// that opens takes an append.
pub fn recover_segment(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let fs = MemFileSystem::new(1);
    let dir = Path::new("log");
    fs.create_dir_all(dir).expect("in-memory fs");
    let name = match kind % 2 {
        0 => "log_00000000000000000001-00000000000000000003",
        _ => "log_inprogress_00000000000000000001",
    };
    let mut file = fs.create(&dir.join(name)).expect("in-memory fs");
    file.write_all_at(bytes, 0).expect("in-memory fs");
    file.sync_all().expect("in-memory fs");
    drop(file);
    let fs: Arc<dyn FileSystem> = Arc::new(fs);
    let options = LogOptions {
        segment_bytes_max: 64 << 10,
        segment_bytes_first: 64 << 10,
        preallocate: false,
        direct_io: false,
    };
    if let Ok((mut log, recovered)) = SegmentLog::open(fs, dir, options) {
        let last = log.last_index();
        assert_eq!(
            recovered.entries.len() as u64,
            last.0 + 1 - log.first_index().0
        );
        let next = oar::core::Entry {
            id: oar::core::LogId::new(u64::MAX >> 1, last.0 + 1),
            payload: oar::core::EntryPayload::Noop,
        };
        log.append(&[next]).expect("append after recovery");
        log.flush().expect("flush after recovery");
    }
}

/// A stream of peer messages (each a length byte, then that many bytes of
/// protobuf), ticks (length 0), and one-byte chunks (a ReadIndex, Lease or
/// Log read, a proposal, an honest answer from node 2 or 3 to what node 1
/// last sent it, or a tick) into node 1 of a 3-voter group whose disk
/// completes at once. The honest answers let it lead, commit and serve
/// reads between hostile messages. Rejected inputs are errors, never
/// panics; the core's invariant checks (debug builds) hold after every
/// input; every read resolves at most once, and a ready read's index is
/// committed and, for a read begun on the leader, no lower than its commit
/// index when the read began.
pub fn drive_core(data: &[u8]) {
    let options = RaftOptions {
        id: NodeId(1),
        ..RaftOptions::default()
    };
    let initial = InitialState {
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        ..InitialState::default()
    };
    let mut now = Instant::from_nanos(0);
    let mut node = RaftNode::new(options, initial, now).expect("valid options");
    let mut unresolved = std::collections::BTreeMap::new();
    // What node 1 last sent to nodes 2 and 3.
    let mut last_sent: [Option<Message>; 2] = [None, None];
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        rest = tail;
        now = now + std::time::Duration::from_millis(97);
        match chunk {
            [op] => match op % 8 {
                read @ 0..=2 => {
                    let policy = [ReadPolicy::ReadIndex, ReadPolicy::Lease, ReadPolicy::Log];
                    let status = node.status();
                    // A read the leader serves itself sees every entry committed
                    // before it began (a follower's depends on its leader).
                    let floor = (status.role == Role::Leader).then_some(status.committed);
                    if let Ok(id) = node.read(now, policy[usize::from(read)]) {
                        let fresh = unresolved.insert(id, floor).is_none();
                        assert!(fresh, "read id {id:?} handed out twice");
                    }
                }
                3 => {
                    let _ = node.propose(now, bytes::Bytes::from_static(b"fuzz"));
                }
                peer @ 4..=5 => {
                    if let Some(answer) = last_sent[usize::from(peer - 4)].take().and_then(answer) {
                        let _ = node.handle_message(now, answer);
                    }
                }
                _ => node.handle_tick(now),
            },
            _ => match decode_message(chunk) {
                Ok((_, message)) if len > 0 => {
                    let _ = node.handle_message(now, message);
                }
                _ => node.handle_tick(now),
            },
        }
        while let Some(action) = node.poll_action() {
            match action {
                Action::PersistEntries { entries } => {
                    let up_to = entries.last().expect("non-empty").id;
                    let _ = node.handle_entries_persisted(now, up_to);
                }
                Action::PersistHardState(hs) => {
                    let _ = node.handle_hard_state_persisted(now, hs);
                }
                Action::ReadReady { id, index } => {
                    let floor = unresolved.remove(&id);
                    assert!(floor.is_some(), "read {id:?} resolved twice");
                    assert!(
                        index <= node.status().committed,
                        "read index {index:?} not committed"
                    );
                    if let Some(Some(floor)) = floor {
                        assert!(index >= floor, "read index {index:?} below {floor:?}");
                    }
                }
                Action::ReadFailed { id, .. } => {
                    let pending = unresolved.remove(&id).is_some();
                    assert!(pending, "read {id:?} resolved twice");
                }
                Action::Send(message) if matches!(message.to.0, 2 | 3) => {
                    let at = usize::try_from(message.to.0 - 2).expect("2 or 3");
                    last_sent[at] = Some(message);
                }
                _ => {}
            }
        }
    }
}

/// What an honest, up-to-date peer answers to `sent`, if anything.
fn answer(sent: Message) -> Option<Message> {
    let body = match sent.body {
        MessageBody::VoteRequest(request) => MessageBody::VoteResponse(VoteResponse {
            pre_vote: request.pre_vote,
            granted: true,
        }),
        MessageBody::AppendRequest(request) => {
            MessageBody::AppendResponse(AppendResponse::Success {
                match_index: request
                    .entries
                    .last()
                    .map_or(request.prev_log_id.index, |e| e.id.index),
            })
        }
        MessageBody::Heartbeat(beat) | MessageBody::Quiesce(beat) => {
            MessageBody::HeartbeatResponse { round: beat.round }
        }
        _ => return None,
    };
    Some(Message {
        from: sent.to,
        to: sent.from,
        term: sent.term,
        body,
    })
}

/// Client bytes into the kv example's RESP parser, whole and in chunks.
///
/// The input is a header, then the bytes the client sends. The header's
/// first byte picks the limits (even: the server's; odd: small ones, so
/// that the limit paths are reached) and its second byte `n` is followed by
/// `n % 16` chunk lengths (each byte plus one; cycled; none: one byte at a
/// time). Fed at once or in those chunks, the parser returns the same
/// commands and the same error, never panics, and examines no byte twice.
pub fn resp_parse(data: &[u8]) {
    let [limits_byte, chunk_count, rest @ ..] = data else {
        return;
    };
    let limits = if limits_byte % 2 == 0 {
        resp::Limits::SERVER
    } else {
        resp::Limits {
            command_bytes_max: usize::from(limits_byte >> 1) + 1,
            args_max: usize::from(limits_byte >> 5) + 1,
        }
    };
    let (chunk_lengths, input) = rest.split_at(rest.len().min(usize::from(chunk_count % 16)));
    let chunk_lengths: Vec<usize> = match chunk_lengths {
        [] => vec![1],
        lengths => lengths.iter().map(|&b| usize::from(b) + 1).collect(),
    };
    let whole = parse_in_chunks(limits, input, &mut std::iter::once(input.len()));
    let chunked = parse_in_chunks(limits, input, &mut chunk_lengths.into_iter().cycle());
    assert_eq!(chunked, whole, "chunking changed what was parsed");
}

/// What parsing `input` gave: the commands, the error that ended it if
/// any, and how many bytes of `input` it left unconsumed (fed or not).
type ParseOutcome = (Vec<resp::Command>, Option<resp::ProtocolError>, usize);

/// Feeds `input` to a parser in chunks of the given lengths, parsing all
/// it can after each, as a connection does after each read.
fn parse_in_chunks(
    limits: resp::Limits,
    input: &[u8],
    chunk_lengths: &mut dyn Iterator<Item = usize>,
) -> ParseOutcome {
    let mut parser = resp::CommandParser::new(limits);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let chunk = chunk_lengths
            .next()
            .expect("chunk lengths cycle")
            .min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + chunk]);
        fed += chunk;
        loop {
            let before = buf.len();
            let parsed = parser.parse_command(&mut buf);
            assert!(
                buf.len() <= before,
                "the parser consumed more than it was given"
            );
            assert!(
                parser.bytes_examined() <= fed as u64,
                "the parser examined {} bytes of {fed} received",
                parser.bytes_examined()
            );
            match parsed {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => break,
                Err(e) => return (commands, Some(e), input.len() - fed + buf.len()),
            }
        }
    }
    (commands, None, buf.len())
}

/// The cluster id and operator token the handshake body's server knows.
pub const HANDSHAKE_CLUSTER: &str = "fuzz-cluster";
/// See [`HANDSHAKE_CLUSTER`].
pub const HANDSHAKE_TOKEN: &[u8] = b"fuzz-token";

/// The first bytes a stranger sends on a secured connection. The first
/// input byte picks what the channel proved (nothing, a certificate of
/// garbage, the cluster key from 10.0.0.1, or an insecure server's
/// nothing-checked), the second whether the server knows an operator
/// token; the rest is the connection's bytes. The server's first contact
/// reads no more than a Hello's worth before authentication, grants an
/// identity only where the credential backs it, and after that every frame
/// decodes or is refused; nothing panics.
pub fn handshake(data: &[u8]) {
    let [credential_kind, tokens_kind, rest @ ..] = data else {
        return;
    };
    let ip = std::net::IpAddr::from([10, 0, 0, 1]);
    let credential = match credential_kind % 4 {
        0 => Credential::Anonymous,
        1 => Credential::Certificate(rustls_pki_types::CertificateDer::from(
            rest[..rest.len().min(64)].to_vec(),
        )),
        2 => Credential::ClusterKey(ip),
        _ => Credential::Unchecked(ip),
    };
    let tokens = match tokens_kind % 2 {
        0 => vec![String::from_utf8_lossy(HANDSHAKE_TOKEN).into_owned()],
        _ => Vec::new(),
    };
    let security = Security::new(std::sync::Arc::new(Insecure), HANDSHAKE_CLUSTER, tokens);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let mut stream = tokio::io::join(rest, tokio::io::sink());
    let contact = runtime.block_on(first_contact(&mut stream, &credential, &security));
    match contact {
        Ok(FirstContact::Http) => assert!(rest.starts_with(b"GET "), "HTTP without GET"),
        Ok(FirstContact::Frames(Identity::Server(addr), _)) => {
            assert!(
                credential.vouches_for_server(addr),
                "{credential:?} made {addr}"
            );
        }
        Ok(FirstContact::Frames(Identity::Operator, _)) => {
            let token_ok = !security.operator_tokens.is_empty() && contains(rest, HANDSHAKE_TOKEN);
            let unchecked = matches!(credential, Credential::Unchecked(_));
            assert!(token_ok || unchecked, "an operator without a token");
        }
        Ok(FirstContact::Frames(Identity::Client, _)) => {
            let unchecked = matches!(credential, Credential::Unchecked(_));
            assert!(unchecked, "a client without a client token");
        }
        Err(_) => return,
    }
    if !matches!(contact, Ok(FirstContact::Frames(..))) {
        return;
    }
    while let Ok(body) = runtime.block_on(read_frame(&mut stream, FRAME_BYTES_MAX)) {
        if let Ok(proto::frame::Kind::Raft(message)) = decode_frame(body, 1024) {
            let _ = from_proto(message);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
