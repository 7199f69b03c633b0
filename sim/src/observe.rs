//! What the simulator observes while a run goes on — who led which term,
//! what each node applied at each index — and the safety violations those
//! observations reveal as they happen.

use std::collections::BTreeMap;

use bytes::Bytes;
use oar::core::{LogId, LogIndex, NodeId, Term};

/// A broken safety property, with the Raft paper section it breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two leaders in one term (§5.2, Election Safety).
    TwoLeaders {
        /// The term.
        term: Term,
        /// The two nodes.
        leaders: (NodeId, NodeId),
    },
    /// Two nodes applied different commands at one index (§5.4.3, State
    /// Machine Safety).
    DivergentApply {
        /// The index.
        index: LogIndex,
        /// The first node to apply there, and what it applied.
        first: (NodeId, LogId),
        /// The node that applied something else.
        second: (NodeId, LogId),
    },
    /// A node applied out of order, skipped an index, or applied one twice.
    ApplyOrder {
        /// The node.
        node: NodeId,
        /// The index it should have applied next.
        expected: LogIndex,
        /// The index it applied.
        got: LogIndex,
    },
    /// Two nodes' logs hold the same entry id but differ before it (§5.3,
    /// Log Matching).
    LogMismatch {
        /// The two nodes.
        nodes: (NodeId, NodeId),
        /// The first index where they differ.
        index: LogIndex,
    },
    /// The final leader's log lacks an entry that some node applied (§5.4,
    /// Leader Completeness).
    LeaderMissesCommitted {
        /// The leader.
        leader: NodeId,
        /// The committed entry it lacks.
        entry: LogId,
    },
    /// A write a client was told succeeded is not in the final log.
    LostAcknowledgedWrite {
        /// The write's client and op index in the history.
        op: usize,
    },
    /// A node panicked: an internal invariant of the core or the runtime
    /// broke (they are checked after every input in the simulator).
    Panic {
        /// The panic message and location.
        message: String,
    },
    /// A node loaded a snapshot whose state differs from replaying the
    /// commands applied up to its last index.
    SnapshotDivergence {
        /// The node that loaded it.
        node: NodeId,
        /// The snapshot's last index.
        last: LogIndex,
    },
    /// The client history is not linearizable.
    NotLinearizable {
        /// What the checker says.
        detail: String,
    },
    /// A node applied a command only a stranger ever sent: a forged append
    /// got past the front door and was committed.
    ForgedApplied {
        /// The node.
        node: NodeId,
        /// The entry it applied.
        entry: LogId,
    },
    /// A server used a configuration that is not the newest one in its
    /// log (a truncated configuration entry was not rolled back).
    ConfigurationNotInLog {
        /// The server.
        node: NodeId,
        /// The configuration it used.
        in_effect: String,
        /// The newest configuration entry in its log.
        logged: String,
    },
    /// A server recovered from a crash without something it had told a
    /// peer was durable.
    DurabilityLost {
        /// The server.
        node: NodeId,
        /// What it promised: a vote, entries or an installed snapshot.
        promise: String,
        /// The crash after which it was gone.
        crash: String,
        /// What the server recovered instead.
        recovered: String,
    },
    /// A server did what a stranger asked, or let it in where it should
    /// have been refused.
    StrangerAdmitted {
        /// What the stranger tried and what the server did.
        detail: String,
    },
    /// A violation in one of several groups on the same servers
    /// (`--groups`): which group broke.
    InGroup {
        /// The group's id.
        group: u64,
        /// What broke in it.
        violation: Box<Violation>,
    },
}

/// Every command a stranger forges carries this, so that applying one is
/// caught at once (no client ever writes it).
pub const FORGED_MARKER: &str = "forged-by-a-stranger";

fn is_forged(data: &[u8]) -> bool {
    let marker = FORGED_MARKER.as_bytes();
    data.windows(marker.len()).any(|window| window == marker)
}

/// Everything observed during one run.
#[derive(Debug, Default)]
pub struct Observations {
    /// term → leader.
    leaders: BTreeMap<Term, NodeId>,
    /// index → (first node to apply there, id, command bytes).
    applied: BTreeMap<LogIndex, (NodeId, LogId, Bytes)>,
    /// node → the next index it must apply (its state machine restarts empty).
    next_apply: BTreeMap<NodeId, LogIndex>,
    violations: Vec<Violation>,
    /// Snapshots loaded (at restart or installed from a leader).
    snapshot_loads: usize,
    /// node → the point its state machine resumed at from its own store,
    /// until it applies a command after it (or loads a snapshot instead).
    resuming: BTreeMap<NodeId, LogIndex>,
    /// State machines that resumed from their own store and applied on.
    resumptions: usize,
}

impl Observations {
    /// A node's state machine (re)started empty: it replays from index 1.
    pub fn node_started(&mut self, node: NodeId) {
        self.next_apply.insert(node, LogIndex(1));
    }

    /// `node`'s state machine offered its own store's state through
    /// `last` (an on-disk state machine): it applies from after it, unless
    /// the runtime loads a snapshot instead.
    pub fn resuming(&mut self, node: NodeId, last: LogIndex) {
        self.next_apply.insert(node, last.next());
        self.resuming.insert(node, last);
    }

    /// How many state machines resumed from their own store and applied
    /// commands after it.
    pub fn resumptions(&self) -> usize {
        self.resumptions
    }

    /// `node` loaded a snapshot through `last`: it applies from after it.
    pub fn snapshot_loaded(&mut self, node: NodeId, last: LogIndex) {
        self.resuming.remove(&node);
        self.next_apply.insert(node, last.next());
        self.snapshot_loads += 1;
    }

    /// How many snapshots were loaded.
    pub fn snapshot_loads(&self) -> usize {
        self.snapshot_loads
    }

    /// `node` leads `term`.
    pub fn leader_started(&mut self, node: NodeId, term: Term) {
        let first = *self.leaders.entry(term).or_insert(node);
        if first != node {
            self.violations.push(Violation::TwoLeaders {
                term,
                leaders: (first, node),
            });
        }
    }

    /// `node` applied the command `data` at `id`. Non-command entries
    /// (no-ops, configurations) are not handed to the state machine, so a
    /// node's applied indexes may skip them; the order must still ascend.
    pub fn applied(&mut self, node: NodeId, id: LogId, data: &Bytes) {
        if self.resuming.remove(&node).is_some() {
            self.resumptions += 1;
        }
        let next = self.next_apply.entry(node).or_insert(LogIndex(1));
        if id.index < *next {
            self.violations.push(Violation::ApplyOrder {
                node,
                expected: *next,
                got: id.index,
            });
        }
        *next = id.index.next();
        if is_forged(data) {
            self.violations
                .push(Violation::ForgedApplied { node, entry: id });
        }
        let (first_node, first_id, first_data) = self
            .applied
            .entry(id.index)
            .or_insert_with(|| (node, id, data.clone()))
            .clone();
        if first_id != id || first_data != data {
            self.violations.push(Violation::DivergentApply {
                index: id.index,
                first: (first_node, first_id),
                second: (node, id),
            });
        }
    }

    /// Records a violation found elsewhere (final log checks, linearizability).
    pub fn violation(&mut self, violation: Violation) {
        self.violations.push(violation);
    }

    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Every command some node applied: index → (id, bytes).
    pub fn applied_commands(&self) -> impl Iterator<Item = (LogId, &Bytes)> {
        self.applied.values().map(|(_, id, data)| (*id, data))
    }

    /// How many terms had a leader.
    pub fn leader_terms(&self) -> usize {
        self.leaders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_in_a_term_are_caught() {
        let mut o = Observations::default();
        o.leader_started(NodeId(1), Term(3));
        o.leader_started(NodeId(1), Term(3));
        assert!(o.violations().is_empty());
        o.leader_started(NodeId(2), Term(3));
        assert_eq!(
            o.violations(),
            [Violation::TwoLeaders {
                term: Term(3),
                leaders: (NodeId(1), NodeId(2))
            }]
        );
    }

    #[test]
    fn divergent_applies_and_repeated_applies_are_caught() {
        let mut o = Observations::default();
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        o.node_started(NodeId(1));
        o.node_started(NodeId(2));
        o.applied(NodeId(1), LogId::new(1, 1), &a);
        o.applied(NodeId(2), LogId::new(1, 1), &a);
        assert!(o.violations().is_empty());
        o.applied(NodeId(2), LogId::new(2, 2), &b);
        o.applied(NodeId(1), LogId::new(1, 2), &a);
        assert!(matches!(
            o.violations()[0],
            Violation::DivergentApply {
                index: LogIndex(2),
                ..
            }
        ));
        // Node 2 applies index 2 again: out of order (it already did).
        o.applied(NodeId(2), LogId::new(2, 2), &b);
        assert!(
            matches!(
                o.violations()[1],
                Violation::ApplyOrder {
                    got: LogIndex(2),
                    ..
                }
            ),
            "applied twice"
        );
        assert_eq!(o.violations().len(), 2);
        // A restart replays from the start: not a violation.
        o.node_started(NodeId(2));
        o.applied(NodeId(2), LogId::new(1, 1), &a);
        assert_eq!(o.violations().len(), 2);
    }

    #[test]
    fn an_applied_forgery_is_caught() {
        let mut o = Observations::default();
        let mut forged = b"{\"Put\":{\"key\":\"k0\",\"value\":\"".to_vec();
        forged.extend_from_slice(FORGED_MARKER.as_bytes());
        o.applied(NodeId(3), LogId::new(9, 4), &Bytes::from(forged));
        assert_eq!(
            o.violations(),
            [Violation::ForgedApplied {
                node: NodeId(3),
                entry: LogId::new(9, 4)
            }]
        );
    }
}
