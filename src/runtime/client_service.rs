//! The application's side of a server: route lookups, sessions, commands
//! and reads from `oar::client`, answered by the local member of the group
//! on the Raft port. Clients come in the client role (or the operator's);
//! see `inbound.rs` and docs/security.md.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::Error;
use super::group::GroupInput;
use super::group_id::GroupId;
use super::node::Node;
use super::session::{SessionId, encode_session_error};
use super::state_machine::QueryError;
use super::wire::proto;
use super::wire::proto::client_error::Kind;
use crate::core::ReadPolicy;

/// Runs one client request on this server: a route lookup over `groups`,
/// or a request to the local member of its group.
pub(crate) async fn handle(
    groups: Vec<(GroupId, Node)>,
    request: proto::ClientRequest,
) -> proto::ClientResponse {
    use proto::client_request::Op;
    use proto::client_response::Result as Answer;
    let group = GroupId(request.group_id);
    let request_id = request.request_id;
    let node = groups
        .iter()
        .find(|(id, _)| *id == group)
        .map(|(_, node)| node.clone());
    let result = match (request.op, node) {
        (Some(Op::Route(_)), _) => {
            let mut routes = Vec::with_capacity(groups.len());
            for (_, node) in &groups {
                if let Ok(route) = node.route().await {
                    routes.push(route);
                }
            }
            Ok(Answer::Route(proto::RouteReply { groups: routes }))
        }
        (None, _) => Err(Error::Options(
            "a client request without an operation".into(),
        )),
        (Some(_), None) => Err(Error::GroupNotFound(group)),
        (Some(Op::OpenSession(_)), Some(node)) => {
            node.open_session().await.map(|s| Answer::Session(s.0))
        }
        (Some(Op::Apply(a)), Some(node)) if a.session == 0 => node
            .apply(a.command)
            .await
            .map(|applied| Answer::Reply(applied.response)),
        (Some(Op::Apply(a)), Some(node)) => node
            .apply_in_session(SessionId(a.session), a.seq, a.first_unacked, a.command)
            .await
            .map(|applied| Answer::Reply(applied.response)),
        (Some(Op::Read(r)), Some(node)) => read(&node, r).await.map(Answer::Reply),
        (Some(Op::CloseSession(c)), Some(node)) => node
            .close_session(SessionId(c.session))
            .await
            .map(|()| Answer::Reply(Bytes::new())),
    };
    proto::ClientResponse {
        group_id: group.0,
        result: Some(result.unwrap_or_else(|e| Answer::Error(client_error(e)))),
        request_id,
    }
}

/// A read by the request's policy: the state machine answers the query
/// after a read round (`Node::query`), and the query skips the log. A state
/// machine without queries (the default `on_query`) gets it through the
/// log as a command outside any session, as before policies existed: its
/// answer still reflects every write committed before it.
async fn read(node: &Node, read: proto::ClientRead) -> Result<Bytes, Error> {
    let policy = match proto::ReadPolicy::try_from(read.policy) {
        Ok(proto::ReadPolicy::ReadIndex) => ReadPolicy::ReadIndex,
        Ok(proto::ReadPolicy::Lease) => ReadPolicy::Lease,
        Ok(proto::ReadPolicy::Log | proto::ReadPolicy::Unspecified) => ReadPolicy::Log,
        Err(_) => {
            return Err(Error::Options(format!(
                "unknown read policy {}",
                read.policy
            )));
        }
    };
    match node.query(policy, read.query.clone()).await {
        Err(Error::Query(QueryError::Unsupported)) => {
            node.apply(read.query).await.map(|applied| applied.response)
        }
        answered => answered,
    }
}

/// An error as the client sees it: what it may do next.
fn client_error(error: Error) -> proto::ClientError {
    let detail = error.to_string();
    let mut out = proto::ClientError {
        detail,
        ..Default::default()
    };
    let kind = match error {
        Error::NotLeader {
            leader,
            leader_addr,
        } => {
            out.leader = leader.map_or(0, |l| l.0);
            out.leader_addr = leader_addr.map(|a| a.to_string()).unwrap_or_default();
            Kind::NotLeader
        }
        Error::GroupNotFound(_) => Kind::UnknownGroup,
        Error::NotRunning | Error::Overwritten(_) => Kind::NotApplied,
        Error::Shutdown | Error::OutcomeUnknown(_) | Error::Storage(_) => Kind::OutcomeUnknown,
        Error::Session(e) => {
            out.session_error = encode_session_error(&e);
            Kind::Session
        }
        Error::LeadershipLost { .. } | Error::Timeout | Error::Busy { .. } => Kind::ReadNotServed,
        _ => Kind::Refused,
    };
    out.kind = kind as i32;
    out
}

impl Node {
    /// What this member knows of its group, for a client's route table:
    /// term, leader, and every member with its address.
    pub(crate) async fn route(&self) -> Result<proto::GroupRoute, Error> {
        let status = self.status().await?;
        let (reply, peers) = oneshot::channel();
        self.inbox
            .send(GroupInput::Peers { reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        let peers = peers.await.map_err(|_| Error::NotRunning)?;
        let members = status
            .membership
            .members()
            .into_iter()
            .map(|id| proto::RouteMember {
                id: id.0,
                addr: peers.get(&id).map(|a| a.to_string()).unwrap_or_default(),
            })
            .collect();
        Ok(proto::GroupRoute {
            group_id: self.group.0,
            term: status.hard_state.term.0,
            leader: status.leader.map_or(0, |l| l.0),
            members,
        })
    }
}
