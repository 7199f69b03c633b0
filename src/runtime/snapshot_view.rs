//! [`SnapshotView`]: a point-in-time view of the state, which the runtime
//! writes out as a snapshot on a thread of its own, at a lower CPU priority,
//! while applies go on.

use bytes::Bytes;

use super::state_machine::SnapshotError;
use crate::storage::SnapshotWriter;

/// A point-in-time view of a state machine's state, taken by
/// [`StateMachine::on_snapshot_save`](super::StateMachine::on_snapshot_save)
/// between two applies and written out later, on a thread of its own, while
/// the state machine goes on applying. It must not see those later applies:
/// hold a copy-on-write handle, a checkpoint, an immutable fork, or (for a
/// small state) an encoded copy.
///
/// Any `FnOnce(&mut SnapshotWriter) -> Result<(), SnapshotError>` closure
/// that is `Send + 'static` is a view.
pub trait SnapshotView: Send + 'static {
    /// Writes the view's files (streamed with
    /// [`SnapshotWriter::create_file`], linked with
    /// [`SnapshotWriter::link_file`], or whole with
    /// [`SnapshotWriter::write_file`]). The runtime then makes them durable
    /// and tells the core.
    ///
    /// # Errors
    /// [`SnapshotError`]; the snapshot is then dropped (the previous one
    /// stays the newest).
    fn write_to(self: Box<Self>, writer: &mut SnapshotWriter) -> Result<(), SnapshotError>;
}

impl<F> SnapshotView for F
where
    F: FnOnce(&mut SnapshotWriter) -> Result<(), SnapshotError> + Send + 'static,
{
    fn write_to(self: Box<Self>, writer: &mut SnapshotWriter) -> Result<(), SnapshotError> {
        (*self)(writer)
    }
}

/// The simple path for a state that fits in memory: a view that writes
/// `data` (already encoded, so already a point-in-time copy) as the one
/// file `name`.
///
/// ```
/// # use oar::runtime::{snapshot_file, SnapshotView};
/// let state: u64 = 42;
/// let view: Box<dyn SnapshotView> = snapshot_file("count", state.to_le_bytes().to_vec());
/// ```
pub fn snapshot_file(name: impl Into<String>, data: impl Into<Bytes>) -> Box<dyn SnapshotView> {
    let name = name.into();
    let data = data.into();
    Box::new(move |writer: &mut SnapshotWriter| Ok(writer.write_file(&name, &data)?))
}
