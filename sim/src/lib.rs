//! oar-sim: deterministic simulation of oar clusters.
#![warn(missing_docs, unreachable_pub)]

pub mod checker;
pub mod history;
