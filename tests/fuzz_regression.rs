//! The fuzz targets' bodies (`fuzz/src/lib.rs`) on a seeded corpus, in every
//! `cargo test`: random bytes, and valid encodings (messages, segment files,
//! RESP command streams) with bytes flipped, cut or appended — where bugs
//! hide. libFuzzer explores further with `cargo fuzz run <target>` (see
//! `fuzz/`).

// Public in the fuzz crate, private here.
#[allow(unreachable_pub)]
#[path = "../fuzz/src/lib.rs"]
mod bodies;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use oar::core::{
    AppendRequest, AppendResponse, Entry, EntryPayload, Heartbeat, LogId, LogIndex, Membership,
    Message, MessageBody, NodeId, RejectHint, SnapshotInfo, Term, VoteRequest,
};
use oar::runtime::GroupId;
use oar::runtime::wire::encode_message;
use oar::storage::{FileSystem, LogOptions, MemFileSystem, SegmentLog};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `input` with a few random bytes flipped, a random cut or a random tail.
fn mutate(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    match rng.random_range(0..3) {
        0 if !out.is_empty() => {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..out.len());
                out[at] ^= 1 << rng.random_range(0..8);
            }
        }
        1 if !out.is_empty() => out.truncate(rng.random_range(0..out.len())),
        _ => out.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>())),
    }
    out
}

fn random_bytes(rng: &mut ChaCha8Rng, len_max: usize) -> Vec<u8> {
    (0..rng.random_range(0..len_max))
        .map(|_| rng.random())
        .collect()
}

fn sample_messages() -> Vec<Vec<u8>> {
    let entry = |t, i| Entry {
        id: LogId::new(t, i),
        payload: EntryPayload::Command(Bytes::from_static(b"cmd")),
    };
    let config = Entry {
        id: LogId::new(2, 3),
        payload: EntryPayload::Config(Membership::with_voters([NodeId(1), NodeId(2)]).into()),
    };
    let bodies = [
        MessageBody::VoteRequest(VoteRequest {
            pre_vote: true,
            last_log_id: LogId::new(1, 2),
            leadership_transfer: false,
        }),
        MessageBody::AppendRequest(AppendRequest {
            prev_log_id: LogId::new(1, 1),
            entries: vec![entry(1, 2), config].into(),
            leader_commit: LogIndex(1),
        }),
        MessageBody::AppendResponse(AppendResponse::Reject {
            rejected: LogIndex(4),
            hint: RejectHint {
                last_index: LogIndex(2),
                conflict: Some((Term(1), LogIndex(1))),
            },
        }),
        MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(3),
            round: 0,
        }),
        MessageBody::InstallSnapshot(SnapshotInfo {
            last_included: LogId::new(2, 9),
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]).into(),
        }),
    ];
    bodies
        .into_iter()
        .map(|body| {
            let m = Message {
                from: NodeId(2),
                to: NodeId(1),
                term: Term(2),
                body,
            };
            encode_message(GroupId(1), &m)
        })
        .collect()
}

#[test]
fn decode_raft_message_holds_on_a_seeded_corpus() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let samples = sample_messages();
    for sample in &samples {
        bodies::decode_raft_message(sample);
    }
    for _ in 0..20_000 {
        bodies::decode_raft_message(&random_bytes(&mut rng, 64));
        let sample = &samples[rng.random_range(0..samples.len())];
        bodies::decode_raft_message(&mutate(&mut rng, sample));
    }
}

/// A valid open segment of five entries, as bytes.
fn sample_segment() -> Vec<u8> {
    let fs = MemFileSystem::new(2);
    let dir = Path::new("log");
    let fs_arc: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let options = LogOptions {
        segment_bytes_max: 64 << 10,
        segment_bytes_first: 64 << 10,
        preallocate: false,
        direct_io: false,
    };
    let (mut log, _) = SegmentLog::open(fs_arc, dir, options).unwrap();
    let entries: Vec<Entry> = (1..=5)
        .map(|i| Entry {
            id: LogId::new(1, i),
            payload: EntryPayload::Command(Bytes::from(vec![i as u8; 20])),
        })
        .collect();
    log.append(&entries).unwrap();
    log.flush().unwrap();
    let path = dir.join("log_inprogress_00000000000000000001");
    let file = fs.open(&path).unwrap();
    let mut bytes = vec![0u8; file.len().unwrap() as usize];
    file.read_exact_at(&mut bytes, 0).unwrap();
    bytes
}

#[test]
fn recover_segment_holds_on_a_seeded_corpus() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let segment = sample_segment();
    for kind in [0u8, 1] {
        let mut input = vec![kind];
        input.extend(&segment);
        bodies::recover_segment(&input);
    }
    for _ in 0..3_000 {
        let mut input = vec![rng.random::<u8>()];
        input.extend(mutate(&mut rng, &segment));
        bodies::recover_segment(&input);
        bodies::recover_segment(&random_bytes(&mut rng, 256));
    }
}

#[test]
fn drive_core_holds_on_a_seeded_corpus() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let samples = sample_messages();
    for _ in 0..2_000 {
        let mut input = Vec::new();
        for _ in 0..rng.random_range(1..20) {
            let message = match rng.random_range(0..5) {
                0 => Vec::new(),
                1 => random_bytes(&mut rng, 40),
                // A local read or proposal (`drive_core`'s one-byte chunks).
                2 => vec![rng.random::<u8>()],
                _ => {
                    let sample = &samples[rng.random_range(0..samples.len())];
                    mutate(&mut rng, sample)
                }
            };
            let message = &message[..message.len().min(255)];
            input.push(message.len() as u8);
            input.extend_from_slice(message);
        }
        bodies::drive_core(&input);
    }
    // Local requests and honest answers only, long enough to elect node 1,
    // commit and serve reads; then the same with hostile messages mixed in.
    for round in 0..400 {
        let mut input = Vec::new();
        for _ in 0..rng.random_range(50..150) {
            if round % 2 == 1 && rng.random_range(0..8) == 0 {
                let sample = &samples[rng.random_range(0..samples.len())];
                let message = mutate(&mut rng, sample);
                let message = &message[..message.len().min(255)];
                input.push(message.len() as u8);
                input.extend_from_slice(message);
            } else {
                input.extend_from_slice(&[1, rng.random::<u8>()]);
            }
        }
        bodies::drive_core(&input);
    }
}

/// Client byte streams for the kv example: pipelined arrays, inline
/// commands, partial and oversized-length elements.
fn sample_resp_streams() -> Vec<Vec<u8>> {
    [
        &b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n"[..],
        b"PING\r\nset a  b\r\n\r\nget a\n",
        b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nMGET\r\n$0\r\n\r\nINCR n\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999\r\n",
        b"*70000\r\n$1\r\nx\r\n$1\r\ny\r\n",
        b"*1\r\n$-1\r\n*0\r\n",
    ]
    .map(<[u8]>::to_vec)
    .to_vec()
}

#[test]
fn resp_parse_holds_on_a_seeded_corpus() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let samples = sample_resp_streams();
    for _ in 0..20_000 {
        // The header: limits, then up to 15 chunk lengths.
        let mut input = vec![rng.random::<u8>(), rng.random::<u8>()];
        input.extend((0..input[1] % 16).map(|_| rng.random_range(0..24u8)));
        match rng.random_range(0..4) {
            0 => input.extend(random_bytes(&mut rng, 64)),
            _ => {
                let sample = &samples[rng.random_range(0..samples.len())];
                input.extend(mutate(&mut rng, sample));
            }
        }
        bodies::resp_parse(&input);
    }
}

/// A frame carrying `kind`, length prefix included.
fn frame_bytes(kind: oar::runtime::wire::proto::frame::Kind) -> Vec<u8> {
    use oar::runtime::wire::proto;
    use prost::Message as _;
    let body = proto::Frame { kind: Some(kind) }.encode_to_vec();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// First bytes of connections: Hellos as a server and as an operator (right
/// and wrong cluster, right and wrong token), an HTTP request, each
/// followed by Raft message frames.
fn sample_connections() -> Vec<Vec<u8>> {
    use oar::runtime::wire::proto::{self, frame::Kind, hello::Role};
    let hello = |cluster: &str, role: Role| {
        frame_bytes(Kind::Hello(proto::Hello {
            cluster_id: cluster.into(),
            role: Some(role),
            incarnation: 1,
        }))
    };
    let server = Role::ServerAddr("10.0.0.1:7000".into());
    let operator = Role::OperatorToken(Bytes::from_static(bodies::HANDSHAKE_TOKEN));
    let mut raft = Vec::new();
    for message in sample_messages() {
        raft.extend((message.len() as u32 + 2).to_be_bytes());
        raft.extend([0x0a, message.len() as u8]);
        raft.extend(&message[..message.len().min(127)]);
    }
    let mut out = vec![
        hello(bodies::HANDSHAKE_CLUSTER, server.clone()),
        hello(bodies::HANDSHAKE_CLUSTER, operator),
        hello("another", server.clone()),
        hello(
            bodies::HANDSHAKE_CLUSTER,
            Role::OperatorToken(Bytes::from_static(b"guess")),
        ),
        hello(
            bodies::HANDSHAKE_CLUSTER,
            Role::ServerAddr("10.0.0.2:7000".into()),
        ),
        b"GET / HTTP/1.1\r\nAuthorization: Bearer fuzz-token\r\n\r\n".to_vec(),
        (64u32 << 20).to_be_bytes().to_vec(),
    ];
    for sample in out.iter_mut().take(2) {
        sample.extend(&raft);
    }
    out
}

#[test]
fn handshake_holds_on_a_seeded_corpus() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let samples = sample_connections();
    for _ in 0..5_000 {
        let mut input = vec![rng.random::<u8>(), rng.random::<u8>()];
        match rng.random_range(0..5) {
            0 => input.extend(random_bytes(&mut rng, 64)),
            1 => input.extend(&samples[rng.random_range(0..samples.len())]),
            _ => {
                let sample = &samples[rng.random_range(0..samples.len())];
                input.extend(mutate(&mut rng, sample));
            }
        }
        bodies::handshake(&input);
    }
}
