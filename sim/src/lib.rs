//! oar-sim: deterministic simulation of oar clusters.
#![warn(missing_docs, unreachable_pub)]

pub mod checker;
pub mod durability;
pub mod fault_mix;
pub mod final_checks;
pub mod kv_machine;
pub mod observe;
pub mod options;
pub mod stranger_frames;
pub mod trace;

/// The client history (in `oar-check`, shared with the real-network tests).
pub use oar_check::history;

// The simulation itself runs only in the madsim build (`cargo simrun`,
// `cargo simtest`); the checkers above are plain code, tested everywhere.
#[cfg(madsim)]
pub mod blackhole;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod groups;
#[cfg(madsim)]
pub mod lease_pause;
#[cfg(madsim)]
pub mod liveness;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod pacing;
#[cfg(madsim)]
pub mod quiet;
#[cfg(madsim)]
pub mod reads;
#[cfg(madsim)]
pub mod reconfigure;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
mod server;
#[cfg(madsim)]
pub mod sessions;
#[cfg(madsim)]
pub mod stranger;
#[cfg(madsim)]
pub mod summary;
#[cfg(madsim)]
pub mod tactics;
#[cfg(madsim)]
pub mod timeline;
#[cfg(madsim)]
pub mod workload;
