//! The disk store: reopening rebuilds the index and the applied point;
//! unfinished, torn and corrupt tails are cut; a sealed segment's damage
//! is refused; a checkpoint linked into a snapshot loads back whole.

use std::sync::Arc;

use oar::core::LogId;
use oar::runtime::{Committed, DiskSnapshots, SnapshotStorage, StateMachine};
use oar::storage::StdFileSystem;

use super::*;
use crate::disk_machine::DiskKvStore;
use crate::store::{Op, encode};

fn value(kv: &DiskKv, key: &str) -> Option<String> {
    let v = kv.get(key.as_bytes()).unwrap()?;
    Some(String::from_utf8(v.into_owned()).unwrap())
}

fn batch(kv: &mut DiskKv, index: u64, puts: &[(&str, &str)]) {
    for (k, v) in puts {
        kv.put(k.as_bytes(), v.as_bytes());
    }
    kv.finish_batch(LogId::new(1, index)).unwrap();
}

fn active_path(kv: &DiskKv) -> PathBuf {
    kv.dir.join(segment_name(kv.active))
}

#[test]
fn a_reopened_store_has_its_values_and_point_and_cuts_a_broken_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv");
    let mut kv = DiskKv::open(&path).unwrap();
    assert_eq!(kv.applied(), None);
    batch(&mut kv, 3, &[("a", "1"), ("b", "2")]);
    assert!(kv.remove(b"a"));
    batch(&mut kv, 4, &[("c", "3")]);
    let good = fs::metadata(active_path(&kv)).unwrap().len();
    // A batch cut by a crash: records without their applied-through one.
    kv.put(b"d", b"4");
    let unfinished = std::mem::take(&mut kv.batch);
    fs::OpenOptions::new()
        .append(true)
        .open(active_path(&kv))
        .unwrap()
        .write_all(&unfinished)
        .unwrap();
    drop(kv);
    let kv = DiskKv::open(&path).unwrap();
    assert_eq!(kv.applied(), Some(LogId::new(1, 4)));
    assert_eq!(value(&kv, "a"), None);
    assert_eq!(value(&kv, "b").as_deref(), Some("2"));
    assert_eq!(value(&kv, "c").as_deref(), Some("3"));
    assert_eq!(value(&kv, "d"), None, "the unfinished batch is cut");
    assert_eq!(fs::metadata(active_path(&kv)).unwrap().len(), good);

    // A torn tail, then a flipped byte in the last batch.
    let mut kv = kv;
    batch(&mut kv, 5, &[("e", "5")]);
    let full = fs::metadata(active_path(&kv)).unwrap().len();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(active_path(&kv))
        .unwrap();
    file.set_len(full - 3).unwrap();
    drop(kv);
    let mut kv = DiskKv::open(&path).unwrap();
    assert_eq!(kv.applied(), Some(LogId::new(1, 4)), "torn batch cut");
    assert_eq!(value(&kv, "e"), None);
    batch(&mut kv, 5, &[("e", "5")]);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(active_path(&kv))
        .unwrap();
    file.write_all_at(&[0xff], good + 9).unwrap();
    drop(kv);
    let kv = DiskKv::open(&path).unwrap();
    assert_eq!(kv.applied(), Some(LogId::new(1, 4)), "corrupt batch cut");
    assert_eq!(value(&kv, "c").as_deref(), Some("3"));
}

#[test]
fn damage_in_a_sealed_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv");
    let mut kv = DiskKv::open(&path).unwrap();
    batch(&mut kv, 1, &[("a", "1")]);
    let sealed = kv.checkpoint().unwrap();
    batch(&mut kv, 2, &[("b", "2")]);
    drop(kv);
    let (_, sealed_path) = &sealed[0];
    let file = fs::OpenOptions::new()
        .write(true)
        .open(sealed_path)
        .unwrap();
    file.write_all_at(&[0xff], SEGMENT_MAGIC.len() as u64 + 10)
        .unwrap();
    let error = DiskKv::open(&path).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
}

fn set(store: &mut DiskKvStore, index: u64, key: &str, value: &str) {
    let data = encode(Op::Set, &[key.into(), value.into()]);
    store.on_apply(&[Committed {
        id: LogId::new(1, index),
        data,
    }]);
}

#[test]
fn a_checkpoint_linked_into_a_snapshot_loads_back_and_replaces_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = DiskKvStore::open(&dir.path().join("leader")).unwrap();
    set(&mut leader, 1, "a", "1");
    set(&mut leader, 2, "b", "2");
    let snapshots =
        DiskSnapshots::open(Arc::new(StdFileSystem), &dir.path().join("snaps")).unwrap();
    let mut writer = snapshots.begin(false).unwrap();
    leader
        .on_snapshot_save()
        .unwrap()
        .write_to(&mut writer)
        .unwrap();
    let last = LogId::new(1, 3);
    snapshots.commit(writer, last, Default::default()).unwrap();
    // Applies after the checkpoint do not reach the snapshot.
    set(&mut leader, 4, "a", "changed");

    let mut follower = DiskKvStore::open(&dir.path().join("follower")).unwrap();
    set(&mut follower, 1, "stale", "x");
    let reader = snapshots.open().unwrap().unwrap();
    follower.on_snapshot_load(last, &reader).unwrap();
    assert_eq!(follower.durable_applied().unwrap(), Some(last));
    let map = follower.map();
    let kv = map.read().unwrap();
    let get = |k: &str| kv.get(k.as_bytes()).unwrap().map(|v| v.into_owned());
    assert_eq!(get("a"), Some(b"1".to_vec()));
    assert_eq!(get("b"), Some(b"2".to_vec()));
    assert_eq!(get("stale"), None, "the load replaced the store");
    drop(kv);
    // And it stays so across a reopen.
    drop(follower);
    let follower = DiskKv::open(&dir.path().join("follower")).unwrap();
    assert_eq!(follower.applied(), Some(last));
    assert_eq!(value(&follower, "b").as_deref(), Some("2"));
}

#[test]
fn a_new_segment_torn_in_its_magic_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv");
    let mut kv = DiskKv::open(&path).unwrap();
    batch(&mut kv, 1, &[("a", "1")]);
    kv.checkpoint().unwrap();
    let active = active_path(&kv);
    drop(kv);
    for len in [0, 3] {
        let file = fs::OpenOptions::new().write(true).open(&active).unwrap();
        file.set_len(len).unwrap();
        let mut kv = DiskKv::open(&path).unwrap();
        assert_eq!(kv.applied(), Some(LogId::new(1, 1)), "cut to {len}");
        assert_eq!(value(&kv, "a").as_deref(), Some("1"));
        assert_eq!(fs::read(&active).unwrap(), SEGMENT_MAGIC);
        batch(&mut kv, 2, &[("b", "2")]);
        drop(kv);
        let kv = DiskKv::open(&path).unwrap();
        assert_eq!(value(&kv, "b").as_deref(), Some("2"), "appends after it");
    }
}
