//! The operator's side of a server (braft's `CliService` and builtin status
//! page): admin requests on the Raft port, answered by the local member of
//! the group, and a plain-text status page for an HTTP `GET` on the same
//! port (inside TLS when the server runs it), so `curl` with the operator
//! token shows every group without extra listeners. `oarctl` is the
//! client. Both are for operators only (see `inbound.rs`).

use super::group_id::GroupId;
use super::node::Node;
use super::wire::proto;
use crate::core::{NodeId, Status};
use std::fmt::Write as _;

/// The first bytes of an HTTP request: as a frame length they would claim
/// over 1 GB, so no valid frame starts this way.
pub(crate) const HTTP_GET: [u8; 4] = *b"GET ";

/// Runs one admin request (see `admin_verbs.rs`); `groups` holds the
/// member of the request's group, or every group for `list-groups`.
pub(crate) async fn handle(
    groups: Vec<(GroupId, Node)>,
    request: proto::AdminRequest,
) -> proto::AdminResponse {
    super::admin_verbs::handle(groups, request).await
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

/// Every group's status, as the page's body.
pub(crate) async fn status_page(groups: Vec<(GroupId, Node)>) -> String {
    let mut body = format!("oar: {} group(s)\n", groups.len());
    for (group, node) in groups {
        match node.status().await {
            Ok(status) => body.push_str(&status_text(group, &status)),
            Err(e) => {
                let _ = writeln!(body, "group {group}: {e}");
            }
        }
    }
    body
}

/// The token of an `Authorization: Bearer` header in an HTTP request head.
pub(crate) fn bearer_token(head: &[u8]) -> Option<&[u8]> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        if !name.eq_ignore_ascii_case(b"authorization") {
            return None;
        }
        let value = value[1..].trim_ascii();
        let scheme = b"bearer ";
        (value.len() > scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme))
            .then(|| value[scheme.len()..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_found_in_any_case() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nauthorization: bearer  s3cret \r\n\r\n";
        assert_eq!(bearer_token(head), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            bearer_token(b"GET /\r\nAuthorization: Basic abc\r\n\r\n"),
            None
        );
    }
}
