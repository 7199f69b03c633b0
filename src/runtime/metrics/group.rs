//! What one group member counts as it runs: plain atomics and lock-free
//! histograms, bumped by the group's driver, log writer and apply task at
//! most a few times per batch, never per entry. Gauges (role, term,
//! indexes, per-peer lag) are not kept here: a scrape reads them from the
//! group's status, so they cost nothing between scrapes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use super::histogram::{BATCH_ENTRIES, Histogram, LATENCY_NANOS};
use crate::core::{Instant, LogIndex, NodeId, Role};

/// One group member's counters and histograms.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    /// Off: nothing is recorded (the bench's "metrics off").
    pub(crate) enabled: bool,
    /// Proposals the core accepted (as leader).
    pub(crate) proposals: AtomicU64,
    /// Proposals refused because this member does not lead.
    pub(crate) proposals_refused: AtomicU64,
    /// From a proposal's acceptance to its entry being handed to the apply
    /// task as committed, in nanoseconds; sampled once per driver batch.
    pub(crate) commit_latency: Histogram,
    /// One log-writer batch's storage call (writes and its fsync), ns.
    pub(crate) fsync_latency: Histogram,
    /// Entries per log-writer batch (batches carrying entries only).
    pub(crate) append_batch_entries: Histogram,
    /// Times this member learned of a new leader.
    pub(crate) leader_changes: AtomicU64,
    /// Elections this member started (became a candidate).
    pub(crate) elections_started: AtomicU64,
    /// Snapshots this member saved, and their files' bytes.
    pub(crate) snapshots_saved: AtomicU64,
    pub(crate) snapshot_saved_bytes: AtomicU64,
    /// Snapshots installed from a leader, and their files' bytes.
    pub(crate) snapshots_installed: AtomicU64,
    pub(crate) snapshot_installed_bytes: AtomicU64,
}

impl GroupMetrics {
    /// Zeroed metrics, recording only if `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        GroupMetrics {
            enabled,
            proposals: AtomicU64::new(0),
            proposals_refused: AtomicU64::new(0),
            commit_latency: Histogram::new(LATENCY_NANOS),
            fsync_latency: Histogram::new(LATENCY_NANOS),
            append_batch_entries: Histogram::new(BATCH_ENTRIES),
            leader_changes: AtomicU64::new(0),
            elections_started: AtomicU64::new(0),
            snapshots_saved: AtomicU64::new(0),
            snapshot_saved_bytes: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            snapshot_installed_bytes: AtomicU64::new(0),
        }
    }

    /// Adds `n` to `counter` if recording.
    pub(crate) fn add(&self, counter: &AtomicU64, n: u64) {
        if self.enabled {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records one log-writer batch: its duration and entry count.
    pub(crate) fn observe_persist(&self, nanos: u64, entries: u64) {
        if self.enabled {
            self.fsync_latency.observe(nanos);
            if entries > 0 {
                self.append_batch_entries.observe(entries);
            }
        }
    }

    /// Records a saved (`installed` false) or installed snapshot of `bytes`.
    pub(crate) fn observe_snapshot(&self, installed: bool, bytes: u64) {
        let (count, total) = match installed {
            false => (&self.snapshots_saved, &self.snapshot_saved_bytes),
            true => (&self.snapshots_installed, &self.snapshot_installed_bytes),
        };
        self.add(count, 1);
        self.add(total, bytes);
    }
}

/// Sampled commit latency, kept by the driver: the first proposal of each
/// wake-up is timed (one clock the driver already read, one slot in a
/// bounded ring), and observed when its entry is handed out as committed.
#[derive(Debug, Default)]
pub(crate) struct CommitClock {
    /// (index, accepted at), ascending by index.
    samples: VecDeque<(LogIndex, Instant)>,
    /// The wake-up that took the last sample, by its clock reading.
    sampled_at: Option<Instant>,
}

/// Samples kept at most: past it, new ones are dropped until commits drain
/// the ring (a leader that cannot commit does not grow memory).
const SAMPLES_MAX: usize = 1024;

impl CommitClock {
    /// A proposal landed at `index` during the wake-up that read `now`.
    pub(crate) fn on_proposed(&mut self, index: LogIndex, now: Instant) {
        if self.sampled_at == Some(now) || self.samples.len() >= SAMPLES_MAX {
            return;
        }
        self.sampled_at = Some(now);
        self.samples.push_back((index, now));
    }

    /// Entries through `last` were handed out as committed at `now`.
    pub(crate) fn on_committed(&mut self, last: LogIndex, now: Instant, metrics: &GroupMetrics) {
        while let Some(&(index, at)) = self.samples.front() {
            if index > last {
                break;
            }
            self.samples.pop_front();
            let nanos = now.as_nanos().saturating_sub(at.as_nanos());
            if metrics.enabled {
                metrics.commit_latency.observe(nanos);
            }
        }
    }

    /// This member stopped leading: its samples will not commit as timed.
    pub(crate) fn clear(&mut self) {
        self.samples.clear();
    }
}

/// Counts role transitions: elections started, leaders learned.
#[derive(Debug, Default)]
pub(crate) struct RoleCounter {
    leader: Option<NodeId>,
}

impl RoleCounter {
    /// The core announced `role` with `leader` known.
    pub(crate) fn on_role(&mut self, role: Role, leader: Option<NodeId>, metrics: &GroupMetrics) {
        if role == Role::Candidate {
            metrics.add(&metrics.elections_started, 1);
        }
        if leader.is_some() && leader != self.leader {
            metrics.add(&metrics.leader_changes, 1);
        }
        if leader.is_some() {
            self.leader = leader;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_wake_up_observed_when_committed() {
        let metrics = GroupMetrics::new(true);
        let mut clock = CommitClock::default();
        let t = Instant::from_nanos(1_000);
        clock.on_proposed(LogIndex(5), t);
        clock.on_proposed(LogIndex(6), t);
        clock.on_proposed(LogIndex(7), Instant::from_nanos(2_000));
        clock.on_committed(LogIndex(6), Instant::from_nanos(3_001_000), &metrics);
        let s = metrics.commit_latency.snapshot(1.0);
        assert_eq!(s.count, 1);
        assert_eq!(s.sum, 3_000_000.0);
        clock.on_committed(LogIndex(7), Instant::from_nanos(3_002_000), &metrics);
        assert_eq!(metrics.commit_latency.snapshot(1.0).count, 2);
    }

    #[test]
    fn disabled_metrics_record_nothing() {
        let metrics = GroupMetrics::new(false);
        metrics.add(&metrics.proposals, 3);
        metrics.observe_persist(10, 10);
        metrics.observe_snapshot(true, 10);
        assert_eq!(metrics.proposals.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.fsync_latency.snapshot(1.0).count, 0);
        assert_eq!(metrics.snapshots_installed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_new_leader_counts_once_and_candidacies_each_time() {
        let metrics = GroupMetrics::new(true);
        let mut roles = RoleCounter::default();
        roles.on_role(Role::Candidate, None, &metrics);
        roles.on_role(Role::Candidate, None, &metrics);
        roles.on_role(Role::Follower, Some(NodeId(2)), &metrics);
        roles.on_role(Role::Follower, None, &metrics);
        roles.on_role(Role::Follower, Some(NodeId(2)), &metrics);
        roles.on_role(Role::Leader, Some(NodeId(1)), &metrics);
        assert_eq!(metrics.elections_started.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.leader_changes.load(Ordering::Relaxed), 2);
    }
}
