//! The harness's checks over a whole cluster: log matching, every
//! proposal resolved, and what is in flight.

use std::collections::{BTreeMap, BTreeSet};

use oar::core::{Entry, LogIndex, Message, NodeId, ProposalLost};

use super::{Cluster, kind};

impl Cluster {
    /// Log matching (§5.3) across all nodes' logs: wherever two logs hold an
    /// entry with the same id, they hold identical prefixes.
    pub fn check_log_matching(&self) {
        let logs: Vec<(NodeId, BTreeMap<LogIndex, &Entry>)> = self
            .nodes
            .iter()
            .map(|(&id, n)| (id, n.raft.log().iter().map(|e| (e.id.index, e)).collect()))
            .collect();
        for (i, (a_id, a)) in logs.iter().enumerate() {
            for (b_id, b) in &logs[i + 1..] {
                // The highest index both hold with the same id: every index
                // below it that both still hold (after compaction) agrees.
                let last_same = a
                    .iter()
                    .rev()
                    .find(|(index, e)| b.get(index).is_some_and(|f| f.id == e.id));
                if let Some((&k, _)) = last_same {
                    for (index, e) in a.range(..=k) {
                        if let Some(f) = b.get(index) {
                            assert_eq!(e, f, "log matching broken between {a_id} and {b_id}");
                        }
                    }
                }
            }
        }
    }

    /// Every proposal a live node accepted was resolved exactly once: applied
    /// with its id, or failed as overwritten — never both, never neither.
    pub fn check_proposals_resolved(&self) {
        let all: BTreeSet<NodeId> = self.nodes.keys().copied().collect();
        self.check_proposals_resolved_among(&all);
    }

    /// [`check_proposals_resolved`](Self::check_proposals_resolved) for
    /// these nodes only (a node removed from the group may never learn the
    /// fate of proposals it accepted before its removal).
    pub fn check_proposals_resolved_among(&self, ids: &BTreeSet<NodeId>) {
        for (id, node) in self.nodes.iter().filter(|(id, _)| ids.contains(id)) {
            for proposal in &node.accepted {
                let applied = node.applied.iter().any(|e| e.id == *proposal);
                let failed = node.failed_proposals.iter().any(|f| match f {
                    ProposalLost::Overwritten { proposal: p, .. } => p == proposal,
                    _ => false,
                });
                // Covered by an installed snapshot: in its state or not.
                let unknown = node.failed_proposals.iter().any(
                    |f| matches!(f, ProposalLost::OutcomeUnknown { proposal: p } if p == proposal),
                );
                assert!(
                    (unknown && !failed) || applied != failed,
                    "{id}: proposal {proposal} applied={applied} failed={failed}"
                );
            }
        }
    }

    /// Messages in flight of one kind from `from` to `to`.
    pub fn in_flight(&self, from: u64, to: u64, kind_name: &str) -> Vec<&Message> {
        self.network
            .iter()
            .filter(|m| m.from == NodeId(from) && m.to == NodeId(to) && kind(&m.body) == kind_name)
            .collect()
    }
}
