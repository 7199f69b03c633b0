//! The Prometheus text exposition (format 0.0.4) of a server's metrics,
//! encoded by `prometheus-client` from a snapshot taken at scrape time:
//! gauges come from each group's status, counters and histograms from the
//! atomics in [`GroupMetrics`] and the server's stats. Label sets are
//! bounded: `group` (groups served here), `peer` (members of a group),
//! `role` (four) and `reason` (a fixed list).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::group::GroupMetrics;
use super::histogram::HistogramSnapshot;
use crate::core::{LogIndex, Role};
use crate::runtime::GroupId;
use crate::runtime::observer::GroupDetails;

/// The exposition's `Content-Type`.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Server-wide values read at scrape time.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServerSnapshot {
    /// Inbound connections open now.
    pub(crate) connections_open: u64,
    /// Inbound connections accepted (past the caps) since start.
    pub(crate) connections_accepted: u64,
    /// Snapshot file bytes served to copying peers.
    pub(crate) snapshot_bytes_served: u64,
    /// Times a peer server was found silent or restarted (its quiet groups
    /// here were woken to check their leaders).
    pub(crate) peer_servers_lost: u64,
    /// Refusals by reason (a fixed list of reasons).
    pub(crate) refused: Vec<(&'static str, u64)>,
}

/// One group's values read at scrape time.
#[derive(Debug)]
pub(crate) struct GroupScrape {
    pub(crate) group: GroupId,
    /// `None` if the group stopped while being asked.
    pub(crate) details: Option<GroupDetails>,
    pub(crate) applied: LogIndex,
    pub(crate) forbidden_messages: u64,
    pub(crate) metrics: Arc<GroupMetrics>,
}

impl GroupScrape {
    /// Makes one group's scrape.
    pub(crate) fn new(
        group: GroupId,
        details: Option<GroupDetails>,
        applied: LogIndex,
        forbidden_messages: u64,
        metrics: Arc<GroupMetrics>,
    ) -> Self {
        GroupScrape {
            group,
            details,
            applied,
            forbidden_messages,
            metrics,
        }
    }
}

/// The exposition of `server` and `groups`.
pub(crate) fn render(server: ServerSnapshot, groups: Vec<GroupScrape>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { server, groups }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Scrape {
    server: ServerSnapshot,
    groups: Vec<GroupScrape>,
}

type GroupLabel = [(&'static str, u64); 1];

fn group_label(g: &GroupScrape) -> GroupLabel {
    [("group", g.group.0)]
}

const ROLES: [(Role, &str); 4] = [
    (Role::Follower, "follower"),
    (Role::PreCandidate, "pre_candidate"),
    (Role::Candidate, "candidate"),
    (Role::Leader, "leader"),
];

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_group_gauges(&mut e)?;
        self.encode_peer_gauges(&mut e)?;
        self.encode_group_counters(&mut e)?;
        self.encode_histograms(&mut e)?;
        self.encode_server(&mut e)
    }
}

impl Scrape {
    /// One gauge per running group.
    fn group_gauge(
        &self,
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&GroupScrape, &GroupDetails) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for g in &self.groups {
            if let Some(d) = &g.details {
                let label = group_label(g);
                m.encode_family(&label)?.encode_gauge(&value(g, d))?;
            }
        }
        Ok(())
    }

    /// One counter per group.
    fn group_counter(
        &self,
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&GroupScrape) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
        for g in &self.groups {
            let label = group_label(g);
            counter(m.encode_family(&label)?, value(g))?;
        }
        Ok(())
    }

    fn encode_group_gauges(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = e.encode_descriptor(
            "oar_group_role",
            "1 for this member's current role in the group, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for g in &self.groups {
            let Some(d) = &g.details else { continue };
            for (role, name) in ROLES {
                let labels = ("role", name);
                let labels = (group_label(g), [labels]);
                m.encode_family(&labels)?
                    .encode_gauge(&u64::from(d.status.role == role))?;
            }
        }
        self.group_gauge(e, "oar_group_term", "Current term.", |_, d| {
            d.status.hard_state.term.0
        })?;
        self.group_gauge(e, "oar_group_commit_index", "Commit index.", |_, d| {
            d.status.committed.0
        })?;
        self.group_gauge(
            e,
            "oar_group_applied_index",
            "Highest index the state machine applied.",
            |g, _| g.applied.0,
        )?;
        self.group_gauge(e, "oar_group_last_log_index", "Last log index.", |_, d| {
            d.status.last_log_id.index.0
        })?;
        self.group_gauge(
            e,
            "oar_group_persisted_index",
            "Highest locally durable log index.",
            |_, d| d.status.persisted.0,
        )?;
        self.group_gauge(
            e,
            "oar_group_voters",
            "Voters in the configuration in effect.",
            |_, d| d.status.membership.voter_ids().len() as u64,
        )?;
        self.group_gauge(
            e,
            "oar_group_pending_proposals",
            "Proposals accepted here and waiting to be applied.",
            |_, d| d.pending_proposals as u64,
        )
    }

    /// Per-peer gauges, from a leader's progress (empty on followers).
    fn encode_peer_gauges(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type PeerValue = fn(&GroupDetails, &crate::core::status::PeerStatus) -> u64;
        let gauges: [(&str, &str, PeerValue); 3] = [
            (
                "oar_peer_replication_lag_entries",
                "Leader's last log index minus the peer's matched index.",
                |d, p| d.status.last_log_id.index.0.saturating_sub(p.matched.0),
            ),
            (
                "oar_peer_match_index",
                "Highest index known replicated and durable on the peer.",
                |_, p| p.matched.0,
            ),
            (
                "oar_peer_inflight_messages",
                "AppendEntries in flight to the peer.",
                |_, p| p.inflight_msgs as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for g in &self.groups {
                let Some(d) = &g.details else { continue };
                for p in d.status.peers.iter().filter(|p| p.id != d.status.id) {
                    let labels = [("group", g.group.0), ("peer", p.id.0)];
                    m.encode_family(&labels)?.encode_gauge(&value(d, p))?;
                }
            }
        }
        Ok(())
    }

    fn encode_group_counters(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        type Value = fn(&GroupScrape) -> u64;
        let counters: [(&str, &str, Value); 9] = [
            (
                "oar_proposals",
                "Proposals accepted by this member as leader.",
                |g| g.metrics.proposals.load(Relaxed),
            ),
            (
                "oar_proposals_refused",
                "Proposals refused because this member does not lead.",
                |g| g.metrics.proposals_refused.load(Relaxed),
            ),
            (
                "oar_leader_changes",
                "Times this member learned of a new leader.",
                |g| g.metrics.leader_changes.load(Relaxed),
            ),
            (
                "oar_elections_started",
                "Elections this member started (became a candidate).",
                |g| g.metrics.elections_started.load(Relaxed),
            ),
            (
                "oar_snapshots_saved",
                "Snapshots saved by this member.",
                |g| g.metrics.snapshots_saved.load(Relaxed),
            ),
            (
                "oar_snapshot_saved_bytes",
                "File bytes of the snapshots this member saved.",
                |g| g.metrics.snapshot_saved_bytes.load(Relaxed),
            ),
            (
                "oar_snapshots_installed",
                "Snapshots installed from a leader.",
                |g| g.metrics.snapshots_installed.load(Relaxed),
            ),
            (
                "oar_snapshot_installed_bytes",
                "File bytes of the snapshots installed from a leader.",
                |g| g.metrics.snapshot_installed_bytes.load(Relaxed),
            ),
            (
                "oar_forbidden_messages",
                "Messages refused: their sender node does not live on the sending server.",
                |g| g.forbidden_messages,
            ),
        ];
        for (name, help, value) in counters {
            self.group_counter(e, name, help, value)?;
        }
        Ok(())
    }

    fn encode_histograms(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Value = fn(&GroupMetrics) -> HistogramSnapshot;
        let histograms: [(&str, &str, Value); 3] = [
            (
                "oar_commit_latency_seconds",
                "From a proposal's acceptance by the leader to its entry committed (sampled: the first proposal of each driver batch).",
                |m| m.commit_latency.snapshot(1e-9),
            ),
            (
                "oar_log_fsync_seconds",
                "One log-writer batch's storage call: its writes and the fsync that makes them durable.",
                |m| m.fsync_latency.snapshot(1e-9),
            ),
            (
                "oar_log_append_batch_entries",
                "Entries made durable per log-writer batch (one fsync).",
                |m| m.append_batch_entries.snapshot(1.0),
            ),
        ];
        for (name, help, value) in histograms {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for g in &self.groups {
                let label = group_label(g);
                let s = value(&g.metrics);
                m.encode_family(&label)?
                    .encode_histogram::<GroupLabel>(s.sum, s.count, &s.buckets, None)?;
            }
        }
        Ok(())
    }

    fn encode_server(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.server;
        let mut m = e.encode_descriptor(
            "oar_connections_open",
            "Inbound connections open now.",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&s.connections_open)?;
        let m = e.encode_descriptor(
            "oar_connections_accepted",
            "Inbound connections accepted (within the caps).",
            None,
            MetricType::Counter,
        )?;
        counter(m, s.connections_accepted)?;
        let m = e.encode_descriptor(
            "oar_snapshot_served_bytes",
            "Snapshot file bytes sent to copying peers.",
            None,
            MetricType::Counter,
        )?;
        counter(m, s.snapshot_bytes_served)?;
        let m = e.encode_descriptor(
            "oar_peer_servers_lost",
            "Times a peer server was found silent or restarted, waking the quiet groups it shares.",
            None,
            MetricType::Counter,
        )?;
        counter(m, s.peer_servers_lost)?;
        let mut m = e.encode_descriptor(
            "oar_refused",
            "Connections, frames, requests and messages refused, by reason.",
            None,
            MetricType::Counter,
        )?;
        for &(reason, n) in &s.refused {
            let labels = [("reason", reason)];
            counter(m.encode_family(&labels)?, n)?;
        }
        Ok(())
    }
}

fn counter(mut m: MetricEncoder, value: u64) -> Result<(), std::fmt::Error> {
    m.encode_counter::<GroupLabel, u64, u64>(&value, None)
}

/// Every metric name the exposition carries (histograms and counters by
/// their base name, as Grafana queries them with `_bucket`/`_total`).
pub const METRIC_NAMES: &[&str] = &[
    "oar_group_role",
    "oar_group_term",
    "oar_group_commit_index",
    "oar_group_applied_index",
    "oar_group_last_log_index",
    "oar_group_persisted_index",
    "oar_group_voters",
    "oar_group_pending_proposals",
    "oar_peer_replication_lag_entries",
    "oar_peer_match_index",
    "oar_peer_inflight_messages",
    "oar_proposals_total",
    "oar_proposals_refused_total",
    "oar_leader_changes_total",
    "oar_elections_started_total",
    "oar_snapshots_saved_total",
    "oar_snapshot_saved_bytes_total",
    "oar_snapshots_installed_total",
    "oar_snapshot_installed_bytes_total",
    "oar_forbidden_messages_total",
    "oar_commit_latency_seconds",
    "oar_log_fsync_seconds",
    "oar_log_append_batch_entries",
    "oar_connections_open",
    "oar_connections_accepted_total",
    "oar_snapshot_served_bytes_total",
    "oar_peer_servers_lost_total",
    "oar_refused_total",
];

impl ServerSnapshot {
    /// Reads the server's counters now.
    pub(crate) fn of(
        stats: &crate::runtime::ServerStats,
        connections_open: usize,
        outbound_dropped: u64,
    ) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let refused = vec![
            ("connection_cap", stats.refused_connections.load(Relaxed)),
            ("handshake", stats.refused_handshakes.load(Relaxed)),
            ("forbidden_request", stats.forbidden_requests.load(Relaxed)),
            ("timeout", stats.timed_out_connections.load(Relaxed)),
            ("accept_error", stats.accept_errors.load(Relaxed)),
            ("oversized_frame", stats.oversized_frames.load(Relaxed)),
            ("malformed_frame", stats.malformed_frames.load(Relaxed)),
            ("unknown_group", stats.unknown_group_messages.load(Relaxed)),
            ("inbox_full", stats.dropped_messages.load(Relaxed)),
            ("superseded", stats.superseded_connections.load(Relaxed)),
            ("peer_queue_full", outbound_dropped),
        ];
        ServerSnapshot {
            connections_open: connections_open as u64,
            connections_accepted: stats.accepted_connections.load(Relaxed),
            snapshot_bytes_served: stats.snapshot_bytes_served.load(Relaxed),
            peer_servers_lost: stats.peer_servers_lost.load(Relaxed),
            refused,
        }
    }
}
