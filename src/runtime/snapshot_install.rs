//! Installing a snapshot offered by the leader (braft's `SnapshotExecutor`,
//! install half): pull its files in chunks from the leader's server, make
//! it durable in this node's snapshot storage, then have the apply task
//! load it, which reports back to the group. One install at a time: a newer
//! offer cancels the one under way.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::apply_loop::ApplyTask;
use super::group::GroupInput;
use super::group_id::GroupId;
use super::queue;
use super::snapshot_copy::{CopyOptions, SnapshotSource, fetch_snapshot};
use super::snapshot_storage::SnapshotStorage;
use super::throttle::Throttle;
use crate::core::SnapshotInfo;

/// Runs snapshot installs for one group.
pub(crate) struct SnapshotInstaller {
    pub(crate) group: GroupId,
    pub(crate) snapshots: Arc<dyn SnapshotStorage>,
    /// The group's inbox, for reporting a failed install.
    pub(crate) inbox: queue::Sender<GroupInput>,
    /// Resolves a peer's Raft address to where its snapshots are served.
    pub(crate) source: SourceResolver,
    /// The server's snapshot throttle, shared by every group on it.
    pub(crate) throttle: Throttle,
    pub(crate) options: CopyOptions,
    pub(crate) task: Option<JoinHandle<()>>,
}

/// Where a server's snapshots are fetched from, given its Raft address.
pub(crate) type SourceResolver = Arc<dyn Fn(SocketAddr) -> SnapshotSource + Send + Sync>;

impl SnapshotInstaller {
    /// Starts installing `snapshot` from the server at `from` (cancelling
    /// any install under way). The outcome reaches the group as
    /// `SnapshotInstalled` (through the apply task) or `SnapshotInstallFailed`.
    pub(crate) fn start(
        &mut self,
        from: Option<SocketAddr>,
        snapshot: SnapshotInfo,
        apply: queue::Sender<ApplyTask>,
    ) {
        self.cancel();
        let group = self.group;
        let snapshots = Arc::clone(&self.snapshots);
        let inbox = self.inbox.clone();
        let source = from.map(|addr| (self.source)(addr));
        let throttle = self.throttle.clone();
        let options = self.options.clone();
        self.task = Some(tokio::spawn(async move {
            let result = install(group, source, &snapshot, &*snapshots, &throttle, &options).await;
            match result {
                Ok(()) => {
                    let _ = apply.try_send(ApplyTask::Install { snapshot });
                }
                Err(error) => {
                    tracing::warn!(%group, last = %snapshot.last_included, %error, "snapshot install failed");
                    let _ = inbox
                        .send(GroupInput::SnapshotInstallFailed(snapshot))
                        .await;
                }
            }
        }));
    }

    /// Stops the install under way, if any (its partial copy is dropped).
    pub(crate) fn cancel(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Pulls the snapshot, streaming it to disk, and makes it durable (the
/// newest in `snapshots`) for the apply task to load.
async fn install(
    group: GroupId,
    source: Option<SnapshotSource>,
    snapshot: &SnapshotInfo,
    snapshots: &dyn SnapshotStorage,
    throttle: &Throttle,
    options: &CopyOptions,
) -> Result<(), String> {
    let source = source.ok_or("no address for the leader")?;
    // Cancellation is by aborting the task; the copy needs no other signal.
    let (_keep, never) = tokio::sync::watch::channel(false);
    let into = snapshots
        .begin(true)
        .map_err(|e| format!("starting the copy: {e}"))?;
    let (meta, into) = fetch_snapshot(
        source,
        group,
        snapshot.last_included,
        throttle,
        options,
        never,
        into,
    )
    .await
    .map_err(|e| e.to_string())?;
    if meta.last_included != snapshot.last_included || meta.membership != *snapshot.membership {
        return Err(format!(
            "the leader served snapshot {} for an offer of {}",
            meta.last_included, snapshot.last_included
        ));
    }
    // Inline, not through `run_blocking`: an install is cancelled by
    // aborting its task, which must never leave a commit running on its own
    // (it would outlive the group's shutdown and race a restart's storage).
    snapshots
        .commit(
            into,
            snapshot.last_included,
            crate::core::Membership::clone(&snapshot.membership),
        )
        .map_err(|e| format!("saving the snapshot: {e}"))?;
    Ok(())
}
