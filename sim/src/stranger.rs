//! The stranger: a process on a machine outside the cluster that the
//! nemesis sends against one server at a time. It connects without
//! credentials, with another cluster's key or id, or with the right key —
//! an insider machine the address book does not name — and sends garbage,
//! forged Raft messages (terms at the top of the range, appends carrying
//! committed entries, votes with the transfer flag, configurations naming
//! their sender) and admin requests it may not make.
//!
//! Every action goes to the trace with what the target server counted as
//! refused meanwhile. A server that lets the stranger in where it must
//! refuse is a [`Violation::StrangerAdmitted`]; a forged command applied
//! anywhere is caught by the observations
//! ([`FORGED_MARKER`](crate::observe::FORGED_MARKER)).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oar::runtime::auth::BoxedStream;
use oar::runtime::{ClusterKeyAuthenticator, Dialer, Node, NodeManager, Security};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{CLUSTER_ID, CLUSTER_KEY, STRANGER_IP, SimCluster};
use crate::observe::{Observations, Violation};
use crate::stranger_frames::{admin_request, forged_messages, read_reply, send_frame};
use crate::trace::Trace;

/// How long one action may take, connecting included.
const ACTION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the stranger waits for a server to count what it refused.
const SETTLE: Duration = Duration::from_millis(300);
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// What the stranger tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrangerAction {
    /// Plain TCP, no channel: random bytes.
    NoCredentials,
    /// The channel with another cluster's key.
    OtherClusterKey,
    /// The right key, another cluster's id in the `Hello`.
    OtherClusterId,
    /// As an insider: a frame that is not a message, or one over the limit.
    GarbageFrame,
    /// As an insider: forged Raft messages for members and unknown ids.
    ForgedRaft,
    /// As an insider: admin requests on a peer connection.
    AdminAsPeer,
    /// The right key, an operator `Hello` with a token nobody issued.
    WrongOperatorToken,
}

impl StrangerAction {
    const ALL: [StrangerAction; 7] = [
        StrangerAction::NoCredentials,
        StrangerAction::OtherClusterKey,
        StrangerAction::OtherClusterId,
        StrangerAction::GarbageFrame,
        StrangerAction::ForgedRaft,
        StrangerAction::AdminAsPeer,
        StrangerAction::WrongOperatorToken,
    ];

    fn name(self) -> &'static str {
        match self {
            StrangerAction::NoCredentials => "no_credentials",
            StrangerAction::OtherClusterKey => "other_cluster_key",
            StrangerAction::OtherClusterId => "other_cluster_id",
            StrangerAction::GarbageFrame => "garbage_frame",
            StrangerAction::ForgedRaft => "forged_raft",
            StrangerAction::AdminAsPeer => "admin_as_peer",
            StrangerAction::WrongOperatorToken => "wrong_operator_token",
        }
    }
}

/// What a server counted as refused (its `ServerStats`, and its member's
/// messages refused for coming from the wrong server).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Refusals {
    /// Connections over the caps.
    pub connections: u64,
    /// Failed channels or refused `Hello`s.
    pub handshakes: u64,
    /// Requests the connection's identity may not make.
    pub forbidden_requests: u64,
    /// Raft messages for a node that does not live on the sending server.
    pub forbidden_messages: u64,
    /// Frames that are not messages.
    pub malformed_frames: u64,
    /// Frames over the size limit.
    pub oversized_frames: u64,
}

impl Refusals {
    fn read(server: &Mutex<Option<NodeManager>>, member: &Mutex<Option<Node>>) -> Refusals {
        let mut refusals = Refusals::default();
        if let Some(server) = &*server.lock().expect("server") {
            let stats = server.stats();
            let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
            refusals.connections = load(&stats.refused_connections);
            refusals.handshakes = load(&stats.refused_handshakes);
            refusals.forbidden_requests = load(&stats.forbidden_requests);
            refusals.malformed_frames = load(&stats.malformed_frames);
            refusals.oversized_frames = load(&stats.oversized_frames);
        }
        if let Some(member) = &*member.lock().expect("member") {
            refusals.forbidden_messages = member.forbidden_messages();
        }
        refusals
    }

    /// What was counted since `before` (a restart in between resets the
    /// counters: never negative).
    fn since(self, before: Refusals) -> Refusals {
        Refusals {
            connections: self.connections.saturating_sub(before.connections),
            handshakes: self.handshakes.saturating_sub(before.handshakes),
            forbidden_requests: self
                .forbidden_requests
                .saturating_sub(before.forbidden_requests),
            forbidden_messages: self
                .forbidden_messages
                .saturating_sub(before.forbidden_messages),
            malformed_frames: self
                .malformed_frames
                .saturating_sub(before.malformed_frames),
            oversized_frames: self
                .oversized_frames
                .saturating_sub(before.oversized_frames),
        }
    }

    /// Every refusal, whatever its kind.
    pub fn total(&self) -> u64 {
        self.connections
            + self.handshakes
            + self.forbidden_requests
            + self.forbidden_messages
            + self.malformed_frames
            + self.oversized_frames
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: Refusals) {
        self.connections += other.connections;
        self.handshakes += other.handshakes;
        self.forbidden_requests += other.forbidden_requests;
        self.forbidden_messages += other.forbidden_messages;
        self.malformed_frames += other.malformed_frames;
        self.oversized_frames += other.oversized_frames;
    }
}

/// What the stranger did in a run, and what the servers refused meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrangerReport {
    /// Actions finished.
    pub actions: u64,
    /// Refusals the targets counted during those actions (honest traffic
    /// refused in the same moments included).
    pub refusals: Refusals,
}

/// How an action ended, as far as the stranger can tell.
enum Outcome {
    /// Refused, as it must be.
    Refused(String),
    /// Sent; no answer is expected (the server counts the refusal).
    Sent(String),
    /// The server could not be reached (down, paused, partitioned).
    Unreachable(String),
    /// Let in where it must be refused.
    Admitted(String),
}

/// The target of one action.
struct Target {
    id: oar::core::NodeId,
    addr: SocketAddr,
    member: Arc<Mutex<Option<Node>>>,
    server: Arc<Mutex<Option<NodeManager>>>,
    /// Every server's id, for claims.
    ids: Vec<oar::core::NodeId>,
}

impl Target {
    fn refusals(&self) -> Refusals {
        Refusals::read(&self.server, &self.member)
    }
}

/// The stranger of one run.
pub struct Stranger {
    observations: Arc<Mutex<Observations>>,
    trace: Trace,
    report: Arc<Mutex<StrangerReport>>,
}

impl Stranger {
    /// A stranger that reports what it gets away with to `observations`.
    pub fn new(observations: Arc<Mutex<Observations>>, trace: Trace) -> Self {
        Stranger {
            observations,
            trace,
            report: Arc::default(),
        }
    }

    /// What it did so far.
    pub fn report(&self) -> StrangerReport {
        *self.report.lock().expect("stranger report")
    }

    /// Starts one action, drawn from `rng`, against a server drawn from it.
    pub fn act(&self, cluster: &SimCluster, rng: &mut ChaCha8Rng) {
        let i = rng.random_range(0..cluster.nodes.len());
        let action = StrangerAction::ALL[rng.random_range(0..StrangerAction::ALL.len())];
        let node = &cluster.nodes[i];
        let target = Target {
            id: node.id,
            addr: cluster.raft_addr(i),
            member: node.member.clone(),
            server: node.server.clone(),
            ids: cluster.nodes.iter().map(|n| n.id).collect(),
        };
        let mut action_rng = ChaCha8Rng::seed_from_u64(rng.random());
        let (observations, trace) = (self.observations.clone(), self.trace.clone());
        let report = self.report.clone();
        cluster.stranger_node().spawn(async move {
            let before = target.refusals();
            let attempt =
                tokio::time::timeout(ACTION_TIMEOUT, perform(action, &target, &mut action_rng))
                    .await;
            // The server counts a refusal when it closes the connection.
            tokio::time::sleep(SETTLE).await;
            let refused = target.refusals().since(before);
            {
                let mut report = report.lock().expect("stranger report");
                report.actions += 1;
                report.refusals.add(refused);
            }
            let admitted = matches!(attempt, Ok(Outcome::Admitted(_)));
            let (verdict, detail) = match attempt {
                Ok(Outcome::Refused(d)) => ("refused", d),
                Ok(Outcome::Sent(d)) => ("sent", d),
                Ok(Outcome::Unreachable(d)) => ("unreachable", d),
                Ok(Outcome::Admitted(d)) => ("ADMITTED", d),
                Err(_) => ("timed out", String::new()),
            };
            if admitted {
                let detail = format!("{} at {}: {detail}", action.name(), target.id);
                let mut observations = observations.lock().expect("observations");
                observations.violation(Violation::StrangerAdmitted { detail });
            }
            trace.event(
                SimCluster::now_ns(),
                "stranger",
                json!({
                    "action": action.name(),
                    "node": target.id.0,
                    "outcome": verdict,
                    "detail": detail,
                    "refused": refused,
                }),
            );
        });
    }
}

/// Runs `action` against `target`.
async fn perform(action: StrangerAction, target: &Target, rng: &mut ChaCha8Rng) -> Outcome {
    match action {
        StrangerAction::NoCredentials => no_credentials(target.addr, rng).await,
        StrangerAction::OtherClusterKey => {
            let key = ClusterKeyAuthenticator::new(b"another cluster's key", rng.random());
            let security = Security::new(Arc::new(key), CLUSTER_ID, Vec::new());
            refused_dial(server_dialer(&security), target.addr).await
        }
        StrangerAction::OtherClusterId => {
            let security = insider_security(rng, "another-cluster");
            refused_dial(server_dialer(&security), target.addr).await
        }
        StrangerAction::WrongOperatorToken => {
            let security = insider_security(rng, CLUSTER_ID);
            let token = format!("token-{}", rng.random::<u32>());
            let dialer = Dialer::operator(
                security.authenticator.clone(),
                CLUSTER_ID,
                token,
                DIAL_TIMEOUT,
            );
            refused_dial(dialer, target.addr).await
        }
        insider_action => {
            let stream = match server_dialer(&insider_security(rng, CLUSTER_ID))
                .dial(target.addr)
                .await
            {
                Ok(stream) => stream,
                Err(e) => return Outcome::Unreachable(format!("insider dial: {e}")),
            };
            match insider_action {
                StrangerAction::GarbageFrame => garbage_frame(stream, rng).await,
                StrangerAction::ForgedRaft => forged_raft(stream, target, rng).await,
                _ => admin_as_peer(stream, target, rng).await,
            }
        }
    }
}

/// The right key in cluster `cluster_id`, nonces from `rng`.
fn insider_security(rng: &mut ChaCha8Rng, cluster_id: &str) -> Security {
    let key = ClusterKeyAuthenticator::new(CLUSTER_KEY, rng.random());
    Security::new(Arc::new(key), cluster_id, Vec::new())
}

/// Connects as a server at the stranger's own address, which its key
/// vouches for: an authenticated server no address book names.
fn server_dialer(security: &Security) -> Dialer {
    Dialer::server(security, SocketAddr::new(STRANGER_IP, 7000), DIAL_TIMEOUT)
}

/// Dials with credentials the server must refuse.
async fn refused_dial(dialer: Dialer, addr: SocketAddr) -> Outcome {
    match dialer.dial(addr).await {
        Ok(_) => Outcome::Admitted("the handshake was accepted".into()),
        Err(oar::runtime::DialError::Connect(e)) => Outcome::Unreachable(e.to_string()),
        Err(oar::runtime::DialError::Timeout(t)) => {
            Outcome::Unreachable(format!("no answer within {t:?}"))
        }
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

/// Random bytes on a bare connection (sometimes behind a frame header).
async fn no_credentials(addr: SocketAddr, rng: &mut ChaCha8Rng) -> Outcome {
    let mut stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::Unreachable(e.to_string()),
    };
    let mut garbage = vec![0u8; rng.random_range(1..=256)];
    rng.fill_bytes(&mut garbage);
    if rng.random_range(0..2) == 0 {
        let len = (garbage.len() as u32).to_be_bytes();
        garbage.splice(0..0, len);
    }
    let sent = stream.write_all(&garbage).await.and(stream.flush().await);
    if let Err(e) = sent {
        return Outcome::Unreachable(e.to_string());
    }
    drop(stream.shutdown().await);
    // The server closes the connection when the handshake fails.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest)).await;
    let detail = format!("{} random bytes", garbage.len());
    match read {
        Ok(_) => Outcome::Refused(format!("{detail}; closed")),
        Err(_) => Outcome::Sent(detail),
    }
}

/// A frame whose body is random bytes, or a header claiming 4 GiB.
async fn garbage_frame(mut stream: BoxedStream, rng: &mut ChaCha8Rng) -> Outcome {
    let mut bytes = Vec::new();
    // Random bytes may, rarely, spell a real request, which the server
    // rightly answers.
    let mut a_request = false;
    let detail = if rng.random_range(0..2) == 0 {
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        "a frame header claiming 4 GiB".to_string()
    } else {
        let mut body = vec![0u8; rng.random_range(1..=512)];
        rng.fill_bytes(&mut body);
        a_request = decodes_as_request(&body);
        let mut out = bytes::BytesMut::new();
        oar::runtime::wire::frame::encode_frame(&body, &mut out);
        bytes.extend_from_slice(&out);
        format!("a frame of {} random bytes", body.len())
    };
    if let Err(e) = stream.write_all(&bytes).await.and(stream.flush().await) {
        return Outcome::Unreachable(e.to_string());
    }
    match read_reply(&mut stream).await {
        Some(reply) if a_request => Outcome::Sent(format!("{detail} answered with {reply:?}")),
        Some(reply) => Outcome::Admitted(format!("{detail} answered with {reply:?}")),
        None => Outcome::Refused(format!("{detail}; closed")),
    }
}

/// Whether `body` happens to decode as a frame with a request in it.
fn decodes_as_request(body: &[u8]) -> bool {
    use prost::Message as _;
    oar::runtime::wire::proto::Frame::decode(body).is_ok_and(|frame| frame.kind.is_some())
}

/// Forged Raft messages in the names of members and of unknown ids.
async fn forged_raft(mut stream: BoxedStream, target: &Target, rng: &mut ChaCha8Rng) -> Outcome {
    // What an insider may have overheard: the target's term and log end.
    let member = target.member.lock().expect("member").clone();
    let seen = match member {
        Some(member) => {
            let status = tokio::time::timeout(Duration::from_millis(200), member.status()).await;
            status
                .ok()
                .and_then(Result::ok)
                .map(|s| (s.hard_state.term, s.last_log_id))
        }
        None => None,
    };
    let others: Vec<_> = target.ids.iter().filter(|&&id| id != target.id).collect();
    let claimed = match rng.random_range(0..3) {
        // An id no server has.
        0 => oar::core::NodeId(target.ids.len() as u64 + rng.random_range(1..100)),
        _ if others.is_empty() => target.id,
        _ => *others[rng.random_range(0..others.len())],
    };
    let messages = forged_messages(target.id, claimed, seen, rng);
    let count = messages.len();
    for (_, message) in &messages {
        let frame = oar::runtime::wire::proto::frame::Kind::Raft(
            oar::runtime::wire::convert::to_proto(crate::cluster::GROUP, message),
        );
        if let Err(e) = send_frame(&mut stream, frame).await {
            return Outcome::Unreachable(format!("after forging: {e}"));
        }
    }
    let kinds: Vec<&str> = messages.iter().map(|(kind, _)| *kind).collect();
    Outcome::Sent(format!(
        "{count} messages as {claimed} (knowing {seen:?}): {}",
        kinds.join(" ")
    ))
}

/// Admin requests (remove a peer, transfer leadership) on a peer connection.
async fn admin_as_peer(mut stream: BoxedStream, target: &Target, rng: &mut ChaCha8Rng) -> Outcome {
    let victim = target.ids[rng.random_range(0..target.ids.len())];
    let remove = rng.random_range(0..2) == 0;
    let request = admin_request(crate::cluster::GROUP, victim, remove);
    if let Err(e) = send_frame(&mut stream, request).await {
        return Outcome::Unreachable(e.to_string());
    }
    let what = if remove { "remove" } else { "transfer to" };
    use oar::runtime::wire::proto::frame::Kind;
    match read_reply(&mut stream).await {
        Some(Kind::Error(error)) => Outcome::Refused(format!("{what} {victim}: {}", error.detail)),
        Some(Kind::AdminResponse(response)) => {
            Outcome::Admitted(format!("{what} {victim} answered: {response:?}"))
        }
        other => Outcome::Unreachable(format!("{what} {victim}: {other:?}")),
    }
}
