//! The inputs of the core as one enum, for drivers that record, replay or
//! fuzz the event stream. Each variant maps onto one `RaftNode::handle_*`.

use bytes::Bytes;

use super::entry::HardState;
use super::ids::{LogId, NodeId};
use super::message::Message;

/// One input event for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Time advanced to `now`: fire due timers.
    Tick,
    /// A message from a peer.
    Message(Message),
    /// The disk holds every entry up to `up_to`.
    EntriesPersisted {
        /// The last durable entry.
        up_to: LogId,
    },
    /// The disk holds this term and vote.
    HardStatePersisted(HardState),
    /// A client proposes a command.
    Propose(Bytes),
    /// The server of this member is unreachable (the driver's liveness
    /// check): wakes a quiet node.
    PeerUnreachable(NodeId),
}
