//! A group's configuration: voters, learners, and the outgoing voters of a
//! joint configuration (braft's `Configuration`, etcd's `tracker.Config`).

use std::collections::BTreeSet;

use super::ids::{LogIndex, NodeId};
use super::quorum::{JointConfig, MajorityConfig, majority_committed_index};

/// Who belongs to a Raft group.
///
/// Invariant: `learners` is disjoint from `voters` and from `outgoing_voters`.
/// `outgoing_voters` is empty except during a joint change C(old,new), when it
/// holds C(old) and `voters` holds C(new) (dissertation §4.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters (of C(new), during a joint change).
    pub voters: BTreeSet<NodeId>,
    /// The voters of C(old) during a joint change; empty otherwise.
    pub outgoing_voters: BTreeSet<NodeId>,
    /// Non-voting members: they receive the log but never vote nor count.
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A simple (non-joint) configuration of these voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    /// The quorum rule of this configuration.
    pub fn quorum(&self) -> JointConfig {
        JointConfig {
            incoming: MajorityConfig::new(self.voters.iter().copied()),
            outgoing: MajorityConfig::new(self.outgoing_voters.iter().copied()),
        }
    }

    /// What `self.quorum().committed_index(acked)` returns, without
    /// building the quorum (sets of voters) on every commit check.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<LogIndex>) -> LogIndex {
        let incoming = majority_committed_index(&self.voters, &acked);
        let outgoing = majority_committed_index(&self.outgoing_voters, &acked);
        incoming.min(outgoing)
    }

    /// Whether `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing_voters.contains(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every voter of either half, ascending, once each.
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.outgoing_voters).copied().collect()
    }

    /// Every member (voters of both halves and learners), ascending, once each.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.outgoing_voters.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// How many ids the configuration lists (for size accounting).
    pub fn node_count(&self) -> usize {
        self.voters.len() + self.outgoing_voters.len() + self.learners.len()
    }

    /// Whether this is a joint configuration C(old,new).
    pub fn is_joint(&self) -> bool {
        !self.outgoing_voters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(raw: &[u64]) -> BTreeSet<NodeId> {
        raw.iter().map(|&n| NodeId(n)).collect()
    }

    #[test]
    fn committed_index_is_the_quorum_rule_of_both_halves() {
        let acked = |id: NodeId| match id.0 {
            1 => Some(LogIndex(9)),
            2 => Some(LogIndex(7)),
            3 => Some(LogIndex(5)),
            4 => Some(LogIndex(2)),
            _ => None,
        };
        let simple = Membership::with_voters(ids(&[1, 2, 3]));
        let joint = Membership {
            voters: ids(&[1, 2, 3]),
            outgoing_voters: ids(&[3, 4, 5]),
            learners: ids(&[6]),
        };
        for membership in [simple, joint, Membership::default()] {
            assert_eq!(
                membership.committed_index(acked),
                membership.quorum().committed_index(acked),
                "{membership:?}"
            );
        }
        // The outgoing half holds the joint configuration back.
        let joint_index = Membership {
            voters: ids(&[1, 2, 3]),
            outgoing_voters: ids(&[3, 4, 5]),
            learners: BTreeSet::new(),
        }
        .committed_index(acked);
        assert_eq!(joint_index, LogIndex(2));
    }
}
