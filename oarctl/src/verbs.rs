//! Running the verbs: the operator's dialer, following the leader from any
//! server, printing answers as text or JSON, and `watch`'s loop.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use oar::core::NodeId;
use oar::runtime::admin_client::{AdminAnswer, AdminError, AdminOp, request};
use oar::runtime::{Dialer, GroupId, Insecure, TlsAuthenticator};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::failure::{Class, Failure};
use crate::{Args, Command, Output};

/// How many `NotLeader` redirects one attempt follows before it waits: a
/// leader that keeps moving is waited out, not chased.
const HOPS_MAX: usize = 4;

/// How long to wait before asking again when nobody knows a leader (an
/// election is running).
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// The least time left worth another round of the leader search: less
/// would end in a request cut short, a timeout that hides why no leader
/// was found.
const ATTEMPT_MIN: Duration = Duration::from_millis(500);

/// A member of `change-peers`' configuration: `ID` or `ID=ADDR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberArg {
    id: NodeId,
    addr: Option<SocketAddr>,
}

impl FromStr for MemberArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (id, addr) = match s.split_once('=') {
            Some((id, addr)) => (id, Some(addr)),
            None => (s, None),
        };
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|e| format!("member id {id:?}: {e}"))?;
        let addr = addr
            .map(|a| a.trim().parse().map_err(|e| format!("address {a:?}: {e}")))
            .transpose()?;
        Ok(MemberArg {
            id: NodeId(id),
            addr,
        })
    }
}

/// What every verb needs: where, as whom, how long.
struct Ctx<'a> {
    args: &'a Args,
    dialer: Dialer,
    group: GroupId,
    deadline: Instant,
}

/// Runs the verb the command line names (all but `certs`).
pub(crate) async fn run(args: &Args) -> Result<(), Failure> {
    if args.server.is_empty() {
        return Err(Failure::new(Class::InvalidArgument, "--server is required"));
    }
    let ctx = Ctx {
        args,
        dialer: dialer(args)?,
        group: GroupId(args.group),
        deadline: Instant::now() + Duration::from_secs(args.timeout),
    };
    let first = args.server[0];
    let answer = match &args.command {
        Command::Certs { .. } => unreachable!("certs is not an admin verb"),
        Command::Status if args.leader => find_leader(&ctx).await?.1,
        Command::Status => ctx.once(first, AdminOp::Status).await?,
        Command::Leader => {
            let (addr, answer) = find_leader(&ctx).await?;
            leader_answer(addr, &answer)?
        }
        Command::ListGroups => ctx.once(first, AdminOp::ListGroups).await?,
        Command::Snapshot => {
            let at = match args.leader {
                true => find_leader(&ctx).await?.0,
                false => first,
            };
            ctx.once(at, AdminOp::Snapshot).await?
        }
        Command::Watch {
            count,
            duration,
            interval,
        } => {
            let at = match args.leader {
                true => find_leader(&ctx).await?.0,
                false => first,
            };
            return watch(&ctx, at, *count, *duration, *interval).await;
        }
        Command::ResetPeers {
            voters,
            learners,
            force,
        } => return reset_peers(&ctx, voters, learners, *force).await,
        command => at_leader(&ctx, leader_op(command)).await?,
    };
    print(args.output, &answer);
    Ok(())
}

/// The admin request of a verb that goes to the leader.
fn leader_op(command: &Command) -> AdminOp {
    match command {
        Command::TransferLeader { to, .. } => AdminOp::TransferLeader {
            to: NodeId(to.unwrap_or(0)),
        },
        &Command::AddPeer { id, addr, catch_up } => AdminOp::AddPeer {
            id: NodeId(id),
            addr,
            catch_up: Duration::from_secs(catch_up),
        },
        &Command::RemovePeer { id } => AdminOp::RemovePeer { id: NodeId(id) },
        Command::ChangePeers { voters, learners } => {
            let members = |list: &[MemberArg]| list.iter().map(|m| (m.id, m.addr)).collect();
            AdminOp::ChangePeers {
                voters: members(voters),
                learners: members(learners),
            }
        }
        &Command::AddLearner { id, addr } => AdminOp::AddLearner {
            id: NodeId(id),
            addr,
        },
        &Command::PromoteLearner { id } => AdminOp::PromoteLearner { id: NodeId(id) },
        other => unreachable!("{other:?} does not go to the leader"),
    }
}

impl Ctx<'_> {
    /// Time left before the verb's deadline.
    fn left(&self) -> Result<Duration, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Class::Timeout,
                format!("no answer within {} s", self.args.timeout),
            ));
        }
        Ok(left)
    }

    /// One request to one server.
    async fn once(&self, at: SocketAddr, op: AdminOp) -> Result<AdminAnswer, Failure> {
        let left = self.left()?;
        Ok(request(&self.dialer, at, self.group, op, left).await?)
    }
}

/// Runs `op` at the group's leader: asks the servers in turn, follows each
/// `NotLeader` answer to the leader it names, and waits out elections
/// until the deadline. Only refusals that show the request was not run
/// (not the leader, no connection) are retried: a change is never sent
/// twice after an answer was lost.
async fn at_leader(ctx: &Ctx<'_>, op: AdminOp) -> Result<AdminAnswer, Failure> {
    follow(ctx, |at| {
        let op = op.clone();
        async move { ctx.once(at, op).await }
    })
    .await
    .map(|(_, answer)| answer)
}

/// The leader's address and its status, found from any server: a status
/// from a member that does not lead counts as a `NotLeader` answer naming
/// the leader it knows.
async fn find_leader(ctx: &Ctx<'_>) -> Result<(SocketAddr, AdminAnswer), Failure> {
    follow(ctx, |at| async move {
        let answer = ctx.once(at, AdminOp::Status).await?;
        let status = parse(&answer)?;
        if status["role"] == "leader" {
            return Ok(answer);
        }
        let leader = status["leader"].as_u64().map(NodeId);
        let leader_addr = status["leader_addr"].as_str().and_then(|a| a.parse().ok());
        Err(Failure::from(AdminError::NotLeader {
            leader,
            leader_addr,
            message: format!("{} is a {} in group {}", at, status["role"], ctx.group),
        }))
    })
    .await
}

/// The leader search behind [`at_leader`] and [`find_leader`].
async fn follow<F, Fut>(ctx: &Ctx<'_>, attempt: F) -> Result<(SocketAddr, AdminAnswer), Failure>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<AdminAnswer, Failure>>,
{
    let servers = &ctx.args.server;
    let mut next = 0;
    // Why the last round found no leader: reported when too little time
    // is left for another round.
    let mut last: Option<Failure> = None;
    loop {
        let mut at = servers[next % servers.len()];
        next += 1;
        for _ in 0..=HOPS_MAX {
            match attempt(at).await {
                Ok(answer) => return Ok((at, answer)),
                Err(f) if f.class == Class::NotLeader => {
                    let redirect = f.leader.and_then(|(_, addr)| addr).filter(|&a| a != at);
                    last = Some(f);
                    match redirect {
                        Some(addr) => at = addr,
                        None => break,
                    }
                }
                // Not connected: the request never ran; try another server.
                Err(f) if f.class == Class::Unreachable => {
                    last = Some(f);
                    break;
                }
                // A redirect names a Raft address; where operators were
                // moved to an admin address, it refuses us: go on with the
                // servers named on the command line, which may hold the
                // leader's admin address.
                Err(f) if !servers.contains(&at) && servers.len() > 1 => {
                    last = Some(f);
                    break;
                }
                Err(f) => return Err(f),
            }
        }
        let left = ctx.deadline.saturating_duration_since(Instant::now());
        if left < RETRY_DELAY + ATTEMPT_MIN {
            return Err(last.expect("an attempt failed"));
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
}

/// `leader`'s answer, from the leader's own status.
fn leader_answer(addr: SocketAddr, status: &AdminAnswer) -> Result<AdminAnswer, Failure> {
    let s = parse(status)?;
    let json = json!({
        "group": s["group"],
        "leader": s["id"],
        "leader_addr": addr.to_string(),
        "term": s["term"],
    });
    Ok(AdminAnswer {
        text: format!(
            "group g{} leader n{} at {addr} term {}",
            s["group"], s["id"], s["term"]
        ),
        json: json.to_string(),
    })
}

/// `reset-peers` on every `--server` named (the survivors), never
/// following a leader: it is for groups that have none.
async fn reset_peers(
    ctx: &Ctx<'_>,
    voters: &[u64],
    learners: &[u64],
    force: bool,
) -> Result<(), Failure> {
    if !force {
        return Err(Failure::new(
            Class::InvalidArgument,
            "reset-peers forces a configuration without consensus and can lose committed \
             entries or elect two leaders; run it only on the survivors of a group that lost \
             its quorum, and add --force to confirm",
        ));
    }
    let op = AdminOp::ResetPeers {
        voters: voters.iter().map(|&v| NodeId(v)).collect(),
        learners: learners.iter().map(|&l| NodeId(l)).collect(),
        force,
    };
    let mut members = Vec::new();
    for &at in &ctx.args.server {
        let answer = ctx.once(at, op.clone()).await?;
        if ctx.args.output == Output::Text {
            print(Output::Text, &answer);
        }
        members.push(parse(&answer)?);
    }
    if ctx.args.output == Output::Json {
        println!("{}", json!({ "verb": "reset_peers", "members": members }));
    }
    Ok(())
}

/// The fields `watch` follows, out of a status object.
fn watched(status: &Value) -> Value {
    json!({
        "group": status["group"],
        "id": status["id"],
        "role": status["role"],
        "term": status["term"],
        "leader": status["leader"],
        "leader_addr": status["leader_addr"],
        "committed": status["log"]["committed"],
        "applied": status["log"]["applied"],
        "membership": status["membership"],
    })
}

/// `watch`: the member's status each time it changes, until `count` lines
/// or `duration` seconds.
async fn watch(
    ctx: &Ctx<'_>,
    at: SocketAddr,
    count: Option<u64>,
    duration: Option<u64>,
    interval: u64,
) -> Result<(), Failure> {
    let end = duration.map(|s| Instant::now() + Duration::from_secs(s));
    let interval = Duration::from_millis(interval.max(10));
    let mut last = Value::Null;
    let mut printed = 0;
    loop {
        if count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
        if end.is_some_and(|end| Instant::now() >= end) {
            return match count {
                Some(c) => Err(Failure::new(
                    Class::Timeout,
                    format!(
                        "{printed} of {c} changes seen in {} s",
                        duration.unwrap_or(0)
                    ),
                )),
                None => Ok(()),
            };
        }
        let request_timeout = Duration::from_secs(ctx.args.timeout);
        let answer = request(&ctx.dialer, at, ctx.group, AdminOp::Status, request_timeout).await?;
        let now = watched(&parse(&answer)?);
        if now != last {
            match ctx.args.output {
                Output::Json => println!("{now}"),
                Output::Text => println!("{}", watch_line(&now)),
            }
            printed += 1;
            last = now;
        }
        tokio::time::sleep(interval).await;
    }
}

fn watch_line(s: &Value) -> String {
    let m = &s["membership"];
    format!(
        "group g{} node n{} {} term {} leader {} committed {} applied {} voters {} learners {}{}",
        s["group"],
        s["id"],
        s["role"].as_str().unwrap_or("?"),
        s["term"],
        s["leader"]
            .as_u64()
            .map_or("none".into(), |l| format!("n{l}")),
        s["committed"],
        s["applied"],
        m["voters"],
        m["learners"],
        if m["joint"] == true { " (joint)" } else { "" },
    )
}

/// An answer's JSON object.
fn parse(answer: &AdminAnswer) -> Result<Value, Failure> {
    serde_json::from_str(&answer.json)
        .map_err(|e| Failure::new(Class::Failed, format!("the server's JSON answer: {e}")))
}

fn print(output: Output, answer: &AdminAnswer) {
    match output {
        Output::Text => println!("{}", answer.text.trim_end()),
        Output::Json => println!("{}", answer.json),
    }
}

/// The operator's dialer the command line asks for.
fn dialer(args: &Args) -> Result<Dialer, Failure> {
    let invalid = |m: String| Failure::new(Class::InvalidArgument, m);
    let timeout = Duration::from_secs(args.timeout);
    if args.insecure {
        let authenticator = Arc::new(Insecure);
        return Ok(Dialer::operator(
            authenticator,
            &args.cluster_id,
            Vec::new(),
            timeout,
        ));
    }
    let ca = args
        .ca
        .as_ref()
        .ok_or_else(|| invalid("--ca (or OARCTL_CA) is required, or --insecure".into()))?;
    let token_file = args.token_file.as_ref().ok_or_else(|| {
        invalid("--token-file (or OARCTL_TOKEN_FILE) is required, or --insecure".into())
    })?;
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| invalid(format!("{}: {e}", token_file.display())))?;
    let tls = TlsAuthenticator::operator_from_pem_file(ca)
        .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
    Ok(Dialer::operator(
        Arc::new(tls),
        &args.cluster_id,
        token.trim().as_bytes().to_vec(),
        timeout,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_or_without_an_address() {
        let m: MemberArg = "4=127.0.0.4:7001".parse().unwrap();
        assert_eq!(m.id, NodeId(4));
        assert_eq!(m.addr, Some("127.0.0.4:7001".parse().unwrap()));
        let m: MemberArg = "2".parse().unwrap();
        assert_eq!((m.id, m.addr), (NodeId(2), None));
        assert!("x".parse::<MemberArg>().is_err());
        assert!("3=nowhere".parse::<MemberArg>().is_err());
    }
}
