//! The prost-generated wire types of `proto/raft.proto`; nothing else.
#![allow(missing_docs, unreachable_pub, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/oar.raft.rs"));
