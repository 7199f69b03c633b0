//! Checkers run on a finished simulation.
//!
//! - [`linearizability`]: the client history against the key-value model
//!   (a WGL search, partitioned by key).
//! - [`porcupine_parse`]: readers for Porcupine's test histories, whose
//!   verdicts are known, to hold the checker to them.
//!
//! Both live in the `oar-check` crate, which the real-network tests of the
//! oar package share; re-exported here under their old paths.

pub use oar_check::{linearizability, porcupine_parse};
