//! The leader's view of one peer's log (braft's `Replicator` state, etcd's
//! `tracker.Progress`), and every transition between its states.
//!
//! ```text
//!            first success                    rejection / lost messages
//!   Probe ─────────────────────► Replicate ──────────────────────────► Probe
//!   one append at a time          many appends in flight (pipelining),
//!   until the match point         bounded by the inflight window
//!   is found
//!      │ the entries it needs were compacted away
//!      ▼
//!   Snapshot ──── acknowledged (Replicate) / failed or timed out (Probe)
//!   nothing sent but heartbeats while the peer pulls the snapshot
//! ```

use super::ids::LogIndex;
use super::inflights::Inflights;
use super::log_load::LoadState;
use super::time::Instant;

/// How the leader is sending to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The match point is unknown: one append at a time, each waiting for its
    /// answer (or the next heartbeat) before the next is sent.
    Probe,
    /// The peer follows: appends are pipelined up to the inflight window and
    /// `next` advances optimistically as they are sent.
    Replicate,
    /// The peer is installing the snapshot through `pending_snapshot`:
    /// appends wait for its acknowledgement.
    Snapshot,
}

/// Replication progress of one peer, kept by the leader.
///
/// Invariant: `matched < next`.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The highest index known to be durable on the peer and to match the
    /// leader's log.
    pub matched: LogIndex,
    /// The index of the next entry to send.
    pub next: LogIndex,
    /// Probe or Replicate.
    pub state: ProgressState,
    /// In Probe: an append was sent and is not answered yet.
    pub probe_sent: bool,
    /// In Snapshot: the last index of the snapshot being installed.
    pub pending_snapshot: LogIndex,
    /// In Snapshot: when the snapshot was offered.
    pub snapshot_sent_at: Instant,
    /// The unacknowledged appends (used in Replicate).
    pub inflights: Inflights,
    /// Whether the peer answered since the last check-quorum round.
    pub recent_active: bool,
    /// The highest commit index sent to the peer.
    pub commit_sent: LogIndex,
    /// Whether the peer acknowledged an append (or a snapshot) from this
    /// leader, so that `matched` is known to come from it.
    pub acknowledged: bool,
    /// Entries this peer needs being read back from disk (`log_load.rs`).
    pub load: LoadState,
}

impl Progress {
    /// A fresh progress for a new leader: probe from `next`.
    pub fn new(next: LogIndex, inflight_msgs_max: usize, inflight_bytes_max: u64) -> Self {
        Progress {
            matched: LogIndex(0),
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: LogIndex(0),
            snapshot_sent_at: Instant::from_nanos(0),
            inflights: Inflights::new(inflight_msgs_max, inflight_bytes_max),
            recent_active: false,
            commit_sent: LogIndex(0),
            acknowledged: false,
            load: LoadState::Idle,
        }
    }

    /// Whether nothing more may be sent now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Whether entries up to `last` remain to be sent and the window
    /// allows sending them.
    pub fn has_appends_due(&self, last: LogIndex) -> bool {
        !self.is_paused() && self.next <= last
    }

    /// Whether the peer is caught up with nothing in flight and has not
    /// heard commit index `committed`: it is told with an empty append.
    pub fn has_commit_due(&self, committed: LogIndex) -> bool {
        committed > self.commit_sent
            && self.state == ProgressState::Replicate
            && self.inflights.count() == 0
    }

    /// The peer was offered the snapshot through `index`.
    pub fn on_snapshot_sent(&mut self, index: LogIndex, now: Instant) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = index;
        self.snapshot_sent_at = now;
        self.inflights.reset();
    }

    /// The install failed or took too long: probe again once the next
    /// heartbeat answers, which offers the newest snapshot if still needed
    /// (not at once, so a snapshot that keeps failing is not resent in a
    /// tight loop).
    pub fn on_snapshot_failed(&mut self) {
        if self.state == ProgressState::Snapshot {
            self.state = ProgressState::Probe;
            self.probe_sent = true;
        }
    }

    /// Records an append carrying entries up to `last` (`bytes` of them).
    pub fn on_sent(&mut self, last: LogIndex, bytes: u64) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if last >= self.next {
                    self.next = last.next();
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Snapshot => {}
        }
    }

    /// Handles an acknowledgement up to `acked`. Returns whether `matched`
    /// advanced. The first success moves a probing peer to Replicate.
    pub fn on_ack(&mut self, acked: LogIndex) -> bool {
        self.acknowledged = true;
        let advanced = acked > self.matched;
        if advanced {
            self.matched = acked;
        }
        self.next = self.next.max(acked.next());
        self.probe_sent = false;
        match self.state {
            ProgressState::Probe if advanced || acked.next() == self.next => {
                self.state = ProgressState::Replicate;
                self.next = self.matched.next();
                self.inflights.reset();
            }
            ProgressState::Probe => {}
            ProgressState::Replicate => self.inflights.free_to(acked),
            // Any durable match ends the install; short of the snapshot, the
            // probe offers it again.
            ProgressState::Snapshot => {
                self.state = match acked >= self.pending_snapshot {
                    true => ProgressState::Replicate,
                    false => ProgressState::Probe,
                };
                self.next = self.matched.next();
            }
        }
        advanced
    }

    /// Handles a rejection of an append whose previous entry was at
    /// `rejected`; `hint_next` is where the leader computed from the peer's
    /// hint that the logs may match. Returns false for a stale rejection
    /// (one that says nothing new), true when `next` moved back and the peer
    /// went (back) to Probe.
    pub fn on_reject(&mut self, rejected: LogIndex, hint_next: LogIndex) -> bool {
        match self.state {
            // Pipelined appends were answered out of date; only a rejection
            // above what is known to match means entries were lost.
            ProgressState::Replicate if rejected <= self.matched => return false,
            // In Probe only the answer to the outstanding probe counts.
            ProgressState::Probe if rejected != self.next.prev() => return false,
            ProgressState::Snapshot => return false,
            _ => {}
        }
        let floor = self.matched.next();
        self.next = hint_next.min(rejected).max(floor);
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
        true
    }

    /// The peer refused this leader as unknown: probe it from `at`, the
    /// configuration entry that names the leader, so that the next append
    /// carries it (never below what the peer is known to hold).
    pub fn on_introduce(&mut self, at: LogIndex) {
        self.state = ProgressState::Probe;
        self.next = at.max(self.matched.next());
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Lets a probing peer be sent to again (a heartbeat answered, so the
    /// probe was probably lost); frees one slot of a stuck pipeline.
    pub fn on_heartbeat_response(&mut self) {
        self.recent_active = true;
        if self.load == LoadState::Failed {
            self.load = LoadState::Idle;
        }
        match self.state {
            ProgressState::Probe => self.probe_sent = false,
            ProgressState::Replicate => {
                if self.inflights.is_full() {
                    self.inflights.free_first();
                }
            }
            ProgressState::Snapshot => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress::new(LogIndex(11), 4, 1 << 20)
    }

    #[test]
    fn probe_sends_one_at_a_time_then_pipelines_after_success() {
        let mut p = progress();
        assert!(!p.is_paused());
        p.on_sent(LogIndex(12), 10);
        assert!(p.is_paused(), "probe waits for its answer");
        assert_eq!(p.next, LogIndex(11), "probe does not advance next");
        assert!(p.on_ack(LogIndex(12)));
        assert_eq!(p.state, ProgressState::Replicate);
        assert_eq!((p.matched, p.next), (LogIndex(12), LogIndex(13)));
        for last in 13..17 {
            assert!(!p.is_paused());
            p.on_sent(LogIndex(last), 10);
        }
        assert!(p.is_paused(), "window of 4 is full");
        assert_eq!(p.next, LogIndex(17));
        p.on_ack(LogIndex(14));
        assert!(!p.is_paused());
    }

    #[test]
    fn rejection_moves_next_back_to_the_hint_but_never_below_match() {
        let mut p = progress();
        p.on_ack(LogIndex(5));
        p.on_sent(LogIndex(8), 10);
        p.on_sent(LogIndex(10), 10);
        assert_eq!(p.next, LogIndex(11));
        // A stale rejection at or below match changes nothing.
        assert!(!p.on_reject(LogIndex(4), LogIndex(3)));
        assert!(p.on_reject(LogIndex(8), LogIndex(2)));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next, LogIndex(6), "clamped to matched + 1");
        // In Probe, only the answer to the outstanding probe counts.
        p.on_sent(LogIndex(7), 10);
        assert!(!p.on_reject(LogIndex(9), LogIndex(7)));
        assert!(p.on_reject(LogIndex(5), LogIndex(6)));
    }

    #[test]
    fn snapshot_state_waits_for_the_install_then_pipelines() {
        let mut p = progress();
        p.on_snapshot_sent(LogIndex(50), Instant::from_nanos(0));
        assert!(p.is_paused(), "nothing but heartbeats while installing");
        p.on_heartbeat_response();
        assert!(p.is_paused());
        assert!(
            !p.on_reject(LogIndex(10), LogIndex(3)),
            "stale rejections change nothing"
        );
        assert!(p.on_ack(LogIndex(50)));
        assert_eq!(p.state, ProgressState::Replicate);
        assert_eq!((p.matched, p.next), (LogIndex(50), LogIndex(51)));
        p.on_snapshot_sent(LogIndex(80), Instant::from_nanos(0));
        p.on_snapshot_failed();
        assert_eq!(p.state, ProgressState::Probe);
        assert!(
            p.is_paused(),
            "a failed install is retried after the next heartbeat"
        );
        p.on_heartbeat_response();
        assert!(!p.is_paused());
    }

    #[test]
    fn an_introduction_probes_from_the_configuration_entry_but_never_below_match() {
        let mut p = progress();
        assert!(!p.acknowledged);
        p.on_ack(LogIndex(5));
        assert!(p.acknowledged);
        p.on_sent(LogIndex(9), 10);
        p.on_introduce(LogIndex(7));
        assert_eq!((p.state, p.next), (ProgressState::Probe, LogIndex(7)));
        assert!(!p.is_paused());
        p.on_introduce(LogIndex(3));
        assert_eq!(p.next, LogIndex(6), "clamped to matched + 1");
    }

    #[test]
    fn heartbeat_response_unpauses_a_probe_and_frees_a_full_window() {
        let mut p = progress();
        p.on_sent(LogIndex(11), 10);
        assert!(p.is_paused());
        p.on_heartbeat_response();
        assert!(!p.is_paused());
        p.on_ack(LogIndex(10));
        for last in 11..15 {
            p.on_sent(LogIndex(last), 10);
        }
        assert!(p.is_paused());
        p.on_heartbeat_response();
        assert!(!p.is_paused());
    }
}
