use super::*;
use crate::core::NodeId;
use crate::storage::MemFileSystem;

const DIR: &str = "/node/snapshot";

fn store(fs: &MemFileSystem) -> SnapshotStore {
    SnapshotStore::open(Arc::new(fs.clone()), Path::new(DIR)).unwrap()
}

fn save(store: &SnapshotStore, index: u64) -> Result<SnapshotMeta> {
    let mut w = store.begin(false)?;
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
    let mut w = store(&fs).begin(false).unwrap();
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

/// Reads `file` to its end in 1,000-byte pieces.
fn read_streamed(mut file: SnapshotFileReader) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        match io::Read::read(&mut file, &mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_streamed_file_round_trips_and_a_flipped_bit_fails_its_last_read() {
    let fs = MemFileSystem::new(4);
    let s = store(&fs);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut w = s.begin(false).unwrap();
    let mut file = w.create_file("stream").unwrap();
    for piece in data.chunks(777) {
        io::Write::write_all(&mut file, piece).unwrap();
    }
    assert_eq!(file.len(), data.len() as u64);
    file.finish().unwrap();
    // Dropped before `finish`: not part of the snapshot.
    w.create_file("abandoned")
        .unwrap()
        .write_at_end(b"x")
        .unwrap();
    let meta = w.commit(LogId::new(1, 5), Membership::default()).unwrap();
    let names: Vec<&str> = meta.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["stream"]);
    assert_eq!(meta.files[0].crc, crc32c::crc32c(&data));

    let r = s.latest().unwrap().unwrap();
    assert_eq!(read_streamed(r.open_file("stream").unwrap()).unwrap(), data);
    let dir = Path::new(DIR).join("snapshot_00000000000000000005");
    fs.flip_bit(&dir.join("stream"), 4321, 5).unwrap();
    let err = read_streamed(r.open_file("stream").unwrap()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(matches!(
        r.open_file("nope"),
        Err(StorageError::NoSuchFile { .. })
    ));
}

#[test]
fn a_linked_file_joins_the_snapshot_with_its_checksum() {
    let fs = MemFileSystem::new(5);
    let s = store(&fs);
    let own = Path::new("/node/app/table.sst");
    fs.create_dir_all(own.parent().unwrap()).unwrap();
    let data = vec![42u8; 3 << 20];
    fs.create(own).unwrap().write_all_at(&data, 0).unwrap();
    let mut w = s.begin(false).unwrap();
    w.link_file("table.sst", own).unwrap();
    let meta = w.commit(LogId::new(1, 9), Membership::default()).unwrap();
    assert_eq!(meta.files[0].len, data.len() as u64);
    assert_eq!(meta.files[0].crc, crc32c::crc32c(&data));
    let r = s.latest().unwrap().unwrap();
    assert_eq!(r.read_file("table.sst").unwrap(), data);
}

/// On a real file system a linked file is the same inode, not a copy.
#[test]
fn a_linked_file_on_disk_is_a_hard_link() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("oar-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let own = dir.join("own.bin");
    std::fs::write(&own, b"the application's file").unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(crate::storage::StdFileSystem);
    let s = SnapshotStore::open(fs, &dir.join("snapshot")).unwrap();
    let mut w = s.begin(false).unwrap();
    w.link_file("own.bin", &own).unwrap();
    w.commit(LogId::new(1, 3), Membership::default()).unwrap();
    let r = s.latest().unwrap().unwrap();
    let linked = r.path().join("own.bin");
    assert_eq!(
        std::fs::metadata(&linked).unwrap().ino(),
        std::fs::metadata(&own).unwrap().ino()
    );
    assert_eq!(r.read_file("own.bin").unwrap(), b"the application's file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_paced_writer_asks_its_pace_before_every_byte_it_writes() {
    use std::io::Write as _;
    use std::sync::Mutex;
    let fs = MemFileSystem::new(1);
    let s = store(&fs);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let mut w = s.begin(false).unwrap();
    w.pace_writes(Arc::new({
        let asked = Arc::clone(&asked);
        move |bytes| asked.lock().unwrap().push(bytes)
    }));
    w.write_file("small", &[1; 300]).unwrap();
    let mut file = w.create_file("streamed").unwrap();
    file.write_all(&[2; 4096]).unwrap();
    file.write_at_end(&[3; 10]).unwrap();
    file.finish().unwrap();
    w.commit(LogId::new(1, 5), Membership::with_voters([NodeId(1)]))
        .unwrap();
    assert_eq!(*asked.lock().unwrap(), vec![300, 4096, 10]);
}

#[test]
fn opening_makes_no_directory_until_the_first_snapshot_and_that_one_is_durable() {
    for seed in 0..4 {
        let fs = MemFileSystem::new(seed);
        let s = store(&fs);
        assert!(s.latest().unwrap().is_none());
        assert!(
            !fs.exists(Path::new(DIR)).unwrap(),
            "open made the directory"
        );
        // The first save makes it (and its parents) durably: a crash right
        // after the commit keeps the snapshot.
        save(&s, 7).unwrap();
        fs.crash();
        let r = store(&fs).latest().unwrap().expect("the snapshot survived");
        assert_eq!(r.meta().last_included, LogId::new(1, 7), "seed {seed}");
    }
}
