//! The configuration history of a node (braft's `ConfigurationManager`).
//!
//! A configuration takes effect as soon as its entry is in the log, committed
//! or not (dissertation §4.1), so a node must be able to go back to the
//! previous configuration when a new leader truncates a configuration entry.
//! This keeps every configuration entry still in the log, by index, above a
//! base: the configuration in effect before the first of them (from the
//! snapshot, the bootstrap, or a forced `reset_peers`).

use std::collections::BTreeMap;

use super::ids::{LogIndex, NodeId};
use super::membership::Membership;

/// Configurations by the index of the log entry that carries them.
///
/// Invariant: every key of `entries` is above `base_index`.
#[derive(Clone, Debug, Default)]
pub struct ConfigManager {
    /// The index the base configuration is in effect from (0 for bootstrap).
    base_index: LogIndex,
    /// The configuration before any entry of `entries`.
    base: Membership,
    /// Whether `base` was forced by `reset_peers` and no log entry carries it.
    forced: bool,
    /// Configuration entries still in the log, by index.
    entries: BTreeMap<LogIndex, Membership>,
}

impl ConfigManager {
    /// A history whose only configuration is `base`, in effect from `base_index`.
    pub fn new(base_index: LogIndex, base: Membership) -> Self {
        ConfigManager {
            base_index,
            base,
            forced: false,
            entries: BTreeMap::new(),
        }
    }

    /// Records the configuration carried by the log entry at `index`, which
    /// must be after every configuration held.
    pub fn add(&mut self, index: LogIndex, membership: Membership) {
        debug_assert!(index > self.effective_index(), "configurations go forward");
        self.entries.insert(index, membership);
    }

    /// Forgets every configuration carried at or after `index` (the log was
    /// truncated from there): the one before takes effect again. Returns
    /// whether the effective configuration changed.
    pub fn truncate_suffix(&mut self, index: LogIndex) -> bool {
        let removed = self.entries.split_off(&index);
        !removed.is_empty()
    }

    /// The log prefix up to `index` was compacted into a snapshot: the
    /// configuration in effect at `index` becomes the base.
    pub fn truncate_prefix(&mut self, index: LogIndex) {
        let kept = self.entries.split_off(&index.next());
        if let Some((&at, membership)) = self.entries.iter().next_back() {
            self.base_index = at;
            self.base = membership.clone();
            self.forced = false;
        }
        self.entries = kept;
    }

    /// Replaces the whole history with `membership`, carried by no log entry
    /// (`reset_peers`). Configuration entries in the log are ignored from
    /// now on; the next leader writes this configuration as its first entry.
    pub fn force(&mut self, at: LogIndex, membership: Membership) {
        self.entries.clear();
        self.base_index = at;
        self.base = membership;
        self.forced = true;
    }

    /// Whether the effective configuration was forced and no log entry
    /// carries it yet.
    pub fn is_forced(&self) -> bool {
        self.forced && self.entries.is_empty()
    }

    /// The configuration in effect: the latest one appended.
    pub fn effective(&self) -> &Membership {
        self.entries.values().next_back().unwrap_or(&self.base)
    }

    /// The index of the entry carrying the effective configuration (the
    /// base's index when none does).
    pub fn effective_index(&self) -> LogIndex {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.base_index)
    }

    /// The configuration in effect before the effective one (the base when
    /// the effective one is the base).
    pub fn previous(&self) -> &Membership {
        let mut latest = self.entries.values().rev();
        latest.next();
        latest.next().unwrap_or(&self.base)
    }

    /// The latest configuration whose entry is at or below `index` (for
    /// example the last committed configuration).
    pub fn at(&self, index: LogIndex) -> &Membership {
        self.entries
            .range(..=index)
            .next_back()
            .map_or(&self.base, |(_, m)| m)
    }

    /// Whether `id` is a member of the configuration in effect at `index`
    /// or of any configuration carried after it.
    pub fn names_since(&self, index: LogIndex, id: NodeId) -> bool {
        // Every message is checked here: when no configuration was carried
        // after `index` (the usual case), only the latest one counts.
        match self.entries.last_key_value() {
            None => return self.base.contains(id),
            Some((&at, latest)) if at <= index => return latest.contains(id),
            Some(_) => {}
        }
        self.at(index).contains(id)
            || self
                .entries
                .range(index.next()..)
                .any(|(_, m)| m.contains(id))
    }

    /// The configuration in effect at `committed` and the index of the
    /// entry that carries it, when that is known committed: an entry at or
    /// below `committed`, or a base from a snapshot or the bootstrap. `None`
    /// when a forced base (`reset_peers`), which no committed entry
    /// carries, is in effect there.
    pub fn committed_entry(&self, committed: LogIndex) -> Option<(LogIndex, &Membership)> {
        match self.entries.range(..=committed).next_back() {
            Some((&index, membership)) => Some((index, membership)),
            None if !self.forced && self.base_index <= committed => {
                Some((self.base_index, &self.base))
            }
            None => None,
        }
    }

    /// The index of the newest configuration entry that names `id` as a
    /// member, if the log still holds one.
    pub fn newest_entry_naming(&self, id: NodeId) -> Option<LogIndex> {
        self.entries
            .iter()
            .rev()
            .find(|(_, m)| m.contains(id))
            .map(|(&index, _)| index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(raw: &[u64]) -> Membership {
        Membership::with_voters(raw.iter().map(|&n| NodeId(n)))
    }

    #[test]
    fn truncation_rolls_back_to_the_previous_configuration() {
        let mut history = ConfigManager::new(LogIndex(0), voters(&[1, 2, 3]));
        // No configuration entry: the base alone names the members.
        assert!(history.names_since(LogIndex(0), NodeId(3)));
        assert!(!history.names_since(LogIndex(0), NodeId(4)));
        history.add(LogIndex(4), voters(&[1, 2, 3, 4]));
        history.add(LogIndex(7), voters(&[1, 2, 4]));
        assert_eq!(history.effective(), &voters(&[1, 2, 4]));
        assert_eq!(history.previous(), &voters(&[1, 2, 3, 4]));
        assert_eq!(history.at(LogIndex(5)), &voters(&[1, 2, 3, 4]));
        assert!(!history.truncate_suffix(LogIndex(8)));
        assert!(history.truncate_suffix(LogIndex(5)));
        assert_eq!(history.effective(), &voters(&[1, 2, 3, 4]));
        assert_eq!(history.effective_index(), LogIndex(4));
        assert!(history.truncate_suffix(LogIndex(1)));
        assert_eq!(history.effective(), &voters(&[1, 2, 3]));
        assert_eq!(history.effective_index(), LogIndex(0));
    }

    #[test]
    fn prefix_truncation_keeps_the_configuration_in_effect() {
        let mut history = ConfigManager::new(LogIndex(0), voters(&[1]));
        history.add(LogIndex(3), voters(&[1, 2]));
        history.add(LogIndex(9), voters(&[1, 2, 3]));
        history.truncate_prefix(LogIndex(5));
        assert_eq!(history.at(LogIndex(5)), &voters(&[1, 2]));
        assert!(history.truncate_suffix(LogIndex(6)));
        assert_eq!(history.effective(), &voters(&[1, 2]));
        assert_eq!(history.effective_index(), LogIndex(3));
    }

    #[test]
    fn members_are_known_from_the_committed_configuration_on() {
        let mut history = ConfigManager::new(LogIndex(0), voters(&[1, 2, 3]));
        // No configuration entry: the base alone names the members.
        assert!(history.names_since(LogIndex(0), NodeId(3)));
        assert!(!history.names_since(LogIndex(0), NodeId(4)));
        history.add(LogIndex(4), voters(&[1, 2, 3, 4]));
        history.add(LogIndex(7), voters(&[1, 2, 4]));
        // Committed at 5: {1,2,3,4} and everything after it.
        assert!(history.names_since(LogIndex(5), NodeId(3)));
        assert!(history.names_since(LogIndex(5), NodeId(4)));
        // Committed at 7: 3 was removed for good.
        assert!(!history.names_since(LogIndex(7), NodeId(3)));
        assert!(!history.names_since(LogIndex(0), NodeId(9)));
        assert_eq!(history.newest_entry_naming(NodeId(3)), Some(LogIndex(4)));
        assert_eq!(history.newest_entry_naming(NodeId(4)), Some(LogIndex(7)));
        assert_eq!(history.newest_entry_naming(NodeId(9)), None);
    }

    #[test]
    fn a_forced_configuration_overrides_the_log_until_one_carries_it() {
        let mut history = ConfigManager::new(LogIndex(0), voters(&[1, 2, 3]));
        history.add(LogIndex(2), voters(&[1, 2, 3, 4]));
        history.force(LogIndex(5), voters(&[1]));
        assert!(history.is_forced());
        assert_eq!(history.effective(), &voters(&[1]));
        history.add(LogIndex(6), voters(&[1]));
        assert!(!history.is_forced());
        // The forced base is no committed configuration; the entry after is
        // once committed.
        assert_eq!(history.committed_entry(LogIndex(5)), None);
        assert_eq!(
            history.committed_entry(LogIndex(6)),
            Some((LogIndex(6), &voters(&[1])))
        );
    }

    #[test]
    fn the_committed_configuration_comes_with_its_entry() {
        let mut history = ConfigManager::new(LogIndex(3), voters(&[1, 2, 3]));
        history.add(LogIndex(7), voters(&[1, 2]));
        assert_eq!(history.committed_entry(LogIndex(2)), None);
        assert_eq!(
            history.committed_entry(LogIndex(6)),
            Some((LogIndex(3), &voters(&[1, 2, 3])))
        );
        assert_eq!(
            history.committed_entry(LogIndex(9)),
            Some((LogIndex(7), &voters(&[1, 2])))
        );
    }
}
