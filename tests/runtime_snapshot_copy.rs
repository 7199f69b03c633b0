//! Snapshot copy over real loopback TCP (braft's FileService and
//! RemoteFileCopier): whole copies from memory and disk, resuming after
//! broken and stalled connections, checksums against flipped bits, a
//! snapshot replaced mid-copy, unknown groups, retries capped well below an
//! election timeout, and the throttle's rate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use oar::core::{LogId, Membership, NodeId};
use oar::runtime::wire::frame::{FRAME_BYTES_MAX, encode_frame, read_frame};
use oar::runtime::wire::proto;
use oar::runtime::{
    CopyError, CopyOptions, Dialer, DiskSnapshots, GroupId, LocalNetwork, MemSnapshots,
    NodeManager, Security, SnapshotFiles, SnapshotReadError, SnapshotReader, SnapshotSource,
    SnapshotStorage, SnapshotWriter, StorageFailure, Throttle, TransportOptions, fetch_snapshot,
};
use oar::storage::{SnapshotMeta, StdFileSystem};
use prost::Message as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MIB: u64 = 1 << 20;
const GROUP: GroupId = GroupId(1);
const SNAPSHOT: LogId = LogId::new(2, 100);

fn random_bytes(seed: u64, len: u64) -> Bytes {
    let mut data = vec![0u8; len as usize];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    Bytes::from(data)
}

/// Three files: 5 MiB of random bytes, an empty one, and a small one.
fn sample_files() -> SnapshotFiles {
    SnapshotFiles::from([
        ("big".to_string(), random_bytes(1, 5 * MIB)),
        ("empty".to_string(), Bytes::new()),
        ("small".to_string(), random_bytes(2, 1000)),
    ])
}

fn membership() -> Membership {
    Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)])
}

fn total_bytes(files: &SnapshotFiles) -> u64 {
    files.values().map(|d| d.len() as u64).sum()
}

// These tests are about the copy's mechanics, through proxies that read
// and damage frames: the servers run insecure, so the proxies see plain
// frames. Copies between authenticated servers are in runtime_snapshot.rs.
const CLUSTER: &str = "copy-tests";

async fn server(options: TransportOptions) -> NodeManager {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    NodeManager::bind(addr, Security::insecure(CLUSTER), options)
        .await
        .unwrap()
}

/// Copying from the server at `addr` as a peer server on 127.0.0.1.
fn tcp_source(addr: SocketAddr) -> SnapshotSource {
    let security = Security::insecure(CLUSTER);
    let own: SocketAddr = "127.0.0.1:1".parse().unwrap();
    SnapshotSource::Tcp {
        addr,
        dialer: Dialer::server(&security, own, Duration::from_secs(5)),
    }
}

/// A server serving `files` as snapshot [`SNAPSHOT`] of [`GROUP`] from memory.
async fn serving(options: TransportOptions, files: &SnapshotFiles) -> (NodeManager, SnapshotMeta) {
    let storage = MemSnapshots::new();
    let meta = storage.save(SNAPSHOT, membership(), files).unwrap();
    let server = server(options).await;
    server.serve_snapshots(GROUP, Arc::new(storage));
    (server, meta)
}

async fn copy(
    source: SnapshotSource,
    snapshot: LogId,
    throttle: &Throttle,
    options: &CopyOptions,
) -> Result<(SnapshotMeta, SnapshotFiles), CopyError> {
    let (_cancel, cancelled) = watch::channel(false);
    let into = MemSnapshots::new();
    let writer = into.begin(true).unwrap();
    let (meta, writer) = fetch_snapshot(
        source, GROUP, snapshot, throttle, options, cancelled, writer,
    )
    .await?;
    let committed = into
        .commit(writer, meta.last_included, meta.membership.clone())
        .unwrap();
    assert_eq!(committed, meta, "the files written are the files served");
    Ok((meta, read_back(&into)))
}

/// The files of the newest snapshot in `storage`.
fn read_back(storage: &dyn SnapshotStorage) -> SnapshotFiles {
    let snapshot = storage.open().unwrap().expect("a snapshot");
    let read = |name: &str| Bytes::from(snapshot.read_file(name).unwrap());
    let files = snapshot.meta().files.iter();
    files.map(|f| (f.name.clone(), read(&f.name))).collect()
}

/// A fresh destination for a copy.
fn destination() -> SnapshotWriter {
    MemSnapshots::new().begin(true).unwrap()
}

fn quick_retries() -> CopyOptions {
    CopyOptions {
        request_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        ..CopyOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_file_snapshot_copies_exactly_from_memory_and_from_disk() {
    let files = sample_files();
    let (mem_server, meta) = serving(TransportOptions::default(), &files).await;

    let dir = tempfile::tempdir().unwrap();
    let disk = DiskSnapshots::open(Arc::new(StdFileSystem), dir.path()).unwrap();
    let disk_meta = disk.save(SNAPSHOT, membership(), &files).unwrap();
    assert_eq!(disk_meta, meta);
    let disk_server = server(TransportOptions::default()).await;
    disk_server.serve_snapshots(GROUP, Arc::new(disk));

    let unlimited = Throttle::new(None);
    // Default chunks and window; one chunk at a time; chunks larger than
    // the server sends (it caps them, the copier follows).
    let variants = [
        CopyOptions::default(),
        CopyOptions {
            chunk_bytes: 100_000,
            window: 1,
            ..CopyOptions::default()
        },
        CopyOptions {
            chunk_bytes: 3 * MIB,
            ..CopyOptions::default()
        },
    ];
    for server in [&mem_server, &disk_server] {
        for options in &variants {
            let source = tcp_source(server.local_addr());
            let (got_meta, got_files) = copy(source, SNAPSHOT, &unlimited, options)
                .await
                .expect("copy succeeds");
            assert_eq!(got_meta, meta);
            assert_eq!(got_files, files, "{options:?}");
        }
    }
    mem_server.shutdown().await;
    disk_server.shutdown().await;
}

#[tokio::test]
async fn servers_on_a_local_network_copy_without_sockets() {
    let network = LocalNetwork::new();
    let a = NodeManager::local(&network, "10.0.0.1:1".parse().unwrap());
    let b = NodeManager::local(&network, "10.0.0.2:1".parse().unwrap());
    let files = sample_files();
    let storage = MemSnapshots::new();
    let meta = storage.save(SNAPSHOT, membership(), &files).unwrap();
    a.serve_snapshots(GROUP, Arc::new(storage));
    let source = b.snapshot_source(a.local_addr());
    assert!(matches!(source, SnapshotSource::Local { .. }));
    let (got_meta, got_files) = copy(
        source.clone(),
        SNAPSHOT,
        b.snapshot_throttle(),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((got_meta, got_files), (meta, files));
    assert_eq!(
        a.stats().snapshot_bytes_served.load(Ordering::Relaxed),
        5 * MIB + 1000
    );
    // A server gone from the network is an I/O error once retries run out.
    a.shutdown().await;
    let err = copy(source, SNAPSHOT, &Throttle::new(None), &quick_retries())
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::Io { .. }), "{err:?}");
}

/// What a proxy does to the server→client bytes of its connections.
#[derive(Clone, Copy)]
enum Fault {
    /// The first `times` connections end after `after` bytes: closed, or
    /// held open without a byte more when `stall`.
    Cut {
        after: u64,
        times: usize,
        stall: bool,
    },
    /// Flips a bit in the data of the `k`-th chunk (counting chunks with
    /// data) of connection `c` when `flip(c, k)`.
    Flip(fn(usize, usize) -> bool),
}

/// A TCP proxy to `target`; returns its address and its connection count.
async fn proxy(target: SocketAddr, fault: Fault) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let conn = count.fetch_add(1, Ordering::SeqCst);
            let server = TcpStream::connect(target).await.unwrap();
            tokio::spawn(forward(conn, client, server, fault));
        }
    });
    (addr, connections)
}

async fn forward(conn: usize, client: TcpStream, server: TcpStream, fault: Fault) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
    });
    match fault {
        Fault::Cut {
            after,
            times,
            stall,
        } => {
            let limit = if conn < times { after } else { u64::MAX };
            let mut sent = 0;
            let mut buf = vec![0u8; 64 << 10];
            while sent < limit {
                let n = match from_server.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => (n as u64).min(limit - sent) as usize,
                };
                if to_client.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                sent += n as u64;
            }
            if stall && sent == limit {
                std::future::pending::<()>().await;
            }
        }
        Fault::Flip(flip) => {
            let mut chunks = 0;
            while let Ok(body) = read_frame(&mut from_server, FRAME_BYTES_MAX).await {
                let mut frame = proto::Frame::decode(body).unwrap();
                if let Some(proto::frame::Kind::GetFileResponse(r)) = &mut frame.kind
                    && !r.data.is_empty()
                {
                    if flip(conn, chunks) {
                        let mut data = r.data.to_vec();
                        let mid = data.len() / 2;
                        data[mid] ^= 0x10;
                        r.data = data.into();
                    }
                    chunks += 1;
                }
                let mut out = BytesMut::new();
                encode_frame(&frame.encode_to_vec(), &mut out);
                if to_client.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    }
    up.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_resumes_where_it_stopped() {
    let files = sample_files();
    let (server, meta) = serving(TransportOptions::default(), &files).await;
    // The first two connections break 2 MiB in, inside a chunk.
    let fault = Fault::Cut {
        after: 2 * MIB,
        times: 2,
        stall: false,
    };
    let (addr, connections) = proxy(server.local_addr(), fault).await;
    // One small chunk in flight, so that little is served past a break.
    let options = CopyOptions {
        chunk_bytes: 256 << 10,
        window: 1,
        ..quick_retries()
    };
    let got = copy(tcp_source(addr), SNAPSHOT, &Throttle::new(None), &options)
        .await
        .expect("the copy survives two breaks");
    assert_eq!(got, (meta, files.clone()));
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    // Restarting the file would serve 2 + 2 + 5 MiB; resuming 5 MiB plus
    // at most a chunk lost per break.
    let served = server.stats().snapshot_bytes_served.load(Ordering::Relaxed);
    let total = total_bytes(&files);
    assert!(
        served < total * 3 / 2,
        "served {served} bytes for {total}: restarted instead of resuming"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_times_out_and_resumes() {
    let files = sample_files();
    let (server, meta) = serving(TransportOptions::default(), &files).await;
    let fault = Fault::Cut {
        after: MIB + 12_345,
        times: 1,
        stall: true,
    };
    let (addr, connections) = proxy(server.local_addr(), fault).await;
    let options = CopyOptions {
        request_timeout: Duration::from_millis(300),
        ..quick_retries()
    };
    let start = Instant::now();
    let unlimited = Throttle::new(None);
    let copying = copy(tcp_source(addr), SNAPSHOT, &unlimited, &options);
    // Without a request timeout the copy would wait forever.
    let got = tokio::time::timeout(Duration::from_secs(20), copying)
        .await
        .expect("the copy does not hang on a stalled connection")
        .expect("the copy gives up on the stalled connection and resumes");
    assert_eq!(got, (meta, files));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert!(start.elapsed() >= Duration::from_millis(300));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_is_caught_and_the_chunk_fetched_again() {
    let files = sample_files();
    let (server, meta) = serving(TransportOptions::default(), &files).await;
    // Once: the third chunk of the first connection.
    let (addr, connections) =
        proxy(server.local_addr(), Fault::Flip(|c, k| c == 0 && k == 2)).await;
    let got = copy(
        tcp_source(addr),
        SNAPSHOT,
        &Throttle::new(None),
        &quick_retries(),
    )
    .await
    .expect("the bad chunk is fetched again");
    assert_eq!(got, (meta, files));
    assert_eq!(connections.load(Ordering::SeqCst), 2, "one retry");

    // Always from the second chunk on: the copy fails at that chunk's offset
    // rather than return wrong bytes.
    let (addr, _) = proxy(server.local_addr(), Fault::Flip(|c, k| c > 0 || k >= 1)).await;
    let options = CopyOptions {
        chunk_bytes: 256 << 10,
        retries_max: 3,
        ..quick_retries()
    };
    let err = copy(tcp_source(addr), SNAPSHOT, &Throttle::new(None), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CopyError::Corrupt { file, offset: 262_144 } if file == "big"),
        "{err:?}"
    );
    server.shutdown().await;
}

/// Memory snapshots that save a newer snapshot on the `after`-th chunk read.
struct ReplacedMidCopy {
    inner: MemSnapshots,
    reads: AtomicU32,
    after: u32,
    newer: LogId,
}

impl SnapshotStorage for ReplacedMidCopy {
    fn latest(&self) -> Result<Option<SnapshotMeta>, StorageFailure> {
        self.inner.latest()
    }

    fn open(&self) -> Result<Option<SnapshotReader>, StorageFailure> {
        self.inner.open()
    }

    fn begin(&self, install: bool) -> Result<SnapshotWriter, StorageFailure> {
        self.inner.begin(install)
    }

    fn commit(
        &self,
        writer: SnapshotWriter,
        last_included: LogId,
        membership: Membership,
    ) -> Result<SnapshotMeta, StorageFailure> {
        self.inner.commit(writer, last_included, membership)
    }

    fn read_chunk(
        &self,
        snapshot: LogId,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SnapshotReadError> {
        if self.reads.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            let newer = SnapshotFiles::from([("big".to_string(), random_bytes(3, 1000))]);
            self.inner.save(self.newer, membership(), &newer).unwrap();
        }
        self.inner.read_chunk(snapshot, name, offset, len)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_replaced_mid_copy_fails_the_copy_at_once() {
    let inner = MemSnapshots::new();
    inner.save(SNAPSHOT, membership(), &sample_files()).unwrap();
    let newer = LogId::new(3, 250);
    let storage = ReplacedMidCopy {
        inner,
        reads: AtomicU32::new(0),
        after: 3,
        newer,
    };
    let server = server(TransportOptions::default()).await;
    server.serve_snapshots(GROUP, Arc::new(storage));
    let source = tcp_source(server.local_addr());
    let unlimited = Throttle::new(None);
    let err = copy(source.clone(), SNAPSHOT, &unlimited, &quick_retries())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CopyError::SnapshotReplaced { newest: Some(n) } if n == newer),
        "{err:?}"
    );
    // Asking for the old one again fails at the meta.
    let err = copy(source, SNAPSHOT, &unlimited, &quick_retries())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CopyError::SnapshotReplaced { newest: Some(n) } if n == newer),
        "{err:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_groups_unreachable_servers_and_cancellation_are_typed_errors() {
    let files = sample_files();
    let (server, _) = serving(TransportOptions::default(), &files).await;
    let unlimited = Throttle::new(None);
    let source = tcp_source(server.local_addr());
    let (_keep, cancelled) = watch::channel(false);
    let options = quick_retries();
    let err = fetch_snapshot(
        source.clone(),
        GroupId(99),
        SNAPSHOT,
        &unlimited,
        &options,
        cancelled.clone(),
        destination(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CopyError::UnknownGroup(GroupId(99))),
        "{err:?}"
    );

    server.stop_serving_snapshots(GROUP);
    let err = copy(source.clone(), SNAPSHOT, &unlimited, &options)
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::UnknownGroup(GROUP)), "{err:?}");

    // Nobody listens on a closed listener's port.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let few = CopyOptions {
        retries_max: 2,
        ..quick_retries()
    };
    let err = copy(tcp_source(addr), SNAPSHOT, &unlimited, &few)
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::Io { attempts: 3, .. }), "{err:?}");

    let (cancel, cancelled) = watch::channel(false);
    cancel.send(true).unwrap();
    let err = fetch_snapshot(
        source,
        GROUP,
        SNAPSHOT,
        &unlimited,
        &options,
        cancelled,
        destination(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CopyError::Cancelled), "{err:?}");
    server.shutdown().await;
}

/// A copy whose source is down retries at most `backoff_max` apart (100 ms
/// by default, jittered; it was 1 s), so it resumes soon after its source
/// is back, and a retry budget is spent in about a second, not seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_capped_well_below_an_election_timeout() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let unlimited = Throttle::new(None);
    // Waits of at most 10+20+40+80+8×100 ms: under a second (with a 1 s cap
    // they would add up to at least 3 s).
    let twelve = CopyOptions {
        retries_max: 12,
        ..CopyOptions::default()
    };
    let started = Instant::now();
    let err = copy(tcp_source(addr), SNAPSHOT, &unlimited, &twelve)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, CopyError::Io { attempts: 13, .. }), "{err:?}");
    assert!(
        took < Duration::from_millis(1500),
        "13 attempts took {took:?}"
    );

    // The source comes back after the backoff reached its cap.
    let files = SnapshotFiles::from([("small".to_string(), random_bytes(2, 1000))]);
    let patient = CopyOptions {
        retries_max: 1000,
        ..CopyOptions::default()
    };
    let copying = tokio::spawn(async move {
        copy(tcp_source(addr), SNAPSHOT, &Throttle::new(None), &patient).await
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let storage = MemSnapshots::new();
    storage.save(SNAPSHOT, membership(), &files).unwrap();
    let server = NodeManager::bind(
        addr,
        Security::insecure(CLUSTER),
        TransportOptions::default(),
    )
    .await
    .unwrap();
    server.serve_snapshots(GROUP, Arc::new(storage));
    let up = Instant::now();
    let (_, got) = copying.await.unwrap().unwrap();
    let resumed = up.elapsed();
    assert_eq!(got, files);
    assert!(
        resumed < Duration::from_millis(600),
        "the copy resumed {resumed:?} after its source came back"
    );
    server.shutdown().await;
}

/// Copies 8 MiB and returns the rate in MiB/s.
async fn measured_rate(server_rate: Option<u64>, client: &Throttle) -> f64 {
    let files = SnapshotFiles::from([("data".to_string(), random_bytes(4, 8 * MIB))]);
    let options = TransportOptions {
        snapshot_bytes_per_sec: server_rate,
        ..TransportOptions::default()
    };
    let (server, meta) = serving(options, &files).await;
    let source = tcp_source(server.local_addr());
    let into = MemSnapshots::new();
    let writer = into.begin(true).unwrap();
    let (_keep, cancelled) = watch::channel(false);
    let options = CopyOptions::default();
    // Only the transfer is timed, not reading the copy back.
    let start = Instant::now();
    let fetch = fetch_snapshot(source, GROUP, SNAPSHOT, client, &options, cancelled, writer);
    let (got, writer) = fetch.await.unwrap();
    let elapsed = start.elapsed();
    into.commit(writer, got.last_included, got.membership.clone())
        .unwrap();
    assert_eq!((got, read_back(&into)), (meta, files));
    server.shutdown().await;
    let rate = 8.0 / elapsed.as_secs_f64();
    eprintln!("8 MiB in {elapsed:?}: {rate:.3} MiB/s");
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_holds_a_copy_to_its_rate_on_either_side() {
    // The serving server's throttle ...
    let rate = measured_rate(Some(4 * MIB), &Throttle::new(None)).await;
    assert!((3.6..=4.4).contains(&rate), "server throttle: {rate} MiB/s");
    // ... and the receiving server's.
    let rate = measured_rate(None, &Throttle::new(Some(4 * MIB))).await;
    assert!((3.6..=4.4).contains(&rate), "client throttle: {rate} MiB/s");
}

/// Requests for nothing (a file the snapshot lacks, an offset past a
/// file's end, a snapshot that is not the newest) are refused before they
/// draw on the server's throttle, which every copy shares: at 64 KiB/s, the
/// old order made each of these wait 16 s for a 1 MiB allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_nothing_do_not_draw_on_the_throttle() {
    let files = sample_files();
    let options = TransportOptions {
        snapshot_bytes_per_sec: Some(64 << 10),
        ..TransportOptions::default()
    };
    let (server, _meta) = serving(options, &files).await;
    let own: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let dialer = Dialer::server(&Security::insecure(CLUSTER), own, Duration::from_secs(5));
    let mut conn = dialer.dial(server.local_addr()).await.unwrap();
    let request = |name: &str, offset: u64, snapshot: LogId| proto::GetFileRequest {
        group_id: GROUP.0,
        snapshot: Some(proto::LogId {
            term: snapshot.term.0,
            index: snapshot.index.0,
        }),
        name: name.into(),
        offset,
        count: MIB,
    };
    let bogus = [
        request("no-such-file", 0, SNAPSHOT),
        request("small", 1 << 30, SNAPSHOT),
        request("small", 0, LogId::new(1, 1)),
    ];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        for round in 0..5 {
            for req in &bogus {
                let frame = proto::Frame {
                    kind: Some(proto::frame::Kind::GetFileRequest(req.clone())),
                };
                let mut out = BytesMut::new();
                encode_frame(&frame.encode_to_vec(), &mut out);
                conn.write_all(&out).await.unwrap();
                conn.flush().await.unwrap();
                let body = read_frame(&mut conn, FRAME_BYTES_MAX).await.unwrap();
                let Some(proto::frame::Kind::GetFileResponse(response)) =
                    proto::Frame::decode(body).unwrap().kind
                else {
                    panic!("not a file response");
                };
                assert_ne!(response.error, 0, "round {round}: {req:?} was served");
            }
        }
    })
    .await;
    assert!(
        answered.is_ok(),
        "a request for nothing waited on the throttle"
    );
    assert_eq!(
        server.stats().snapshot_bytes_served.load(Ordering::Relaxed),
        0
    );
    server.shutdown().await;
}

/// The copy streams to disk as chunks arrive (memory holds a chunk, not a
/// file): halfway through a throttled 8 MiB file, part of it is already in
/// the install directory's file, and the whole file is there at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_streams_each_file_to_disk_as_it_arrives() {
    let data = random_bytes(5, 8 * MIB);
    let files = SnapshotFiles::from([("data".to_string(), data.clone())]);
    let options = TransportOptions {
        snapshot_bytes_per_sec: Some(4 * MIB),
        ..TransportOptions::default()
    };
    let (server, meta) = serving(options, &files).await;
    let dir = tempfile::tempdir().unwrap();
    let into = DiskSnapshots::open(Arc::new(StdFileSystem), dir.path()).unwrap();
    let writer = into.begin(true).unwrap();
    let (_keep, cancelled) = watch::channel(false);
    let unlimited = Throttle::new(None);
    let copy_options = CopyOptions::default();
    let copying = fetch_snapshot(
        tcp_source(server.local_addr()),
        GROUP,
        SNAPSHOT,
        &unlimited,
        &copy_options,
        cancelled,
        writer,
    );
    let partial = dir.path().join("temp_install").join("data");
    let watching = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0)
    };
    let (copied, midway) = tokio::join!(copying, watching);
    let (got, writer) = copied.expect("the copy succeeds");
    assert!(
        (MIB..7 * MIB).contains(&midway),
        "{midway} bytes on disk after 1 s of an 8 MiB copy at 4 MiB/s"
    );
    into.commit(writer, got.last_included, got.membership.clone())
        .unwrap();
    assert_eq!(got, meta);
    assert_eq!(read_back(&into), files);
    server.shutdown().await;
}
