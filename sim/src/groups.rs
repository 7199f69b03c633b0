//! Many Raft groups on the same simulated servers (`--groups G`): every
//! server hosts a member of each group through its one `NodeManager`, as a
//! sharded store does in production, so that a fault of a server (crash,
//! pause, partition, disk) hits a member of every group at once. What the
//! run keeps of each group lives here: its id, where its members keep their
//! storage, their handles and what was observed of them; the checks then
//! run group by group and name the group that failed.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use oar::runtime::{GroupId, Node};

use crate::observe::{Observations, Violation};

/// The id of the run's `index`-th group (from 0): groups are numbered from
/// 1, as the single group always was.
pub fn group_id(index: usize) -> GroupId {
    GroupId(index as u64 + 1)
}

/// Where a server keeps the `index`-th group's storage on its disk.
pub fn group_dir(index: usize) -> PathBuf {
    PathBuf::from(format!("/data/group_{}", index + 1))
}

/// Mixed into a group's seeds (its members' protocol randomness, their disk
/// latencies) so that groups differ; 0 for the first group, whose seeds
/// stay those of the single-group runs.
pub fn group_salt(index: usize) -> u64 {
    (index as u64).wrapping_mul(0xa24b_aed4_963e_e407)
}

/// One group across the servers.
#[derive(Clone)]
pub struct SimGroup {
    /// Its index among the run's groups (its id is `group_id(index)`).
    pub index: usize,
    /// What its members did (applies, leaders, snapshot loads) and the
    /// violations found so far.
    pub observations: Arc<Mutex<Observations>>,
    /// Each server's member handle, by server index (`None` while down).
    pub members: Vec<Arc<Mutex<Option<Node>>>>,
    /// Each running member's state machine map, for barrier reads.
    pub read_maps: crate::reads::ReadMaps,
    /// Each server's member storage refused to open (detected corruption),
    /// by server index.
    pub unrecoverable: Vec<Arc<Mutex<bool>>>,
}

impl SimGroup {
    /// A group of `servers` members, none started yet.
    pub fn new(index: usize, servers: usize, observations: Arc<Mutex<Observations>>) -> Self {
        SimGroup {
            index,
            observations,
            members: (0..servers).map(|_| Arc::default()).collect(),
            read_maps: crate::reads::ReadMaps::default(),
            unrecoverable: (0..servers).map(|_| Arc::default()).collect(),
        }
    }

    /// Its id.
    pub fn id(&self) -> GroupId {
        group_id(self.index)
    }
}

/// `violations` of the group `index` of `groups`, named by their group when
/// there are several (one group's reports read as they always did).
pub fn in_group(groups: usize, index: usize, violations: Vec<Violation>) -> Vec<Violation> {
    if groups <= 1 {
        return violations;
    }
    violations
        .into_iter()
        .map(|violation| Violation::InGroup {
            group: group_id(index).0,
            violation: Box::new(violation),
        })
        .collect()
}

/// Awaits every future of `futures` together, in one task (the simulator
/// has no `futures::join_all`): each wake polls the unfinished ones in
/// order, so that a run replays the same. Outputs in the input order.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut running: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in running.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future finished"))
        .collect()
}
