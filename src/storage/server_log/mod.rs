//! One log per server: the frames of every group hosted on a server in one
//! segmented, checksummed log (as raft-engine does for TiKV and
//! dragonboat's LogDB), so that one `fdatasync` covers every group's batch
//! and a server holds a handful of file descriptors, not three per group.
//!
//! Layout of the server log's directory:
//! ```text
//! LOCK                                     flock'd while open
//! server_log_meta                          first live LSN (atomic file, magic OARW)
//! log_{first:020}_{last:020}               closed segment, frames with LSNs [first, last]
//! log_inprogress_{first:020}               the open segment
//! ```
//! Frames (`frame.rs`) carry a group id and an LSN; each group's in-memory
//! index (`group_state.rs`) says which segments hold what it still needs,
//! so segments are reclaimed oldest first once no group needs them.
//! Recovery follows the per-group log's rules (`scan.rs`) and replays the
//! frames in LSN order (`replay.rs`). The format is in
//! `docs/on_disk_format.md`.

mod frame;
mod group_state;
mod log;
mod maintenance;
mod open_segment;
mod replay;
mod scan;

pub use log::{SERVER_LOG_META_NAME, ServerLog, ServerLogOptions};

#[cfg(test)]
mod tests;
