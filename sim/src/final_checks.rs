//! Checks over the nodes' durable logs at the end of a run: log matching,
//! leader completeness, and no acknowledged write lost.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use oar::core::{Entry, EntryPayload, LogId, LogIndex, Membership, NodeId};
use oar::runtime::session::logged_command;

use crate::observe::Violation;

/// One node's durable log, read back from its disk at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct DurableLog {
    /// The last entry compacted away (covered by the node's snapshot).
    pub start: LogId,
    /// The entries after `start`, in order.
    pub entries: Vec<Entry>,
}

/// Log Matching (§5.3): wherever two logs hold the same entry id, they
/// agree at every index below it that both still hold (compaction may have
/// dropped different prefixes).
pub fn check_log_matching(logs: &BTreeMap<NodeId, DurableLog>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let by_index: Vec<(NodeId, BTreeMap<LogIndex, &Entry>)> = logs
        .iter()
        .map(|(&id, log)| (id, log.entries.iter().map(|e| (e.id.index, e)).collect()))
        .collect();
    for (i, (a_id, a)) in by_index.iter().enumerate() {
        for (b_id, b) in &by_index[i + 1..] {
            let last_same = a
                .iter()
                .rev()
                .find(|(index, e)| b.get(index).is_some_and(|f| f.id == e.id));
            let Some((&last_same, _)) = last_same else {
                continue;
            };
            let differs = a
                .range(..=last_same)
                .find(|(index, e)| b.get(index).is_some_and(|f| f != *e));
            if let Some((&index, _)) = differs {
                violations.push(Violation::LogMismatch {
                    nodes: (*a_id, *b_id),
                    index,
                });
            }
        }
    }
    violations
}

/// Leader Completeness (§5.4): the final leader holds every entry that any
/// node applied, in its log or (before its compaction point) its snapshot.
pub fn check_leader_completeness(
    leader: NodeId,
    leader_log: &DurableLog,
    applied: impl IntoIterator<Item = LogId>,
) -> Vec<Violation> {
    let held: BTreeSet<LogId> = leader_log.entries.iter().map(|e| e.id).collect();
    applied
        .into_iter()
        .filter(|id| id.index > leader_log.start.index && !held.contains(id))
        .map(|entry| Violation::LeaderMissesCommitted { leader, entry })
        .collect()
}

/// Every acknowledged write (`op` index → the command bytes it logged) is
/// in the final leader's log, or among the commands applied before its
/// compaction point (which its snapshot holds). With `sessions` the log
/// holds envelopes, and the command inside each is compared.
pub fn check_acknowledged_writes<'a>(
    leader_log: &'a DurableLog,
    applied: impl IntoIterator<Item = (LogId, &'a Bytes)>,
    acknowledged: &[(usize, Bytes)],
    sessions: bool,
) -> Vec<Violation> {
    let compacted = applied
        .into_iter()
        .filter(|(id, _)| id.index <= leader_log.start.index)
        .map(|(_, data)| data.clone());
    // A session group logs each command in an envelope; the client's
    // command is inside it (the state machine saw only that).
    let logged: BTreeSet<Bytes> = leader_log
        .entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Command(data) if sessions => logged_command(data),
            EntryPayload::Command(data) => Some(data.clone()),
            _ => None,
        })
        .chain(compacted)
        .collect();
    acknowledged
        .iter()
        .filter(|(_, command)| !logged.contains(command))
        .map(|(op, _)| Violation::LostAcknowledgedWrite { op: *op })
        .collect()
}

/// What a running server said was in effect at the end: its
/// configuration and its last, durable log entry.
#[derive(Clone, Debug)]
pub struct InEffect {
    /// The configuration it used.
    pub membership: Membership,
    /// Its last log entry.
    pub last: LogId,
    /// Whether that entry was durable (then its durable log is all of it).
    pub durable: bool,
}

/// Configurations follow the log (dissertation §4.1): a server uses the
/// newest configuration entry in its log, and a truncated one is rolled
/// back. Checked where the durable log is the whole log and holds a
/// configuration entry (one compacted away is the snapshot's business).
pub fn check_configurations(
    in_effect: &BTreeMap<NodeId, InEffect>,
    logs: &BTreeMap<NodeId, DurableLog>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (node, state) in in_effect {
        let Some(log) = logs.get(node) else { continue };
        let whole = state.durable && log.entries.last().map_or(log.start, |e| e.id) == state.last;
        let logged = log.entries.iter().rev().find_map(|e| match &e.payload {
            EntryPayload::Config(m) => Some((e.id, m)),
            _ => None,
        });
        if let (true, Some((at, logged))) = (whole, logged)
            && **logged != state.membership
        {
            violations.push(Violation::ConfigurationNotInLog {
                node: *node,
                in_effect: format!("{:?}", state.membership),
                logged: format!("{at}: {logged:?}"),
            });
        }
    }
    violations
}

/// Two servers whose logs end at the same entry hold the same log (Log
/// Matching), so they must use the same configuration: one that does not
/// kept a configuration its log no longer carries. `states` are (server,
/// last entry, configuration) read from running servers.
pub fn check_configurations_agree(states: &[(NodeId, LogId, Membership)]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (i, (a, last, config)) in states.iter().enumerate() {
        for (b, other_last, other) in &states[i + 1..] {
            if last == other_last && config != other {
                violations.push(Violation::ConfigurationNotInLog {
                    node: *a,
                    in_effect: format!("{config:?}"),
                    logged: format!("{b} at the same last entry {last} uses {other:?}"),
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(start: u64, entries: Vec<Entry>) -> DurableLog {
        DurableLog {
            start: LogId::new(1, start),
            entries,
        }
    }

    fn entry(term: u64, index: u64, data: &'static str) -> Entry {
        Entry {
            id: LogId::new(term, index),
            payload: EntryPayload::Command(Bytes::from_static(data.as_bytes())),
        }
    }

    #[test]
    fn diverging_prefixes_under_a_shared_entry_are_caught() {
        let mut logs = BTreeMap::new();
        logs.insert(NodeId(1), log(0, vec![entry(1, 1, "a"), entry(2, 2, "b")]));
        logs.insert(NodeId(2), log(0, vec![entry(1, 1, "x"), entry(2, 2, "b")]));
        logs.insert(NodeId(3), log(0, vec![entry(1, 1, "a")]));
        // Compacted past the disagreement: nothing left to compare.
        logs.insert(NodeId(4), log(1, vec![entry(2, 2, "b")]));
        let violations = check_log_matching(&logs);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(matches!(violations[0], Violation::LogMismatch { index, .. } if index.0 == 1));
    }

    #[test]
    fn a_leader_missing_an_applied_entry_and_a_lost_write_are_caught() {
        let full = log(0, vec![entry(1, 1, "a"), entry(2, 2, "b")]);
        assert!(check_leader_completeness(NodeId(1), &full, [LogId::new(1, 1)]).is_empty());
        assert_eq!(
            check_leader_completeness(NodeId(1), &full, [LogId::new(1, 2)]).len(),
            1
        );
        let acked = vec![
            (0, Bytes::from_static(b"a")),
            (5, Bytes::from_static(b"gone")),
        ];
        assert_eq!(
            check_acknowledged_writes(&full, [], &acked, false),
            [Violation::LostAcknowledgedWrite { op: 5 }]
        );
        // Compacted entries count when applied before the compaction point.
        let compacted = log(1, vec![entry(2, 2, "b")]);
        let a = Bytes::from_static(b"a");
        let applied = [(LogId::new(1, 1), &a)];
        assert!(check_leader_completeness(NodeId(1), &compacted, [LogId::new(1, 1)]).is_empty());
        assert_eq!(
            check_acknowledged_writes(&compacted, applied, &acked, false),
            [Violation::LostAcknowledgedWrite { op: 5 }]
        );
    }

    #[test]
    fn servers_at_the_same_entry_with_different_configurations_are_caught() {
        let config = |ids: &[u64]| Membership::with_voters(ids.iter().map(|&i| NodeId(i)));
        let at = LogId::new(3, 40);
        let states = vec![
            (NodeId(1), at, config(&[1, 2, 3])),
            (NodeId(2), at, config(&[1, 2, 3])),
            (NodeId(3), LogId::new(3, 39), config(&[1, 2])),
        ];
        assert!(check_configurations_agree(&states).is_empty());
        let mut phantom = states.clone();
        phantom[1].2 = config(&[1, 2]);
        assert!(matches!(
            &check_configurations_agree(&phantom)[..],
            [Violation::ConfigurationNotInLog {
                node: NodeId(1),
                ..
            }]
        ));
    }
}
