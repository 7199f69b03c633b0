//! # oar — a Raft consensus engine
//!
//! oar replicates a state machine across a group of servers with the Raft
//! protocol, in the tradition of braft. It is built in layers:
//!
//! - [`core`]: the protocol as a pure, deterministic state machine (sans-IO):
//!   events in, actions out; no clock, socket, file, thread or global RNG.
//! - [`storage`]: durable formats (segmented log, term/vote meta, snapshots)
//!   over a file-system trait with a real and a fault-injecting implementation.
//! - [`runtime`]: the production driver on tokio and TCP.
//! - [`client`]: finds the leader, retries, writes exactly once.
//!
//! A service embedding oar imports [`prelude`] (`use oar::prelude::*;`);
//! `examples/embed.rs` is the whole embedding in one program.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod client;
pub mod core;
pub mod prelude;
pub mod runtime;
pub mod storage;
