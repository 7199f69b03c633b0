use super::*;
use crate::core::NodeId;
use crate::storage::MemFileSystem;

const DIR: &str = "/node/snapshot";

fn store(fs: &MemFileSystem) -> SnapshotStore {
    SnapshotStore::open(Arc::new(fs.clone()), Path::new(DIR)).unwrap()
}

fn save(store: &SnapshotStore, index: u64) -> Result<SnapshotMeta> {
    let mut w = store.begin()?;
    w.write_file("data", format!("state at {index}").as_bytes())?;
    w.write_file("extra", &[index as u8; 700])?;
    w.commit(LogId::new(1, index), Membership::with_voters([NodeId(1)]))
}

#[test]
fn the_newest_snapshot_is_read_back_and_older_ones_removed() {
    let fs = MemFileSystem::new(1);
    let s = store(&fs);
    assert!(s.latest().unwrap().is_none());
    save(&s, 10).unwrap();
    save(&s, 20).unwrap();
    fs.crash();
    let s = store(&fs);
    let r = s.latest().unwrap().unwrap();
    assert_eq!(r.meta().last_included, LogId::new(1, 20));
    assert_eq!(r.read_file("data").unwrap(), b"state at 20");
    assert_eq!(r.read_chunk("extra", 690, 100).unwrap(), vec![20u8; 10]);
    assert_eq!(
        fs.list_dir(Path::new(DIR)).unwrap(),
        vec!["snapshot_00000000000000000020"]
    );
    assert!(matches!(
        r.read_file("nope"),
        Err(StorageError::NoSuchFile { .. })
    ));
}

#[test]
fn a_crash_while_saving_shows_the_old_or_the_new_snapshot_never_a_half_one() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..80 {
        let fs = MemFileSystem::new(seed);
        let s = store(&fs);
        save(&s, 10).unwrap();
        fs.power_off_after(seed % 16);
        let committed = save(&s, 20).is_ok();
        fs.crash();
        let s = store(&fs);
        let r = s.latest().unwrap().expect("a snapshot is always there");
        let index = r.meta().last_included.index.0;
        assert!(index == 20 || (index == 10 && !committed), "seed {seed}");
        assert_eq!(
            r.read_file("data").unwrap(),
            format!("state at {index}").as_bytes()
        );
        assert_eq!(r.read_file("extra").unwrap(), vec![index as u8; 700]);
        outcomes.insert(index);
    }
    assert_eq!(outcomes.len(), 2);
}

#[test]
fn corrupt_snapshot_meta_and_data_are_typed_errors_naming_the_file() {
    let fs = MemFileSystem::new(2);
    let s = store(&fs);
    save(&s, 10).unwrap();
    let dir = Path::new(DIR).join("snapshot_00000000000000000010");
    fs.flip_bit(&dir.join("data"), 2, 3).unwrap();
    let err = s.latest().unwrap().unwrap().read_file("data").unwrap_err();
    assert!(
        matches!(err, StorageError::Corruption { ref path, kind: CorruptionKind::SnapshotFileMismatch, .. } if path.ends_with("data"))
    );
    fs.flip_bit(&dir.join(SNAPSHOT_META_NAME), 30, 0).unwrap();
    let err = s.latest().unwrap_err();
    assert!(
        matches!(err, StorageError::Corruption { ref path, kind: CorruptionKind::FileChecksum, .. } if path.ends_with(SNAPSHOT_META_NAME))
    );
}

#[test]
fn bad_file_names_are_refused() {
    let fs = MemFileSystem::new(3);
    let mut w = store(&fs).begin().unwrap();
    for bad in ["", "..", "a/b", SNAPSHOT_META_NAME, "x.tmp"] {
        assert!(
            matches!(
                w.write_file(bad, b"x"),
                Err(StorageError::InvalidFileName { .. })
            ),
            "{bad:?}"
        );
    }
}
