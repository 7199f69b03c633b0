//! Quorum math (braft's `Ballot`, etcd's `quorum` package), pure functions
//! over sets of voters.
//!
//! A [`MajorityConfig`] decides by simple majority; a [`JointConfig`] needs a
//! majority of both its halves, which is how joint consensus C(old,new)
//! decides (dissertation §4.3). A simple configuration is a joint one whose
//! outgoing half is empty, and an empty majority agrees with everything, so
//! callers never branch on "joint or not".

use std::collections::BTreeSet;

use super::ids::{LogIndex, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer be reached: enough voters refused.
    Lost,
    /// Neither yet: some voters have not answered.
    Pending,
}

/// A set of voters deciding by majority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    /// A majority configuration of these voters.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        MajorityConfig {
            voters: voters.into_iter().collect(),
        }
    }

    /// The voters, ascending.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// The highest index that a majority has acknowledged. `acked(id)` is the
    /// highest index voter `id` holds durably (`None` counts as 0).
    ///
    /// An empty configuration returns `LogIndex(u64::MAX)`: it constrains
    /// nothing, so that a joint configuration can take the minimum of halves.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<LogIndex>) -> LogIndex {
        majority_committed_index(&self.voters, acked)
    }

    /// Counts votes: `vote(id)` is `Some(true)` for a grant, `Some(false)` for
    /// a refusal and `None` for no answer yet. An empty configuration wins.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for id in &self.voters {
            match vote(*id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let majority = self.voters.len() / 2 + 1;
        if granted >= majority {
            VoteResult::Won
        } else if granted + missing >= majority {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }

    /// Whether the voters for which `active(id)` holds form a majority.
    pub fn is_active(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.vote_result(|id| Some(active(id))) == VoteResult::Won
    }
}

/// [`MajorityConfig::committed_index`] over a borrowed set of voters: the
/// leader's commit check runs on every acknowledgement, and building a
/// `MajorityConfig` there would allocate each time.
pub(super) fn majority_committed_index(
    voters: &BTreeSet<NodeId>,
    acked: impl Fn(NodeId) -> Option<LogIndex>,
) -> LogIndex {
    if voters.is_empty() {
        return LogIndex(u64::MAX);
    }
    // Small groups: a stack array avoids an allocation per commit check.
    let mut stack = [LogIndex(0); 7];
    let mut heap;
    let indexes: &mut [LogIndex] = if voters.len() <= stack.len() {
        &mut stack[..voters.len()]
    } else {
        heap = vec![LogIndex(0); voters.len()];
        &mut heap
    };
    for (slot, id) in indexes.iter_mut().zip(voters) {
        *slot = acked(*id).unwrap_or_default();
    }
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    // Sorted descending: the element at position `majority - 1` is held
    // by at least a majority of voters.
    indexes[voters.len() / 2]
}

/// Two majority configurations that must both agree: C(new) (`incoming`) and
/// C(old) (`outgoing`, empty outside a joint change).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    /// The voters of the new (or only) configuration.
    pub incoming: MajorityConfig,
    /// The voters of the old configuration during a joint change.
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// The highest index acknowledged by a majority of both halves.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<LogIndex>) -> LogIndex {
        let incoming = self.incoming.committed_index(&acked);
        let outgoing = self.outgoing.committed_index(&acked);
        incoming.min(outgoing)
    }

    /// Won only if both halves won; lost if either lost.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(&vote);
        let outgoing = self.outgoing.vote_result(&vote);
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the active voters form a quorum in both halves.
    pub fn is_active(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.incoming.is_active(&active) && self.outgoing.is_active(&active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ids(raw: &[u64]) -> Vec<NodeId> {
        raw.iter().map(|&n| NodeId(n)).collect()
    }

    fn acked(pairs: &[(u64, u64)]) -> BTreeMap<NodeId, LogIndex> {
        pairs
            .iter()
            .map(|&(n, i)| (NodeId(n), LogIndex(i)))
            .collect()
    }

    #[test]
    fn majority_commit_is_the_median_held_by_a_majority() {
        let config = MajorityConfig::new(ids(&[1, 2, 3]));
        let a = acked(&[(1, 5), (2, 3), (3, 9)]);
        assert_eq!(
            config.committed_index(|id| a.get(&id).copied()),
            LogIndex(5)
        );
        // A voter that never answered counts as 0.
        let a = acked(&[(1, 5)]);
        assert_eq!(
            config.committed_index(|id| a.get(&id).copied()),
            LogIndex(0)
        );
        let a = acked(&[(1, 5), (3, 4)]);
        assert_eq!(
            config.committed_index(|id| a.get(&id).copied()),
            LogIndex(4)
        );
    }

    #[test]
    fn even_sized_majority_needs_more_than_half() {
        let config = MajorityConfig::new(ids(&[1, 2, 3, 4]));
        let a = acked(&[(1, 9), (2, 9), (3, 1), (4, 1)]);
        assert_eq!(
            config.committed_index(|id| a.get(&id).copied()),
            LogIndex(1)
        );
        let a = acked(&[(1, 9), (2, 9), (3, 7), (4, 1)]);
        assert_eq!(
            config.committed_index(|id| a.get(&id).copied()),
            LogIndex(7)
        );
    }

    #[test]
    fn large_configurations_take_the_heap_path() {
        let config = MajorityConfig::new((1..=9).map(NodeId));
        let commit = config.committed_index(|id| Some(LogIndex(id.0 * 10)));
        // Descending 90..10: the 5th highest (a majority of 9) is 50.
        assert_eq!(commit, LogIndex(50));
    }

    #[test]
    fn votes_win_lose_or_wait() {
        let config = MajorityConfig::new(ids(&[1, 2, 3]));
        let votes = |v: &[(u64, bool)]| -> BTreeMap<NodeId, bool> {
            v.iter().map(|&(n, g)| (NodeId(n), g)).collect()
        };
        let v = votes(&[(1, true)]);
        assert_eq!(
            config.vote_result(|id| v.get(&id).copied()),
            VoteResult::Pending
        );
        let v = votes(&[(1, true), (2, true)]);
        assert_eq!(
            config.vote_result(|id| v.get(&id).copied()),
            VoteResult::Won
        );
        let v = votes(&[(1, true), (2, false), (3, false)]);
        assert_eq!(
            config.vote_result(|id| v.get(&id).copied()),
            VoteResult::Lost
        );
        let v = votes(&[(2, false), (3, false)]);
        assert_eq!(
            config.vote_result(|id| v.get(&id).copied()),
            VoteResult::Lost
        );
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        let joint = JointConfig {
            incoming: MajorityConfig::new(ids(&[1, 2, 3])),
            outgoing: MajorityConfig::new(ids(&[3, 4, 5])),
        };
        // The old majority {3,4,5} is at 9 but the new one only at 2.
        let a = acked(&[(1, 2), (2, 1), (3, 9), (4, 9), (5, 9)]);
        assert_eq!(joint.committed_index(|id| a.get(&id).copied()), LogIndex(2));
        // An empty outgoing half constrains nothing.
        let simple = JointConfig {
            incoming: MajorityConfig::new(ids(&[1, 2, 3])),
            outgoing: MajorityConfig::default(),
        };
        let a = acked(&[(1, 7), (2, 9), (3, 9)]);
        assert_eq!(
            simple.committed_index(|id| a.get(&id).copied()),
            LogIndex(9)
        );
        assert_eq!(joint.committed_index(|id| a.get(&id).copied()), LogIndex(0));
    }

    #[test]
    fn joint_vote_needs_both_majorities() {
        let joint = JointConfig {
            incoming: MajorityConfig::new(ids(&[1, 2, 3])),
            outgoing: MajorityConfig::new(ids(&[3, 4, 5])),
        };
        let grant = |set: &'static [u64]| move |id: NodeId| Some(set.contains(&id.0));
        assert_eq!(joint.vote_result(grant(&[3, 4, 5])), VoteResult::Lost);
        assert_eq!(joint.vote_result(grant(&[1, 2, 4])), VoteResult::Lost);
        assert_eq!(joint.vote_result(grant(&[1, 3, 4])), VoteResult::Won);
        assert_eq!(
            joint.vote_result(|id| (id.0 == 1).then_some(true)),
            VoteResult::Pending
        );
    }
}
