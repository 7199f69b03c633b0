//! The production driver on tokio and TCP.
//!
//! So far: the wire form of Raft messages (`proto/raft.proto`, compiled with
//! prost) and its conversion to and from the core's messages.

pub mod convert;
pub mod group_id;
pub mod proto;

pub use convert::{DecodeError, decode_message, encode_message};
pub use group_id::GroupId;
