//! Everything that crosses the network, in one place: the protobuf schema's
//! generated types, length-prefixed frames, the shape check that runs
//! before decoding, and the conversions between wire and core types.
//!
//! Not part of the embedding API (hidden from the docs and free to change):
//! public only so that the fuzz targets, the integration tests and the
//! simulator's stranger can speak the wire directly.

pub mod convert;
pub mod frame;
pub mod proto;
pub mod shape;
pub mod snapshot_meta;

pub use convert::{DecodeError, decode_message, encode_message};
