//! The client: a route table, a connection pool, and the retry loop every
//! call runs through.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::time::Instant;

use super::connection::{AttemptError, Pool};
use super::error::ClientError;
use super::options::ClientOptions;
use super::route_table::RouteTable;
use super::session::Session;
use crate::core::NodeId;
use crate::runtime::backoff::Backoff;
use crate::runtime::session::decode_session_error;
use crate::runtime::wire::proto;
use crate::runtime::wire::proto::client_error::Kind;
use crate::runtime::wire::proto::client_request::Op;
use crate::runtime::wire::proto::client_response::Result as Answer;
use crate::runtime::{Dialer, GroupId, SessionId};

/// A client of an oar cluster. Cheap to clone; clones share the route
/// table and the connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    routes: Mutex<RouteTable>,
    options: ClientOptions,
    /// Sets apart the backoffs of concurrent calls.
    calls: AtomicU64,
    /// Whose turn it is among a group's members, for follower reads.
    spread: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("routes", &self.inner.routes.lock().expect("routes lock"))
            .finish_non_exhaustive()
    }
}

/// What one attempt's answer tells the retry loop.
enum Outcome {
    Done(Answer),
    Fail(ClientError),
    /// Ask the leader just hinted, at once.
    Redirect,
    /// Wait, refresh the route, try again.
    Retry(String),
    /// The request may have been applied: retried as `Retry` only where a
    /// retry applies nothing twice (sessions, route lookups, reads).
    Unknown(String),
}

impl Client {
    /// A client that finds the cluster through `seeds` (any servers of it)
    /// and connects with `dialer` (see [`Dialer::client`]). Nothing is
    /// contacted until the first call.
    pub fn new(seeds: Vec<SocketAddr>, dialer: Dialer, options: ClientOptions) -> Self {
        Client {
            inner: Arc::new(Inner {
                pool: Pool::new(dialer, options.clone()),
                routes: Mutex::new(RouteTable::new(seeds)),
                options,
                calls: AtomicU64::new(0),
                spread: AtomicU64::new(0),
            }),
        }
    }

    /// The route table as it stands.
    pub fn routes(&self) -> RouteTable {
        self.inner.routes.lock().expect("routes lock").clone()
    }

    /// Asks every known server for the groups it runs, and merges what they
    /// say into the route table. Returns how many servers answered.
    pub async fn refresh(&self) -> usize {
        let servers = self.routes().servers();
        let mut answered = 0;
        for addr in servers {
            answered += usize::from(matches!(self.ask_routes(addr).await, Ok(true)));
        }
        answered
    }

    /// The leader of `group` and its address, waiting (until the deadline)
    /// while an election runs.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] or [`ClientError::UnknownGroup`].
    pub async fn leader(&self, group: GroupId) -> Result<(NodeId, SocketAddr), ClientError> {
        let options = &self.inner.options;
        let deadline = Instant::now() + options.deadline;
        let call = self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let mut backoff = Backoff::new(call, options.backoff_min, options.backoff_max);
        loop {
            if let Some(addr) = self.target(group).await? {
                let routes = self.inner.routes.lock().expect("routes lock");
                if let Some(leader) = routes.group(group).and_then(|r| r.leader) {
                    return Ok((leader, addr));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.gave_up(group, "no leader known".into()));
            }
            tokio::time::sleep(backoff.next_delay().min(deadline - now)).await;
        }
    }

    /// Opens a session in `group`, for exactly-once writes.
    ///
    /// # Errors
    /// [`ClientError`]; `Refused` if the group keeps no sessions.
    pub async fn open_session(&self, group: GroupId) -> Result<Session, ClientError> {
        let request = proto::ClientRequest {
            request_id: 0,
            group_id: group.0,
            op: Some(Op::OpenSession(proto::ClientOpenSession {})),
        };
        match self.call(request).await? {
            Answer::Session(id) => Ok(Session::new(self.clone(), group, SessionId(id))),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies `command` to `group` outside any session, at most once:
    /// retried (across leader changes, elections, reconnections, until the
    /// deadline) only while it was certainly not applied. For groups
    /// without sessions, and commands that are idempotent or cheap to lose;
    /// [`Session::apply`] is the exactly-once write.
    ///
    /// # Errors
    /// [`ClientError::OutcomeUnknown`] (sent, and perhaps applied: read
    /// back), [`ClientError::Timeout`] (not applied), [`ClientError::Refused`].
    pub async fn apply(&self, group: GroupId, command: Bytes) -> Result<Bytes, ClientError> {
        let request = proto::ClientRequest {
            request_id: 0,
            group_id: group.0,
            op: Some(Op::Apply(proto::ClientApply {
                session: 0,
                seq: 0,
                first_unacked: 0,
                command,
            })),
        };
        match self.call_with(request, false, false).await? {
            Answer::Reply(reply) => Ok(reply),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends `request` to its group's leader until an answer or the
    /// deadline: follows `NotLeader` hints at once, and after anything else
    /// that may be retried (a lost connection, a timeout, no leader, an
    /// outcome unknown) waits a jittered backoff, refreshes the route and
    /// tries again.
    pub(crate) async fn call(&self, request: proto::ClientRequest) -> Result<Answer, ClientError> {
        self.call_with(request, true, false).await
    }

    /// [`call`](Self::call); with `!retry_unknown`, an attempt that may have
    /// been applied ends the call with [`ClientError::OutcomeUnknown`]; with
    /// `spread`, each attempt goes to the next member of the group in turn
    /// (follower reads), except right after a `NotLeader` hint.
    pub(crate) async fn call_with(
        &self,
        request: proto::ClientRequest,
        retry_unknown: bool,
        spread: bool,
    ) -> Result<Answer, ClientError> {
        let options = &self.inner.options;
        let group = GroupId(request.group_id);
        let deadline = Instant::now() + options.deadline;
        let call = self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let mut backoff = Backoff::new(call, options.backoff_min, options.backoff_max);
        let mut last = String::from("no server tried");
        let mut redirects = 0;
        loop {
            let target = match spread && redirects == 0 {
                true => self.next_member(group).await?,
                false => self.target(group).await?,
            };
            if target.is_none() {
                last = format!("no leader known for group {group}");
            }
            if let Some(addr) = target {
                match self.attempt(addr, group, &request, retry_unknown).await {
                    Outcome::Done(answer) => return Ok(answer),
                    Outcome::Fail(error) => return Err(error),
                    Outcome::Redirect if redirects < 3 => {
                        redirects += 1;
                        continue;
                    }
                    Outcome::Redirect => last = format!("redirected in circles at {addr}"),
                    Outcome::Unknown(why) if !retry_unknown => {
                        return Err(ClientError::OutcomeUnknown(why));
                    }
                    Outcome::Retry(why) | Outcome::Unknown(why) => last = why,
                }
            }
            redirects = 0;
            let now = Instant::now();
            if now >= deadline {
                return Err(self.gave_up(group, last));
            }
            let wait = backoff.next_delay().min(deadline - now);
            tokio::time::sleep(wait).await;
        }
    }

    /// The error of a call that ran out of time.
    fn gave_up(&self, group: GroupId, last: String) -> ClientError {
        match self.routes().group(group).is_some() {
            true => ClientError::Timeout {
                deadline: self.inner.options.deadline,
                last,
            },
            false => ClientError::UnknownGroup(group),
        }
    }

    /// Where to send a request for `group`: its leader as known, else what
    /// a route lookup finds.
    ///
    /// # Errors
    /// `Refused` if a server refused our credentials: no retry helps.
    async fn target(&self, group: GroupId) -> Result<Option<SocketAddr>, ClientError> {
        if let Some(addr) = self.leader_addr(group) {
            return Ok(Some(addr));
        }
        let candidates = self.routes().candidates(group);
        for addr in candidates {
            if self.ask_routes(addr).await? && self.leader_addr(group).is_some() {
                break;
            }
        }
        Ok(self.leader_addr(group))
    }

    /// The next member of `group` in turn (any role), else the leader as
    /// [`target`](Self::target) finds it.
    ///
    /// # Errors
    /// As [`target`](Self::target).
    async fn next_member(&self, group: GroupId) -> Result<Option<SocketAddr>, ClientError> {
        let turn = self.inner.spread.fetch_add(1, Ordering::Relaxed);
        let member = {
            let routes = self.inner.routes.lock().expect("routes lock");
            routes.group(group).and_then(|r| {
                let count = r.members.len() as u64;
                (count > 0).then(|| r.members.values().nth((turn % count) as usize).copied())?
            })
        };
        match member {
            Some(addr) => Ok(Some(addr)),
            None => self.target(group).await,
        }
    }

    fn leader_addr(&self, group: GroupId) -> Option<SocketAddr> {
        let routes = self.inner.routes.lock().expect("routes lock");
        routes.group(group).and_then(|r| r.leader_addr())
    }

    /// One route lookup at `addr`, merged into the table; whether it
    /// answered.
    ///
    /// # Errors
    /// `Refused` if the server refused our credentials.
    async fn ask_routes(&self, addr: SocketAddr) -> Result<bool, ClientError> {
        let request = proto::ClientRequest {
            request_id: 0,
            group_id: 0,
            op: Some(Op::Route(proto::RouteRequest {})),
        };
        match self.inner.pool.exchange(addr, &request, true).await {
            Ok(proto::ClientResponse {
                result: Some(Answer::Route(reply)),
                ..
            }) => {
                let mut routes = self.inner.routes.lock().expect("routes lock");
                for route in &reply.groups {
                    routes.learn(route);
                }
                Ok(true)
            }
            Err(AttemptError::Refused { detail, .. }) => Err(ClientError::Refused(detail)),
            _ => Ok(false),
        }
    }

    /// One attempt at one server.
    async fn attempt(
        &self,
        addr: SocketAddr,
        group: GroupId,
        request: &proto::ClientRequest,
        resend: bool,
    ) -> Outcome {
        let response = match self.inner.pool.exchange(addr, request, resend).await {
            Ok(response) => response,
            Err(AttemptError::Refused { detail, .. }) => {
                return Outcome::Fail(ClientError::Refused(detail));
            }
            // Not sent: the caller learns it at once, nothing queues up.
            Err(AttemptError::Busy { in_flight, .. }) => {
                return Outcome::Fail(ClientError::Busy { in_flight });
            }
            // Sent (perhaps), and no answer.
            Err(e @ (AttemptError::Exchange { .. } | AttemptError::Timeout { .. })) => {
                self.forget_leader(group);
                return Outcome::Unknown(e.to_string());
            }
            Err(e @ AttemptError::Dial { .. }) => {
                self.forget_leader(group);
                return Outcome::Retry(e.to_string());
            }
        };
        let error = match response.result {
            Some(Answer::Error(error)) => error,
            Some(answer) => return Outcome::Done(answer),
            None => return Outcome::Fail(ClientError::Refused("an empty answer".into())),
        };
        match Kind::try_from(error.kind).unwrap_or(Kind::Unspecified) {
            Kind::NotLeader if error.leader != 0 => {
                let leader = NodeId(error.leader);
                let hinted = error.leader_addr.parse().ok();
                let mut routes = self.inner.routes.lock().expect("routes lock");
                routes.hint(group, leader, hinted);
                match routes.group(group).and_then(|r| r.leader_addr()) {
                    Some(next) if next != addr => Outcome::Redirect,
                    _ => {
                        routes.forget_leader(group);
                        Outcome::Retry(error.detail)
                    }
                }
            }
            Kind::NotLeader | Kind::UnknownGroup | Kind::NotApplied => {
                self.forget_leader(group);
                Outcome::Retry(error.detail)
            }
            Kind::ReadNotServed => {
                self.forget_leader(group);
                Outcome::Retry(error.detail)
            }
            Kind::OutcomeUnknown => {
                self.forget_leader(group);
                Outcome::Unknown(error.detail)
            }
            Kind::Session => match decode_session_error(error.session_error) {
                Some(e) => Outcome::Fail(ClientError::Session(e)),
                None => Outcome::Fail(ClientError::Refused(error.detail)),
            },
            Kind::Refused | Kind::Unspecified => Outcome::Fail(ClientError::Refused(error.detail)),
        }
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    pub(crate) fn dialer(&self) -> &Dialer {
        self.inner.pool.dialer()
    }

    pub(crate) fn forget_leader(&self, group: GroupId) {
        let mut routes = self.inner.routes.lock().expect("routes lock");
        routes.forget_leader(group);
    }
}

pub(crate) fn unexpected(answer: &Answer) -> ClientError {
    ClientError::Refused(format!("an unexpected answer {answer:?}"))
}
