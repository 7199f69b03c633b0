//! Options of a group on a server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::group_id::GroupId;
use crate::core::{Membership, NodeId, RaftOptions};

/// How to run one Raft group on a [`NodeManager`](super::NodeManager).
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// The group's id, the same on every member.
    pub group: GroupId,
    /// The protocol options; `raft.id` is this node's id in the group.
    pub raft: RaftOptions,
    /// The address book: the Raft address of every node that is or may
    /// become a member (this node's included).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The voters the group starts with (the same on every member); `None`
    /// means every node in `peers`. Members join later as learners
    /// (`Node::add_learner`, `Node::add_peer`).
    pub initial_voters: Option<BTreeSet<NodeId>>,
    /// Client requests queued before `apply` callers wait.
    pub inbox_max: usize,
    /// Save a snapshot (and compact the log) after this many applied
    /// entries; `None`: only on request (`Node::snapshot`). A state machine
    /// without snapshot support turns this off at its first refusal.
    pub snapshot_interval: Option<u64>,
}

impl GroupOptions {
    /// The configuration the group starts from.
    pub fn bootstrap_membership(&self) -> Membership {
        match &self.initial_voters {
            Some(voters) => Membership::with_voters(voters.iter().copied()),
            None => Membership::with_voters(self.peers.keys().copied()),
        }
    }

    /// Options for `id` in `group` with these peers and default protocol options.
    pub fn new(group: GroupId, id: NodeId, peers: BTreeMap<NodeId, SocketAddr>) -> Self {
        GroupOptions {
            group,
            raft: RaftOptions {
                id,
                rng_seed: group.0.wrapping_mul(0x9e37_79b9) ^ id.0,
                ..RaftOptions::default()
            },
            peers,
            initial_voters: None,
            inbox_max: 65_536,
            snapshot_interval: Some(100_000),
        }
    }
}
