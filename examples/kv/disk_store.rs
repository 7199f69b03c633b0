//! `--store disk`: the key-value state kept in files of its own, bitcask
//! style. Each apply batch is appended to the active segment as put and
//! delete records followed by an applied-through record (the applied
//! point travels with the data); an in-memory index maps each key to where
//! its value lies and is rebuilt by scanning the segments at open. Values
//! are read from the files, so the values need not fit in memory.
//!
//! Nothing is fsynced per batch, only a segment as it is sealed: after a
//! crash the store may be behind the log, never ahead of it (a node
//! applies only entries its own log holds durably), and oar replays the
//! difference. At open, records after the last applied-through record (a
//! batch cut by the crash) and a torn or corrupt tail are cut off, with a
//! report on stderr. A snapshot is a
//! checkpoint: the active segment is sealed and every segment (immutable
//! from then on) is hard-linked into it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use oar::core::LogId;

use crate::segment::{
    Damage, RECORD_BODY_BYTES_MAX, RECORD_HEADER_BYTES, Record, SEGMENT_MAGIC, damaged, decode_at,
    encode_applied, encode_delete, encode_put, segment_name, segment_number,
};
use crate::store::{KvMap, KvRead};

/// A segment is sealed and a new one started past this size.
///
/// Why: the open scan reads one segment at a time whole; this bounds it.
pub(crate) const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// Where a key's value lies.
#[derive(Clone, Copy, Debug)]
struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

/// The store: its segments, the key index and the applied point.
///
/// Invariant: every segment but `active` is sealed (never written again);
/// `flushed` is `active`'s length on disk, and `batch` holds the records
/// after it, not yet written; the index points into both.
#[derive(Debug)]
pub(crate) struct DiskKv {
    dir: PathBuf,
    segments: BTreeMap<u64, File>,
    active: u64,
    flushed: u64,
    batch: Vec<u8>,
    index: BTreeMap<Vec<u8>, Location>,
    /// The last entry whose effects the segments hold (`None`: empty).
    applied: Option<LogId>,
}

impl DiskKv {
    /// Opens (or creates) the store in `dir`, rebuilding the index and
    /// cutting an unfinished or damaged tail off the active segment.
    ///
    /// # Errors
    /// I/O, or damage in a sealed segment (which no crash explains).
    pub(crate) fn open(dir: &Path) -> io::Result<DiskKv> {
        let loading = loading_dir(dir);
        if loading.exists() {
            // A snapshot load cut short: the old store (or none) stands.
            fs::remove_dir_all(&loading)?;
        }
        fs::create_dir_all(dir)?;
        let mut numbers: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(number) = name.to_str().and_then(segment_number) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        let mut store = DiskKv {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            active: numbers.last().copied().unwrap_or(1),
            flushed: 0,
            batch: Vec::new(),
            index: BTreeMap::new(),
            applied: None,
        };
        let mut scan = Scan::default();
        for &number in &numbers {
            let last = number == store.active;
            store.scan_segment(number, last, &mut scan)?;
        }
        if numbers.is_empty() {
            store.create_segment(1)?;
        }
        Ok(store)
    }

    /// Reads segment `number` into the index (changes count once an
    /// applied-through record follows them); cuts the active one's tail.
    fn scan_segment(&mut self, number: u64, active: bool, scan: &mut Scan) -> io::Result<()> {
        let name = segment_name(number);
        let path = self.dir.join(&name);
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        if len > SEGMENT_BYTES_MAX + RECORD_HEADER_BYTES + u64::from(RECORD_BODY_BYTES_MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("kv store segment {name}: {len} bytes, over the limit"),
            ));
        }
        let bytes = fs::read(&path)?;
        let magic = SEGMENT_MAGIC.len();
        let mut at = magic;
        let mut good_end = magic;
        let damage = match bytes.get(..magic) {
            Some(m) if m == SEGMENT_MAGIC => loop {
                match decode_at(&bytes, at) {
                    Ok(None) => break None,
                    Ok(Some((record, next))) => {
                        if let Some(last) = scan.take(number, record) {
                            self.commit_scanned(scan);
                            self.applied = Some(last);
                            good_end = next;
                        }
                        at = next;
                    }
                    Err(damage) => break Some(damage),
                }
            },
            _ if bytes.len() < magic && SEGMENT_MAGIC.starts_with(&bytes) => Some(Damage::Torn),
            _ => Some(Damage::Corrupt),
        };
        if !active {
            if let Some(damage) = damage {
                return Err(damaged(&name, at, damage));
            }
        } else if damage.is_some() || good_end < bytes.len() {
            scan.pending.clear();
            cut_tail(&file, &name, &bytes, (at, good_end), damage)?;
        }
        if active {
            self.flushed = good_end as u64;
        }
        self.segments.insert(number, file);
        Ok(())
    }

    fn commit_scanned(&mut self, scan: &mut Scan) {
        for (key, location) in std::mem::take(&mut scan.pending) {
            match location {
                Some(location) => self.index.insert(key, location),
                None => self.index.remove(&key),
            };
        }
    }

    /// Seals the active segment, durably (a later segment's batches build
    /// on it, and a sealed segment is never cut at open), and creates
    /// segment `number` as the new active one (durably named).
    fn create_segment(&mut self, number: u64) -> io::Result<()> {
        if let Some(sealed) = self.segments.get(&self.active) {
            sealed.sync_all()?;
        }
        let path = self.dir.join(segment_name(number));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(SEGMENT_MAGIC)?;
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        self.segments.insert(number, file);
        self.active = number;
        self.flushed = SEGMENT_MAGIC.len() as u64;
        Ok(())
    }

    /// The last entry the store holds the effects of.
    pub(crate) fn applied(&self) -> Option<LogId> {
        self.applied
    }

    /// Ends an apply batch at `last`: its records and an applied-through
    /// record go to the active segment in one write (not fsynced).
    ///
    /// # Errors
    /// I/O; the store must then not be used further (the process stops).
    pub(crate) fn finish_batch(&mut self, last: LogId) -> io::Result<()> {
        encode_applied(&mut self.batch, last);
        let file = &self.segments[&self.active];
        (&*file).write_all(&self.batch)?;
        self.flushed += self.batch.len() as u64;
        self.batch.clear();
        self.applied = Some(last);
        if self.flushed > SEGMENT_BYTES_MAX {
            self.create_segment(self.active + 1)?;
        }
        Ok(())
    }

    /// Seals the active segment (if it holds records) and returns every
    /// sealed segment's name and path: a checkpoint of everything applied,
    /// to be linked into a snapshot. Cheap: one new file.
    ///
    /// # Errors
    /// I/O.
    pub(crate) fn checkpoint(&mut self) -> io::Result<Vec<(String, PathBuf)>> {
        debug_assert!(self.batch.is_empty(), "batches end within on_apply");
        if self.flushed > SEGMENT_MAGIC.len() as u64 {
            self.create_segment(self.active + 1)?;
        }
        Ok(self
            .segments
            .keys()
            .filter(|&&n| n != self.active)
            .map(|&n| (segment_name(n), self.dir.join(segment_name(n))))
            .collect())
    }

    /// The number of keys.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The store's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Cuts the active segment `file` (read as `bytes`) back to `good_end`,
/// the end of its last complete batch, reporting what stopped the scan at
/// `at`; a segment torn in its magic starts again.
fn cut_tail(
    file: &File,
    name: &str,
    bytes: &[u8],
    (at, good_end): (usize, usize),
    damage: Option<Damage>,
) -> io::Result<()> {
    let what = damage.map_or("an unfinished batch".to_owned(), |d| {
        format!("{d:?} record")
    });
    eprintln!(
        "kv store: segment {name}: {what} at offset {at}; cutting {} bytes after the last \
         complete batch (offset {good_end}); oar replays them from the log",
        bytes.len().saturating_sub(good_end),
    );
    if bytes.starts_with(SEGMENT_MAGIC) {
        file.set_len(good_end as u64)?;
    } else {
        // Appending, as the file is opened for.
        file.set_len(0)?;
        let mut file = file;
        file.write_all(SEGMENT_MAGIC)?;
    }
    file.sync_all()
}

/// The directory a snapshot is loaded into before it replaces `dir`.
pub(crate) fn loading_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".loading");
    dir.with_file_name(name)
}

/// Index changes read since the last applied-through record.
#[derive(Default)]
struct Scan {
    pending: Vec<(Vec<u8>, Option<Location>)>,
}

impl Scan {
    /// Notes `record` of segment `number`; returns the applied point if it
    /// is an applied-through record (the pending changes then count).
    fn take(&mut self, number: u64, record: Record<'_>) -> Option<LogId> {
        match record {
            Record::Put {
                key,
                value_at,
                value_len,
            } => {
                let location = Location {
                    segment: number,
                    offset: value_at,
                    len: value_len,
                };
                self.pending.push((key.to_vec(), Some(location)));
                None
            }
            Record::Delete { key } => {
                self.pending.push((key.to_vec(), None));
                None
            }
            Record::Applied { last } => Some(last),
        }
    }
}

impl KvRead for DiskKv {
    fn get(&self, key: &[u8]) -> io::Result<Option<Cow<'_, [u8]>>> {
        let Some(&Location {
            segment,
            offset,
            len,
        }) = self.index.get(key)
        else {
            return Ok(None);
        };
        let len = len as usize;
        if segment == self.active && offset >= self.flushed {
            // Written earlier in the batch under way, not yet to the file.
            let at = (offset - self.flushed) as usize;
            return Ok(Some(Cow::Borrowed(&self.batch[at..at + len])));
        }
        let mut value = vec![0; len];
        self.segments[&segment].read_exact_at(&mut value, offset)?;
        Ok(Some(Cow::Owned(value)))
    }

    fn value_len(&self, key: &[u8]) -> Option<usize> {
        self.index.get(key).map(|l| l.len as usize)
    }
}

impl KvMap for DiskKv {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let at = encode_put(&mut self.batch, key, value) as u64;
        let location = Location {
            segment: self.active,
            offset: self.flushed + at,
            len: u32::try_from(value.len()).expect("a value fits a command"),
        };
        self.index.insert(key.to_vec(), location);
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        let found = self.index.remove(key).is_some();
        if found {
            encode_delete(&mut self.batch, key);
        }
        found
    }
}

#[cfg(test)]
#[path = "disk_store_tests.rs"]
mod tests;
