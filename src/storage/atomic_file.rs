//! Small files replaced atomically and verified on read: the term/vote meta,
//! the log's first-index marker and the snapshot meta.
//!
//! ```text
//! offset size field
//!      0    4 magic        identifies the file kind
//!      4    4 version      u32 LE, 1
//!      8    4 payload_len  u32 LE
//!     12    4 crc          CRC32C of bytes 0..12 and the payload
//!     16    … payload
//! ```
//!
//! Written as braft's `ProtoBufFile` does, plus the directory sync it lacks:
//! write `name.tmp`, fsync it, rename it over `name`, fsync the directory.
//! After a crash the file holds the old or the new contents, never a mix; a
//! file that fails its checks is corruption, never a default value.

use std::io;
use std::path::Path;

use super::error::{CorruptionKind, Result, StorageError};
use super::fs::{self, FileSystem};

const VERSION: u32 = 1;
const HEADER_BYTES: usize = 16;

/// The suffix of the temporary file a write goes through.
pub const TMP_SUFFIX: &str = ".tmp";

/// Atomically replaces `dir/name` with `payload` under `magic`; durable on
/// return.
pub fn write(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    magic: [u8; 4],
    payload: &[u8],
) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&magic);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes), payload);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(payload);
    let mut file = fs
        .create(&tmp)
        .map_err(|e| StorageError::io("create", &tmp, e))?;
    file.write_all_at(&bytes, 0)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| StorageError::io("sync_all", &tmp, e))?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(|e| StorageError::io("rename", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("sync_dir", dir, e))
}

/// Reads and verifies `dir/name`; `None` if it does not exist.
///
/// # Errors
/// [`StorageError::Corruption`] naming the file when its magic, version,
/// length or checksum is wrong, or it is longer than `payload_len_max`
/// allows.
pub fn read(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    magic: [u8; 4],
    payload_len_max: u64,
) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let corrupt = |kind| Err(StorageError::corruption(&path, 0, kind));
    let bytes = match fs::read_all(fs, &path, HEADER_BYTES as u64 + payload_len_max) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return corrupt(CorruptionKind::FileLength);
        }
        Err(e) => return Err(StorageError::io("read", &path, e)),
    };
    if bytes.len() < HEADER_BYTES {
        return corrupt(CorruptionKind::FileLength);
    }
    let (header, payload) = bytes.split_at(HEADER_BYTES);
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..12]), payload);
    if crc != word(12) {
        return corrupt(CorruptionKind::FileChecksum);
    }
    if header[..4] != magic || word(4) != VERSION {
        return corrupt(CorruptionKind::BadMagic);
    }
    if word(8) as usize != payload.len() {
        return corrupt(CorruptionKind::FileLength);
    }
    Ok(Some(payload.to_vec()))
}

/// Removes a leftover `dir/name.tmp` from a write a crash interrupted.
pub fn remove_leftover(fs: &dyn FileSystem, dir: &Path, name: &str) -> Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    match fs.remove_file(&tmp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove_file", &tmp, e)),
    }
}
