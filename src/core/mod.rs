//! The sans-IO Raft protocol for one group.
pub mod entry;
pub mod ids;
pub mod membership;
pub mod quorum;

pub use entry::{Entry, EntryPayload, HardState};
pub use ids::{LogId, LogIndex, NodeId, Term};
pub use membership::Membership;
pub use quorum::{JointConfig, MajorityConfig, VoteResult};
