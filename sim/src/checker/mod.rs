//! Checkers run on a finished simulation.
//!
//! - [`linearizability`]: the client history against the key-value model
//!   (a WGL search, partitioned by key).
//! - [`porcupine_parse`]: readers for Porcupine's test histories, whose
//!   verdicts are known, to hold the checker to them.

mod kv_model;
pub mod linearizability;
pub mod porcupine_parse;
#[cfg(test)]
mod tests;
mod wgl;
