//! When the apply task saves snapshots on its own (braft's
//! `snapshot_interval_s`, and counts of entries and bytes): after so many
//! entries, so many bytes of log, or so much time since the last one,
//! whichever comes first.

use std::time::Duration;

/// What makes the apply task save a snapshot on its own. Each bound is off
/// when `None`; with all off, snapshots are only saved on request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapshotPolicy {
    /// Save after this many applied entries.
    pub(crate) entries: Option<u64>,
    /// Save after this many bytes of applied log (payloads plus a fixed
    /// per-entry overhead, an estimate of the log's bytes on disk).
    pub(crate) log_bytes: Option<u64>,
    /// Save this long after the last snapshot (or the start), if anything
    /// was applied since.
    pub(crate) period: Option<Duration>,
}

/// The bytes an entry is counted for on top of its payload: about its
/// record header in the log.
pub(crate) const ENTRY_OVERHEAD_BYTES: u64 = 32;

/// What was applied since the last snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SinceSnapshot {
    /// Entries applied.
    pub(crate) entries: u64,
    /// Their bytes, as [`SnapshotPolicy::log_bytes`] counts them.
    pub(crate) log_bytes: u64,
}

impl SnapshotPolicy {
    /// Never on its own (the state machine refused a save).
    pub(crate) fn never() -> Self {
        SnapshotPolicy::default()
    }

    /// Whether a snapshot is due after `since` applied `elapsed` after the
    /// last one.
    pub(crate) fn due(&self, since: SinceSnapshot, elapsed: Duration) -> bool {
        since.entries > 0
            && (self.entries.is_some_and(|n| since.entries >= n)
                || self.log_bytes.is_some_and(|n| since.log_bytes >= n)
                || self.period.is_some_and(|p| elapsed >= p))
    }

    /// How long after the last snapshot the period bound falls due, if it
    /// is on and anything was applied since (else no timer is needed).
    pub(crate) fn period_after(&self, since: SinceSnapshot) -> Option<Duration> {
        self.period.filter(|_| since.entries > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn since(entries: u64, log_bytes: u64) -> SinceSnapshot {
        SinceSnapshot { entries, log_bytes }
    }

    #[test]
    fn whichever_bound_comes_first_makes_a_snapshot_due() {
        let policy = SnapshotPolicy {
            entries: Some(100),
            log_bytes: Some(1 << 20),
            period: Some(60 * SECOND),
        };
        assert!(!policy.due(since(99, 1000), 59 * SECOND));
        assert!(policy.due(since(100, 1000), SECOND), "by entries");
        assert!(policy.due(since(3, 1 << 20), SECOND), "by bytes");
        assert!(policy.due(since(1, 40), 60 * SECOND), "by time");
        assert!(
            !policy.due(since(0, 0), 600 * SECOND),
            "nothing applied: nothing to save"
        );
        assert!(!SnapshotPolicy::never().due(since(1 << 40, 1 << 50), SECOND * 1_000_000));
        assert_eq!(policy.period_after(since(0, 0)), None);
        assert_eq!(policy.period_after(since(1, 0)), Some(60 * SECOND));
    }
}
