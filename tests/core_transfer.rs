//! Leadership transfer (dissertation §3.10): to an up-to-date target, to a
//! lagging one after it catches up, and an abort after an election timeout
//! after which the old leader takes proposals again.

mod harness;

use std::time::Duration;

use harness::{Cluster, MS, n};
use oar::core::{ProposalRefused, Role, TransferError};

fn led_by_1(seed: u64) -> Cluster {
    let mut c = Cluster::new(3, seed);
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(n(1));
    c.stabilize();
    assert_eq!(c.node(1).role(), Role::Leader);
    c
}

#[test]
fn transfer_to_an_up_to_date_target_succeeds_without_pre_vote() {
    let mut c = led_by_1(1);
    c.record_trace = true;
    let term = c.node(1).term();
    c.call(n(1), |r, now| r.transfer_leadership(now, n(3)))
        .expect("transfer starts");
    assert_eq!(
        c.in_flight(1, 3, "timeout_now").len(),
        1,
        "target up to date"
    );
    // Followers are inside their leader lease (check-quorum): only the
    // transfer flag on the vote request gets the target elected.
    c.stabilize();
    assert_eq!(c.leader(), Some(n(3)));
    assert_eq!(Some(c.node(3).term()), term.next());
    assert_eq!(c.node(1).role(), Role::Follower);
    assert!(
        !c.trace.iter().any(|l| l.contains("pre_vote: true")),
        "the target ran a pre-vote"
    );
    let id = c.propose(n(3), "after").expect("new leader accepts");
    c.stabilize();
    assert!(c.node(1).log().committed() >= id.index);
}

#[test]
fn transfer_to_a_lagging_target_waits_for_it_to_catch_up() {
    let mut c = led_by_1(2);
    c.isolate(n(3));
    for i in 0..10 {
        c.propose(n(1), &format!("c{i}")).unwrap();
    }
    c.stabilize();
    c.call(n(1), |r, now| r.transfer_leadership(now, n(3)))
        .expect("transfer starts");
    assert!(c.in_flight(1, 3, "timeout_now").is_empty(), "target lags");
    assert_eq!(
        c.propose(n(1), "refused"),
        Err(ProposalRefused::NotLeader {
            leader_hint: Some(n(3))
        }),
        "proposals during a transfer"
    );
    c.heal();
    let ok = c.run_until(MS, Duration::from_millis(250), |c| c.leader() == Some(n(3)));
    assert!(ok, "the lagging target did not take over");
    assert_eq!(
        c.node(3).log().last_index().0,
        c.node(1).log().last_index().0
    );
}

#[test]
fn transfer_aborts_after_an_election_timeout_and_proposals_resume() {
    let mut c = led_by_1(3);
    c.isolate(n(3));
    c.call(n(1), |r, now| r.transfer_leadership(now, n(3)))
        .expect("transfer starts");
    assert_eq!(c.node(1).transfer_target(), Some(n(3)));
    assert_eq!(
        c.call(n(1), |r, now| r.transfer_leadership(now, n(2))),
        Err(TransferError::InProgress { target: n(3) })
    );
    // election_timeout_max is 300 ms in the harness.
    c.run_until(5 * MS, Duration::from_millis(290), |_| false);
    assert!(c.propose(n(1), "still refused").is_err());
    c.run_until(5 * MS, Duration::from_millis(20), |_| false);
    assert_eq!(c.node(1).role(), Role::Leader, "n2 keeps the leader alive");
    assert_eq!(c.node(1).transfer_target(), None, "transfer not abandoned");
    let id = c.propose(n(1), "resumed").expect("proposals resume");
    c.stabilize();
    assert!(c.node(2).log().committed() >= id.index);
}

#[test]
fn transfer_refusals_are_typed() {
    let mut c = led_by_1(4);
    assert_eq!(
        c.call(n(2), |r, now| r.transfer_leadership(now, n(3))),
        Err(TransferError::NotLeader {
            leader_hint: Some(n(1))
        })
    );
    assert_eq!(
        c.call(n(1), |r, now| r.transfer_leadership(now, n(1))),
        Err(TransferError::ToSelf)
    );
    assert_eq!(
        c.call(n(1), |r, now| r.transfer_leadership(now, n(9))),
        Err(TransferError::NotAVoter { id: n(9) })
    );
}
