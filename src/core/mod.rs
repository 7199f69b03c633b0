//! The sans-IO Raft protocol for one group.
//!
//! [`RaftNode`] is a deterministic state machine. The driver feeds it inputs
//! — time (`handle_tick`), peer messages (`handle_message`), disk completions
//! (`handle_entries_persisted`, `handle_hard_state_persisted`) and client
//! proposals (`propose`) — each with the current [`Instant`], then drains
//! [`Action`]s with `poll_action` and sleeps until `poll_timeout`.
//!
//! ```text
//!   driver ──handle_*(now, input)──► RaftNode ──poll_action()──► Send / PersistHardState /
//!      ▲                                                         PersistEntries / Apply /
//!      └──────────── disk completions, replies ◄──────────────── ProposalFailed / RoleChanged
//! ```
//!
//! Nothing here reads a clock, touches a socket or file, spawns a thread or
//! draws from a global RNG: randomness comes from `RaftOptions::rng_seed`.
//! Durability comes before acknowledgement: vote grants and append
//! acknowledgements leave only after the disk confirmed what they claim,
//! while the leader's own disk write runs in parallel with replication.

mod append;
pub mod config_manager;
mod election;
pub mod entry;
pub mod entry_batch;
pub mod error;
pub mod ids;
pub(crate) mod index_deque;
pub mod inflights;
pub mod input;
#[cfg(any(debug_assertions, feature = "invariants"))]
mod invariants;
pub mod log;
pub mod log_load;
mod log_terms;
pub mod membership;
mod membership_change;
pub mod message;
mod node;
pub mod options;
pub mod output;
pub mod progress;
mod quiesce;
pub mod quorum;
pub mod read;
mod removed;
mod replication;
pub mod snapshot;
pub mod status;
pub mod time;
mod transfer;
mod trust;

pub use config_manager::ConfigManager;
pub use entry::{Entry, EntryPayload, HardState};
pub use entry_batch::EntryBatch;
pub use error::{
    ConfChangeError, InputError, OptionsError, ProposalLost, ProposalRefused, ReadError,
    ReadFailure, TransferError,
};
pub use ids::{LogId, LogIndex, NodeId, Term};
pub use input::Event;
pub use log_load::EntriesLoad;
pub use membership::Membership;
pub use message::{
    AppendRequest, AppendResponse, Heartbeat, Message, MessageBody, ReadIndexRequest,
    ReadIndexResponse, RejectHint, VoteRequest, VoteResponse,
};
pub use node::{EventError, InitialState, RaftNode};
pub use options::RaftOptions;
pub use output::{Action, Role};
pub use quorum::{JointConfig, MajorityConfig, VoteResult};
pub use read::{ReadId, ReadPolicy};
pub use snapshot::SnapshotInfo;
pub use status::{PeerStatus, Status};
pub use time::Instant;
