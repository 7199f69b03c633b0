//! oar-check: is a key-value client history linearizable?
//!
//! Plain code with no runtime (no madsim, no tokio), so that both the
//! simulator (`oar-sim`, always built with `--cfg madsim`) and the oar
//! package's tests on real networks can use it.
//!
//! - [`history`]: the record of what clients asked and were told, and its
//!   JSON-lines file format.
//! - [`linearizability`]: the history against the key-value model (a WGL
//!   search, partitioned by key).
//! - [`porcupine_parse`]: readers for Porcupine's test histories, whose
//!   verdicts are known, to hold the checker to them.
#![warn(missing_docs, unreachable_pub)]

pub mod history;
mod kv_model;
pub mod linearizability;
pub mod porcupine_parse;
#[cfg(test)]
mod tests;
mod wgl;
