//! Options of a group on a server.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::group_id::GroupId;
use crate::core::{NodeId, RaftOptions};

/// How to run one Raft group on a [`NodeManager`](super::NodeManager).
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// The group's id, the same on every member.
    pub group: GroupId,
    /// The protocol options; `raft.id` is this node's id in the group.
    pub raft: RaftOptions,
    /// Every member's Raft address (this node's included). Until membership
    /// changes land, this is also the group's bootstrap configuration.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Client requests queued before `apply` callers wait.
    pub inbox_max: usize,
}

impl GroupOptions {
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
            inbox_max: 65_536,
        }
    }
}
