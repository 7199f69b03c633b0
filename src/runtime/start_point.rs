//! Where a group's state machine starts applying after a restart: from the
//! newest snapshot (loaded into it), or, for an on-disk state machine whose
//! own store is at or past that snapshot, from its durable point (nothing
//! loaded, only the log after that point replayed).
//!
//! ```text
//!   durable_applied() ──None or behind the snapshot──► load the snapshot, replay after it
//!                     ──at or past it, in the log────► skip the load, replay after it
//!                     ──not in the log───────────────► Error::AppliedNotInLog (group does not start)
//! ```

use super::error::Error;
use super::snapshot_storage::SnapshotStorage;
use super::state_machine::StateMachine;
use crate::core::{Entry, EntryPayload, LogId, Membership, SnapshotInfo};
use crate::storage::StorageError;

/// The state machine's state at start-up, as the core and the apply task
/// must see it.
#[derive(Debug)]
pub(crate) struct StartPoint {
    /// The newest durable snapshot (loaded or not): the core serves it to
    /// peers and compacts behind it either way.
    pub(crate) snapshot: Option<SnapshotInfo>,
    /// The last entry the state machine holds: applies resume after it.
    pub(crate) applied: LogId,
    /// The configuration in effect at `applied`.
    pub(crate) membership: Membership,
    /// `applied`, when it is past `snapshot` (for `InitialState::applied`).
    pub(crate) resumed: Option<LogId>,
}

/// The durable log the group recovered, as `InitialState` takes it.
pub(crate) struct RecoveredLog<'a> {
    /// The entry before `entries` (`(0,0)` if none).
    pub(crate) last_purged: LogId,
    /// The durable entries after `last_purged`, in order.
    pub(crate) entries: &'a [Entry],
    /// The configuration before any entry, when there is no snapshot.
    pub(crate) bootstrap: Membership,
}

/// Asks the state machine where its own store stands and loads the newest
/// snapshot only if the store is behind it.
///
/// # Errors
/// `Storage` (the snapshot could not be opened), `StateMachine` (the
/// state machine could not say where it stands, or could not load the
/// snapshot), `AppliedNotInLog` (it claims an entry this log does not hold).
pub(crate) fn recover_start_point(
    snapshots: &dyn SnapshotStorage,
    state_machine: &mut dyn StateMachine,
    log: RecoveredLog<'_>,
) -> Result<StartPoint, Error> {
    let durable = state_machine
        .durable_applied()
        .map_err(|e| Error::StateMachine(format!("asking for the durable applied point: {e}")))?;
    let reader = snapshots.open().map_err(StorageError::from_failure)?;
    let snapshot = reader.as_ref().map(|r| SnapshotInfo {
        last_included: r.meta().last_included,
        membership: r.meta().membership.clone().into(),
    });
    let snapshot_last = snapshot.as_ref().map(|s| s.last_included);
    let base = snapshot_last.unwrap_or_default();
    // Behind the snapshot only by entries a state machine never sees
    // (no-ops, configurations), its state is the snapshot's.
    let durable = durable.map(|claimed| match sees_nothing_between(&log, claimed, base) {
        true => base,
        false => claimed,
    });
    match durable {
        Some(claimed) if claimed.index >= base.index => {
            let membership = membership_at(snapshot.as_ref(), &log, claimed)?;
            if claimed != base {
                tracing::info!(%claimed, snapshot = %base, "state machine resumes from its own store; snapshot not loaded");
            }
            Ok(StartPoint {
                resumed: (claimed != base).then_some(claimed),
                snapshot,
                applied: claimed,
                membership,
            })
        }
        _ => {
            if let Some(reader) = &reader {
                state_machine
                    .on_snapshot_load(base, reader)
                    .map_err(|e| Error::StateMachine(format!("loading snapshot {base}: {e}")))?;
            }
            let membership = match &snapshot {
                Some(s) => Membership::clone(&s.membership),
                None => log.bootstrap,
            };
            Ok(StartPoint {
                snapshot,
                applied: base,
                membership,
                resumed: None,
            })
        }
    }
}

/// The configuration in effect at `claimed`, which must be the snapshot's
/// last entry or an entry of the log continuing it: the snapshot's (or the
/// bootstrap) configuration, then the log's configuration entries through
/// `claimed`.
fn membership_at(
    snapshot: Option<&SnapshotInfo>,
    log: &RecoveredLog<'_>,
    claimed: LogId,
) -> Result<Membership, Error> {
    let log_last = log.entries.last().map_or(log.last_purged, |e| e.id);
    let not_in_log = || Error::AppliedNotInLog { claimed, log_last };
    let (base, mut membership) = match snapshot {
        Some(s) => (s.last_included, Membership::clone(&s.membership)),
        None => (log.last_purged, log.bootstrap.clone()),
    };
    if claimed == base {
        return Ok(membership);
    }
    if claimed.index == base.index {
        // Same index, another term: not the history this node holds.
        return Err(not_in_log());
    }
    // The entries after `base` must be in the log, continuing it (a log
    // that does not continue the snapshot is reset by the core, so it
    // holds nothing past it).
    if !log.holds(base) || !log.holds(claimed) {
        return Err(not_in_log());
    }
    for entry in log.entries {
        if let EntryPayload::Config(m) = &entry.payload
            && entry.id.index > base.index
            && entry.id.index <= claimed.index
        {
            membership = Membership::clone(m);
        }
    }
    Ok(membership)
}

/// Whether `claimed` is behind `base` only by entries the log holds that
/// carry no command.
fn sees_nothing_between(log: &RecoveredLog<'_>, claimed: LogId, base: LogId) -> bool {
    claimed.index < base.index
        && log.holds(claimed)
        && log.holds(base)
        && log
            .entries
            .iter()
            .filter(|e| e.id.index > claimed.index && e.id.index <= base.index)
            .all(|e| !matches!(e.payload, EntryPayload::Command(_)))
}

impl RecoveredLog<'_> {
    /// Whether the log holds `id` (its purge point counts).
    fn holds(&self, id: LogId) -> bool {
        id == self.last_purged
            || id
                .index
                .0
                .checked_sub(self.last_purged.index.0 + 1)
                .and_then(|offset| self.entries.get(usize::try_from(offset).ok()?))
                .is_some_and(|e| e.id == id)
    }
}
