use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::core::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};
use crate::storage::fs::FileSystem;
use crate::storage::{
    CorruptionKind, Durable, FsOp, MemFileSystem, Recovered, StorageError, WriteOp,
};

const DIR: &str = "/server/log";

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        id: LogId::new(term, index),
        payload: EntryPayload::Command(Bytes::from(format!("e{term}.{index}-{}", "x".repeat(40)))),
    }
}

fn entries(term: u64, lo: u64, hi: u64) -> Vec<Entry> {
    (lo..hi).map(|i| entry(term, i)).collect()
}

fn hs(term: u64, vote: u64) -> HardState {
    HardState {
        term: Term(term),
        voted_for: Some(NodeId(vote)),
    }
}

fn small() -> ServerLogOptions {
    ServerLogOptions {
        segment_bytes_max: 1024,
        preallocate: true,
        closed_segments_max: 100,
    }
}

fn open_with(
    fs: &MemFileSystem,
    options: ServerLogOptions,
) -> (ServerLog, BTreeMap<u64, Recovered>) {
    ServerLog::open(Arc::new(fs.clone()), Path::new(DIR), options).unwrap()
}

fn segment_names(fs: &MemFileSystem) -> Vec<String> {
    let names = fs.list_dir(Path::new(DIR)).unwrap();
    names
        .into_iter()
        .filter(|n| n.starts_with("log_"))
        .collect()
}

fn recovered(hard_state: HardState, last_purged: LogId, entries: Vec<Entry>) -> Recovered {
    Recovered {
        hard_state,
        last_purged,
        entries,
    }
}

#[test]
fn interleaved_groups_recover_each_its_own_log() {
    let fs = MemFileSystem::new(1);
    let (mut log, found) = open_with(&fs, small());
    assert!(found.is_empty());
    for round in 0..10u64 {
        for group in 1..=5u64 {
            let lo = round * 2 + 1;
            let mut ops = vec![WriteOp::Entries(entries(group, lo, lo + 2).into())];
            if round == 0 {
                ops.insert(0, WriteOp::HardState(hs(group, group)));
            }
            log.submit(group, ops).unwrap();
        }
        log.flush().unwrap();
    }
    assert!(log.segment_count() > 3, "the test must span segments");
    assert_eq!(
        log.entries(3, LogIndex(5), LogIndex(9)).unwrap(),
        entries(3, 5, 9)
    );
    drop(log);
    fs.crash();
    let (log, found) = open_with(&fs, small());
    for group in 1..=5u64 {
        let want = recovered(hs(group, group), LogId::default(), entries(group, 1, 21));
        assert_eq!(found[&group], want, "group {group}");
        assert_eq!(
            log.entries(group, LogIndex(2), LogIndex(21)).unwrap(),
            entries(group, 2, 21)
        );
    }
}

#[test]
fn one_flush_is_one_sync_for_the_batches_of_many_groups() {
    let fs = MemFileSystem::new(2);
    let options = ServerLogOptions {
        segment_bytes_max: 1 << 20,
        ..small()
    };
    let (mut log, _) = open_with(&fs, options);
    // The first frame creates the open segment (its own syncs): take that
    // out of the count.
    log.write(100, vec![WriteOp::Entries(entries(1, 1, 2).into())])
        .unwrap();
    let before = fs.calls(FsOp::Sync);
    let mut done = Vec::new();
    for group in 1..=50u64 {
        let ops = vec![
            WriteOp::HardState(hs(1, 1)),
            WriteOp::Entries(entries(1, 1, 3).into()),
        ];
        done.push(log.submit(group, ops).unwrap());
    }
    log.flush().unwrap();
    assert_eq!(fs.calls(FsOp::Sync) - before, 1);
    let want = vec![
        Durable::HardState(hs(1, 1)),
        Durable::Entries(LogId::new(1, 2)),
    ];
    assert!(done.iter().all(|d| *d == want));
}

#[test]
fn an_overwrite_drops_the_suffix_even_across_segments() {
    let fs = MemFileSystem::new(3);
    let (mut log, _) = open_with(&fs, small());
    for lo in (1..40).step_by(3) {
        log.write(7, vec![WriteOp::Entries(entries(1, lo, lo + 3).into())])
            .unwrap();
    }
    log.write(7, vec![WriteOp::Entries(entries(2, 5, 8).into())])
        .unwrap();
    drop(log);
    fs.crash();
    let (log, found) = open_with(&fs, small());
    let mut want = entries(1, 1, 5);
    want.extend(entries(2, 5, 8));
    assert_eq!(found[&7].entries, want);
    assert_eq!(log.bounds(7), Some((LogId::default(), LogIndex(7))));
}

#[test]
fn an_append_that_does_not_continue_the_log_is_refused_and_buffers_nothing() {
    let fs = MemFileSystem::new(4);
    let (mut log, _) = open_with(&fs, small());
    log.write(1, vec![WriteOp::Entries(entries(1, 1, 4).into())])
        .unwrap();
    let gap = vec![
        WriteOp::HardState(hs(5, 1)),
        WriteOp::Entries(entries(1, 6, 7).into()),
    ];
    let err = log.write(1, gap).unwrap_err();
    assert_eq!(
        err,
        StorageError::NotContiguous {
            expected: LogIndex(4),
            found: LogIndex(6)
        }
    );
    log.write(1, vec![WriteOp::Compact(LogId::new(1, 2))])
        .unwrap();
    let below = log.write(1, vec![WriteOp::Entries(entries(1, 2, 3).into())]);
    assert!(matches!(
        below,
        Err(StorageError::Compacted {
            first_index: LogIndex(3)
        })
    ));
    drop(log);
    let (_, found) = open_with(&fs, small());
    // The refused batch's hard state was not written either.
    assert_eq!(
        found[&1],
        recovered(HardState::default(), LogId::new(1, 2), entries(1, 3, 4))
    );
}

#[test]
fn compaction_and_reset_survive_recovery() {
    let fs = MemFileSystem::new(5);
    let (mut log, _) = open_with(&fs, small());
    log.write(1, vec![WriteOp::Entries(entries(1, 1, 10).into())])
        .unwrap();
    log.write(2, vec![WriteOp::Entries(entries(1, 1, 10).into())])
        .unwrap();
    log.write(1, vec![WriteOp::Compact(LogId::new(1, 6))])
        .unwrap();
    log.write(2, vec![WriteOp::Reset(LogId::new(3, 50))])
        .unwrap();
    log.write(2, vec![WriteOp::Entries(entries(3, 51, 53).into())])
        .unwrap();
    drop(log);
    fs.crash();
    let (log, found) = open_with(&fs, small());
    assert_eq!(
        found[&1],
        recovered(HardState::default(), LogId::new(1, 6), entries(1, 7, 10))
    );
    assert_eq!(
        found[&2],
        recovered(HardState::default(), LogId::new(3, 50), entries(3, 51, 53))
    );
    let compacted = log.entries(1, LogIndex(6), LogIndex(8));
    assert!(matches!(
        compacted,
        Err(StorageError::Compacted {
            first_index: LogIndex(7)
        })
    ));
}

/// Fills segments with group 1's entries, compacting them away as it goes.
fn churn(log: &mut ServerLog, from: u64, to: u64) {
    for lo in (from..to).step_by(4) {
        log.write(1, vec![WriteOp::Entries(entries(1, lo, lo + 4).into())])
            .unwrap();
        log.write(1, vec![WriteOp::Compact(LogId::new(1, lo + 3))])
            .unwrap();
    }
}

#[test]
fn a_segment_no_group_needs_is_reclaimed_and_stays_gone_after_recovery() {
    let fs = MemFileSystem::new(6);
    let (mut log, _) = open_with(&fs, small());
    churn(&mut log, 1, 200);
    // Every closed segment held only entries compacted since: at most the
    // one holding the compact mark and the open one stay.
    assert!(log.segment_count() <= 3, "{:?}", segment_names(&fs));
    drop(log);
    fs.crash();
    let (_, found) = open_with(&fs, small());
    assert_eq!(
        found[&1],
        recovered(HardState::default(), LogId::new(1, 200), vec![])
    );
}

#[test]
fn a_slow_group_pins_the_oldest_segment_until_it_is_rewritten_forward() {
    let fs = MemFileSystem::new(7);
    let (mut log, _) = open_with(&fs, small());
    log.write(
        9,
        vec![
            WriteOp::HardState(hs(4, 2)),
            WriteOp::Entries(entries(4, 1, 3).into()),
        ],
    )
    .unwrap();
    churn(&mut log, 1, 200);
    // Group 9 wrote once, in the first segment: it keeps every later one.
    assert!(log.segment_count() > 10, "{:?}", segment_names(&fs));
    drop(log);
    let options = ServerLogOptions {
        closed_segments_max: 2,
        ..small()
    };
    let (mut log, _) = open_with(&fs, options);
    churn(&mut log, 201, 260);
    assert!(log.segment_count() <= 4, "{:?}", segment_names(&fs));
    drop(log);
    fs.crash();
    let (_, found) = open_with(&fs, options);
    assert_eq!(
        found[&9],
        recovered(hs(4, 2), LogId::default(), entries(4, 1, 3))
    );
}

#[test]
fn a_removed_group_releases_its_segments_and_does_not_come_back() {
    let fs = MemFileSystem::new(8);
    let (mut log, _) = open_with(&fs, small());
    log.write(9, vec![WriteOp::Entries(entries(1, 1, 3).into())])
        .unwrap();
    churn(&mut log, 1, 100);
    let pinned = log.segment_count();
    log.remove_group(9).unwrap();
    churn(&mut log, 101, 120);
    assert!(
        log.segment_count() < pinned / 2,
        "{pinned} → {}",
        log.segment_count()
    );
    drop(log);
    fs.crash();
    let (log, found) = open_with(&fs, small());
    assert!(!found.contains_key(&9));
    assert_eq!(log.groups().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_torn_tail_is_cut_and_recovery_keeps_going() {
    let fs = MemFileSystem::new(9);
    let options = ServerLogOptions {
        segment_bytes_max: 1 << 20,
        ..small()
    };
    let (mut log, _) = open_with(&fs, options);
    log.write(1, vec![WriteOp::Entries(entries(1, 1, 4).into())])
        .unwrap();
    log.write(2, vec![WriteOp::Entries(entries(1, 1, 4).into())])
        .unwrap();
    drop(log);
    let open = segment_names(&fs).pop().unwrap();
    let path = Path::new(DIR).join(&open);
    let len = fs
        .contents(&path)
        .unwrap()
        .iter()
        .rposition(|&b| b != 0)
        .unwrap();
    // A bit of the last frame flipped: as a torn last write leaves it.
    fs.flip_bit(&path, len as u64 - 3, 1).unwrap();
    let (mut log, found) = open_with(&fs, options);
    assert_eq!(found[&1].entries, entries(1, 1, 4));
    assert!(!found.contains_key(&2));
    log.write(2, vec![WriteOp::Entries(entries(2, 1, 2).into())])
        .unwrap();
    drop(log);
    let (_, found) = open_with(&fs, options);
    assert_eq!(found[&2].entries, entries(2, 1, 2));
}

#[test]
fn corruption_before_valid_frames_is_a_typed_error() {
    let fs = MemFileSystem::new(10);
    let (mut log, _) = open_with(&fs, small());
    for lo in (1..60).step_by(3) {
        log.write(1, vec![WriteOp::Entries(entries(1, lo, lo + 3).into())])
            .unwrap();
    }
    drop(log);
    let names = segment_names(&fs);
    for name in [&names[0], names.last().unwrap()] {
        let fs = fs.clone();
        let path = Path::new(DIR).join(name);
        // The first frame's payload, in a closed segment and in the open
        // one (valid frames follow it there).
        let copy = MemFileSystem::new(11);
        let _ = copy;
        fs.flip_bit(&path, 40, 0).unwrap();
        let err = ServerLog::open(Arc::new(fs.clone()), Path::new(DIR), small()).unwrap_err();
        assert!(
            matches!(err, StorageError::Corruption { ref path, offset: 0, kind: CorruptionKind::PayloadChecksum } if path.ends_with(name)),
            "{name}: {err:?}"
        );
        fs.flip_bit(&path, 40, 0).unwrap();
    }
}

#[test]
fn a_missing_segment_is_a_typed_error() {
    let fs = MemFileSystem::new(12);
    let (mut log, _) = open_with(&fs, small());
    for lo in (1..60).step_by(3) {
        log.write(1, vec![WriteOp::Entries(entries(1, lo, lo + 3).into())])
            .unwrap();
    }
    drop(log);
    let names = segment_names(&fs);
    fs.remove_file(&Path::new(DIR).join(&names[1])).unwrap();
    let err = ServerLog::open(Arc::new(fs.clone()), Path::new(DIR), small()).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Corruption {
                kind: CorruptionKind::MissingSegment { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn live_entries_alone_pin_their_segment() {
    let fs = MemFileSystem::new(13);
    let (mut log, _) = open_with(&fs, small());
    // Entries only: no hard state or compact mark pins this segment.
    log.write(8, vec![WriteOp::Entries(entries(2, 1, 3).into())])
        .unwrap();
    churn(&mut log, 1, 200);
    drop(log);
    fs.crash();
    let (_, found) = open_with(&fs, small());
    assert_eq!(
        found[&8],
        recovered(HardState::default(), LogId::default(), entries(2, 1, 3))
    );
}
