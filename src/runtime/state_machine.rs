//! The user's replicated state machine (braft's `StateMachine`).

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use super::error::Error;
use super::snapshot_view::SnapshotView;
use crate::core::{LogId, Membership, NodeId, Term};
use crate::storage::{SnapshotReader, StorageError};

/// A committed client command, handed to [`StateMachine::on_apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The command's log position.
    pub id: LogId,
    /// The command, as proposed.
    pub data: Bytes,
}

/// Why a snapshot could not be saved or loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// This state machine does not implement snapshots.
    #[error("snapshots are not supported by this state machine")]
    Unsupported,
    /// The snapshot data is invalid.
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    /// Writing or reading the snapshot's files failed (or a file failed its
    /// checksum).
    #[error("snapshot storage: {0}")]
    Storage(#[from] Arc<StorageError>),
    /// The state machine's own I/O failed while streaming a file (through
    /// `std::io::Write` or `Read`).
    #[error("snapshot i/o: {0}")]
    Io(#[source] Arc<io::Error>),
}

impl From<StorageError> for SnapshotError {
    fn from(e: StorageError) -> Self {
        SnapshotError::Storage(Arc::new(e))
    }
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        SnapshotError::Io(Arc::new(e))
    }
}

/// Why a state machine did not answer a query
/// ([`StateMachine::on_query`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// This state machine answers no queries outside the log (the
    /// default): a client read then goes through the log as a command,
    /// answered by `on_apply` (the Log policy). Taken for the whole state
    /// machine: once answered, the node sends every later client read
    /// through the log without asking again.
    #[error("queries are not supported by this state machine")]
    Unsupported,
    /// The query is not one this state machine understands. Remedy: fix
    /// the query; retrying it changes nothing.
    #[error("invalid query: {0}")]
    Invalid(String),
}

/// The state machine a Raft group replicates. Every callback runs on the
/// group's apply task, in log order; none runs concurrently with another.
pub trait StateMachine: Send + 'static {
    /// Applies committed commands in log order and returns one response per
    /// command, in the same order; the proposing client receives its
    /// command's response. Every replica applies the same commands in the
    /// same order, so the implementation must be deterministic.
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes>;

    /// This node became leader of `term`.
    fn on_leader_start(&mut self, term: Term) {
        let _ = term;
    }

    /// This node stopped leading.
    fn on_leader_stop(&mut self) {}

    /// This node started following `leader` in `term`.
    fn on_start_following(&mut self, leader: NodeId, term: Term) {
        let _ = (leader, term);
    }

    /// This node stopped following `leader`.
    fn on_stop_following(&mut self, leader: NodeId) {
        let _ = leader;
    }

    /// A configuration entry was committed and applied.
    fn on_configuration_committed(&mut self, membership: &Membership) {
        let _ = membership;
    }

    /// The group stopped on an error (e.g. a storage failure).
    fn on_error(&mut self, error: &Error) {
        let _ = error;
    }

    /// Takes a point-in-time view of everything applied so far, to be saved
    /// as a snapshot: cheaply, since applies wait meanwhile (a
    /// copy-on-write handle, a checkpoint, or for a small state an encoded
    /// copy through [`snapshot_file`](super::snapshot_file)). The runtime
    /// writes the view out on a thread of its own (at a lower CPU priority
    /// than the applies) while applies go on, makes
    /// it durable, then compacts the log before it. The default says
    /// `Unsupported`: the log then grows without bound (fine for tests, not
    /// for a service).
    ///
    /// # Errors
    /// [`SnapshotError`].
    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        Err(SnapshotError::Unsupported)
    }

    /// Replaces the whole state with a snapshot saved through the entry
    /// `last` (at start-up, or installed from the leader), read from its
    /// files ([`SnapshotReader::open_file`] to stream one,
    /// [`SnapshotReader::read_file`] to read a small one whole); applies
    /// continue after `last`.
    ///
    /// # Errors
    /// [`SnapshotError`]; after a failed load at start-up the group does not
    /// start, during an install the install is retried.
    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let _ = (last, snapshot);
        Err(SnapshotError::Unsupported)
    }

    /// Where the state machine's own durable state stands, asked once at
    /// start-up before any other callback: the last entry it applied and
    /// made durable together with its state (an on-disk state machine), or
    /// `None` (the default) for a state that does not outlive the process.
    ///
    /// At or past the newest snapshot, the snapshot is not loaded and only
    /// the entries after this point are applied again; behind it (the
    /// store lost more than the snapshot covers, e.g. it is empty) the
    /// snapshot is loaded, as for an in-memory state machine, and
    /// `on_snapshot_load` must then replace the store and make the
    /// snapshot's point its durable one. Such a machine's
    /// `on_snapshot_save` returns a checkpoint of its store (files linked
    /// with [`SnapshotWriter::link_file`](crate::storage::SnapshotWriter::link_file)
    /// or copied), and its `may_block` says `true`. A group with sessions
    /// always loads the snapshot, where its session table lives.
    ///
    /// # Errors
    /// [`SnapshotError`]: the group does not start. A point the log does
    /// not hold is refused with [`Error::AppliedNotInLog`].
    fn durable_applied(&mut self) -> Result<Option<LogId>, SnapshotError> {
        Ok(None)
    }

    /// The group shut down; the last callback.
    fn on_shutdown(&mut self) {}

    /// Answers a read-only `query` from the applied state, without the log
    /// (a client read by the ReadIndex or Lease policy, on the leader or a
    /// follower). The runtime calls it on the apply task once everything
    /// through the read's index is applied, so the answer reflects every
    /// write that completed before the read began.
    ///
    /// It takes `&self`: a query runs on one replica only and never enters
    /// the log, so it must not change the replicated state (a change here
    /// would make this replica differ from the others). Interior mutability
    /// for a cache or a counter is the implementation's business.
    ///
    /// # Errors
    /// The default says [`QueryError::Unsupported`]: the server then runs
    /// the query through the log as a command (`on_apply` answers it), as
    /// before queries existed. [`QueryError::Invalid`] reaches the client
    /// as a refusal.
    fn on_query(&self, query: &[u8]) -> Result<Bytes, QueryError> {
        let _ = query;
        Err(QueryError::Unsupported)
    }

    /// Whether `on_apply`, `on_query`, `on_snapshot_save` or `on_snapshot_load` may
    /// block (a state machine on disk, a lock held across I/O). The apply
    /// task runs on a runtime worker: a callback that blocks there also
    /// holds up tasks the worker had queued (other groups, connections),
    /// so a blocking one is run under tokio's `block_in_place`, which
    /// first hands them to another thread. That hand-off costs about 3x
    /// the throughput of a small in-memory machine (measured with
    /// `runtime_throughput`), hence the default: never blocks.
    fn may_block(&self) -> bool {
        false
    }
}

/// A boxed state machine is one, so that callers holding a
/// `Box<dyn StateMachine>` (chosen at run time) pass it as it is.
impl<S: StateMachine + ?Sized> StateMachine for Box<S> {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        (**self).on_apply(commands)
    }

    fn on_leader_start(&mut self, term: Term) {
        (**self).on_leader_start(term)
    }

    fn on_leader_stop(&mut self) {
        (**self).on_leader_stop()
    }

    fn on_start_following(&mut self, leader: NodeId, term: Term) {
        (**self).on_start_following(leader, term)
    }

    fn on_stop_following(&mut self, leader: NodeId) {
        (**self).on_stop_following(leader)
    }

    fn on_configuration_committed(&mut self, membership: &Membership) {
        (**self).on_configuration_committed(membership)
    }

    fn on_error(&mut self, error: &Error) {
        (**self).on_error(error)
    }

    fn may_block(&self) -> bool {
        (**self).may_block()
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        (**self).on_snapshot_save()
    }

    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        (**self).on_snapshot_load(last, snapshot)
    }

    fn durable_applied(&mut self) -> Result<Option<LogId>, SnapshotError> {
        (**self).durable_applied()
    }

    fn on_shutdown(&mut self) {
        (**self).on_shutdown()
    }

    fn on_query(&self, query: &[u8]) -> Result<Bytes, QueryError> {
        (**self).on_query(query)
    }
}
