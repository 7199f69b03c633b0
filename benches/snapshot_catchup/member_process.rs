//! A member of the file-state row in a process of its own, so that its peak
//! RSS is its own: the bench runs itself again with `OAR_BENCH_MEMBER_ID`
//! set, and the parent drives it with one command a line on stdin, each
//! answered with one line on stdout (the protocol is `answer`'s match).
//! End of input ends the process, so a parent that dies takes its members
//! with it.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::{Node, NodeManager, Security, TlsAuthenticator, TransportOptions};

use super::file_blobs::{FileBlobStore, FileShared};
use super::{Clients, group_options, open_storage, pki};

/// Environment of a member process: its id, its directory, the generated
/// blobs' directory, and the directory of the cluster's PEM files.
pub(crate) const MEMBER_ID_ENV: &str = "OAR_BENCH_MEMBER_ID";
pub(crate) const MEMBER_DIR_ENV: &str = "OAR_BENCH_MEMBER_DIR";
pub(crate) const SOURCE_DIR_ENV: &str = "OAR_BENCH_SOURCE_DIR";
pub(crate) const PKI_DIR_ENV: &str = "OAR_BENCH_PKI_DIR";

/// The PEM files every member's server uses (one certificate for
/// 127.0.0.1), written by the parent.
pub(crate) fn pem_paths(dir: &std::path::Path) -> [PathBuf; 3] {
    let ip = "127.0.0.1";
    [
        dir.join("ca.pem"),
        dir.join(format!("server-{ip}.pem")),
        dir.join(format!("server-{ip}.key")),
    ]
}

/// The member's process state.
struct Member {
    id: NodeId,
    dir: PathBuf,
    source: PathBuf,
    server: NodeManager,
    peers: BTreeMap<NodeId, SocketAddr>,
    group: Option<(Node, Arc<FileShared>)>,
    clients: Option<Clients>,
    mark: Option<(Instant, u64)>,
}

impl Member {
    fn start_group(&mut self) {
        let options = group_options(self.id, &self.peers);
        let storage = open_storage(self.id, &self.dir);
        let shared = Arc::new(FileShared::default());
        let store = FileBlobStore::new(&self.source, &self.dir.join("state"), shared.clone());
        let node = (self.server)
            .add_group(options, Box::new(storage), Box::new(store))
            .expect("group");
        self.group = Some((node, shared));
    }

    fn node(&self) -> &Node {
        &self.group.as_ref().expect("the group runs").0
    }

    fn shared(&self) -> &FileShared {
        &self.group.as_ref().expect("the group runs").1
    }

    /// Runs `command`; its one-line answer.
    async fn answer(&mut self, command: &str) -> String {
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        match verb {
            "start" => {
                self.peers = parse_peers(arg);
                self.start_group();
                "ok".into()
            }
            "restart" => {
                self.start_group();
                "ok".into()
            }
            "stop" => {
                self.node().shutdown().await;
                self.group = None;
                "ok".into()
            }
            "leader" => self.node().leader().map_or(0, |l| l.0).to_string(),
            "applied" => self.node().applied_index().0.to_string(),
            "fill" => {
                for n in 0..arg.parse::<u64>().expect("fill COUNT") {
                    let command = Bytes::from(format!("fill {n}"));
                    self.node().apply(command).await.expect("fill");
                }
                "ok".into()
            }
            "clients" => {
                let count = arg.parse().expect("clients COUNT");
                self.clients = Some(Clients::start(self.node(), count));
                "ok".into()
            }
            "mark" => {
                self.mark = Some(self.clients.as_ref().expect("clients").mark());
                "ok".into()
            }
            "rate" => {
                let clients = self.clients.as_ref().expect("clients");
                format!("{:.1}", clients.rate_since(self.mark.expect("a mark")))
            }
            "stop-clients" => {
                let clients = self.clients.take().expect("clients");
                clients.stop().await.to_string()
            }
            "snapshot" => {
                let streams = match arg {
                    "stream" => true,
                    "link" => false,
                    _ => panic!("snapshot stream|link"),
                };
                self.shared().save_streams.store(streams, Ordering::Relaxed);
                let start = Instant::now();
                self.node().snapshot().await.expect("snapshot");
                let bytes = self.shared().saved_bytes.load(Ordering::Relaxed);
                format!("{bytes} {:.3}", start.elapsed().as_secs_f64())
            }
            "loaded" => {
                let loaded = *self.shared().loaded.lock().expect("loaded lock");
                loaded.map_or(0, |(_, last)| last.index.0).to_string()
            }
            "served" => (self.server.stats())
                .snapshot_bytes_served
                .load(Ordering::Relaxed)
                .to_string(),
            "digest" => self
                .shared()
                .state
                .lock()
                .expect("state")
                .digest()
                .to_string(),
            _ => panic!("unknown command {command:?}"),
        }
    }
}

/// `1=ADDR,2=ADDR,3=ADDR`.
fn parse_peers(text: &str) -> BTreeMap<NodeId, SocketAddr> {
    (text.split(','))
        .map(|peer| {
            let (id, addr) = peer.split_once('=').expect("ID=ADDR");
            (NodeId(id.parse().expect("id")), addr.parse().expect("addr"))
        })
        .collect()
}

/// A member process's main: binds, says `addr ADDR`, then answers
/// commands until its input ends.
pub(crate) fn run(id: u64) {
    let var = |name: &str| PathBuf::from(std::env::var(name).expect(name));
    let [ca, cert, key] = pem_paths(&var(PKI_DIR_ENV));
    let tls = TlsAuthenticator::server_from_pem_files(&ca, &cert, &key).expect("tls");
    let security = Security::new(Arc::new(tls), pki::CLUSTER, Vec::new());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = runtime
        .block_on(NodeManager::bind(addr, security, save_rate_options()))
        .expect("bind");
    println!("addr {}", server.local_addr());
    let mut member = Member {
        id: NodeId(id),
        dir: var(MEMBER_DIR_ENV),
        source: var(SOURCE_DIR_ENV),
        server,
        peers: BTreeMap::new(),
        group: None,
        clients: None,
        mark: None,
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let answer = runtime.block_on(member.answer(line.trim()));
        println!("{answer}");
    }
    runtime.block_on(member.server.shutdown());
}

/// The member's server options: `OAR_BENCH_SAVE_MBPS` (MB/s) limits its
/// snapshot saves (`TransportOptions::snapshot_save_bytes_per_sec`);
/// unlimited when unset.
fn save_rate_options() -> TransportOptions {
    let rate = std::env::var("OAR_BENCH_SAVE_MBPS")
        .ok()
        .map(|mbps| mbps.parse::<u64>().expect("OAR_BENCH_SAVE_MBPS: MB/s") * 1_000_000);
    TransportOptions {
        snapshot_save_bytes_per_sec: rate,
        ..TransportOptions::default()
    }
}
