//! [`MetaStorage`]: the durable term and vote (braft's
//! `LocalRaftMetaStorage`), in one atomic, checksummed file.
//!
//! Payload of `raft_meta` (inside the [`atomic_file`]
//! frame, magic `OARM`): `term u64 LE, voted_for u64 LE` (0 = none; node id
//! 0 is reserved). A missing file is a fresh node (term 0); a torn or corrupt
//! one is an error, never term 0, which could let the node vote twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::atomic_file;
use super::error::{CorruptionKind, Result, StorageError};
use super::fs::FileSystem;
use crate::core::{HardState, NodeId, Term};

/// The file name of the term/vote meta.
pub const META_NAME: &str = "raft_meta";
const MAGIC: [u8; 4] = *b"OARM";
const PAYLOAD_BYTES: usize = 16;

/// The durable term and vote of one node.
#[derive(Debug)]
pub struct MetaStorage {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// What is on disk.
    current: HardState,
}

impl MetaStorage {
    /// Opens the meta in `dir` (which must exist) and reads the durable state.
    ///
    /// # Errors
    /// [`StorageError::Corruption`] naming `raft_meta` if it fails its checks.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<(MetaStorage, HardState)> {
        atomic_file::remove_leftover(&*fs, dir, META_NAME)?;
        let current = match atomic_file::read(&*fs, dir, META_NAME, MAGIC, PAYLOAD_BYTES as u64)? {
            None => HardState::default(),
            Some(payload) => decode(&payload).ok_or_else(|| {
                StorageError::corruption(dir.join(META_NAME), 0, CorruptionKind::FileLength)
            })?,
        };
        // What we read must be durable before anyone relies on it: a
        // process that died between the rename and its directory sync left a
        // name the kernel holds but the disk may not.
        fs.sync_dir(dir)
            .map_err(|e| StorageError::io("sync_dir", dir, e))?;
        let meta = MetaStorage {
            fs,
            dir: dir.to_path_buf(),
            current,
        };
        Ok((meta, current))
    }

    /// The durable state.
    pub fn hard_state(&self) -> HardState {
        self.current
    }

    /// Makes `hard_state` durable (write temp, fsync, rename, fsync dir);
    /// does nothing if it is already what is on disk.
    pub fn save(&mut self, hard_state: HardState) -> Result<()> {
        if hard_state == self.current {
            return Ok(());
        }
        let mut payload = [0u8; PAYLOAD_BYTES];
        payload[..8].copy_from_slice(&hard_state.term.0.to_le_bytes());
        let vote = hard_state.voted_for.map_or(0, |n| n.0);
        payload[8..].copy_from_slice(&vote.to_le_bytes());
        atomic_file::write(&*self.fs, &self.dir, META_NAME, MAGIC, &payload)?;
        self.current = hard_state;
        Ok(())
    }
}

fn decode(payload: &[u8]) -> Option<HardState> {
    let b: &[u8; PAYLOAD_BYTES] = payload.try_into().ok()?;
    let term = u64::from_le_bytes(b[..8].try_into().ok()?);
    let vote = u64::from_le_bytes(b[8..].try_into().ok()?);
    Some(HardState {
        term: Term(term),
        voted_for: (vote != 0).then_some(NodeId(vote)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemFileSystem;

    #[test]
    fn saved_state_survives_a_crash_and_corruption_is_an_error() {
        let fs = MemFileSystem::new(1);
        let dir = Path::new("/");
        let (mut meta, hs) = MetaStorage::open(Arc::new(fs.clone()), dir).unwrap();
        assert_eq!(hs, HardState::default());
        let want = HardState {
            term: Term(7),
            voted_for: Some(NodeId(3)),
        };
        meta.save(want).unwrap();
        fs.crash();
        let (_, got) = MetaStorage::open(Arc::new(fs.clone()), dir).unwrap();
        assert_eq!(got, want);
        fs.flip_bit(&dir.join(META_NAME), 20, 0).unwrap();
        let err = MetaStorage::open(Arc::new(fs.clone()), dir).unwrap_err();
        assert!(matches!(
            err,
            StorageError::Corruption { ref path, kind: CorruptionKind::FileChecksum, .. } if path.ends_with(META_NAME)
        ));
    }

    #[test]
    fn a_crash_during_save_leaves_the_old_or_the_new_state() {
        let old = HardState {
            term: Term(1),
            voted_for: None,
        };
        let new = HardState {
            term: Term(2),
            voted_for: Some(NodeId(2)),
        };
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..60 {
            let fs = MemFileSystem::new(seed);
            let (mut meta, _) = MetaStorage::open(Arc::new(fs.clone()), Path::new("/")).unwrap();
            meta.save(old).unwrap();
            fs.power_off_after(seed % 6);
            let saved = meta.save(new).is_ok();
            fs.crash();
            let (_, got) = MetaStorage::open(Arc::new(fs.clone()), Path::new("/")).unwrap();
            assert!(got == new || (got == old && !saved), "seed {seed}: {got:?}");
            seen.insert(got.term);
        }
        assert_eq!(seen.len(), 2);
    }
}
