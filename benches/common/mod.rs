//! Pieces the runtime benches share: the counting state machine, the
//! address book of servers in one process, the end of a measured row, and
//! the process's CPU time.
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

/// This process's CPU time so far (user + system), where it can be read.
pub(crate) fn cpu_time() -> std::time::Duration {
    // SAFETY: rusage is plain integers, for which all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return std::time::Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}
