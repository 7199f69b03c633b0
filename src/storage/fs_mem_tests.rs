use std::path::Path;

use super::*;

fn write_file(fs: &MemFileSystem, path: &str, data: &[u8], sync: bool) {
    let mut f = fs.create(Path::new(path)).unwrap();
    f.write_all_at(data, 0).unwrap();
    if sync {
        f.sync_data().unwrap();
    }
}

#[test]
fn synced_data_and_dir_survive_a_crash() {
    let fs = MemFileSystem::new(1);
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    write_file(&fs, "/d/a", b"hello", true);
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.crash();
    assert_eq!(fs.contents(Path::new("/d/a")).unwrap(), b"hello");
}

#[test]
fn unsynced_writes_are_lost_torn_or_kept_across_seeds() {
    let mut outcomes = BTreeSet::new();
    for seed in 0..64 {
        let fs = MemFileSystem::new(seed);
        let mut f = fs.create(Path::new("/a")).unwrap();
        f.write_all_at(&[0u8; 4096], 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        f.write_all_at(&[7u8; 2048], 100).unwrap();
        fs.crash();
        let data = fs.contents(Path::new("/a")).unwrap();
        assert_eq!(data.len(), 4096);
        let kept = data.iter().filter(|&&b| b == 7).count();
        // A torn write survives up to a sector boundary: 100..512, ..1024, ...
        assert!(
            [0, 412, 924, 1436, 1948, 2048].contains(&kept),
            "kept {kept}"
        );
        assert!(data[100..100 + kept].iter().all(|&b| b == 7));
        outcomes.insert(kept);
    }
    assert!(outcomes.contains(&0) && outcomes.contains(&2048) && outcomes.len() > 2);
}

#[test]
fn rename_without_dir_sync_may_be_undone() {
    let mut undone = 0;
    for seed in 0..32 {
        let fs = MemFileSystem::new(seed);
        write_file(&fs, "/a", b"x", true);
        fs.sync_dir(Path::new("/")).unwrap();
        fs.rename(Path::new("/a"), Path::new("/b")).unwrap();
        fs.crash();
        let a = fs.exists(Path::new("/a")).unwrap();
        let b = fs.exists(Path::new("/b")).unwrap();
        assert!(a != b, "rename is atomic");
        undone += a as u32;
    }
    assert!(undone > 0 && undone < 32);
}

#[test]
fn a_crash_keeps_a_prefix_of_a_directorys_unsynced_changes() {
    let mut kept_counts = BTreeSet::new();
    for seed in 0..64 {
        let fs = MemFileSystem::new(seed);
        for name in ["/a", "/b", "/c"] {
            write_file(&fs, name, b"x", true);
        }
        fs.sync_dir(Path::new("/")).unwrap();
        // Three changes, in order: a → a2, b removed, c → c2.
        fs.rename(Path::new("/a"), Path::new("/a2")).unwrap();
        fs.remove_file(Path::new("/b")).unwrap();
        fs.rename(Path::new("/c"), Path::new("/c2")).unwrap();
        fs.crash();
        let names = fs.list_dir(Path::new("/")).unwrap();
        let kept = match names.as_slice() {
            [a, b, c] if (a, b, c) == (&"a".into(), &"b".into(), &"c".into()) => 0,
            [a, b, c] if (a, b, c) == (&"a2".into(), &"b".into(), &"c".into()) => 1,
            [a, c] if (a, c) == (&"a2".into(), &"c".into()) => 2,
            [a, c] if (a, c) == (&"a2".into(), &"c2".into()) => 3,
            other => panic!("seed {seed}: {other:?} is not a prefix of the changes"),
        };
        kept_counts.insert(kept);
    }
    assert_eq!(kept_counts.len(), 4, "every prefix occurs: {kept_counts:?}");
}

#[test]
fn handles_die_at_a_crash() {
    let fs = MemFileSystem::new(3);
    let mut f = fs.create(Path::new("/a")).unwrap();
    fs.crash();
    assert!(f.write_all_at(b"x", 0).is_err());
}

#[test]
fn injected_errors_and_power_off_fail_calls() {
    let fs = MemFileSystem::new(4);
    let mut f = fs.create(Path::new("/a")).unwrap();
    fs.inject_error(FsOp::Sync, 1);
    f.sync_data().unwrap();
    assert!(f.sync_data().is_err());
    f.sync_data().unwrap();
    fs.power_off_after(1);
    f.write_all_at(b"x", 0).unwrap();
    assert!(f.write_all_at(b"y", 0).is_err());
    assert!(fs.list_dir(Path::new("/")).is_err());
    fs.crash();
    assert!(fs.list_dir(Path::new("/")).is_ok());
}

#[test]
fn flip_bit_corrupts_the_durable_image() {
    let fs = MemFileSystem::new(5);
    write_file(&fs, "/a", &[0u8; 8], true);
    fs.sync_dir(Path::new("/")).unwrap();
    fs.flip_bit(Path::new("/a"), 3, 1).unwrap();
    fs.crash();
    assert_eq!(fs.contents(Path::new("/a")).unwrap()[3], 2);
}
