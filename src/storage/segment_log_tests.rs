use bytes::Bytes;

use super::*;
use crate::core::EntryPayload;
use crate::storage::{FsOp, MemFileSystem};

const DIR: &str = "/node/log";

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        id: LogId::new(term, index),
        payload: EntryPayload::Command(Bytes::from(format!("e{term}.{index}-{}", "x".repeat(40)))),
    }
}

fn entries(term: u64, lo: u64, hi: u64) -> Vec<Entry> {
    (lo..hi).map(|i| entry(term, i)).collect()
}

fn small() -> LogOptions {
    LogOptions {
        segment_bytes_max: 512,
        segment_bytes_first: 512,
        preallocate: true,
        direct_io: true,
    }
}

fn open(fs: &MemFileSystem) -> (SegmentLog, RecoveredLog) {
    SegmentLog::open(Arc::new(fs.clone()), Path::new(DIR), small()).unwrap()
}

fn segment_names(fs: &MemFileSystem) -> Vec<String> {
    let names = fs.list_dir(Path::new(DIR)).unwrap();
    names
        .into_iter()
        .filter(|n| SegmentName::parse(n).is_some())
        .collect()
}

fn recycled_names(fs: &MemFileSystem) -> Vec<String> {
    let names = fs.list_dir(Path::new(DIR)).unwrap();
    names
        .into_iter()
        .filter(|n| n.starts_with("log_recycle_"))
        .collect()
}

#[test]
fn appended_entries_read_back_after_reopen_across_segments() {
    let fs = MemFileSystem::new(1);
    let (mut log, recovered) = open(&fs);
    assert_eq!(recovered, RecoveredLog::default());
    log.append(&entries(1, 1, 30)).unwrap();
    assert!(log.flush().unwrap());
    assert_eq!(
        log.entries(LogIndex(3), LogIndex(5)).unwrap(),
        entries(1, 3, 5)
    );
    assert_eq!(log.term(LogIndex(29)).unwrap(), Term(1));
    assert!(
        segment_names(&fs).len() > 3,
        "rotated: {:?}",
        segment_names(&fs)
    );
    fs.crash();
    let (log, recovered) = open(&fs);
    assert_eq!(recovered.entries, entries(1, 1, 30));
    assert_eq!(log.last_index(), LogIndex(29));
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(30)).unwrap(),
        entries(1, 1, 30)
    );
    assert!(matches!(
        log.entries(LogIndex(29), LogIndex(31)),
        Err(StorageError::Unavailable {
            index: LogIndex(30)
        })
    ));
}

#[test]
fn appends_must_continue_the_log() {
    let fs = MemFileSystem::new(2);
    let (mut log, _) = open(&fs);
    assert!(matches!(
        log.append(&entries(1, 2, 3)),
        Err(StorageError::NotContiguous { .. })
    ));
    log.append(&entries(1, 1, 3)).unwrap();
    assert!(log.append(&entries(1, 4, 5)).is_err());
}

#[test]
fn truncate_suffix_in_buffer_in_open_and_in_closed_segments() {
    let fs = MemFileSystem::new(3);
    let (mut log, _) = open(&fs);
    log.append(&entries(1, 1, 30)).unwrap();
    log.flush().unwrap();
    log.append(&entries(1, 30, 33)).unwrap();
    log.truncate_suffix(LogIndex(31)).unwrap(); // buffered only
    log.append(&entries(2, 32, 34)).unwrap();
    log.flush().unwrap();
    log.truncate_suffix(LogIndex(28)).unwrap(); // open segment, written
    log.append(&entries(3, 29, 31)).unwrap();
    log.flush().unwrap();
    log.truncate_suffix(LogIndex(5)).unwrap(); // a closed segment
    log.append(&entries(4, 6, 8)).unwrap();
    log.flush().unwrap();
    let mut want = entries(1, 1, 6);
    want.extend(entries(4, 6, 8));
    assert_eq!(log.entries(LogIndex(1), LogIndex(8)).unwrap(), want);
    fs.crash();
    let (_, recovered) = open(&fs);
    assert_eq!(recovered.entries, want);
}

#[test]
fn truncate_prefix_removes_whole_segments_and_survives_reopen() {
    let fs = MemFileSystem::new(4);
    let (mut log, _) = open(&fs);
    log.append(&entries(1, 1, 30)).unwrap();
    log.flush().unwrap();
    let before = segment_names(&fs).len();
    log.truncate_prefix(LogId::new(1, 20)).unwrap();
    assert!(segment_names(&fs).len() < before);
    let recycled = recycled_names(&fs).len();
    assert!(recycled > 0);
    assert_eq!(log.first_index(), LogIndex(21));
    assert!(matches!(
        log.term(LogIndex(5)),
        Err(StorageError::Compacted { .. })
    ));
    assert_eq!(log.term(LogIndex(20)).unwrap(), Term(1));
    fs.crash();
    let (log, recovered) = open(&fs);
    assert_eq!(recovered.last_purged, LogId::new(1, 20));
    assert_eq!(recovered.entries, entries(1, 21, 30));
    assert_eq!(log.first_index(), LogIndex(21));

    // Purged files become the next open segments; their stale records (of
    // another salt) never show up.
    let (mut log, _) = open(&fs);
    log.append(&entries(1, 30, 60)).unwrap();
    log.flush().unwrap();
    assert!(recycled_names(&fs).len() < recycled);
    fs.crash();
    let (_, recovered) = open(&fs);
    assert_eq!(recovered.entries, entries(1, 21, 60));
}

#[test]
fn truncate_prefix_past_the_end_resets_the_log() {
    let fs = MemFileSystem::new(5);
    let (mut log, _) = open(&fs);
    log.append(&entries(1, 1, 10)).unwrap();
    log.flush().unwrap();
    log.truncate_prefix(LogId::new(3, 100)).unwrap();
    assert_eq!(log.last_index(), LogIndex(100));
    log.append(&entries(3, 101, 103)).unwrap();
    log.flush().unwrap();
    fs.crash();
    let (_, recovered) = open(&fs);
    assert_eq!(recovered.last_purged, LogId::new(3, 100));
    assert_eq!(recovered.entries, entries(3, 101, 103));
}

#[test]
fn unflushed_entries_may_vanish_but_flushed_ones_stay() {
    for seed in 0..40 {
        let fs = MemFileSystem::new(seed);
        let (mut log, _) = open(&fs);
        log.append(&entries(1, 1, 5)).unwrap();
        log.flush().unwrap();
        log.append(&entries(1, 5, 9)).unwrap();
        // Written but not synced: crash before the fdatasync.
        fs.inject_error(crate::storage::FsOp::Sync, 0);
        assert!(log.flush().is_err());
        fs.crash();
        let (mut log, recovered) = open(&fs);
        let n = recovered.entries.len();
        assert!((4..=8).contains(&n), "seed {seed}: {n}");
        assert_eq!(recovered.entries, entries(1, 1, 1 + n as u64));
        log.append(&entries(2, 1 + n as u64, 12)).unwrap();
        log.flush().unwrap();
    }
}

/// A process that died before its sync leaves records the kernel still
/// holds; the next open recovers them, so it must make them durable before
/// they are counted on: a power loss right after must not take them back.
#[test]
fn what_a_reopen_recovers_survives_a_power_loss_right_after() {
    for seed in 0..16 {
        let fs = MemFileSystem::new(seed);
        let (mut log, _) = open(&fs);
        log.append(&entries(1, 1, 6)).unwrap();
        log.flush().unwrap();
        log.append(&entries(1, 6, 9)).unwrap();
        fs.inject_error(FsOp::Sync, 0);
        assert!(log.flush().is_err(), "the sync fails, the write stays");
        drop(log);
        fs.process_died();
        let (_, recovered) = open(&fs);
        assert_eq!(recovered.entries, entries(1, 1, 9), "seed {seed}");
        fs.crash();
        let (_, after_power_loss) = open(&fs);
        assert_eq!(after_power_loss.entries, recovered.entries, "seed {seed}");
    }
}

/// Each segment file's length, in log order.
fn segment_lengths(fs: &MemFileSystem) -> Vec<u64> {
    let mut names: Vec<(SegmentName, String)> = segment_names(fs)
        .into_iter()
        .map(|n| (SegmentName::parse(&n).unwrap(), n))
        .collect();
    names.sort_by_key(|(name, _)| name.first());
    names
        .into_iter()
        .map(|(_, n)| fs.open(&Path::new(DIR).join(n)).unwrap().len().unwrap())
        .collect()
}

/// File lengths are their bounds, or a little past them: a batch's end
/// mark may go beyond the last record that fits.
fn assert_sizes(lengths: &[u64], bounds: &[u64]) {
    let fits = lengths.len() == bounds.len()
        && lengths
            .iter()
            .zip(bounds)
            .all(|(l, b)| (*b..*b + 64).contains(l));
    assert!(fits, "lengths {lengths:?}, bounds {bounds:?}");
}

#[test]
fn segments_grow_from_the_first_bound_and_keep_growing_after_a_reopen() {
    let fs = MemFileSystem::new(1);
    let options = LogOptions {
        segment_bytes_max: 2048,
        segment_bytes_first: 256,
        preallocate: true,
        direct_io: false,
    };
    let dir = Path::new(DIR);
    let (mut log, _) = SegmentLog::open(Arc::new(fs.clone()), dir, options).unwrap();
    let mut next = 1;
    // Until the third segment (1,024 bytes) is open.
    while segment_lengths(&fs).len() < 3 {
        log.append(&[entry(1, next)]).unwrap();
        log.flush().unwrap();
        next += 1;
    }
    assert_sizes(&segment_lengths(&fs), &[256, 512, 1024]);
    drop(log);
    let (mut log, recovered) = SegmentLog::open(Arc::new(fs.clone()), dir, options).unwrap();
    assert_eq!(recovered.entries, entries(1, 1, next));
    while segment_lengths(&fs).len() < 6 {
        log.append(&[entry(1, next)]).unwrap();
        log.flush().unwrap();
        next += 1;
    }
    // The reopened log goes on from its open segment's size, not the first's.
    assert_sizes(&segment_lengths(&fs), &[256, 512, 1024, 2048, 2048, 2048]);
    drop(log);
    let (_, recovered) = SegmentLog::open(Arc::new(fs.clone()), dir, options).unwrap();
    assert_eq!(recovered.entries, entries(1, 1, next));
}

#[test]
fn a_range_read_obeys_its_bounds_across_segments() {
    let fs = MemFileSystem::new(1);
    let (mut log, _) = open(&fs);
    log.append(&entries(1, 1, 30)).unwrap();
    log.flush().unwrap();
    assert!(segment_names(&fs).len() > 2, "the range spans segments");
    let read = log
        .read_range(LogIndex(2), LogIndex(25), usize::MAX, u64::MAX)
        .unwrap();
    assert_eq!(read, entries(1, 2, 25));
    let read = log
        .read_range(LogIndex(2), LogIndex(25), 5, u64::MAX)
        .unwrap();
    assert_eq!(read, entries(1, 2, 7), "the count bound");
    let one = entry(1, 2).size_bytes();
    let read = log
        .read_range(LogIndex(2), LogIndex(25), 99, one * 3)
        .unwrap();
    assert_eq!(read, entries(1, 2, 5), "the byte bound");
    let read = log.read_range(LogIndex(2), LogIndex(25), 99, 1).unwrap();
    assert_eq!(read.len(), 1, "always one entry");
    assert!(matches!(
        log.read_range(LogIndex(29), LogIndex(40), 99, u64::MAX),
        Ok(read) if read.len() == 1
    ));
    assert!(matches!(
        log.read_range(LogIndex(31), LogIndex(40), 99, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    log.truncate_prefix(LogId::new(1, 10)).unwrap();
    assert!(matches!(
        log.read_range(LogIndex(9), LogIndex(12), 99, u64::MAX),
        Err(StorageError::Compacted { .. })
    ));
}

/// A range read opens each closed segment's file once, not once per entry
/// (the open segment reads through its own file).
#[test]
fn a_range_read_opens_each_closed_segment_once() {
    let fs = MemFileSystem::new(1);
    let (mut log, _) = open(&fs);
    log.append(&entries(1, 1, 30)).unwrap();
    log.flush().unwrap();
    let closed = (segment_names(&fs).iter())
        .filter(|n| !n.contains("inprogress"))
        .count() as u64;
    assert!(closed >= 2, "the range spans closed segments");
    let before = fs.calls(FsOp::Open);
    let read = log
        .read_range(LogIndex(1), LogIndex(30), usize::MAX, u64::MAX)
        .unwrap();
    assert_eq!(read, entries(1, 1, 30));
    assert_eq!(fs.calls(FsOp::Open) - before, closed, "read_range");
    let before = fs.calls(FsOp::Open);
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(30)).unwrap(),
        entries(1, 1, 30)
    );
    assert_eq!(fs.calls(FsOp::Open) - before, closed, "entries");
}

/// A record that rotted on disk after recovery validated it fails the
/// read with a typed error: its bytes are never handed out.
#[test]
fn a_range_read_over_a_corrupted_record_fails_typed() {
    let fs = MemFileSystem::new(1);
    let (mut log, _) = open(&fs);
    log.append(&entries(1, 1, 30)).unwrap();
    log.flush().unwrap();
    let first = segment_names(&fs)
        .into_iter()
        .find(|n| n.contains("_00000000000000000001_"))
        .expect("the first closed segment");
    let path = Path::new(DIR).join(first);
    // A bit of the second record's payload (past its 32-byte header).
    let second_record = crate::storage::record::encoded_len(&entry(1, 1)) as u64;
    fs.flip_bit(&path, second_record + 40, 3).unwrap();
    assert!(
        log.read_range(LogIndex(1), LogIndex(2), 99, u64::MAX)
            .is_ok()
    );
    let result = log.read_range(LogIndex(1), LogIndex(5), 99, u64::MAX);
    assert!(
        matches!(
            result,
            Err(StorageError::Corruption {
                kind: CorruptionKind::PayloadChecksum,
                ..
            })
        ),
        "{result:?}"
    );
}
