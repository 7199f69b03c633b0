//! The batching writer the runtime drives: one fdatasync per batch,
//! completions in order, truncate-then-append semantics, and recovery of
//! everything it reported durable across crashes.

mod storage;

use std::path::Path;
use std::sync::Arc;

use oar::core::{HardState, LogId, NodeId, Term};
use oar::storage::{Durable, FsOp, LogOptions, LogWriter, MemFileSystem, Recovered, WriteOp};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use storage::entry;

const DIR: &str = "/node";

fn open(fs: &MemFileSystem) -> (LogWriter, Recovered) {
    LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), LogOptions::default()).unwrap()
}

fn hs(term: u64, vote: Option<u64>) -> HardState {
    HardState {
        term: Term(term),
        voted_for: vote.map(NodeId),
    }
}

#[test]
fn a_batch_of_many_ops_costs_one_log_sync_and_completes_in_order() {
    let fs = MemFileSystem::new(1);
    let (mut w, recovered) = open(&fs);
    assert_eq!(recovered, Recovered::default());
    // The first write creates (and syncs) the first segment.
    w.write([WriteOp::Entries(vec![entry(1, 1, 100)].into())])
        .unwrap();
    for i in 2..=256 {
        w.submit(WriteOp::Entries(vec![entry(1, i, 100)].into()));
    }
    let syncs = fs.calls(FsOp::Sync);
    let done = w.flush().unwrap();
    assert_eq!(
        fs.calls(FsOp::Sync) - syncs,
        1,
        "one fdatasync for 255 entries"
    );
    let want: Vec<_> = (2..=256)
        .map(|i| Durable::Entries(LogId::new(1, i)))
        .collect();
    assert_eq!(done, want);

    // With a hard state change: one log sync plus the meta's atomic write.
    w.submit(WriteOp::HardState(hs(2, Some(1))));
    w.submit(WriteOp::Entries(vec![entry(2, 257, 10)].into()));
    w.submit(WriteOp::Entries(vec![].into()));
    let (syncs, dir_syncs) = (fs.calls(FsOp::Sync), fs.calls(FsOp::SyncDir));
    let done = w.flush().unwrap();
    assert_eq!(fs.calls(FsOp::Sync) - syncs, 2);
    assert_eq!(fs.calls(FsOp::SyncDir) - dir_syncs, 1);
    assert_eq!(
        done,
        vec![
            Durable::HardState(hs(2, Some(1))),
            Durable::Entries(LogId::new(2, 257))
        ]
    );
    // An unchanged hard state costs nothing more.
    let syncs = fs.calls(FsOp::Sync);
    w.write([WriteOp::HardState(hs(2, Some(1)))]).unwrap();
    assert_eq!(fs.calls(FsOp::Sync), syncs);

    fs.crash();
    let (_, recovered) = open(&fs);
    assert_eq!(recovered.hard_state, hs(2, Some(1)));
    assert_eq!(recovered.entries.len(), 257);
}

#[test]
fn entries_truncate_the_suffix_they_overlap() {
    let fs = MemFileSystem::new(2);
    let (mut w, _) = open(&fs);
    w.write([WriteOp::Entries(
        (1..=10).map(|i| entry(1, i, 50)).collect(),
    )])
    .unwrap();
    // Same batch: append 11..12, then a conflicting leader's 6..7 replaces 6..12.
    w.submit(WriteOp::Entries(
        vec![entry(1, 11, 5), entry(1, 12, 5)].into(),
    ));
    w.submit(WriteOp::Entries(
        vec![entry(2, 6, 5), entry(2, 7, 5)].into(),
    ));
    let done = w.flush().unwrap();
    assert_eq!(done.last(), Some(&Durable::Entries(LogId::new(2, 7))));
    fs.crash();
    let (w, recovered) = open(&fs);
    let mut want: Vec<_> = (1..=5).map(|i| entry(1, i, 50)).collect();
    want.extend([entry(2, 6, 5), entry(2, 7, 5)]);
    assert_eq!(recovered.entries, want);
    assert_eq!(w.log().last_index().0, 7);
}

#[test]
fn everything_reported_durable_survives_crashes() {
    for seed in 0..150 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let fs = MemFileSystem::new(seed);
        let options = LogOptions {
            segment_bytes_max: 2048,
            segment_bytes_first: 2048,
            preallocate: true,
            direct_io: seed % 2 == 0,
        };
        let open = || LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), options).unwrap();
        let (mut w, _) = open();
        let mut acked: Vec<oar::core::Entry> = Vec::new();
        let mut acked_hs = HardState::default();
        let mut term = 1;
        for _round in 0..6 {
            fs.power_off_after(rng.random_range(0..60));
            let mut submitted_hs = vec![acked_hs];
            // The failed batch's intermediate logs, each with how far down
            // its truncations durably cut: recovery may show any prefix of
            // one of them that reaches that far.
            let mut log = acked.clone();
            let mut floor = acked.len();
            let mut allowed = vec![(log.clone(), floor)];
            loop {
                for _ in 0..rng.random_range(1..6) {
                    if rng.random_bool(0.2) {
                        term += 1;
                        let h = hs(term, Some(rng.random_range(1..4)));
                        submitted_hs.push(h);
                        w.submit(WriteOp::HardState(h));
                    } else {
                        // Sometimes overwrite a suffix, as a new leader would.
                        let first = match rng.random_bool(0.2) && !log.is_empty() {
                            true => rng.random_range(1..=log.len() as u64),
                            false => log.len() as u64 + 1,
                        };
                        let batch: Vec<_> = (first..first + rng.random_range(1..5))
                            .map(|i| entry(term, i, rng.random_range(0..200)))
                            .collect();
                        // A truncation interrupted midway leaves the log cut
                        // anywhere from its old end down to `first - 1`.
                        floor = floor.min(first as usize - 1);
                        allowed.push((log.clone(), floor));
                        log.truncate(first as usize - 1);
                        log.extend(batch.iter().cloned());
                        allowed.push((log.clone(), floor));
                        w.submit(WriteOp::Entries(batch.into()));
                    }
                }
                match w.flush() {
                    Ok(_) => {
                        acked = log.clone();
                        acked_hs = *submitted_hs.last().unwrap();
                        submitted_hs = vec![acked_hs];
                        floor = acked.len();
                        allowed = vec![(log.clone(), floor)];
                    }
                    Err(_) => break,
                }
            }
            drop(w);
            fs.crash();
            let (reopened, r) = open();
            w = reopened;
            assert!(
                submitted_hs.contains(&r.hard_state),
                "seed {seed}: hard state {:?}",
                r.hard_state
            );
            let ok = allowed
                .iter()
                .any(|(state, floor)| state.starts_with(&r.entries) && r.entries.len() >= *floor);
            assert!(
                ok,
                "seed {seed}: recovered {} entries, acked {}",
                r.entries.len(),
                acked.len()
            );
            acked = r.entries.clone();
            acked_hs = r.hard_state;
            term = term.max(acked.last().map_or(0, |e| e.id.term.0)) + 1;
        }
    }
}

/// A compacted log in steady state: purged segments are reused, a rotation
/// syncs no file beyond the data and trims nothing, and a purge adds only its
/// marker's atomic write.
#[test]
fn rotations_and_purges_in_steady_state_do_no_metadata_work_beyond_their_renames() {
    let fs = MemFileSystem::new(5);
    let options = LogOptions {
        segment_bytes_max: 64 << 10,
        ..LogOptions::default()
    };
    let (mut w, _) = LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), options).unwrap();
    // 1 KiB entries, 16 a batch: four batches fill a 64 KiB segment.
    let batch = |w: &mut LogWriter, first: u64| {
        let entries = (first..first + 16).map(|i| entry(1, i, 1000)).collect();
        w.write([WriteOp::Entries(entries)]).unwrap();
    };
    let mut next = 1;
    while next < 400 {
        batch(&mut w, next);
        next += 16;
    }
    // Purge all but the open segment, filling the recycle pool.
    w.truncate_prefix(LogId::new(1, next - 40)).unwrap();
    let calls = |fs: &MemFileSystem| {
        [
            FsOp::Sync,
            FsOp::SyncDir,
            FsOp::SetLen,
            FsOp::Rename,
            FsOp::Create,
        ]
        .map(|op| fs.calls(op))
    };
    // Write until a rotation happens, counting its metadata work.
    let segments_before = w.log().first_index();
    let rotated_at = loop {
        let before = calls(&fs);
        batch(&mut w, next);
        next += 16;
        let after = calls(&fs);
        if after[3] > before[3] {
            break [0, 1, 2, 3, 4].map(|i| after[i] - before[i]);
        }
    };
    assert_eq!(w.log().first_index(), segments_before);
    // Two fdatasyncs (the part of the batch that filled the old segment,
    // the rest in the new one); the old segment renamed to its closed name
    // and a pool file to the new open one, each rename made durable before
    // anything relies on it; no trim, no resize, no new file.
    assert_eq!(
        rotated_at,
        [2, 2, 0, 2, 0],
        "[sync, sync_dir, set_len, rename, create]"
    );

    // A purge: the marker's atomic write (file sync, rename, directory
    // sync); the purged segments' renames ride the next directory sync.
    let before = calls(&fs);
    w.truncate_prefix(LogId::new(1, next - 40)).unwrap();
    let after = calls(&fs);
    let purge = [0, 1, 2, 3, 4].map(|i| after[i] - before[i]);
    assert_eq!(purge[0], 1, "the marker's file sync");
    assert_eq!(purge[1], 1, "the marker's directory sync only");
    assert_eq!(purge[2], 0);

    fs.crash();
    let (_, recovered) = open_with(&fs, options);
    assert_eq!(recovered.last_purged, LogId::new(1, next - 40));
    assert_eq!(recovered.entries.len(), 39);
}

fn open_with(fs: &MemFileSystem, options: LogOptions) -> (LogWriter, Recovered) {
    LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), options).unwrap()
}

/// Two writers on one directory would corrupt the log: the second open is
/// refused with a typed error until the first writer is gone (or, on the
/// simulated disk, its process crashed).
#[test]
fn a_storage_directory_has_one_writer_at_a_time() {
    let fs = MemFileSystem::new(6);
    let (first, _) = open(&fs);
    let second = LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), LogOptions::default());
    assert!(
        matches!(second, Err(oar::storage::StorageError::Locked { .. })),
        "{second:?}"
    );
    drop(first);
    let (before_crash, _) = open(&fs);
    fs.crash();
    let (after_crash, _) = open(&fs);
    // A guard from before the crash must not release the new holder's lock.
    drop(before_crash);
    let third = LogWriter::open(Arc::new(fs.clone()), Path::new(DIR), LogOptions::default());
    assert!(matches!(
        third,
        Err(oar::storage::StorageError::Locked { .. })
    ));
    drop(after_crash);

    let dir = tempfile::tempdir().unwrap();
    let real = || {
        LogWriter::open(
            Arc::new(oar::storage::StdFileSystem),
            dir.path(),
            LogOptions::default(),
        )
    };
    let first = real().unwrap();
    assert!(matches!(
        real(),
        Err(oar::storage::StorageError::Locked { .. })
    ));
    drop(first);
    real().unwrap();
}

/// The meta's rename reached the kernel but its directory sync failed (then
/// the process died): a reopen reads the new term and vote, and must make
/// them durable before the node acts on them, or a power loss could undo a
/// vote already given.
#[test]
fn a_term_and_vote_read_at_open_survive_a_power_loss_right_after() {
    for seed in 0..16 {
        let fs = MemFileSystem::new(100 + seed);
        let (mut w, _) = open(&fs);
        w.write([WriteOp::HardState(hs(3, Some(2)))]).unwrap();
        fs.inject_error(FsOp::SyncDir, 0);
        assert!(w.write([WriteOp::HardState(hs(4, Some(1)))]).is_err());
        drop(w);
        fs.process_died();
        let (_, recovered) = open(&fs);
        assert_eq!(recovered.hard_state, hs(4, Some(1)), "seed {seed}");
        fs.crash();
        let (_, after) = open(&fs);
        assert_eq!(after.hard_state, recovered.hard_state, "seed {seed}");
    }
}

/// A clean reopen of a log whose open segment is a recycled file finds the
/// end of the records at once: each batch leaves zeros after its records, so
/// recovery neither scans the file's stale bytes nor rewrites anything.
#[test]
fn a_clean_reopen_of_a_recycled_segment_writes_nothing() {
    for direct_io in [false, true] {
        let fs = MemFileSystem::new(8);
        let options = LogOptions {
            segment_bytes_max: 16 << 10,
            segment_bytes_first: 16 << 10,
            preallocate: true,
            direct_io,
        };
        let (mut w, _) = open_with(&fs, options);
        let batch = |w: &mut LogWriter, len: usize| {
            let next = w.log().last_index().0 + 1;
            let entries = (next..next + 5).map(|i| entry(1, i, len)).collect();
            w.write([WriteOp::Entries(entries)]).unwrap();
        };
        for round in 0..60 {
            batch(&mut w, 500 + round * 7);
        }
        let purge = w.log().last_index().0 - 20;
        w.truncate_prefix(LogId::new(1, purge)).unwrap();
        // Fill past a rotation onto a recycled file, then a few batches more.
        for round in 0..10 {
            batch(&mut w, 300 + round * 11);
        }
        let last = w.log().last_index();
        drop(w);
        let writes = fs.calls(FsOp::Write);
        let (_, recovered) = open_with(&fs, options);
        assert_eq!(recovered.entries.last().unwrap().id.index, last);
        assert_eq!(
            fs.calls(FsOp::Write),
            writes,
            "direct_io {direct_io}: nothing rewritten"
        );
    }
}
