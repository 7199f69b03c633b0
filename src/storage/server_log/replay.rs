//! Rebuilding every group from the frames recovery read, in LSN order.

use std::collections::BTreeMap;

use super::super::error::CorruptionKind;
use super::super::log_writer::Recovered;
use super::frame::{Frame, FrameBody};
use super::group_state::{GroupState, check_append, replay_gap};
use crate::core::LogId;

/// Every group as the frames so far leave it: its index and its entries.
#[derive(Default)]
pub(crate) struct Replay {
    /// Per group: the index and what recovery hands back.
    pub(crate) groups: BTreeMap<u64, (GroupState, Recovered)>,
    /// Whether older segments were reclaimed: a group's first kept frames
    /// may then continue frames that are gone.
    pub(crate) history_reclaimed: bool,
}

impl Replay {
    /// Applies `frame`, found at `offset` of `segment`.
    ///
    /// # Errors
    /// The corruption an `entries` frame that does not continue its group's
    /// log is: the writer never wrote one.
    pub(crate) fn apply(
        &mut self,
        segment: u64,
        offset: u64,
        frame: Frame,
    ) -> Result<(), CorruptionKind> {
        if frame.body == FrameBody::RemoveGroup {
            self.groups.remove(&frame.group);
            return Ok(());
        }
        let (state, recovered) = self.groups.entry(frame.group).or_default();
        match frame.body {
            FrameBody::Entries(entries) => {
                let first = entries[0].id.index.0;
                let last = first + entries.len() as u64 - 1;
                let purged = state.last_purged.index.0;
                if check_append(purged, state.last_index(), first).is_err() {
                    if !self.history_reclaimed {
                        return Err(replay_gap(state, first));
                    }
                    // Its group's earlier frames were reclaimed: the frame
                    // lies before the group's anchor (every frame from the
                    // anchor on is kept), which sets the log absolutely.
                    // Start afresh; the anchor overrides it.
                    let start = LogId::new(0, first - 1);
                    recovered.entries.clear();
                    recovered.last_purged = start;
                    state.reset(start, segment);
                }
                let purged = state.last_purged.index.0;
                recovered.entries.truncate((first - purged - 1) as usize);
                recovered.entries.extend(entries);
                state.append(segment, offset, first, last);
            }
            FrameBody::HardState(hs) => {
                recovered.hard_state = hs;
                state.set_hard_state(hs, segment);
            }
            FrameBody::Compact(through) => {
                if through.index > state.last_purged.index {
                    let drop = through.index.0 - state.last_purged.index.0;
                    let drop = (drop as usize).min(recovered.entries.len());
                    recovered.entries.drain(..drop);
                    recovered.last_purged = through;
                }
                state.compact(through, segment);
            }
            FrameBody::Reset(snapshot) => {
                recovered.entries.clear();
                recovered.last_purged = snapshot;
                state.reset(snapshot, segment);
            }
            FrameBody::Restate {
                last_purged,
                hard_state,
                entries,
            } => {
                let last = last_purged.index.0 + entries.len() as u64;
                state.restate(hard_state, last_purged, (segment, offset), last);
                *recovered = Recovered {
                    hard_state,
                    last_purged,
                    entries,
                };
            }
            FrameBody::RemoveGroup => unreachable!("handled above"),
        }
        Ok(())
    }
}
