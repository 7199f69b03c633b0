//! The operator's HTTP pages on the status address (the Raft port, or the
//! separate admin listener): an HTTP/1.0 `GET` inside the connection's TLS,
//! answered only for an operator token (`Authorization: Bearer <token>`),
//! then closed.
//!
//! | path | body |
//! |---|---|
//! | `/`, `/status`, `/raft_stat` | every group's status as text |
//! | `/metrics` | Prometheus text exposition (format 0.0.4) |
//! | `/status.json` | the server's counters and every group's status, JSON |
//! | `/groups/{id}` | one group's status with per-peer details, JSON |

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::admin_service::{bearer_token, status_page};
use super::auth::{BoxedStream, Credential, Security};
use super::group_id::GroupId;
use super::metrics::{self, GroupScrape, ServerSnapshot};
use super::node::Node;
use super::status_json::{group_json, server_json};

/// The longest HTTP request head read before answering.
const HTTP_HEAD_BYTES_MAX: usize = 8 << 10;

/// The longest a request may take to arrive, and its page to be made (a
/// group whose inbox is full answers late): a client trickling its head
/// in, or a stuck group, does not hold the connection for ever.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a request may be answered from, gathered before the head is read.
pub(crate) struct StatusSources {
    /// Every group served here.
    pub(crate) groups: Vec<(GroupId, Node)>,
    /// The server's counters.
    pub(crate) server: ServerSnapshot,
    /// Whether the pages are served on this listener at all.
    pub(crate) enabled: bool,
}

/// A page: status line, content type, body.
type Page = (&'static str, &'static str, String);

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Answers an HTTP request whose first four bytes (`GET `) were read: the
/// rest of its head is read (bounded); an operator (or any client of an
/// insecure server) gets the page its path names, anyone else a refusal.
pub(crate) async fn serve(
    mut stream: BoxedStream,
    sources: StatusSources,
    security: &Security,
    credential: &Credential,
) {
    let answer = tokio::time::timeout(
        HTTP_TIMEOUT,
        answer(&mut stream, sources, security, credential),
    );
    let (status, content_type, body) = answer.await.unwrap_or_else(|_| {
        let body = "the request or its page took too long\n".to_string();
        ("503 Service Unavailable", TEXT, body)
    });
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(HTTP_TIMEOUT, write).await;
}

/// Reads the rest of the request head (bounded) and makes its page.
async fn answer(
    stream: &mut BoxedStream,
    sources: StatusSources,
    security: &Security,
    credential: &Credential,
) -> Page {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < HTTP_HEAD_BYTES_MAX {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let token = bearer_token(&head);
    if !sources.enabled {
        ("404 Not Found", TEXT, "no status page here\n".to_string())
    } else if !security.is_operator(credential, token.unwrap_or_default()) {
        (
            "401 Unauthorized",
            TEXT,
            "an operator token is required (Authorization: Bearer <token>)\n".to_string(),
        )
    } else {
        page(request_path(&head), sources).await
    }
}

/// The path of a request head's first line (`GET /path?query HTTP/1.1`
/// after the four bytes already read), without its query; `/` if absent.
fn request_path(head: &[u8]) -> &str {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let target = line.split(|&b| b == b' ').next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match std::str::from_utf8(path) {
        Ok("") | Err(_) => "/",
        Ok(path) => path,
    }
}

/// The page at `path`.
async fn page(path: &str, sources: StatusSources) -> Page {
    match path {
        "/" | "/status" | "/raft_stat" => ("200 OK", TEXT, status_page(sources.groups).await),
        "/metrics" => ("200 OK", metrics::CONTENT_TYPE, metrics_page(sources).await),
        "/status.json" => {
            let mut groups = Vec::new();
            for (group, node) in &sources.groups {
                if let Ok(details) = node.details().await {
                    groups.push(group_json(*group, &details, node.applied_index().0));
                }
            }
            let body = server_json(&sources.server, groups).to_string();
            ("200 OK", JSON, body)
        }
        _ => match group_of(path).and_then(|g| sources.groups.iter().find(|(id, _)| *id == g)) {
            Some((group, node)) => match node.details().await {
                Ok(details) => {
                    let body = group_json(*group, &details, node.applied_index().0);
                    ("200 OK", JSON, body.to_string())
                }
                Err(e) => ("503 Service Unavailable", JSON, error_json(&e.to_string())),
            },
            None => ("404 Not Found", JSON, error_json("no such page or group")),
        },
    }
}

/// The group a `/groups/{id}` path names.
fn group_of(path: &str) -> Option<GroupId> {
    let id = path.strip_prefix("/groups/")?;
    id.trim_end_matches('/').parse().ok().map(GroupId)
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// The Prometheus exposition of the server and its groups.
async fn metrics_page(sources: StatusSources) -> String {
    let mut groups = Vec::with_capacity(sources.groups.len());
    for (group, node) in sources.groups {
        let details = node.details().await.ok();
        groups.push(GroupScrape::new(
            group,
            details,
            node.applied_index(),
            node.forbidden_messages(),
            node.shared.metrics.clone(),
        ));
    }
    metrics::render(sources.server, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_the_request_target_without_its_query() {
        assert_eq!(
            request_path(b"/metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            "/metrics"
        );
        assert_eq!(request_path(b"/groups/7?x=1 HTTP/1.1\r\n\r\n"), "/groups/7");
        assert_eq!(request_path(b" HTTP/1.1\r\n\r\n"), "/");
        assert_eq!(request_path(b""), "/");
        assert_eq!(request_path(b"/\xff HTTP/1.1\r\n"), "/");
    }

    #[test]
    fn a_group_page_names_its_group() {
        assert_eq!(group_of("/groups/12"), Some(GroupId(12)));
        assert_eq!(group_of("/groups/12/"), Some(GroupId(12)));
        assert_eq!(group_of("/groups/x"), None);
        assert_eq!(group_of("/metrics"), None);
    }
}
