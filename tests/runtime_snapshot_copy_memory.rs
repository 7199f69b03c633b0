//! The snapshot copy's memory bound, measured directly: a 64 MiB snapshot
//! file copied disk to disk over loopback TCP (server and copier in this
//! process) raises the process's peak heap by a few chunks, not by the
//! file. A counting global allocator measures the heap, so this file holds
//! one test only (another running beside it would count too).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oar::core::{LogId, Membership, NodeId};
use oar::runtime::{
    CopyOptions, Dialer, DiskSnapshots, GroupId, NodeManager, Security, SnapshotSource,
    SnapshotStorage, Throttle, TransportOptions, fetch_snapshot,
};
use oar::storage::StdFileSystem;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

/// The system allocator, counting the bytes allocated now and at most.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MIB: u64 = 1 << 20;
const FILE_BYTES: u64 = 64 * MIB;
const CHUNK_BYTES: u64 = 256 * 1024;
const WINDOW: usize = 4;
/// The most the peak heap may rise during the copy: the window's chunks on
/// both sides (1 MiB each) with room for frames, buffers and tasks, a
/// quarter of the file.
const RISE_BYTES_MAX: u64 = 16 * MIB;
const GROUP: GroupId = GroupId(1);
const CLUSTER: &str = "copy-memory";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_copied_with_a_few_chunks_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(StdFileSystem);
    let source = DiskSnapshots::open(fs.clone(), &dir.path().join("source")).unwrap();
    // Written 1 MiB at a time, so the file is never whole in memory here.
    let mut writer = source.begin(false).unwrap();
    let mut file = writer.create_file("big").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut piece = vec![0u8; MIB as usize];
    for _ in 0..FILE_BYTES / MIB {
        rng.fill_bytes(&mut piece);
        file.write_all(&piece).unwrap();
    }
    file.finish().unwrap();
    let snapshot = LogId::new(1, 10);
    let voters = Membership::with_voters([NodeId(1)]);
    source.commit(writer, snapshot, voters).unwrap();
    drop(piece);

    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = NodeManager::bind(
        addr,
        Security::insecure(CLUSTER),
        TransportOptions::default(),
    )
    .await
    .unwrap();
    server.serve_snapshots(GROUP, Arc::new(source));
    let own: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let dialer = Dialer::server(&Security::insecure(CLUSTER), own, Duration::from_secs(5));
    let from = SnapshotSource::Tcp {
        addr: server.local_addr(),
        dialer,
    };
    let into = DiskSnapshots::open(fs, &dir.path().join("into")).unwrap();
    let writer = into.begin(true).unwrap();
    let options = CopyOptions {
        chunk_bytes: CHUNK_BYTES,
        window: WINDOW,
        ..CopyOptions::default()
    };
    let (_cancel, cancelled) = watch::channel(false);
    let throttle = Throttle::new(None);

    let before = ALLOCATED.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let (meta, writer) = fetch_snapshot(
        from, GROUP, snapshot, &throttle, &options, cancelled, writer,
    )
    .await
    .unwrap();
    let rise = (PEAK.load(Ordering::Relaxed) - before) as u64;
    into.commit(writer, meta.last_included, meta.membership.clone())
        .unwrap();
    let copied = into.open().unwrap().expect("the copy is committed");
    assert_eq!(copied.meta().files, meta.files, "the file arrived whole");
    assert_eq!(meta.files[0].len, FILE_BYTES);
    assert!(
        rise <= RISE_BYTES_MAX,
        "the copy raised the heap by {} KiB (at most {} KiB) for a {} MiB file",
        rise / 1024,
        RISE_BYTES_MAX / 1024,
        FILE_BYTES / MIB
    );
    eprintln!(
        "peak heap rise {} KiB for a {} MiB file (chunk {} KiB, window {WINDOW})",
        rise / 1024,
        FILE_BYTES / MIB,
        CHUNK_BYTES / 1024
    );
    server.shutdown().await;
}
