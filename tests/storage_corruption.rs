//! Latent corruption (a flipped bit in stored bytes) is reported as a typed
//! error naming the file, never as wrong data and never silently skipped.

mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oar::core::{HardState, LogId, LogIndex, Membership, NodeId, Term};
use oar::storage::{
    CorruptionKind, LogOptions, LogWriter, MemFileSystem, SegmentLog, SnapshotStore, StorageError,
    WriteOp,
};
use storage::entry;

const DIR: &str = "/node";

fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 1024,
        segment_bytes_first: 1024,
        preallocate: true,
        direct_io: true,
    }
}

/// A node with 40 entries over several segments, a term/vote and a snapshot.
fn populated(seed: u64) -> MemFileSystem {
    let fs = MemFileSystem::new(seed);
    let (mut w, _) = LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), options()).unwrap();
    let hs = HardState {
        term: Term(3),
        voted_for: Some(NodeId(2)),
    };
    w.write([
        WriteOp::HardState(hs),
        WriteOp::Entries((1..=40).map(|i| entry(3, i, 60)).collect()),
    ])
    .unwrap();
    let store =
        SnapshotStore::open(Arc::new(fs.clone()), &Path::new(DIR).join("snapshot")).unwrap();
    let mut sw = store.begin(false).unwrap();
    sw.write_file("state", b"kv state").unwrap();
    sw.commit(LogId::new(3, 20), Membership::with_voters([NodeId(1)]))
        .unwrap();
    fs
}

fn log_dir() -> PathBuf {
    Path::new(DIR).join("log")
}

fn segments(fs: &MemFileSystem) -> Vec<String> {
    let names = oar::storage::FileSystem::list_dir(fs, &log_dir()).unwrap();
    names
        .into_iter()
        .filter(|n| n.starts_with("log_0") || n.starts_with("log_in"))
        .collect()
}

fn reopen(fs: &MemFileSystem) -> Result<(), StorageError> {
    LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), options()).map(|_| ())
}

fn assert_corrupt(result: Result<(), StorageError>, file: &str, offset: Option<u64>) {
    match result {
        Err(StorageError::Corruption {
            path,
            offset: at,
            kind,
        }) => {
            assert!(
                path.ends_with(file),
                "error names {path:?}, expected {file}"
            );
            if let Some(offset) = offset {
                assert_eq!(at, offset, "{kind}");
            }
        }
        other => panic!("expected corruption of {file}, got {other:?}"),
    }
}

#[test]
fn a_flipped_bit_in_a_closed_segment_names_file_and_record() {
    for (byte, bit) in [(0u64, 0u8), (5, 3), (40, 7), (90, 1)] {
        let fs = populated(1);
        let closed = segments(&fs)[1].clone();
        assert!(closed.starts_with("log_0"), "{closed}");
        // Record 0 of every segment starts at 0 and is 32 + 60+ bytes long.
        fs.flip_bit(&log_dir().join(&closed), byte, bit).unwrap();
        let record_offset = if byte < 97 { 0 } else { 97 };
        assert_corrupt(reopen(&fs), &closed, Some(record_offset));
    }
}

#[test]
fn a_flipped_bit_mid_open_segment_is_corruption_not_a_torn_tail() {
    let fs = populated(2);
    let open = segments(&fs).last().unwrap().clone();
    assert!(open.starts_with("log_inprogress_"), "{open}");
    fs.flip_bit(&log_dir().join(&open), 50, 2).unwrap();
    assert_corrupt(reopen(&fs), &open, Some(0));
    // Also in a header.
    let fs = populated(2);
    fs.flip_bit(&log_dir().join(&open), 17, 0).unwrap();
    assert_corrupt(reopen(&fs), &open, Some(0));
}

#[test]
fn a_flipped_bit_in_the_meta_files_is_an_error_never_term_zero() {
    let fs = populated(3);
    fs.flip_bit(&Path::new(DIR).join("raft_meta"), 17, 4)
        .unwrap();
    assert_corrupt(reopen(&fs), "raft_meta", None);

    let fs = populated(3);
    let mut w = LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), options())
        .unwrap()
        .0;
    w.truncate_prefix(LogId::new(3, 10)).unwrap();
    drop(w);
    fs.flip_bit(&log_dir().join("log_meta"), 20, 0).unwrap();
    assert_corrupt(reopen(&fs), "log_meta", None);
}

#[test]
fn a_flipped_bit_in_snapshot_meta_is_an_error_naming_it() {
    let fs = populated(4);
    let dir = Path::new(DIR).join("snapshot");
    let meta = dir.join("snapshot_00000000000000000020/__raft_snapshot_meta");
    fs.flip_bit(&meta, 25, 5).unwrap();
    let store = SnapshotStore::open(Arc::new(fs.clone()), &dir).unwrap();
    assert_corrupt(store.latest().map(|_| ()), "__raft_snapshot_meta", None);
}

#[test]
fn corruption_after_open_is_caught_on_read() {
    let fs = populated(5);
    let (log, _) = SegmentLog::open(Arc::new(fs.clone()), &log_dir(), options()).unwrap();
    let first = segments(&fs)[0].clone();
    fs.flip_bit(&log_dir().join(&first), 40, 0).unwrap();
    let err = log.entries(LogIndex(1), LogIndex(2)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Corruption {
                kind: CorruptionKind::PayloadChecksum,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        log.entries(LogIndex(30), LogIndex(31)).unwrap(),
        vec![entry(3, 30, 60)]
    );
}

/// After a torn tail, bytes that merely look like one of this segment's
/// record headers (stale data of a recycled file can, by chance) are not
/// taken for synced records: only a whole valid record would be.
#[test]
fn a_torn_tail_followed_by_a_header_lookalike_is_cut_not_corruption() {
    use oar::storage::record::{self, Decoded};
    use oar::storage::{FileSystem as _, SegmentName};

    for lookalike_is_whole in [false, true] {
        let fs = populated(3);
        let name = segments(&fs).last().unwrap().clone();
        let salt = SegmentName::parse(&name).unwrap().first();
        let path = log_dir().join(&name);
        let bytes = fs.contents(&path).unwrap();
        let (mut end, mut last) = (0, 0);
        while let Decoded::Record { entry, len } = record::decode(&bytes, end, salt) {
            end += len;
            last = entry.id.index.0;
        }
        // A torn record, then a record of this segment for a later index.
        let mut lookalike = Vec::new();
        record::encode(&entry(3, last + 3, 60), salt, &mut lookalike).unwrap();
        if !lookalike_is_whole {
            let at = lookalike.len() - 1;
            lookalike[at] ^= 0x40;
        }
        let mut file = fs.open(&path).unwrap();
        file.write_all_at(&[0xee; 50], end as u64).unwrap();
        file.write_all_at(&lookalike, end as u64 + 200).unwrap();
        file.sync_data().unwrap();
        drop(file);
        let reopened = LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), options());
        if lookalike_is_whole {
            assert_corrupt(reopened.map(|_| ()), &name, Some(end as u64));
        } else {
            let (_, recovered) = reopened.expect("the torn tail is cut");
            assert_eq!(recovered.entries.last().unwrap().id.index.0, last);
        }
    }
}
