//! The operator's side of a server (braft's `CliService` and builtin status
//! page): admin requests on the Raft port, answered by the local member of
//! the group, and a plain-text status page for any HTTP `GET` on the same
//! port, so `curl http://host:port/` shows every group without extra
//! listeners. `oarctl` is the client.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::Error;
use super::group_id::GroupId;
use super::node::Node;
use super::proto;
use crate::core::{NodeId, Status};

/// The first bytes of an HTTP request: as a frame length they would claim
/// over 1 GB, so no valid frame starts this way.
pub(crate) const HTTP_GET: [u8; 4] = *b"GET ";

/// The longest HTTP request head read before answering.
const HTTP_HEAD_BYTES_MAX: usize = 8 << 10;

/// Runs one admin request against the local member of its group.
pub(crate) async fn handle(
    node: Option<Node>,
    request: proto::AdminRequest,
) -> proto::AdminResponse {
    use proto::admin_request::Op;
    let group = GroupId(request.group_id);
    let Some(node) = node else {
        return failure(Error::GroupNotFound(group));
    };
    let outcome = match request.op {
        Some(Op::Status(_)) => node.status().await.map(|s| status_text(group, &s)),
        Some(Op::Snapshot(_)) => node
            .snapshot()
            .await
            .map(|last| format!("snapshot saved through {last}")),
        Some(Op::TransferLeader(t)) => node
            .transfer_leadership(NodeId(t.to))
            .await
            .map(|()| format!("transferring leadership to {}", NodeId(t.to))),
        Some(Op::AddPeer(add)) => match add.addr.parse::<SocketAddr>() {
            Ok(addr) => {
                let catch_up = Duration::from_millis(add.catch_up_ms.max(1));
                node.add_peer(NodeId(add.id), addr, catch_up)
                    .await
                    .map(|at| format!("{} added as a voter at {at}", NodeId(add.id)))
            }
            Err(e) => Err(Error::Options(format!("address {:?}: {e}", add.addr))),
        },
        Some(Op::RemovePeer(remove)) => node
            .remove_peer(NodeId(remove.id))
            .await
            .map(|at| format!("{} removed at {at}", NodeId(remove.id))),
        None => Err(Error::Options("admin request without an operation".into())),
    };
    match outcome {
        Ok(text) => proto::AdminResponse {
            error: String::new(),
            text,
        },
        Err(e) => failure(e),
    }
}

fn failure(error: Error) -> proto::AdminResponse {
    proto::AdminResponse {
        error: error.to_string(),
        text: String::new(),
    }
}

/// A member's status as a few lines of text.
pub fn status_text(group: GroupId, s: &Status) -> String {
    let mut out = String::new();
    let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
    let snapshot = s.snapshot.map_or("none".to_string(), |l| l.to_string());
    let _ = writeln!(
        out,
        "group {group} node {} role {:?} term {} leader {leader}",
        s.id, s.role, s.hard_state.term
    );
    let _ = writeln!(
        out,
        "  log {}..{} committed {} applied {} persisted {} snapshot {snapshot}",
        s.first_index, s.last_log_id, s.committed, s.applied, s.persisted
    );
    let m = &s.membership;
    let ids = |set: &std::collections::BTreeSet<NodeId>| match set.is_empty() {
        true => "-".to_string(),
        false => set
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    let _ = write!(out, "  voters {}", ids(&m.voter_ids()));
    if m.is_joint() {
        let _ = write!(out, " (joint with {})", ids(&m.outgoing_voters));
    }
    let _ = writeln!(out, " learners {}", ids(&m.learners));
    for p in &s.peers {
        let _ = writeln!(
            out,
            "  peer {} matched {} next {} {:?} inflight {}",
            p.id, p.matched, p.next, p.state, p.inflight_msgs
        );
    }
    out
}

/// Answers an HTTP request whose first four bytes (`GET `) were read: the
/// rest of its head is read (bounded), then every group's status is sent
/// and the connection closed.
pub(crate) async fn serve_status_page<R, W>(
    reader: &mut R,
    writer: &mut W,
    groups: Vec<(GroupId, Node)>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < HTTP_HEAD_BYTES_MAX {
        match reader.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let mut body = format!("oar: {} group(s)\n", groups.len());
    for (group, node) in groups {
        match node.status().await {
            Ok(status) => body.push_str(&status_text(group, &status)),
            Err(e) => {
                let _ = writeln!(body, "group {group}: {e}");
            }
        }
    }
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = writer.write_all(response.as_bytes()).await;
    let _ = writer.flush().await;
}
