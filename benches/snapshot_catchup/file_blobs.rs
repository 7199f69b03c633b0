//! The file-state row's state machine: a blob store whose blobs are files,
//! so that a state of gigabytes never sits in memory. `fill N` hard-links
//! the generated file `blob-NNNN` of the source directory (the same bytes
//! on every replica) into the member's state directory; `set KEY VALUE` is
//! the clients' small write, kept in memory.
//!
//! A save either hard-links every blob file into the snapshot (the cheap
//! checkpoint an on-disk state machine takes) or streams it (read and
//! written 1 MiB at a time), so that a save of a large state takes seconds
//! of disk work while applies go on, which the row measures; a load
//! hard-links the installed files into the state directory.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use oar::core::LogId;
use oar::runtime::{
    Committed, SnapshotError, SnapshotReader, SnapshotView, SnapshotWriter, StateMachine,
};

use super::{Blobs, MIB};

/// The name of blob `n`, in the source and state directories and in
/// snapshots; the names sort in blob order.
pub(crate) fn blob_name(n: u64) -> String {
    format!("blob-{n:04}")
}

/// A member's state: the blobs' names (their bytes are the files) and the
/// small writes.
#[derive(Default)]
pub(crate) struct FileState {
    blobs: BTreeSet<String>,
    /// Only its key-value part is used.
    kv: Blobs,
}

impl FileState {
    /// CRC32C of the blob names, then of the key-value part: equal states
    /// have equal digests (a blob's bytes are checked by its CRC32C as it
    /// is copied and as it is read).
    pub(crate) fn digest(&self) -> u32 {
        let names = self.blobs.iter().fold(0, |crc, name| {
            crc32c::crc32c_append(crc32c::crc32c_append(crc, name.as_bytes()), b"\n")
        });
        crc32c::crc32c_append(names, &self.kv.encode_kv())
    }
}

/// What the member process sees of its state machine.
#[derive(Default)]
pub(crate) struct FileShared {
    pub(crate) state: Mutex<FileState>,
    /// When a snapshot was last loaded, and through which entry.
    pub(crate) loaded: Mutex<Option<(Instant, LogId)>>,
    /// The size of the last snapshot saved, all files together.
    pub(crate) saved_bytes: AtomicU64,
    /// Whether a save streams the blobs' bytes rather than linking them.
    pub(crate) save_streams: AtomicBool,
}

/// The blob store over files.
pub(crate) struct FileBlobStore {
    /// Where the generated blobs are.
    source: PathBuf,
    /// The state directory: a hard link per blob.
    dir: PathBuf,
    shared: Arc<FileShared>,
}

impl FileBlobStore {
    /// A store with an empty state in `dir` (emptied: the log or a snapshot
    /// rebuilds it).
    pub(crate) fn new(source: &Path, dir: &Path, shared: Arc<FileShared>) -> FileBlobStore {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("state directory");
        FileBlobStore {
            source: source.to_path_buf(),
            dir: dir.to_path_buf(),
            shared,
        }
    }

    /// Makes `to` a hard link to `from`, replacing what `to` was.
    fn link(from: &Path, to: &Path) {
        match std::fs::remove_file(to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", to.display()),
        }
        std::fs::hard_link(from, to)
            .unwrap_or_else(|e| panic!("linking {} to {}: {e}", from.display(), to.display()));
    }
}

/// Streams the file at `from` into the snapshot as `name`, 1 MiB at a time;
/// returns its length.
fn stream_file(writer: &mut SnapshotWriter, name: &str, from: &Path) -> Result<u64, SnapshotError> {
    let mut source = std::fs::File::open(from)?;
    let mut file = writer.create_file(name)?;
    let mut buf = vec![0; MIB];
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        file.write_at_end(&buf[..n])?;
    }
    let len = file.len();
    file.finish()?;
    Ok(len)
}

impl StateMachine for FileBlobStore {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut state = self.shared.state.lock().expect("state lock");
        for command in commands {
            let text = std::str::from_utf8(&command.data).expect("commands are text");
            if let Some(n) = text.strip_prefix("fill ") {
                let name = blob_name(n.parse().expect("fill N"));
                Self::link(&self.source.join(&name), &self.dir.join(&name));
                state.blobs.insert(name);
            } else {
                state.kv.apply(&command.data);
            }
        }
        vec![Bytes::new(); commands.len()]
    }

    /// Links and file reads: this state machine blocks.
    fn may_block(&self) -> bool {
        true
    }

    /// Blob files `blob-NNNN` (linked or streamed), `kv`, and a `manifest`
    /// with the blob count and the state's digest. The view is the blobs'
    /// paths (their files are never changed in place) and a copy of the
    /// key-value part.
    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let state = self.shared.state.lock().expect("state lock");
        let blobs: Vec<(String, PathBuf)> = (state.blobs.iter())
            .map(|name| (name.clone(), self.dir.join(name)))
            .collect();
        let kv = state.kv.encode_kv();
        let manifest = format!("{} {}", state.blobs.len(), state.digest());
        drop(state);
        let shared = Arc::clone(&self.shared);
        let streams = shared.save_streams.load(Ordering::Relaxed);
        Ok(Box::new(move |writer: &mut SnapshotWriter| {
            let mut bytes = 0;
            for (name, path) in &blobs {
                bytes += match streams {
                    true => stream_file(writer, name, path)?,
                    false => {
                        writer.link_file(name, path)?;
                        std::fs::metadata(path)?.len()
                    }
                };
            }
            writer.write_file("kv", &kv)?;
            writer.write_file("manifest", manifest.as_bytes())?;
            bytes += (kv.len() + manifest.len()) as u64;
            shared.saved_bytes.store(bytes, Ordering::Relaxed);
            Ok(())
        }))
    }

    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let invalid = |why: &str| SnapshotError::Invalid(why.to_string());
        let (count, digest) = super::read_manifest(snapshot)?;
        let mut loaded = FileState::default();
        std::fs::remove_dir_all(&self.dir)?;
        std::fs::create_dir_all(&self.dir)?;
        for f in &snapshot.meta().files {
            if f.name.starts_with("blob-") {
                Self::link(&snapshot.path().join(&f.name), &self.dir.join(&f.name));
                loaded.blobs.insert(f.name.clone());
            }
        }
        if loaded.blobs.len() != count {
            return Err(invalid("blob files do not match the manifest"));
        }
        loaded.kv.kv = Blobs::decode_kv(Bytes::from(snapshot.read_file("kv")?))?;
        if loaded.digest() != digest {
            return Err(invalid("digest mismatch"));
        }
        *self.shared.state.lock().expect("state lock") = loaded;
        *self.shared.loaded.lock().expect("loaded lock") = Some((Instant::now(), last));
        Ok(())
    }
}
