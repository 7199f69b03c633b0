//! A bed of network namespaces for tests of real processes over real
//! kernel TCP: the faults the simulator's kinder network cannot show
//! (dropped segments, exponential retransmission backoff, half-open
//! connections). Needs root and iproute2; callers skip otherwise.
#![allow(dead_code, unreachable_pub)]

pub mod bed;
pub mod clients;
pub mod kv;
pub mod resp;
