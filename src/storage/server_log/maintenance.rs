//! Keeping the server log's disk bounded: segments no group needs are
//! reclaimed oldest first, and groups that pin the oldest segment too long
//! are rewritten forward.

use super::super::atomic_file;
use super::super::error::Result;
use super::super::segment_name::SegmentName;
use super::frame::{self, FRAME_PAYLOAD_BYTES_MAX, FrameBody};
use super::group_state::GroupState;
use super::log::{META_MAGIC, SERVER_LOG_META_NAME, ServerLog};
use super::open_segment::io;
use crate::core::LogIndex;

impl ServerLog {
    /// Removes the closed segments older than every group's oldest needed
    /// frame: the first live LSN is made durable first, so that a crash
    /// undoing a removal brings back only segments recovery removes again.
    /// Returns how many were removed.
    ///
    /// # Errors
    /// I/O errors.
    pub fn reclaim(&mut self) -> Result<usize> {
        let pins = self.groups.values().filter_map(GroupState::pinned_segment);
        let open = self.open.as_ref().map_or(self.next_lsn, |o| o.first);
        let keep_from = pins.min().unwrap_or(open).min(open);
        let doomed: Vec<(u64, u64)> = self
            .closed
            .range(..keep_from)
            .map(|(&f, &l)| (f, l))
            .collect();
        let Some(&(_, last_doomed)) = doomed.last() else {
            return Ok(0);
        };
        let meta = (last_doomed + 1).to_le_bytes();
        atomic_file::write(
            &*self.fs,
            &self.dir,
            SERVER_LOG_META_NAME,
            META_MAGIC,
            &meta,
        )?;
        for &(first, last) in &doomed {
            let path = self
                .dir
                .join(SegmentName::Closed { first, last }.to_string());
            self.fs
                .remove_file(&path)
                .map_err(io("remove_file", &path))?;
            self.closed.remove(&first);
        }
        Ok(doomed.len())
    }

    /// Rewrites into the open segment, as one restate frame each, every
    /// group that pins the oldest closed segment, so that the next reclaim
    /// can take it. One frame a group, so that a crash tearing the rewrite
    /// leaves the group's old frames in force; the old segment goes only
    /// once the rewrite is durable. A group whose live entries exceed one
    /// frame is not rewritten and keeps its segment.
    pub(super) fn rewrite_oldest(&mut self) -> Result<()> {
        let Some(&oldest) = self.closed.keys().next() else {
            return Ok(());
        };
        let pinning: Vec<u64> = self
            .groups
            .iter()
            .filter(|(_, g)| g.pinned_segment() == Some(oldest))
            .map(|(&id, _)| id)
            .collect();
        for group in pinning {
            let state = &self.groups[&group];
            let (hard_state, last_purged, last) =
                (state.hard_state, state.last_purged, state.last_index());
            let entries = self.entries(group, last_purged.index.next(), LogIndex(last + 1))?;
            if frame::entries_len(&entries) + 32 > FRAME_PAYLOAD_BYTES_MAX {
                continue;
            }
            let body = FrameBody::Restate {
                last_purged,
                hard_state,
                entries,
            };
            let at = self.emit(group, &body)?;
            self.state(group).restate(hard_state, last_purged, at, last);
        }
        Ok(())
    }
}
