//! Helpers for runtime tests over real loopback TCP: clusters of
//! `NodeManager`s on ports the OS picks, and a recording state machine.
#![allow(dead_code, unreachable_pub)]

pub mod counter;
pub mod held;
pub mod pki;
pub mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::core::{LogId, LogIndex, NodeId, RaftOptions};
use oar::runtime::{
    Committed, DiskStorage, GroupId, GroupOptions, GroupStorage, MemStorage, Node, NodeManager,
    SnapshotError, SnapshotReader, SnapshotView, StateMachine, TransportOptions, snapshot_file,
};
use oar::storage::{LogOptions, StdFileSystem};

/// Where a member keeps its log: in memory, or in a real directory.
#[derive(Clone, Debug)]
pub enum Store {
    Mem(MemStorage),
    Disk(std::path::PathBuf),
    /// This group's member storage in its server's shared log.
    Shared(oar::runtime::SharedLog, GroupId),
}

impl Store {
    /// Opens the storage (recovering a directory's content).
    pub fn open(&self) -> Box<dyn GroupStorage> {
        match self {
            Store::Mem(mem) => Box::new(mem.clone()),
            Store::Disk(dir) => {
                // Small segments: tests run many groups and rotate often.
                let options = LogOptions {
                    segment_bytes_max: 256 << 10,
                    segment_bytes_first: 256 << 10,
                    preallocate: true,
                    direct_io: true,
                };
                Box::new(
                    DiskStorage::open_blocking(Arc::new(StdFileSystem), dir, options)
                        .expect("storage opens"),
                )
            }
            Store::Shared(log, group) => Box::new(log.storage(*group).expect("storage opens")),
        }
    }
}

/// What a recording state machine saw, shared with the test.
#[derive(Debug, Default)]
pub struct Record {
    /// `key=value` map built from `set key value` commands.
    pub map: BTreeMap<String, String>,
    /// Every applied command, in order (since the last snapshot loaded).
    pub log: Vec<(LogIndex, Bytes)>,
    /// The snapshots loaded (at start or installed), by last index.
    pub loaded: Vec<LogIndex>,
}

/// Applies `set key value`; answers with the number of keys.
pub struct Recorder(pub Arc<Mutex<Record>>);

impl StateMachine for Recorder {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut record = self.0.lock().unwrap();
        commands
            .iter()
            .map(|c| {
                let text = String::from_utf8_lossy(&c.data).to_string();
                let mut words = text.splitn(3, ' ');
                if let (Some("set"), Some(k), Some(v)) = (words.next(), words.next(), words.next())
                {
                    record.map.insert(k.to_string(), v.to_string());
                }
                record.log.push((c.id.index, c.data.clone()));
                Bytes::from(record.map.len().to_string())
            })
            .collect()
    }

    /// The map as `key=value` lines.
    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let record = self.0.lock().unwrap();
        let text: String = record
            .map
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        Ok(snapshot_file("map", text))
    }

    fn on_snapshot_load(
        &mut self,
        last: LogId,
        files: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let text = files.read_file("map")?;
        let text = std::str::from_utf8(&text).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or(SnapshotError::Invalid(line.into()))?;
            map.insert(k.to_string(), v.to_string());
        }
        let mut record = self.0.lock().unwrap();
        record.map = map;
        record.log.clear();
        record.loaded.push(last.index);
        Ok(())
    }
}

pub fn fast_raft(id: NodeId, group: GroupId) -> RaftOptions {
    RaftOptions {
        id,
        election_timeout_min: Duration::from_millis(150),
        election_timeout_max: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(30),
        rng_seed: group.0 * 1000 + id.0,
        ..RaftOptions::default()
    }
}

/// One member: its server, handle, storage and record.
pub struct Member {
    pub server: NodeManager,
    pub node: Node,
    pub store: Store,
    pub record: Arc<Mutex<Record>>,
}

/// Binds `n` servers on 127.0.0.1 with OS-chosen ports, authenticated
/// with the test CA's certificates.
pub async fn servers(n: usize) -> Vec<NodeManager> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(server_at("127.0.0.1:0".parse().unwrap(), Default::default()).await);
    }
    out
}

/// One server at `addr` with these options, its certificate naming
/// `addr`'s IP.
pub async fn server_at(addr: SocketAddr, options: TransportOptions) -> NodeManager {
    let security = pki::shared().security(addr.ip());
    NodeManager::bind(addr, security, options).await.unwrap()
}

pub fn peers_of(servers: &[NodeManager]) -> BTreeMap<NodeId, SocketAddr> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| (NodeId(i as u64 + 1), s.local_addr()))
        .collect()
}

/// Starts member `id` of `group` on `server` with this storage.
pub fn start_member(
    server: &NodeManager,
    group: GroupId,
    id: NodeId,
    peers: BTreeMap<NodeId, SocketAddr>,
    store: Store,
) -> Member {
    start_member_with(server, group, id, peers, store, None)
}

/// Like [`start_member`], with the group's initial voters (`None`: all peers).
pub fn start_member_with(
    server: &NodeManager,
    group: GroupId,
    id: NodeId,
    peers: BTreeMap<NodeId, SocketAddr>,
    store: Store,
    initial_voters: Option<std::collections::BTreeSet<NodeId>>,
) -> Member {
    let mut options = GroupOptions::new(group, id, peers);
    options.initial_voters = initial_voters;
    options.raft = fast_raft(id, group);
    start_member_with_options(server, options, store)
}

/// Starts a member with these options.
pub fn start_member_with_options(
    server: &NodeManager,
    options: GroupOptions,
    store: Store,
) -> Member {
    let record = Arc::new(Mutex::new(Record::default()));
    let node = server
        .add_group(options, store.open(), Box::new(Recorder(record.clone())))
        .unwrap();
    Member {
        server: server.clone(),
        node,
        store,
        record,
    }
}

/// Starts member `i + 1` of `group` on each server `i`, each with the
/// storage `store(i)` gives.
pub fn start_group(
    servers: &[NodeManager],
    group: GroupId,
    store: impl Fn(usize) -> Store,
) -> Vec<Member> {
    let peers = peers_of(servers);
    (0..servers.len())
        .map(|i| {
            start_member(
                &servers[i],
                group,
                NodeId(i as u64 + 1),
                peers.clone(),
                store(i),
            )
        })
        .collect()
}

/// Like [`start_group`] with memory storage, but only `voters` make up the
/// group's first configuration: the other members wait to be added.
pub fn start_group_with_voters(
    servers: &[NodeManager],
    group: GroupId,
    voters: &std::collections::BTreeSet<NodeId>,
) -> Vec<Member> {
    let peers = peers_of(servers);
    (0..servers.len())
        .map(|i| {
            let id = NodeId(i as u64 + 1);
            let store = Store::Mem(MemStorage::new());
            start_member_with(
                &servers[i],
                group,
                id,
                peers.clone(),
                store,
                Some(voters.clone()),
            )
        })
        .collect()
}

/// Waits until some member leads with all others agreeing; returns its position.
pub async fn wait_for_leader(members: &[&Node]) -> usize {
    for _ in 0..400 {
        let leaders: Vec<Option<NodeId>> = members.iter().map(|n| n.leader()).collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*leader))
            && let Some(pos) = members.iter().position(|n| n.id() == *leader)
        {
            return pos;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no leader agreed on within 10 s");
}

/// Applies a command at whichever member leads, following NotLeader hints.
pub async fn apply_anywhere(members: &[&Node], command: Bytes) -> oar::runtime::Applied {
    for _ in 0..400 {
        for node in members {
            if let Ok(applied) = node.apply(command.clone()).await {
                return applied;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no member accepted the command");
}

/// Waits until every record holds `count` commands.
pub async fn wait_applied(records: &[Arc<Mutex<Record>>], count: usize) {
    for _ in 0..800 {
        if records.iter().all(|r| r.lock().unwrap().log.len() >= count) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let lens: Vec<usize> = records
        .iter()
        .map(|r| r.lock().unwrap().log.len())
        .collect();
    panic!("records did not reach {count} commands: {lens:?}");
}

/// Sends `request` to the status page at `addr` over TLS (as an operator's
/// client: the server's certificate checked, none of ours) and returns the
/// whole response.
pub async fn https_get(addr: SocketAddr, request: &str) -> String {
    use oar::runtime::Authenticator;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = pki::shared().operator().connect(tcp, addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut page = Vec::new();
    let _ = stream.read_to_end(&mut page).await;
    String::from_utf8_lossy(&page).into_owned()
}

/// Waits until `done` holds, checking every 10 ms; panics after 5 s.
pub async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}
