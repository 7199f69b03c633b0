//! Pieces the runtime benches share: the counting state machine, the
//! address book of servers in one process, and the end of a measured row.
//! (Each bench uses a subset.)
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use oar::core::{LogId, NodeId};
use oar::runtime::{
    Committed, NodeManager, SnapshotError, SnapshotReader, SnapshotView, StateMachine,
    snapshot_file,
};
use tokio::task::JoinHandle;

/// Counts writes; answers with nothing, like openraft's minimal store.
/// Snapshots (the count) let the log be compacted, as openraft's store does
/// by default, so memory stays bounded however long a row runs.
pub(crate) struct Counter(pub(crate) u64);

impl StateMachine for Counter {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        self.0 += commands.len() as u64;
        vec![Bytes::new(); commands.len()]
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        Ok(snapshot_file("count", self.0.to_le_bytes().to_vec()))
    }

    fn on_snapshot_load(&mut self, _: LogId, files: &SnapshotReader) -> Result<(), SnapshotError> {
        let bytes = files.read_file("count")?;
        let bytes = <[u8; 8]>::try_from(&bytes[..]).ok();
        let bytes = bytes.ok_or_else(|| SnapshotError::Invalid("no count".into()))?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Node `i + 1` lives on `servers[i]`.
pub(crate) fn address_book(servers: &[NodeManager]) -> BTreeMap<NodeId, SocketAddr> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| (NodeId(i as u64 + 1), s.local_addr()))
        .collect()
}

/// Ends a row: stops the closed-loop tasks, waits for them, shuts the
/// servers down.
pub(crate) async fn finish(stop: &AtomicBool, tasks: Vec<JoinHandle<()>>, servers: &[NodeManager]) {
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    for server in servers {
        server.shutdown().await;
    }
}
