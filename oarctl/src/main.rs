//! `oarctl`: the operator's tool for oar servers (braft's `braft_cli`).
//! Each command is one admin request to a server's Raft port, answered by
//! that server's member of the group; changes must go to the leader.
//!
//! ```text
//! oarctl --server 127.0.0.1:7001 status
//! oarctl --server 127.0.0.1:7001 snapshot
//! oarctl --server 127.0.0.1:7001 transfer-leader --to 2
//! oarctl --server 127.0.0.1:7001 add-peer --id 4 --addr 127.0.0.1:7004
//! oarctl --server 127.0.0.1:7001 remove-peer --id 4
//! curl http://127.0.0.1:7001/      # every group's status, as text
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oar::runtime::admin_client::call;
use oar::runtime::proto::{self, admin_request::Op};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Admin tool for oar servers")]
struct Args {
    /// The server's Raft address.
    #[arg(long)]
    server: SocketAddr,
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let op = match args.command {
        Command::Status => Op::Status(proto::AdminStatus {}),
        Command::Snapshot => Op::Snapshot(proto::AdminSnapshot {}),
        Command::TransferLeader { to } => Op::TransferLeader(proto::AdminTransfer { to }),
        Command::AddPeer { id, addr, catch_up } => Op::AddPeer(proto::AdminAddPeer {
            id,
            addr: addr.to_string(),
            catch_up_ms: catch_up * 1000,
        }),
        Command::RemovePeer { id } => Op::RemovePeer(proto::AdminRemovePeer { id }),
    };
    let request = proto::AdminRequest {
        group_id: args.group,
        op: Some(op),
    };
    match call(args.server, request, Duration::from_secs(args.timeout)).await {
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
