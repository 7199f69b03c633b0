//! `oarctl`: the operator's tool for oar servers (braft's `braft_cli`).
//! Each admin command is one request to a server's Raft port over TLS, as
//! an operator (the token). Changes (and `--leader` queries) go to the
//! group's leader, which oarctl finds itself with `oar::client`'s route
//! lookup: any server of the cluster will do as `--server`. `certs` makes a
//! CA, server certificates and a token.
//!
//! ```text
//! oarctl certs --out certs --ip 127.0.0.1 --ip 127.0.0.2 --ip 127.0.0.3
//! export OARCTL_CA=certs/ca.pem OARCTL_TOKEN_FILE=certs/operator.token
//! oarctl --server 127.0.0.1:7001 status            # this server's member
//! oarctl --server 127.0.0.1:7001 --leader status   # the leader's
//! oarctl --server 127.0.0.1:7001 get-leader
//! oarctl --server 127.0.0.1:7001 snapshot
//! oarctl --server 127.0.0.1:7003 transfer-leader --to 2   # found the leader itself
//! oarctl --server 127.0.0.1:7001 add-peer --id 4 --addr 127.0.0.4:7001
//! oarctl --server 127.0.0.1:7001 remove-peer --id 4
//! curl --cacert certs/ca.pem -H "Authorization: Bearer $(cat certs/operator.token)" \
//!      https://127.0.0.1:7001/      # every group's status, as text
//! ```

mod certs;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oar::client::{Client, ClientOptions};
use oar::core::NodeId;
use oar::runtime::admin_client::{AdminOp, call};
use oar::runtime::{Dialer, GroupId, Insecure, TlsAuthenticator};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Admin tool for oar servers")]
struct Args {
    /// A server's Raft address (every command but `certs`); any server of
    /// the cluster will do for commands that go to the leader. Repeat (or
    /// separate with commas) to name more than one.
    #[arg(long, value_delimiter = ',')]
    server: Vec<SocketAddr>,
    /// Send `status` or `snapshot` to the group's leader rather than to
    /// the first `--server`.
    #[arg(long)]
    leader: bool,
    /// The cluster CA's certificate (PEM), to check the server's.
    #[arg(long, env = "OARCTL_CA")]
    ca: Option<PathBuf>,
    /// A file holding the operator token.
    #[arg(long, env = "OARCTL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The cluster's id.
    #[arg(long, env = "OARCTL_CLUSTER_ID", default_value = "kv")]
    cluster_id: String,
    /// Talk to a server started with `--insecure` (no TLS, no token).
    #[arg(long)]
    insecure: bool,
    /// The Raft group.
    #[arg(long, default_value_t = 1)]
    group: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Role, term, log, configuration and (on the leader) peer progress.
    Status,
    /// The group's leader and its address (found from any server).
    GetLeader,
    /// Save a snapshot now and compact the log.
    Snapshot,
    /// Hand leadership to a voter (ask the leader).
    TransferLeader {
        /// The voter to lead next.
        #[arg(long)]
        to: u64,
    },
    /// Add a voter: as a learner first, promoted once caught up (ask the leader).
    AddPeer {
        /// Its node id.
        #[arg(long)]
        id: u64,
        /// Its Raft address.
        #[arg(long)]
        addr: SocketAddr,
        /// How long it may take to catch up, in seconds.
        #[arg(long, default_value_t = 20)]
        catch_up: u64,
    },
    /// Remove a member (ask the leader).
    RemovePeer {
        /// Its node id.
        #[arg(long)]
        id: u64,
    },
    /// Make a cluster CA, a certificate for each server IP and an operator
    /// token, in a directory (for tests and small clusters; a production
    /// CA belongs in your PKI).
    Certs {
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// A server's IP address (repeat for each server).
        #[arg(long = "ip", required = true)]
        ips: Vec<IpAddr>,
    },
}

/// The operator's dialer the command line asks for.
fn dialer(args: &Args) -> Result<Dialer, String> {
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
        .ok_or("--ca (or OARCTL_CA) is required, or --insecure")?;
    let token_file = args
        .token_file
        .as_ref()
        .ok_or("--token-file (or OARCTL_TOKEN_FILE) is required, or --insecure")?;
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("{}: {e}", token_file.display()))?;
    let tls = TlsAuthenticator::operator_from_pem_file(ca).map_err(|e| e.to_string())?;
    Ok(Dialer::operator(
        Arc::new(tls),
        &args.cluster_id,
        token.trim().as_bytes().to_vec(),
        timeout,
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let op = match &args.command {
        Command::Certs { out, ips } => {
            return match certs::make(out, ips) {
                Ok(()) => {
                    println!(
                        "wrote a CA, {} server certificate(s) and operator.token to {}",
                        ips.len(),
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("oarctl: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => admin_op(&args.command),
    };
    let Some(&server) = args.server.first() else {
        eprintln!("oarctl: --server is required");
        return ExitCode::FAILURE;
    };
    let dialer = match dialer(&args) {
        Ok(dialer) => dialer,
        Err(e) => {
            eprintln!("oarctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let group = GroupId(args.group);
    let timeout = Duration::from_secs(args.timeout);
    let client = || {
        let options = ClientOptions {
            deadline: timeout,
            ..ClientOptions::default()
        };
        Client::new(args.server.clone(), dialer.clone(), options)
    };
    let at_leader = args.leader || !matches!(op, Some(AdminOp::Status | AdminOp::Snapshot));
    let outcome = match op {
        None => client()
            .leader(group)
            .await
            .map(|(id, addr)| format!("group {group} leader {id} at {addr}"))
            .map_err(|e| e.to_string()),
        Some(op) if at_leader => client()
            .admin_at_leader(group, op)
            .await
            .map_err(|e| e.to_string()),
        Some(op) => call(&dialer, server, group, op, timeout)
            .await
            .map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oarctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The admin verb an admin command stands for (`None`: a route lookup).
fn admin_op(command: &Command) -> Option<AdminOp> {
    Some(match *command {
        Command::GetLeader => return None,
        Command::Status => AdminOp::Status,
        Command::Snapshot => AdminOp::Snapshot,
        Command::TransferLeader { to } => AdminOp::TransferLeader { to: NodeId(to) },
        Command::AddPeer { id, addr, catch_up } => AdminOp::AddPeer {
            id: NodeId(id),
            addr,
            catch_up: Duration::from_secs(catch_up),
        },
        Command::RemovePeer { id } => AdminOp::RemovePeer { id: NodeId(id) },
        Command::Certs { .. } => unreachable!("certs is not an admin request"),
    })
}
