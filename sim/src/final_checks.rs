//! Checks over the nodes' durable logs at the end of a run: log matching,
//! leader completeness, and no acknowledged write lost.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use oar::core::{Entry, EntryPayload, LogId, NodeId};

use crate::observe::Violation;

/// Log Matching (§5.3): wherever two logs hold the same entry id, their
/// prefixes up to it are identical.
pub fn check_log_matching(logs: &BTreeMap<NodeId, Vec<Entry>>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let nodes: Vec<(&NodeId, &Vec<Entry>)> = logs.iter().collect();
    for (i, (a_id, a)) in nodes.iter().enumerate() {
        for (b_id, b) in &nodes[i + 1..] {
            let common = a.len().min(b.len());
            let Some(last_same) = (0..common).rev().find(|&k| a[k].id == b[k].id) else {
                continue;
            };
            if let Some(k) = (0..=last_same).find(|&k| a[k] != b[k]) {
                violations.push(Violation::LogMismatch {
                    nodes: (**a_id, **b_id),
                    index: a[k].id.index,
                });
            }
        }
    }
    violations
}

/// Leader Completeness (§5.4): the final leader holds every entry that any
/// node applied.
pub fn check_leader_completeness(
    leader: NodeId,
    leader_log: &[Entry],
    applied: impl IntoIterator<Item = LogId>,
) -> Vec<Violation> {
    let held: BTreeSet<LogId> = leader_log.iter().map(|e| e.id).collect();
    applied
        .into_iter()
        .filter(|id| !held.contains(id))
        .map(|entry| Violation::LeaderMissesCommitted { leader, entry })
        .collect()
}

/// Every acknowledged write (`op` index → the command bytes it logged) is
/// in the final leader's log.
pub fn check_acknowledged_writes(
    leader_log: &[Entry],
    acknowledged: &[(usize, Bytes)],
) -> Vec<Violation> {
    let logged: BTreeSet<&Bytes> = leader_log
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Command(data) => Some(data),
            _ => None,
        })
        .collect();
    acknowledged
        .iter()
        .filter(|(_, command)| !logged.contains(command))
        .map(|(op, _)| Violation::LostAcknowledgedWrite { op: *op })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: u64, index: u64, data: &'static str) -> Entry {
        Entry {
            id: LogId::new(term, index),
            payload: EntryPayload::Command(Bytes::from_static(data.as_bytes())),
        }
    }

    #[test]
    fn diverging_prefixes_under_a_shared_entry_are_caught() {
        let mut logs = BTreeMap::new();
        logs.insert(NodeId(1), vec![entry(1, 1, "a"), entry(2, 2, "b")]);
        logs.insert(NodeId(2), vec![entry(1, 1, "x"), entry(2, 2, "b")]);
        logs.insert(NodeId(3), vec![entry(1, 1, "a")]);
        let violations = check_log_matching(&logs);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(matches!(violations[0], Violation::LogMismatch { index, .. } if index.0 == 1));
    }

    #[test]
    fn a_leader_missing_an_applied_entry_and_a_lost_write_are_caught() {
        let log = vec![entry(1, 1, "a"), entry(2, 2, "b")];
        assert!(check_leader_completeness(NodeId(1), &log, [LogId::new(1, 1)]).is_empty());
        assert_eq!(
            check_leader_completeness(NodeId(1), &log, [LogId::new(1, 2)]).len(),
            1
        );
        let acked = vec![
            (0, Bytes::from_static(b"a")),
            (5, Bytes::from_static(b"gone")),
        ];
        assert_eq!(
            check_acknowledged_writes(&log, &acked),
            [Violation::LostAcknowledgedWrite { op: 5 }]
        );
    }
}
