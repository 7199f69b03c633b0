//! The key-value state machine over the disk store (`--store disk`): an
//! on-disk state machine. At a restart it tells oar where its store stands
//! (`durable_applied`), so only the log after that point is applied again;
//! its snapshots are checkpoints of the store (segments hard-linked); a
//! snapshot loaded (the store lost or behind, or installed from the leader)
//! replaces the store.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use oar::core::LogId;
use oar::runtime::{
    Committed, SnapshotError, SnapshotReader, SnapshotView, SnapshotWriter, StateMachine,
};

use crate::disk_store::{DiskKv, loading_dir};
use crate::segment::{SEGMENT_MAGIC, encode_applied, segment_name, segment_number};
use crate::store::{SharedMap, execute};

/// The key-value state machine on its disk store.
pub(crate) struct DiskKvStore {
    kv: Arc<RwLock<DiskKv>>,
    /// Whether an apply since the start was reported (where replay began).
    applying: bool,
}

impl DiskKvStore {
    /// Opens the store in `dir`.
    ///
    /// # Errors
    /// As [`DiskKv::open`].
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        let kv = DiskKv::open(dir)?;
        eprintln!(
            "kv store: {}: {} keys, applied through {:?}",
            dir.display(),
            kv.len(),
            kv.applied()
        );
        Ok(DiskKvStore {
            kv: Arc::new(RwLock::new(kv)),
            applying: false,
        })
    }

    /// The store, for serving reads after a barrier.
    pub(crate) fn map(&self) -> SharedMap {
        Arc::clone(&self.kv) as SharedMap
    }
}

/// Stops the process on a store failure: replicas must not diverge on a
/// local fault, and a restart recovers from the store or the snapshot.
fn fail_stop(what: &str, error: std::io::Error) -> ! {
    eprintln!("kv store: {what}: {error}; stopping (a restart recovers)");
    std::process::exit(70)
}

impl StateMachine for DiskKvStore {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        if !self.applying {
            self.applying = true;
            if let Some(first) = commands.first() {
                eprintln!("kv store: first apply since start: entry {}", first.id);
            }
        }
        let mut kv = self.kv.write().expect("store lock");
        let replies = commands
            .iter()
            .map(|c| match execute(&mut *kv, &c.data) {
                Ok(reply) => Bytes::from(reply),
                Err(e) => fail_stop("reading a value", e),
            })
            .collect();
        if let Some(last) = commands.last()
            && let Err(e) = kv.finish_batch(last.id)
        {
            fail_stop("writing a batch", e);
        }
        replies
    }

    fn durable_applied(&mut self) -> Result<Option<LogId>, SnapshotError> {
        Ok(self.kv.read().expect("store lock").applied())
    }

    /// Seals the active segment and links every segment into the snapshot
    /// (each fsynced first, off the apply path).
    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let sealed = self.kv.write().expect("store lock").checkpoint()?;
        Ok(Box::new(move |writer: &mut SnapshotWriter| {
            for (name, path) in &sealed {
                File::open(path)?.sync_all()?;
                writer.link_file(name, path)?;
            }
            Ok(())
        }))
    }

    /// Copies the snapshot's segments (streamed, each checked against its
    /// checksum) into a new directory, adds a segment recording `last`,
    /// then swaps it in for the store and reopens it.
    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let mut kv = self.kv.write().expect("store lock");
        let dir = kv.dir().to_path_buf();
        let loading = loading_dir(&dir);
        write_loaded(&loading, last, snapshot)?;
        // From here the old store is gone: a crash leaves none (and the
        // snapshot is loaded again) or the new one.
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::rename(&loading, &dir)?;
        sync_parent(&dir)?;
        *kv = DiskKv::open(&dir)?;
        eprintln!(
            "kv store: loaded a snapshot through {last}: {} keys",
            kv.len()
        );
        if kv.applied() != Some(last) {
            return Err(SnapshotError::Invalid(format!(
                "loaded store stands at {:?}, not {last}",
                kv.applied()
            )));
        }
        Ok(())
    }

    fn may_block(&self) -> bool {
        true
    }
}

/// Writes the store `snapshot` holds into `loading`, durably, ending with a
/// segment that records `last`.
fn write_loaded(
    loading: &Path,
    last: LogId,
    snapshot: &SnapshotReader,
) -> Result<(), SnapshotError> {
    if loading.exists() {
        fs::remove_dir_all(loading)?;
    }
    fs::create_dir_all(loading)?;
    let mut next = 1;
    for file in &snapshot.meta().files {
        // Names come from the leader: only segment names are files here.
        let number = segment_number(&file.name).ok_or_else(|| {
            SnapshotError::Invalid(format!("{:?} is not a kv store segment", file.name))
        })?;
        let path: PathBuf = loading.join(segment_name(number));
        let mut out = File::create(&path)?;
        std::io::copy(&mut snapshot.open_file(&file.name)?, &mut out)?;
        out.sync_all()?;
        next = next.max(number + 1);
    }
    let mut marker = SEGMENT_MAGIC.to_vec();
    encode_applied(&mut marker, last);
    let path = loading.join(segment_name(next));
    let mut out = File::create(&path)?;
    std::io::Write::write_all(&mut out, &marker)?;
    out.sync_all()?;
    File::open(loading)?.sync_all()?;
    Ok(())
}

fn sync_parent(dir: &Path) -> std::io::Result<()> {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => Ok(()),
    }
}
