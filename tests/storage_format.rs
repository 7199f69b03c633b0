//! The on-disk format: it reads back after a process restart over real
//! files, its bytes are pinned, and bad input gets typed errors, no panic
//! and no allocation of a claimed size.

mod storage;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use oar::core::{HardState, LogId, Membership, NodeId, Term};
use oar::storage::record::{self, Decoded};
use oar::storage::{
    CorruptionKind, FileSystem, LogOptions, LogWriter, MemFileSystem, SnapshotStore, StdFileSystem,
    StorageError, WriteOp,
};
use storage::{config_entry, entry};

const CHILD_DIR_VAR: &str = "OAR_STORAGE_FORMAT_CHILD_DIR";

fn hs() -> HardState {
    HardState {
        term: Term(5),
        voted_for: Some(NodeId(3)),
    }
}

fn written() -> Vec<oar::core::Entry> {
    let mut entries: Vec<_> = (1..=300)
        .map(|i| entry(5, i, (i as usize * 37) % 900))
        .collect();
    entries[99] = config_entry(5, 100);
    entries
}

fn small() -> LogOptions {
    LogOptions {
        segment_bytes_max: 16 << 10,
        segment_bytes_first: 16 << 10,
        preallocate: true,
        direct_io: true,
    }
}

/// Run as a child process: writes the node's storage, then exits without
/// any orderly shutdown.
#[test]
fn child_writes_storage() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else {
        return;
    };
    let dir = Path::new(&dir);
    let (mut w, _) = LogWriter::open(Arc::new(StdFileSystem), dir, small()).unwrap();
    w.write([WriteOp::HardState(hs()), WriteOp::Entries(written().into())])
        .unwrap();
    w.truncate_prefix(LogId::new(5, 50)).unwrap();
    let store = SnapshotStore::open(Arc::new(StdFileSystem), &dir.join("snapshot")).unwrap();
    let mut sw = store.begin(false).unwrap();
    sw.write_file("state", b"snapshot bytes").unwrap();
    sw.commit(
        LogId::new(5, 50),
        Membership::with_voters([NodeId(1), NodeId(3)]),
    )
    .unwrap();
    std::process::exit(0);
}

#[test]
fn the_format_reads_back_after_a_process_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writes_storage", "--nocapture"])
        .env(CHILD_DIR_VAR, tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
    let (w, recovered) = LogWriter::open(Arc::new(StdFileSystem), tmp.path(), small()).unwrap();
    assert_eq!(recovered.hard_state, hs());
    assert_eq!(recovered.last_purged, LogId::new(5, 50));
    assert_eq!(recovered.entries, written()[50..].to_vec());
    assert_eq!(
        w.log()
            .entries(oar::core::LogIndex(100), oar::core::LogIndex(101))
            .unwrap(),
        vec![config_entry(5, 100)]
    );
    let store = SnapshotStore::open(Arc::new(StdFileSystem), &tmp.path().join("snapshot")).unwrap();
    let snap = store.latest().unwrap().unwrap();
    assert_eq!(snap.meta().last_included, LogId::new(5, 50));
    assert_eq!(snap.read_file("state").unwrap(), b"snapshot bytes");
    let names = StdFileSystem.list_dir(&tmp.path().join("log")).unwrap();
    assert!(
        names.iter().any(|n| n.starts_with("log_inprogress_")),
        "{names:?}"
    );
    assert!(names.len() > 3, "{names:?}");
}

#[test]
fn record_bytes_are_pinned() {
    let mut buf = Vec::new();
    record::encode(&entry(2, 7, 8), 1, &mut buf).unwrap();
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    // len=8 | header crc | term=2 | index=7 | type=2 (command), 0,0,0 | payload crc | "2.7:hhhh"
    assert_eq!(&hex[..8], "08000000");
    assert_eq!(
        &buf[8..28],
        &[2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
    );
    assert_eq!(&buf[32..], b"2.7:hhhh");
    assert_eq!(
        hex, PINNED_RECORD,
        "the record format changed: bump the version and update docs/on_disk_format.md"
    );
}

const PINNED_RECORD: &str =
    "080000002b6b58c10200000000000000070000000000000002000000845ce811322e373a68686868";

fn mem_log(fs: &MemFileSystem) -> Result<(), StorageError> {
    oar::storage::SegmentLog::open(Arc::new(fs.clone()), Path::new("/log"), small()).map(|_| ())
}

fn put(fs: &MemFileSystem, name: &str, bytes: &[u8]) {
    fs.create_dir_all(Path::new("/log")).unwrap();
    let mut f = fs.create(&Path::new("/log").join(name)).unwrap();
    f.write_all_at(bytes, 0).unwrap();
}

fn kind_of(r: Result<(), StorageError>) -> CorruptionKind {
    match r {
        Err(StorageError::Corruption { kind, .. }) => kind,
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_garbage_segment_name_is_a_typed_error() {
    for name in [
        "log_12",
        "log_inprogress_x",
        "notes.txt",
        "log_00000000000000000009_00000000000000000001",
    ] {
        let fs = MemFileSystem::new(1);
        put(&fs, name, b"");
        assert_eq!(
            kind_of(mem_log(&fs)),
            CorruptionKind::UnexpectedFileName,
            "{name}"
        );
    }
}

#[test]
fn a_zero_length_closed_segment_is_corruption_an_open_one_is_empty() {
    let fs = MemFileSystem::new(1);
    put(&fs, "log_00000000000000000001_00000000000000000005", b"");
    assert_eq!(
        kind_of(mem_log(&fs)),
        CorruptionKind::SegmentTooShort {
            expected: 5,
            found: 0
        }
    );

    // A crash right after creating the open segment leaves it empty: fine.
    let fs = MemFileSystem::new(1);
    put(&fs, "log_inprogress_00000000000000000001", b"");
    mem_log(&fs).unwrap();
}

/// A record header with a valid checksum claiming a 4 GiB payload.
fn header_claiming_4_gib(salt: u64, index: u64) -> Vec<u8> {
    let mut h = vec![0u8; 32];
    h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    h[8..16].copy_from_slice(&1u64.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24] = 2;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), &h[0..4]);
    let crc = crc32c::crc32c_append(crc, &h[8..32]);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn a_header_claiming_4_gib_is_a_typed_error_without_allocation() {
    let h = header_claiming_4_gib(1, 1);
    let len = u64::from(u32::MAX);
    assert_eq!(
        record::decode(&h, 0, 1),
        Decoded::Invalid(CorruptionKind::LengthOutOfBounds { len })
    );

    let fs = MemFileSystem::new(1);
    put(&fs, "log_00000000000000000001_00000000000000000001", &h);
    assert_eq!(
        kind_of(mem_log(&fs)),
        CorruptionKind::LengthOutOfBounds { len }
    );

    // In the open segment, followed by a valid record: corruption mid-segment.
    let mut bytes = h.clone();
    record::encode(&entry(1, 2, 10), 1, &mut bytes).unwrap();
    let fs = MemFileSystem::new(1);
    put(&fs, "log_inprogress_00000000000000000001", &bytes);
    assert_eq!(
        kind_of(mem_log(&fs)),
        CorruptionKind::LengthOutOfBounds { len }
    );
}
