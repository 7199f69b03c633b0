//! [`ServerLog`]: one segmented log for every group of a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::atomic_file;
use super::super::error::{CorruptionKind, Result, StorageError};
use super::super::fs::{DirLock, FileSystem};
use super::super::log_writer::{Durable, Recovered, WriteOp, lock_log_dir};
use super::super::segment_log::create_dir_durably;
use super::super::segment_name::SegmentName;
use super::frame::{self, DecodedFrame, FRAME_PAYLOAD_BYTES_MAX, FrameBody};
use super::group_state::{GroupState, check_append};
use super::open_segment::{OpenSegment, io};
use super::replay::Replay;
use super::scan::{list_segments, read_meta, scan_segment};
use crate::core::{Entry, HardState, LogId, LogIndex};

/// The name of the marker of the first live LSN.
pub const SERVER_LOG_META_NAME: &str = "server_log_meta";
pub(super) const META_MAGIC: [u8; 4] = *b"OARW";

/// Tuning of the server log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLogOptions {
    /// A segment is closed once adding a frame would take it past this many
    /// bytes (a larger frame gets a segment of its own). Default 64 MiB:
    /// one server's log, not one group's.
    pub segment_bytes_max: u64,
    /// Whether a new segment is filled with zeros up to its bound, so that
    /// each `fdatasync` is an overwrite.
    pub preallocate: bool,
    /// When more closed segments than this are kept, the groups pinning
    /// the oldest one have their live frames rewritten into the open
    /// segment, so that one slow group cannot hold the disk forever.
    pub closed_segments_max: usize,
}

impl Default for ServerLogOptions {
    fn default() -> Self {
        ServerLogOptions {
            segment_bytes_max: 64 << 20,
            preallocate: true,
            closed_segments_max: 8,
        }
    }
}

/// The log of every group of one server: frames of all groups in one
/// sequence of segments, one `fdatasync` a batch whatever groups it holds.
///
/// Invariant: closed segments are contiguous in LSN and precede the open
/// one; every frame a group needs (`GroupState::pinned_segment`) is in a
/// kept segment.
#[derive(Debug)]
pub struct ServerLog {
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) dir: PathBuf,
    pub(super) options: ServerLogOptions,
    /// Closed segments: first LSN → last LSN.
    pub(super) closed: BTreeMap<u64, u64>,
    /// The open segment, created at the first frame after start or rotation.
    pub(super) open: Option<OpenSegment>,
    /// The LSN the next frame gets.
    pub(super) next_lsn: u64,
    /// Every live group.
    pub(super) groups: BTreeMap<u64, GroupState>,
    /// Whether a segment was closed since the last maintenance.
    pub(super) maintenance_due: bool,
    _lock: Box<dyn DirLock>,
}

impl ServerLog {
    /// Opens (creating) the server log in `dir`, holding its lock, and
    /// recovers every group.
    ///
    /// # Errors
    /// [`StorageError::Locked`] while another instance has `dir` open;
    /// [`StorageError::Corruption`] for damage recovery may not repair (any
    /// invalid byte but the open segment's torn tail, unknown names, a
    /// missing segment); [`StorageError::Io`].
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: ServerLogOptions,
    ) -> Result<(ServerLog, BTreeMap<u64, Recovered>)> {
        create_dir_durably(&*fs, dir)?;
        let lock = lock_log_dir(&*fs, dir)?;
        atomic_file::remove_leftover(&*fs, dir, SERVER_LOG_META_NAME)?;
        let first_live = read_meta(&*fs, dir)?;
        let mut log = ServerLog {
            fs,
            dir: dir.to_path_buf(),
            options,
            closed: BTreeMap::new(),
            open: None,
            next_lsn: first_live,
            groups: BTreeMap::new(),
            maintenance_due: false,
            _lock: lock,
        };
        let mut replay = Replay {
            history_reclaimed: first_live > 1,
            ..Replay::default()
        };
        for name in list_segments(&*log.fs, dir)? {
            let path = dir.join(name.to_string());
            if let SegmentName::Closed { last, .. } = name
                && last < first_live
            {
                // Reclaimed, the removal undone by a crash.
                log.fs
                    .remove_file(&path)
                    .map_err(io("remove_file", &path))?;
                continue;
            }
            if name.first() != log.next_lsn {
                let kind = CorruptionKind::MissingSegment {
                    expected: log.next_lsn,
                };
                return Err(StorageError::corruption(path, 0, kind));
            }
            let scanned = scan_segment(&log.fs, dir, name, log.bytes_max())?;
            let segment = name.first();
            for (offset, frame) in scanned.frames {
                log.next_lsn = frame.lsn + 1;
                replay
                    .apply(segment, offset, frame)
                    .map_err(|kind| StorageError::corruption(&path, offset, kind))?;
            }
            match (name, scanned.file) {
                (SegmentName::Closed { last, .. }, _) => {
                    log.closed.insert(segment, last);
                }
                (SegmentName::Open { first }, Some(file)) => {
                    let open =
                        OpenSegment::recovered(dir, first, log.next_lsn, scanned.written, file);
                    log.open = Some(open);
                }
                (SegmentName::Open { .. }, None) => unreachable!("scan keeps the open file"),
            }
        }
        log.fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
        let mut recovered = BTreeMap::new();
        for (group, (state, found)) in replay.groups {
            log.groups.insert(group, state);
            recovered.insert(group, found);
        }
        Ok((log, recovered))
    }

    /// The largest file a segment may be on disk.
    fn bytes_max(&self) -> u64 {
        self.options.segment_bytes_max
    }

    /// Validates `ops` for `group` and buffers their frames; durable after
    /// [`flush`](Self::flush). Returns the completions to report once it
    /// returned, in order. The group's latest hard state goes first, so that
    /// no entry is ever durable ahead of the term it was written in.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] / [`StorageError::NotContiguous`] when
    /// an `Entries` op does not continue the group's log (nothing of `ops`
    /// is then buffered); [`StorageError::EntryTooLarge`]; I/O errors of a
    /// segment rotation (fail-stop for every group).
    pub fn submit(&mut self, group: u64, ops: Vec<WriteOp>) -> Result<Vec<Durable>> {
        self.check_ops(group, &ops)?;
        let mut done = Vec::with_capacity(ops.len());
        let hard_state = ops.iter().rev().find_map(|op| match op {
            WriteOp::HardState(hs) => Some(*hs),
            _ => None,
        });
        let current = self.groups.get(&group).map(|g| g.hard_state);
        if let Some(hs) = hard_state.filter(|hs| Some(*hs) != current) {
            self.emit_hard_state(group, hs)?;
        }
        for op in ops {
            match op {
                WriteOp::Entries(entries) => {
                    let Some(last) = entries.last().map(|e| e.id) else {
                        continue;
                    };
                    self.emit_entries(group, &entries)?;
                    done.push(Durable::Entries(last));
                }
                WriteOp::HardState(hs) => done.push(Durable::HardState(hs)),
                WriteOp::Compact(through) => {
                    let state = self.groups.entry(group).or_default();
                    if through.index <= state.last_purged.index {
                        // Already compacted: nothing to write.
                    } else if through.index.0 >= state.last_index() {
                        // It empties the log: a reset, which anchors the
                        // group and so unpins its older segments.
                        let (segment, _) = self.emit(group, &FrameBody::Reset(through))?;
                        self.state(group).reset(through, segment);
                    } else {
                        let (segment, _) = self.emit(group, &FrameBody::Compact(through))?;
                        self.state(group).compact(through, segment);
                    }
                }
                WriteOp::Reset(snapshot) => {
                    let (segment, _) = self.emit(group, &FrameBody::Reset(snapshot))?;
                    self.state(group).reset(snapshot, segment);
                }
            }
        }
        Ok(done)
    }

    /// Checks every `Entries` op of `ops` continues the group's log as the
    /// ops before it leave it, before anything is buffered.
    fn check_ops(&self, group: u64, ops: &[WriteOp]) -> Result<()> {
        let state = self.groups.get(&group);
        let mut purged = state.map_or(0, |g| g.last_purged.index.0);
        let mut last = state.map_or(0, GroupState::last_index);
        for op in ops {
            match op {
                WriteOp::Entries(entries) => {
                    let Some(first) = entries.first() else {
                        continue;
                    };
                    check_append(purged, last, first.id.index.0)?;
                    for pair in entries.windows(2) {
                        if pair[1].id.index != pair[0].id.index.next() {
                            let expected = pair[0].id.index.next();
                            let found = pair[1].id.index;
                            return Err(StorageError::NotContiguous { expected, found });
                        }
                    }
                    last = first.id.index.0 + entries.len() as u64 - 1;
                }
                WriteOp::HardState(_) => {}
                WriteOp::Compact(through) if through.index.0 > purged => {
                    purged = through.index.0;
                    last = last.max(purged);
                }
                WriteOp::Compact(_) => {}
                WriteOp::Reset(snapshot) => (purged, last) = (snapshot.index.0, snapshot.index.0),
            }
        }
        Ok(())
    }

    pub(super) fn state(&mut self, group: u64) -> &mut GroupState {
        self.groups.entry(group).or_default()
    }

    fn emit_hard_state(&mut self, group: u64, hs: HardState) -> Result<()> {
        let (segment, _) = self.emit(group, &FrameBody::HardState(hs))?;
        self.state(group).set_hard_state(hs, segment);
        Ok(())
    }

    /// Buffers `entries` in frames of at most [`FRAME_PAYLOAD_BYTES_MAX`].
    fn emit_entries(&mut self, group: u64, entries: &[Entry]) -> Result<()> {
        let mut rest = entries;
        while !rest.is_empty() {
            let mut n = 1;
            let mut bytes = frame::entries_len(&rest[..1]);
            while n < rest.len() {
                let more =
                    frame::entries_len(&rest[n..n + 1]) - super::super::record::HEADER_BYTES as u64;
                if bytes + more > FRAME_PAYLOAD_BYTES_MAX {
                    break;
                }
                bytes += more;
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            let (segment, offset) = self.emit(group, &FrameBody::Entries(chunk.to_vec()))?;
            let first = chunk[0].id.index.0;
            let last = first + n as u64 - 1;
            self.state(group).append(segment, offset, first, last);
            rest = tail;
        }
        Ok(())
    }

    /// Buffers one frame in the open segment (rotating first if it would
    /// overflow); returns where it lies: (segment, offset).
    pub(super) fn emit(&mut self, group: u64, body: &FrameBody) -> Result<(u64, u64)> {
        let len = match body {
            FrameBody::Entries(entries) => frame::entries_len(entries),
            FrameBody::Restate { entries, .. } => frame::entries_len(entries) + 32,
            _ => 64,
        };
        self.maybe_rotate(len)?;
        let open = self.open.as_mut().expect("maybe_rotate opened one");
        let offset = open.bytes();
        frame::encode(group, open.next_lsn, body, open.first, &mut open.buffer)?;
        open.next_lsn += 1;
        self.next_lsn = open.next_lsn;
        Ok((open.first, offset))
    }

    /// Ensures an open segment with room for `len` more bytes.
    fn maybe_rotate(&mut self, len: u64) -> Result<()> {
        if let Some(open) = &mut self.open {
            if open.is_empty() || open.bytes() + len <= self.options.segment_bytes_max {
                return Ok(());
            }
            open.flush()?;
            let open = self.open.take().expect("checked");
            let first = open.first;
            let last = open.close(&self.fs, &self.dir)?;
            self.closed.insert(first, last);
            self.maintenance_due = true;
        }
        let prealloc = match self.options.preallocate {
            true => self.options.segment_bytes_max,
            false => 0,
        };
        self.open = Some(OpenSegment::create(
            &self.fs,
            &self.dir,
            self.next_lsn,
            prealloc,
        )?);
        Ok(())
    }

    /// Writes every buffered frame with one write and one `fdatasync` (more
    /// only when a segment filled), then, after a rotation, rewrites the
    /// groups pinning the oldest segment if too many are kept and reclaims
    /// the segments no group needs.
    ///
    /// # Errors
    /// Any storage error: nothing submitted since the last flush may be
    /// reported durable (fail-stop).
    pub fn flush(&mut self) -> Result<()> {
        if let Some(open) = &mut self.open {
            open.flush()?;
        }
        if std::mem::take(&mut self.maintenance_due) {
            if self.closed.len() > self.options.closed_segments_max {
                self.rewrite_oldest()?;
                if let Some(open) = &mut self.open {
                    open.flush()?;
                }
            }
            self.reclaim()?;
        }
        Ok(())
    }

    /// Submits and flushes: one group's batch on its own.
    ///
    /// # Errors
    /// As [`submit`](Self::submit) and [`flush`](Self::flush).
    pub fn write(&mut self, group: u64, ops: Vec<WriteOp>) -> Result<Vec<Durable>> {
        let done = self.submit(group, ops)?;
        self.flush()?;
        Ok(done)
    }

    /// Forgets `group`: a tombstone frame voids its earlier frames, and its
    /// segments no longer pin anything. Durable after [`flush`](Self::flush).
    ///
    /// # Errors
    /// I/O errors of a segment rotation.
    pub fn remove_group(&mut self, group: u64) -> Result<()> {
        if self.groups.remove(&group).is_some() {
            self.emit(group, &FrameBody::RemoveGroup)?;
        }
        Ok(())
    }

    /// Entries `[lo, hi)` of `group`, read from disk (or the write buffer).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] / [`StorageError::Unavailable`] when
    /// the range leaves the group's log; [`StorageError::Corruption`] if
    /// bytes changed since they were validated.
    pub fn entries(&self, group: u64, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>> {
        let default = GroupState::default();
        let state = self.groups.get(&group).unwrap_or(&default);
        if lo.0 <= state.last_purged.index.0 && lo < hi {
            let first_index = state.last_purged.index.next();
            return Err(StorageError::Compacted { first_index });
        }
        if hi.0 > state.last_index() + 1 {
            let index = LogIndex(state.last_index() + 1);
            return Err(StorageError::Unavailable { index });
        }
        let mut out = Vec::with_capacity(hi.0.saturating_sub(lo.0) as usize);
        for span in state.spans_in(lo.0, hi.0) {
            let (path, bytes) = self.read_frame(span.segment, span.offset)?;
            let corrupt = |kind| StorageError::corruption(&path, span.offset, kind);
            let entries = match frame::decode(&bytes, 0, span.segment) {
                DecodedFrame::Frame { frame, .. } if frame.group == group => match frame.body {
                    FrameBody::Entries(entries) | FrameBody::Restate { entries, .. } => entries,
                    _ => return Err(corrupt(CorruptionKind::MalformedPayload)),
                },
                DecodedFrame::Invalid(kind) => return Err(corrupt(kind)),
                _ => return Err(corrupt(CorruptionKind::MalformedPayload)),
            };
            let from = lo.0.max(span.first);
            let to = hi.0.min(span.last + 1);
            let base = entries[0].id.index.0;
            out.extend(
                entries
                    .into_iter()
                    .skip((from - base) as usize)
                    .take((to - from) as usize),
            );
        }
        Ok(out)
    }

    /// The bytes of the frame at `offset` of `segment`, header and payload.
    fn read_frame(&self, segment: u64, offset: u64) -> Result<(PathBuf, Vec<u8>)> {
        let header = super::super::record::HEADER_BYTES;
        if let Some(open) = self.open.as_ref().filter(|o| o.first == segment) {
            let path = self
                .dir
                .join(SegmentName::Open { first: segment }.to_string());
            let h = open.read(offset, header)?;
            let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as u64;
            let len = len.min(FRAME_PAYLOAD_BYTES_MAX) as usize;
            return Ok((path, open.read(offset, header + len)?));
        }
        let last = self.closed.get(&segment).copied().unwrap_or(segment);
        let path = self.dir.join(
            SegmentName::Closed {
                first: segment,
                last,
            }
            .to_string(),
        );
        let file = self.fs.open(&path).map_err(io("open", &path))?;
        let mut h = vec![0u8; header];
        file.read_exact_at(&mut h, offset)
            .map_err(io("read", &path))?;
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as u64;
        // A damaged length must not make us allocate it: bounded, and then
        // the checksum fails.
        let len = len
            .min(FRAME_PAYLOAD_BYTES_MAX)
            .min(file.len().map_err(io("len", &path))?);
        let mut bytes = vec![0u8; header + len as usize];
        file.read_exact_at(&mut bytes, offset)
            .map_err(io("read", &path))?;
        Ok((path, bytes))
    }

    /// The groups with anything in the log, ascending.
    pub fn groups(&self) -> impl Iterator<Item = u64> + '_ {
        self.groups.keys().copied()
    }

    /// `group`'s last purged entry and last index, if it has a state.
    pub fn bounds(&self, group: u64) -> Option<(LogId, LogIndex)> {
        let g = self.groups.get(&group)?;
        Some((g.last_purged, LogIndex(g.last_index())))
    }

    /// How many segment files the log keeps (closed and open).
    pub fn segment_count(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }
}
