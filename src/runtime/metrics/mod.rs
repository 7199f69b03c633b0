//! Prometheus metrics: what groups and the server count as they run
//! (`group.rs`, `histogram.rs`) and their text exposition at `GET /metrics`
//! (`exposition.rs`). Metric names and their meaning: `docs/metrics.md`.

mod exposition;
mod group;
mod histogram;

pub use exposition::METRIC_NAMES;
pub(crate) use exposition::{CONTENT_TYPE, GroupScrape, ServerSnapshot, render};
pub(crate) use group::{CommitClock, GroupMetrics, RoleCounter};
