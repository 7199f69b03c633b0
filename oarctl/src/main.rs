//! `oarctl`: the operator's tool for oar servers (braft's `braft_cli`, and
//! more). Each verb is one request to a server's Raft (or admin) port over
//! TLS, as an operator (the token). Verbs that need the group's leader
//! follow it from any server named with `--server`: a member that does not
//! lead answers with the leader it knows and its address, and oarctl asks
//! there. `--output json` prints one JSON object per verb (documented in
//! the README's "Operating a server"); failures exit with a code per class
//! (see `failure.rs`). `certs` makes a CA, server certificates and a token.
//!
//! ```text
//! oarctl certs --out certs --ip 127.0.0.1 --ip 127.0.0.2 --ip 127.0.0.3
//! export OARCTL_CA=certs/ca.pem OARCTL_TOKEN_FILE=certs/operator.token
//! oarctl --server 127.0.0.1:7001 status            # this server's member
//! oarctl --server 127.0.0.1:7001 --leader status   # the leader's
//! oarctl --server 127.0.0.1:7001 --output json leader
//! oarctl --server 127.0.0.1:7001 list-groups
//! oarctl --server 127.0.0.1:7003 transfer-leader --to 2   # found the leader itself
//! oarctl --server 127.0.0.1:7003 transfer-leader --any
//! oarctl --server 127.0.0.1:7001 add-peer --id 4 --addr 127.0.0.4:7001
//! oarctl --server 127.0.0.1:7001 change-peers --voters 1,2,3 --learners 4=127.0.0.4:7001
//! oarctl --server 127.0.0.1:7001 watch --count 10 --timeout 60   # at most 10 lines, 60 s
//! ```

mod certs;
mod failure;
mod verbs;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    about = "Admin tool for oar servers (braft_cli's verbs)",
    after_help = "Exit codes: 0 done, 1 refused or failed by the group, 2 invalid argument, \
                  3 no leader reached, 4 unknown group, 5 credentials refused, 6 timeout, \
                  7 unreachable."
)]
pub(crate) struct Args {
    /// A server's Raft (or admin) address; any server of the cluster will
    /// do for verbs that go to the leader. Repeat (or separate with commas)
    /// to name more than one: they are tried in turn.
    #[arg(long, value_delimiter = ',')]
    pub(crate) server: Vec<SocketAddr>,
    /// Send `status`, `snapshot` or `watch` to the group's leader rather
    /// than to the first `--server`.
    #[arg(long)]
    pub(crate) leader: bool,
    /// The cluster CA's certificate (PEM), to check the server's.
    #[arg(long, env = "OARCTL_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// A file holding the operator token.
    #[arg(long, env = "OARCTL_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The cluster's id.
    #[arg(long, env = "OARCTL_CLUSTER_ID", default_value = "kv")]
    pub(crate) cluster_id: String,
    /// Talk to a server started with `--insecure` (no TLS, no token).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// The Raft group.
    #[arg(long, default_value_t = 1)]
    pub(crate) group: u64,
    /// Give up after this many seconds (the whole verb, leader search included).
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
    /// How to print the answer: text for people, or one JSON object.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Lines for people.
    Text,
    /// One JSON object (`watch`: one a line).
    Json,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Role, term, log, configuration and (on the leader) peer progress.
    Status,
    /// The group's leader and its address (found from any server).
    #[command(alias = "get-leader")]
    Leader,
    /// Every group the server runs, with its role, term and leader there.
    ListGroups,
    /// Save a snapshot now and compact the log.
    Snapshot,
    /// Hand leadership to a voter, named or the most caught-up one.
    #[command(group(ArgGroup::new("target").required(true).args(["to", "any"])))]
    TransferLeader {
        /// The voter to lead next.
        #[arg(long)]
        to: Option<u64>,
        /// Let the leader pick the voter whose log is the most caught up.
        #[arg(long)]
        any: bool,
    },
    /// Add a voter: as a learner first, promoted once caught up.
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
    /// Remove a voter or a learner.
    RemovePeer {
        /// Its node id.
        #[arg(long)]
        id: u64,
    },
    /// Move the group to this configuration (through a joint one when
    /// voters change). New voters must be caught-up learners; a member the
    /// group does not know yet is written `ID=ADDR`.
    ChangePeers {
        /// The voters: `ID` or `ID=ADDR`, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<verbs::MemberArg>,
        /// The learners: `ID` or `ID=ADDR`, comma-separated.
        #[arg(long, value_delimiter = ',')]
        learners: Vec<verbs::MemberArg>,
    },
    /// UNSAFE recovery for a group that lost its quorum for good (braft's
    /// reset_peers): forces this configuration on each `--server`'s member,
    /// without consensus. Entries committed by the lost majority but missing
    /// on these members are lost, and running it on members of a group that
    /// still has a leader can elect two leaders and diverge. Run it on the
    /// surviving members only, all with the same voters. Refused without --force.
    ResetPeers {
        /// The voters to force, comma-separated ids.
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// The learners to force, comma-separated ids.
        #[arg(long, value_delimiter = ',')]
        learners: Vec<u64>,
        /// Confirm that you accept the risks above.
        #[arg(long)]
        force: bool,
    },
    /// Add a learner: it receives the log but does not vote.
    AddLearner {
        /// Its node id.
        #[arg(long)]
        id: u64,
        /// Its Raft address.
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Promote a caught-up learner to voter.
    PromoteLearner {
        /// Its node id.
        #[arg(long)]
        id: u64,
    },
    /// Print the member's status (role, term, leader, commit and applied
    /// index, configuration) each time it changes.
    Watch {
        /// Stop after this many lines (the first shows the status as is).
        #[arg(long)]
        count: Option<u64>,
        /// Stop watching after this many seconds (exit 6 if --count was not
        /// reached). Not the global `--timeout` before the verb, which
        /// bounds each request.
        #[arg(long = "timeout", value_name = "SECONDS")]
        duration: Option<u64>,
        /// How often to look, in milliseconds (changes in between merge).
        #[arg(long, default_value_t = 100)]
        interval: u64,
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Command::Certs { out, ips } = &args.command {
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
    match verbs::run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if args.output == Output::Json {
                println!("{}", failure.json());
            }
            eprintln!("oarctl: {failure}");
            failure.exit_code()
        }
    }
}
