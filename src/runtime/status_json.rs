//! The status page in JSON (`GET /status.json`, `GET /groups/{id}`): each
//! group's status with braft `/raft_stat`'s details — per peer its next and
//! match index, replication state, AppendEntries in flight and last
//! contact; pending proposals. Field names are stable (tools parse them).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::group_id::GroupId;
use super::metrics::ServerSnapshot;
use super::observer::GroupDetails;
use crate::core::{LogId, NodeId, Role};

/// A role's name in JSON and in metric labels.
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre_candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

fn log_id(id: LogId) -> Value {
    json!({ "term": id.term.0, "index": id.index.0 })
}

fn ids(set: &BTreeSet<NodeId>) -> Value {
    set.iter().map(|id| id.0).collect()
}

/// One group member's status as JSON.
pub(crate) fn group_json(group: GroupId, details: &GroupDetails, applied: u64) -> Value {
    let s = &details.status;
    let addr = |id: NodeId| details.addresses.get(&id).map(ToString::to_string);
    let mut peer_ids: BTreeSet<NodeId> = details.last_contact.keys().copied().collect();
    peer_ids.extend(s.peers.iter().map(|p| p.id));
    peer_ids.remove(&s.id);
    let peer_rows: Vec<Value> = peer_ids
        .into_iter()
        .map(|id| {
            let progress = s.peers.iter().find(|p| p.id == id);
            let contact = details.last_contact.get(&id).copied().flatten();
            json!({
                "id": id.0,
                "addr": addr(id),
                "next_index": progress.map(|p| p.next.0),
                "match_index": progress.map(|p| p.matched.0),
                "state": progress.map(|p| format!("{:?}", p.state).to_lowercase()),
                "inflight_messages": progress.map(|p| p.inflight_msgs),
                "lag_entries": progress.map(|p| s.last_log_id.index.0.saturating_sub(p.matched.0)),
                "last_contact_ms": contact.map(|d| d.as_millis() as u64),
            })
        })
        .collect();
    json!({
        "group": group.0,
        "id": s.id.0,
        "role": role_name(s.role),
        "term": s.hard_state.term.0,
        "voted_for": s.hard_state.voted_for.map(|v| v.0),
        "leader": s.leader.map(|l| l.0),
        "leader_addr": s.leader.and_then(addr),
        "log": {
            "first_index": s.first_index.0,
            "last": log_id(s.last_log_id),
            "committed": s.committed.0,
            "applied": applied,
            "persisted": s.persisted.0,
            "snapshot": s.snapshot.map(log_id),
        },
        "membership": {
            "voters": ids(&s.membership.voters),
            "outgoing_voters": ids(&s.membership.outgoing_voters),
            "learners": ids(&s.membership.learners),
            "joint": s.membership.is_joint(),
        },
        "pending_proposals": details.pending_proposals,
        "peers": peer_rows,
    })
}

/// The whole server as JSON: its counters and every group's status.
pub(crate) fn server_json(server: &ServerSnapshot, groups: Vec<Value>) -> Value {
    let refused: serde_json::Map<String, Value> = server
        .refused
        .iter()
        .map(|&(reason, n)| (reason.to_string(), json!(n)))
        .collect();
    json!({
        "server": {
            "connections_open": server.connections_open,
            "connections_accepted": server.connections_accepted,
            "snapshot_bytes_served": server.snapshot_bytes_served,
            "peer_servers_lost": server.peer_servers_lost,
            "refused": refused,
        },
        "groups": groups,
    })
}
