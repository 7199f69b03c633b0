//! Internal consistency checks, run after every input in debug builds: they
//! turn a protocol bug into an immediate, local panic instead of a wrong
//! answer much later (TigerBeetle's assertion discipline).

use super::ids::{LogId, LogIndex};
use super::node::{RaftNode, RoleState};

/// Panics if the node's state breaks one of the documented invariants.
pub(super) fn check(node: &RaftNode) {
    let log = &node.log;
    let last = log.last_index();
    assert!(log.applied() <= log.committed(), "applied beyond commit");
    assert!(log.committed() <= last, "commit beyond the log");
    assert!(log.persisted() <= last, "persisted beyond the log");
    assert!(
        log.persisted() < log.unpersisted_from(),
        "persisted beyond the hand-off point"
    );
    // Only the tail changes between inputs: walking the whole log each
    // time would make long debug runs quadratic.
    const TAIL: u64 = 64;
    let evicted = log.evicted_through();
    assert!(
        log.snapshot_last().index <= evicted
            && evicted <= log.applied()
            && evicted <= log.persisted(),
        "evicted entries not applied or not durable"
    );
    let tail_from = last.0.saturating_sub(TAIL).max(evicted.0);
    let mut prev = match log.entry(LogIndex(tail_from)) {
        Some(entry) => entry.id,
        None => LogId {
            index: evicted,
            term: log.term_at(evicted).expect("the evicted terms are known"),
        },
    };
    let skip = (tail_from - evicted.0) as usize;
    for entry in log.iter().skip(skip) {
        assert_eq!(entry.id.index, prev.index.next(), "log not contiguous");
        assert!(
            entry.id.term >= prev.term,
            "log term went back at {}",
            entry.id
        );
        prev = entry.id;
    }
    assert!(
        prev.term <= node.hard_state.term,
        "entry from a future term"
    );
    assert!(
        node.durable_hard_state.term <= node.hard_state.term,
        "durable term ahead"
    );
    if node.quiet {
        assert!(
            matches!(node.role, RoleState::Leader { .. } | RoleState::Follower),
            "a (pre-)candidate is quiet"
        );
        assert!(
            node.transfer.is_none() && node.reads.quiet(),
            "quiet with a transfer or a read pending"
        );
    }
    match &node.role {
        RoleState::Leader { progress } => {
            assert_eq!(node.leader, Some(node.id()), "leader does not know itself");
            // A leader is a voter of the configuration in effect, except
            // while it replicates a C(new) that removes it (dissertation
            // §4.2.2): it steps down as soon as that entry commits.
            let configs = &node.configs;
            assert!(
                configs.effective().is_voter(node.id())
                    || configs.effective_index() > log.committed(),
                "a non-voter leads"
            );
            // Every member of the configuration in effect is replicated to.
            for id in configs.effective().members() {
                assert!(
                    id == node.id() || progress.contains_key(&id),
                    "member {id} has no progress"
                );
            }
            if let Some(transfer) = &node.transfer {
                assert!(
                    configs.effective().is_voter(transfer.target),
                    "transfer to a non-voter"
                );
            }
            for id in progress.keys() {
                assert_ne!(*id, node.id(), "leader tracks itself");
            }
            for (id, p) in progress {
                assert!(
                    p.matched < p.next,
                    "peer {id}: matched {} >= next {}",
                    p.matched,
                    p.next
                );
                assert!(p.matched <= last, "peer {id} matched beyond our log");
            }
        }
        RoleState::Candidate { .. } => {
            assert_eq!(
                node.hard_state.voted_for,
                Some(node.id()),
                "candidate voted for another"
            );
        }
        RoleState::Follower | RoleState::PreCandidate { .. } => {}
    }
    let effective = node.configs.effective();
    assert!(
        effective.learners.is_disjoint(&effective.voter_ids()),
        "a learner is also a voter"
    );
    assert!(
        node.transfer.is_none() || matches!(node.role, RoleState::Leader { .. }),
        "a transfer outlived leadership"
    );
    let first_proposal = node.proposals.first_index().unwrap_or(LogIndex(u64::MAX));
    assert!(
        first_proposal > log.applied(),
        "a proposal at an applied index is unresolved"
    );
    assert!(
        node.proposals
            .indexes()
            .zip(node.proposals.indexes().skip(1))
            .all(|(a, b)| a < b),
        "proposals out of index order"
    );
}
