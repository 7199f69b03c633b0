//! The admin verbs a server runs for `oarctl` (braft's `CliService`): each
//! request is answered by the local member of its group with a line of text
//! for people and one JSON object for tools, or with a typed refusal (not
//! the leader and who is, unknown group, invalid argument, failed).
//!
//! The JSON objects (stable; `oarctl --output json` prints them):
//!
//! | verb | object |
//! |------|--------|
//! | status | the `/groups/{id}` object (see `status_json.rs`) |
//! | list-groups | `{"groups": [{"group", "id", "role", "term", "leader", "leader_addr", "committed", "applied"}]}` |
//! | snapshot | `{"group", "id", "snapshot": {"term", "index"}}` |
//! | transfer-leader | `{"group", "from", "to"}` (`from == to`: it already led) |
//! | add-peer, add-learner, promote-learner, remove-peer, change-peers | `{"group", "verb", "id", "committed_at": {"term", "index"}, "membership"}` (`id` null for change-peers) |
//! | reset-peers | `{"group", "verb", "id", "membership"}` (`id`: the member reset) |
//!
//! `membership` is `{"voters", "outgoing_voters", "learners", "joint"}`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::error::Error;
use super::group_id::GroupId;
use super::node::Node;
use super::status_json::{group_json, role_name};
use super::wire::proto;
use crate::core::{ConfChangeError, LogId, Membership, NodeId, Role, TransferError};

use proto::admin_response::ErrorKind;

/// The longest catch-up an admin `add-peer` may ask for: one hour.
const CATCH_UP_MS_MAX: u64 = 3_600_000;

/// The most members a configuration in a request may name: a hostile
/// request must not make the group build a huge configuration.
const MEMBERS_MAX: usize = 256;

/// A refused request, before it becomes an answer.
struct Refusal {
    kind: ErrorKind,
    message: String,
    leader: Option<NodeId>,
    leader_addr: Option<SocketAddr>,
}

impl Refusal {
    fn invalid(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: ErrorKind::InvalidArgument,
            message: message.into(),
            leader: None,
            leader_addr: None,
        }
    }
}

/// What a verb answers on success: text for people, JSON for tools.
type Answer = Result<(String, Value), Refusal>;

/// Runs one admin request; `groups` holds the member of the request's
/// group (every group this server runs, for `list-groups`).
pub(crate) async fn handle(
    groups: Vec<(GroupId, Node)>,
    request: proto::AdminRequest,
) -> proto::AdminResponse {
    use proto::admin_request::Op;
    let group = GroupId(request.group_id);
    let outcome = match request.op {
        Some(Op::ListGroups(_)) => Ok(list_groups(&groups)),
        None => Err(Refusal::invalid("admin request without an operation")),
        Some(op) => match groups.into_iter().find(|(g, _)| *g == group) {
            None => Err(Refusal {
                kind: ErrorKind::UnknownGroup,
                message: Error::GroupNotFound(group).to_string(),
                leader: None,
                leader_addr: None,
            }),
            Some((_, node)) => run(&node, group, op).await,
        },
    };
    match outcome {
        Ok((text, json)) => proto::AdminResponse {
            text,
            json: json.to_string(),
            ..Default::default()
        },
        Err(refusal) => proto::AdminResponse {
            error: refusal.message,
            kind: refusal.kind as i32,
            leader: refusal.leader.map_or(0, |l| l.0),
            leader_addr: refusal.leader_addr.map_or(String::new(), |a| a.to_string()),
            ..Default::default()
        },
    }
}

async fn run(node: &Node, group: GroupId, op: proto::admin_request::Op) -> Answer {
    use proto::admin_request::Op;
    let changed = |verb: &'static str, id: Option<NodeId>| move |at: LogId| (verb, id, at);
    let change = match op {
        Op::Status(_) => {
            let details = node.details().await.map_err(|e| refuse(node, e))?;
            let text = super::admin_service::status_text(group, &details.status);
            return Ok((text, group_json(group, &details, node.applied_index().0)));
        }
        Op::Snapshot(_) => {
            let last = node.snapshot().await.map_err(|e| refuse(node, e))?;
            let json = json!({ "group": group.0, "id": node.id().0, "snapshot": log_id(last) });
            return Ok((format!("snapshot saved through {last}"), json));
        }
        Op::TransferLeader(t) => return transfer(node, group, t.to).await,
        Op::ResetPeers(reset) => return reset_peers(node, group, reset).await,
        Op::ListGroups(_) => unreachable!("answered by handle"),
        Op::AddPeer(add) => {
            let id = NodeId(add.id);
            let addr = parse_addr(&add.addr)?;
            let catch_up = catch_up_of(add.catch_up_ms);
            node.add_peer(id, addr, catch_up)
                .await
                .map(changed("add_peer", Some(id)))
        }
        Op::AddLearner(add) => {
            let id = NodeId(add.id);
            let addr = parse_addr(&add.addr)?;
            node.add_learner(id, addr)
                .await
                .map(changed("add_learner", Some(id)))
        }
        Op::PromoteLearner(p) => {
            let id = NodeId(p.id);
            node.promote_learner(id)
                .await
                .map(changed("promote_learner", Some(id)))
        }
        Op::RemovePeer(r) => {
            let id = NodeId(r.id);
            node.remove_peer(id)
                .await
                .map(changed("remove_peer", Some(id)))
        }
        Op::ChangePeers(c) => {
            let target = change_target(node, &c).await?;
            node.change_membership(target)
                .await
                .map(changed("change_peers", None))
        }
    };
    let (verb, id, at) = change.map_err(|e| refuse(node, e))?;
    let membership = node.status().await.map_err(|e| refuse(node, e))?.membership;
    let who = id.map_or(String::new(), |id| id.to_string());
    let done = match verb {
        "add_peer" => format!("{who} added as a voter"),
        "add_learner" => format!("{who} added as a learner"),
        "promote_learner" => format!("{who} promoted to voter"),
        "remove_peer" => format!("{who} removed"),
        _ => "configuration changed".to_string(),
    };
    let text = format!(
        "{done} at {at}; voters {} learners {}",
        list(&membership.voter_ids()),
        list(&membership.learners)
    );
    let json = json!({
        "group": group.0,
        "verb": verb,
        "id": id.map(|i| i.0),
        "committed_at": log_id(at),
        "membership": membership_json(&membership),
    });
    Ok((text, json))
}

/// `change-peers`: the target configuration, after teaching this member
/// the addresses of those it does not know yet.
async fn change_target(node: &Node, c: &proto::AdminChangePeers) -> Result<Membership, Refusal> {
    if c.voters.len() + c.learners.len() > MEMBERS_MAX {
        return Err(Refusal::invalid(format!(
            "at most {MEMBERS_MAX} members in a configuration"
        )));
    }
    let mut target = Membership::default();
    for (members, set) in [
        (&c.voters, &mut target.voters),
        (&c.learners, &mut target.learners),
    ] {
        for m in members {
            if m.id == 0 {
                return Err(Refusal::invalid("node id 0 is not a valid member"));
            }
            if !m.addr.is_empty() {
                let addr = parse_addr(&m.addr)?;
                node.set_peer_address(NodeId(m.id), addr)
                    .await
                    .map_err(|e| refuse(node, e))?;
            }
            set.insert(NodeId(m.id));
        }
    }
    if let Some(both) = target.voters.intersection(&target.learners).next() {
        return Err(Refusal::invalid(format!(
            "{both} is named both a voter and a learner"
        )));
    }
    Ok(target)
}

/// `transfer-leader`: to `to`, or (0) to the voter whose log matches the
/// leader's furthest (ties: the lowest id), which can take over soonest.
async fn transfer(node: &Node, group: GroupId, to: u64) -> Answer {
    let status = node.status().await.map_err(|e| refuse(node, e))?;
    if status.role != Role::Leader {
        let e = Error::Transfer(TransferError::NotLeader {
            leader_hint: status.leader,
        });
        return Err(refuse(node, e));
    }
    let target = if to == 0 {
        let voters = status.membership.voter_ids();
        let best = status
            .peers
            .iter()
            .filter(|p| p.id != status.id && voters.contains(&p.id))
            .max_by_key(|p| (p.matched, std::cmp::Reverse(p.id)));
        match best {
            Some(p) => p.id,
            None => return Err(Refusal::invalid("no other voter to lead")),
        }
    } else {
        NodeId(to)
    };
    let json = json!({ "group": group.0, "from": status.id.0, "to": target.0 });
    match node.transfer_leadership(target).await {
        Ok(()) => Ok((format!("transferring leadership to {target}"), json)),
        Err(Error::Transfer(TransferError::ToSelf)) => {
            Ok((format!("{target} already leads"), json))
        }
        Err(e) => Err(refuse(node, e)),
    }
}

/// `reset-peers`: braft's unsafe recovery, refused without `force`.
async fn reset_peers(node: &Node, group: GroupId, reset: proto::AdminResetPeers) -> Answer {
    if !reset.force {
        return Err(Refusal::invalid(
            "reset-peers forces a configuration without consensus and may lose \
             committed entries; it needs force",
        ));
    }
    if reset.voters.len() + reset.learners.len() > MEMBERS_MAX {
        return Err(Refusal::invalid(format!(
            "at most {MEMBERS_MAX} members in a configuration"
        )));
    }
    let membership = Membership {
        voters: reset.voters.iter().map(|&v| NodeId(v)).collect(),
        learners: reset.learners.iter().map(|&l| NodeId(l)).collect(),
        ..Membership::default()
    };
    node.reset_peers(membership.clone())
        .await
        .map_err(|e| refuse(node, e))?;
    let text = format!(
        "{} reset to voters {} learners {}",
        node.id(),
        list(&membership.voters),
        list(&membership.learners)
    );
    let json = json!({
        "group": group.0,
        "verb": "reset_peers",
        "id": node.id().0,
        "membership": membership_json(&membership),
    });
    Ok((text, json))
}

/// `list-groups`: every group this server runs, from the watched status
/// (no round trip to the groups' tasks).
fn list_groups(groups: &[(GroupId, Node)]) -> (String, Value) {
    let mut text = String::new();
    let mut rows = Vec::new();
    for (group, node) in groups {
        let s = node.watch().borrow().clone();
        let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
        text.push_str(&format!(
            "group {group} node {} {} term {} leader {leader} committed {} applied {}\n",
            s.id,
            role_name(s.role),
            s.term,
            s.committed,
            s.applied
        ));
        rows.push(json!({
            "group": group.0,
            "id": s.id.0,
            "role": role_name(s.role),
            "term": s.term.0,
            "leader": s.leader.map(|l| l.0),
            "leader_addr": s.leader_addr.map(|a| a.to_string()),
            "committed": s.committed.0,
            "applied": s.applied.0,
        }));
    }
    if rows.is_empty() {
        text.push_str("no groups\n");
    }
    (text, json!({ "groups": rows }))
}

/// Sorts an error into its class; a not-leader refusal names the leader
/// and, when this member knows it, its address.
fn refuse(node: &Node, error: Error) -> Refusal {
    let hint = match &error {
        Error::NotLeader { leader, .. } => Some(*leader),
        Error::ConfChange(ConfChangeError::NotLeader { leader_hint })
        | Error::Transfer(TransferError::NotLeader { leader_hint }) => Some(*leader_hint),
        _ => None,
    };
    let kind = match &error {
        _ if hint.is_some() => ErrorKind::NotLeader,
        Error::GroupNotFound(_) => ErrorKind::UnknownGroup,
        Error::Options(_)
        | Error::ConfChange(
            ConfChangeError::EmptyVoters
            | ConfChangeError::NotAMember { .. }
            | ConfChangeError::AlreadyAMember { .. }
            | ConfChangeError::NotALearner { .. }
            | ConfChangeError::Invalid { .. }
            | ConfChangeError::Unchanged,
        )
        | Error::Transfer(TransferError::NotAVoter { .. }) => ErrorKind::InvalidArgument,
        _ => ErrorKind::Failed,
    };
    let leader = hint.flatten();
    let leader_addr = match &error {
        Error::NotLeader { leader_addr, .. } if leader_addr.is_some() => *leader_addr,
        _ => leader.and_then(|l| {
            let status = node.watch().borrow().clone();
            if status.leader == Some(l) {
                status.leader_addr
            } else {
                None
            }
        }),
    };
    Refusal {
        kind,
        message: error.to_string(),
        leader,
        leader_addr,
    }
}

fn parse_addr(addr: &str) -> Result<SocketAddr, Refusal> {
    addr.parse()
        .map_err(|e| Refusal::invalid(format!("address {addr:?}: {e}")))
}

/// The catch-up an `add-peer` asked for, bounded: a change waiting a year
/// for its learner would block every other change for as long.
fn catch_up_of(ms: u64) -> Duration {
    Duration::from_millis(ms.clamp(1, CATCH_UP_MS_MAX))
}

fn log_id(id: LogId) -> Value {
    json!({ "term": id.term.0, "index": id.index.0 })
}

fn ids(set: &BTreeSet<NodeId>) -> Value {
    set.iter().map(|id| id.0).collect()
}

fn membership_json(m: &Membership) -> Value {
    json!({
        "voters": ids(&m.voters),
        "outgoing_voters": ids(&m.outgoing_voters),
        "learners": ids(&m.learners),
        "joint": m.is_joint(),
    })
}

fn list(set: &BTreeSet<NodeId>) -> String {
    if set.is_empty() {
        return "-".to_string();
    }
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catch_up_is_bounded() {
        assert_eq!(catch_up_of(u64::MAX), Duration::from_secs(3600));
        assert_eq!(catch_up_of(0), Duration::from_millis(1));
        assert_eq!(catch_up_of(5_000), Duration::from_secs(5));
    }
}
