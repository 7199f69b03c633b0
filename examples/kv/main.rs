//! A replicated key-value store on oar that stock Redis clients can use.
//!
//! Each node runs one Raft group on its Raft address and serves RESP2 on its
//! client address: GET, SET, DEL, INCR, MGET, PING. A follower answers
//! writes with `-MOVED 0 <leader client address>`, so `redis-cli -c`
//! follows it to the leader. Reads (GET, MGET) pass a read barrier
//! (`--read-policy`: a ReadIndex round, the leader lease, or the log) and
//! are then served from the local map: on the leader, or with
//! `--follower-reads` on any member (else followers redirect them too).
//!
//! ```sh
//! PEERS=1=127.0.0.1:7001/127.0.0.1:6381,2=127.0.0.1:7002/127.0.0.1:6382,3=127.0.0.1:7003/127.0.0.1:6383
//! cargo run --release --example kv -- --id 1 --peers $PEERS --data-dir /tmp/kv1 &
//! cargo run --release --example kv -- --id 2 --peers $PEERS --data-dir /tmp/kv2 &
//! cargo run --release --example kv -- --id 3 --peers $PEERS --data-dir /tmp/kv3 &
//! redis-cli -c -p 6381 set greeting hello
//! ```

mod connection;
mod disk_machine;
mod disk_store;
mod listener;
mod resp;
mod segment;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use oar::core::NodeId;
use oar::runtime::{
    DiskStorage, Error, GroupId, GroupOptions, Node, NodeManager, ReadPolicy, Security,
    TlsAuthenticator, TransportOptions,
};
use oar::storage::{LogOptions, StdFileSystem};
use tokio::net::TcpListener;

use connection::{IDLE_TIMEOUT_DEFAULT, Service, serve_connection};
use disk_machine::DiskKvStore;
use listener::{CLIENTS_MAX_DEFAULT, run_accept_loop};
use resp::Command;
use store::{KvStore, Op, SharedMap, encode, read_reply};

/// Command line of one key-value node.
#[derive(Parser, Debug)]
#[command(about = "A replicated key-value store on oar, spoken to with the Redis protocol")]
struct Args {
    /// This node's id in the group.
    #[arg(long)]
    id: u64,
    /// Every member: `ID=RAFT_ADDR/CLIENT_ADDR`, comma-separated.
    #[arg(long, value_parser = parse_peers)]
    peers: Peers,
    /// Where this node keeps its log and meta (and, with `--store disk`,
    /// its key-value files).
    #[arg(long)]
    data_dir: PathBuf,
    /// Where the key-value state lives: `mem` (a map, rebuilt at start
    /// from the last snapshot and the log) or `disk` (files of its own,
    /// read at start; only the log after them is applied again).
    #[arg(long, default_value = "mem", value_parser = ["mem", "disk"])]
    store: String,
    /// The Raft address to listen on (default: this node's in --peers).
    #[arg(long)]
    raft_addr: Option<SocketAddr>,
    /// The Redis-protocol address to listen on (default: this node's in --peers).
    #[arg(long)]
    client_addr: Option<SocketAddr>,
    /// The Raft group id.
    #[arg(long, default_value_t = 1)]
    group: u64,
    /// Snapshot (and compact the log) every this many applied entries.
    #[arg(long, default_value_t = 100_000)]
    snapshot_interval: u64,
    /// Entries the log keeps before the newest snapshot, for followers a
    /// little behind (fewer: they catch up from the snapshot instead).
    #[arg(long, default_value_t = 1000)]
    compaction_margin: u64,
    /// Cap on snapshot copy bandwidth, bytes per second (both serving and
    /// fetching); unlimited if absent.
    #[arg(long)]
    snapshot_throttle: Option<u64>,
    /// The cluster CA's certificate (PEM); `oarctl certs` makes one.
    #[arg(long, required_unless_present = "insecure")]
    ca: Option<PathBuf>,
    /// This server's certificate (PEM), naming its Raft IP address.
    #[arg(long, required_unless_present = "insecure")]
    cert: Option<PathBuf>,
    /// This server's private key (PEM).
    #[arg(long, required_unless_present = "insecure")]
    key: Option<PathBuf>,
    /// A file holding the operator token (`oarctl` and the status page).
    #[arg(long)]
    operator_token_file: Option<PathBuf>,
    /// The cluster's id; servers of another cluster are refused.
    #[arg(long, default_value = "kv")]
    cluster_id: String,
    /// Serve operators (oarctl, the status page) on this address instead of
    /// the Raft address, e.g. 127.0.0.1:9001 to keep them on loopback.
    #[arg(long)]
    admin_addr: Option<SocketAddr>,
    /// Run without authentication: anyone who reaches the Raft port can
    /// act as a peer or an operator. Only on a network you fully trust.
    #[arg(long, conflicts_with_all = ["ca", "cert", "key"])]
    insecure: bool,
    /// The most client connections served at once; one more is answered
    /// with an error and closed.
    #[arg(long, default_value_t = CLIENTS_MAX_DEFAULT)]
    clients_max: usize,
    /// Close a client connection idle (sending nothing, or reading none of
    /// its replies) for this many seconds; 0 never closes one.
    #[arg(long, default_value_t = IDLE_TIMEOUT_DEFAULT.as_secs())]
    client_idle_timeout_secs: u64,
    /// How GET and MGET are made linearizable: `read-index` (a heartbeat
    /// round to a quorum, shared by concurrent reads), `lease` (no round
    /// trip within the leader's lease; relies on bounded clock drift) or
    /// `log` (through the log, as a write).
    #[arg(long, default_value = "read-index", value_parser = parse_read_policy)]
    read_policy: ReadPolicy,
    /// Serve GET and MGET on followers and learners too (they ask the
    /// leader for a read index, then read locally); without it they
    /// redirect reads to the leader like writes.
    #[arg(long)]
    follower_reads: bool,
}

fn parse_read_policy(text: &str) -> Result<ReadPolicy, String> {
    match text {
        "read-index" => Ok(ReadPolicy::ReadIndex),
        "lease" => Ok(ReadPolicy::Lease),
        "log" => Ok(ReadPolicy::Log),
        _ => Err(format!("{text}: expected read-index, lease or log")),
    }
}

/// The server's security settings from the command line.
fn security(args: &Args) -> Result<Security, Box<dyn std::error::Error>> {
    if args.insecure {
        eprintln!("WARNING: --insecure: peers and operators are NOT authenticated");
        return Ok(Security::insecure(&args.cluster_id));
    }
    let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
        return Err("--ca, --cert and --key are required (or --insecure)".into());
    };
    let tls = TlsAuthenticator::server_from_pem_files(ca, cert, key)?;
    let tokens = match &args.operator_token_file {
        Some(path) => vec![std::fs::read_to_string(path)?.trim().to_string()],
        None => Vec::new(),
    };
    Ok(Security::new(Arc::new(tls), &args.cluster_id, tokens))
}

/// Raft and client address of each member.
#[derive(Clone, Debug)]
struct Peers(BTreeMap<NodeId, (SocketAddr, SocketAddr)>);

fn parse_peers(text: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (id, addrs) = item
            .split_once('=')
            .ok_or(format!("{item}: expected ID=RAFT_ADDR/CLIENT_ADDR"))?;
        let (raft, client) = addrs
            .split_once('/')
            .ok_or(format!("{item}: expected RAFT_ADDR/CLIENT_ADDR"))?;
        let id = id.parse::<u64>().map_err(|e| format!("{item}: id: {e}"))?;
        let raft = raft
            .parse()
            .map_err(|e| format!("{item}: raft address: {e}"))?;
        let client = client
            .parse()
            .map_err(|e| format!("{item}: client address: {e}"))?;
        peers.insert(NodeId(id), (raft, client));
    }
    Ok(Peers(peers))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let id = NodeId(args.id);
    let &(raft_default, client_default) =
        args.peers.0.get(&id).ok_or("--id is not among --peers")?;
    let raft_addr = args.raft_addr.unwrap_or(raft_default);
    let client_addr = args.client_addr.unwrap_or(client_default);
    let transport = TransportOptions {
        snapshot_bytes_per_sec: args.snapshot_throttle,
        ..TransportOptions::default()
    };
    let server = NodeManager::bind(raft_addr, security(&args)?, transport).await?;
    if let Some(admin_addr) = args.admin_addr {
        let bound = server.serve_admin(admin_addr).await?;
        eprintln!("kv node {id}: admin and status page on {bound} only");
    }
    let group = GroupId(args.group);
    let storage = DiskStorage::open(
        Arc::new(StdFileSystem),
        &args.data_dir.join(format!("group_{}", group.0)),
        LogOptions::default(),
    )
    .await?;
    let raft_peers = args
        .peers
        .0
        .iter()
        .map(|(&id, &(raft, _))| (id, raft))
        .collect();
    let mut options = GroupOptions {
        snapshot_interval: Some(args.snapshot_interval),
        ..GroupOptions::new(group, id, raft_peers)
    };
    options.raft.compaction_margin = args.compaction_margin;
    let (map, node) = match args.store.as_str() {
        "disk" => {
            let dir = args.data_dir.join(format!("group_{}_kv", group.0));
            let store = DiskKvStore::open(&dir)?;
            (store.map(), server.add_group(options, storage, store)?)
        }
        _ => {
            let store = KvStore::default();
            (store.map(), server.add_group(options, storage, store)?)
        }
    };
    let listener = TcpListener::bind(client_addr).await?;
    eprintln!("kv node {id}: raft on {raft_addr}, redis protocol on {client_addr}");
    let service = KvService {
        node,
        peers: Arc::new(args.peers),
        map,
        read_policy: args.read_policy,
        follower_reads: args.follower_reads,
    };
    let idle_timeout =
        Some(Duration::from_secs(args.client_idle_timeout_secs)).filter(|t| !t.is_zero());
    run_accept_loop(listener, args.clients_max, move |stream| {
        serve_connection(stream, service.clone(), idle_timeout)
    })
    .await;
    Ok(())
}

/// Executes client commands on this node's group.
#[derive(Clone)]
struct KvService {
    /// This node's handle on the group.
    node: Node,
    /// Where to redirect clients to the leader.
    peers: Arc<Peers>,
    /// The state machine's map, read after a barrier.
    map: SharedMap,
    /// How reads are made linearizable.
    read_policy: ReadPolicy,
    /// Whether a follower serves reads itself.
    follower_reads: bool,
}

impl Service for KvService {
    async fn execute(&self, command: Command, out: &mut Vec<u8>) {
        execute(self, command, out).await;
    }
}

/// Serves GET or MGET: a read barrier, then the local map.
async fn read(service: &KvService, op: Op, keys: &[Vec<u8>], out: &mut Vec<u8>) {
    let node = &service.node;
    let leading = node.leader() == Some(node.id());
    let result = if leading || service.follower_reads {
        node.read_barrier(service.read_policy).await
    } else {
        Err(Error::NotLeader {
            leader: node.leader(),
            leader_addr: None,
        })
    };
    match result {
        Ok(_) => {
            let mut reply = Vec::new();
            match read_reply(
                &*service.map.read().expect("map lock"),
                op,
                keys,
                &mut reply,
            ) {
                Ok(()) => out.extend_from_slice(&reply),
                Err(e) => resp::error(out, &format!("ERR store read failed: {e}")),
            }
        }
        Err(e) => error_reply(&service.peers, e, out),
    }
}

/// Executes one command and appends its reply to `out`.
async fn execute(service: &KvService, args: Vec<Vec<u8>>, out: &mut Vec<u8>) {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let rest = &args[1..];
    let op = match (name.as_str(), rest.len()) {
        ("PING", 0) => return resp::simple(out, "PONG"),
        ("PING", 1) => return resp::bulk(out, Some(&rest[0])),
        // Clients probe these at start; an empty answer satisfies them.
        ("COMMAND" | "CONFIG", _) => return resp::array_header(out, 0),
        ("GET", 1) => Op::Get,
        ("SET", 2..) => Op::Set,
        ("DEL", 1..) => Op::Del,
        ("INCR", 1) => Op::Incr,
        ("MGET", 1..) => Op::Mget,
        ("GET" | "SET" | "DEL" | "INCR" | "MGET", _) => {
            return resp::error(
                out,
                &format!(
                    "ERR wrong number of arguments for '{}' command",
                    name.to_lowercase()
                ),
            );
        }
        _ => return resp::error(out, &format!("ERR unknown command '{name}'")),
    };
    if matches!(op, Op::Get | Op::Mget) {
        return read(service, op, rest, out).await;
    }
    // SET's options (EX, NX, ...) are not supported: only key and value.
    let args = if op == Op::Set { &rest[..2] } else { rest };
    match service.node.apply(encode(op, args)).await {
        Ok(applied) => out.extend_from_slice(&applied.response),
        Err(e) => error_reply(&service.peers, e, out),
    }
}

/// The RESP error for a failed request: a redirection to the leader when
/// known, else a retryable error.
fn error_reply(peers: &Peers, error: Error, out: &mut Vec<u8>) {
    match error {
        Error::NotLeader {
            leader: Some(leader),
            ..
        } => match peers.0.get(&leader) {
            Some((_, client)) => resp::error(out, &format!("MOVED 0 {client}")),
            None => resp::error(out, &format!("ERR not the leader; leader is node {leader}")),
        },
        Error::NotLeader { leader: None, .. } => {
            resp::error(out, "CLUSTERDOWN no leader elected yet; try again")
        }
        Error::LeadershipLost { .. } | Error::Timeout | Error::Busy { .. } => {
            resp::error(out, &format!("TRYAGAIN {error}"))
        }
        e => resp::error(out, &format!("ERR {e}")),
    }
}
