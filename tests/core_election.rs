//! Elections: one leader per term, pre-vote, check-quorum, the up-to-date
//! rule, and votes that leave only once durable.

mod harness;

use std::time::Duration;

use harness::{Cluster, MS};
use oar::core::{MessageBody, NodeId, Role};

#[test]
fn a_three_node_cluster_elects_one_leader_that_commits_its_noop() {
    let mut c = Cluster::new(3, 1);
    let leader = c.elect();
    c.stabilize();
    let term = c.nodes[&leader].raft.term();
    assert_eq!(c.leaders.get(&term), Some(&leader));
    for node in c.nodes.values() {
        assert_eq!(node.raft.leader(), Some(leader));
        assert_eq!(
            node.raft.log().committed().0,
            1,
            "the leader's no-op commits everywhere"
        );
        assert_eq!(node.applied.len(), 1);
    }
}

#[test]
fn a_single_node_elects_itself_and_commits_after_its_own_disk_write() {
    let mut c = Cluster::new(1, 2);
    c.auto_disk = false;
    c.advance(400 * MS);
    // Pre-vote won alone; the vote for itself waits for the disk.
    assert_eq!(c.node(1).role(), Role::Candidate);
    c.complete_disk(NodeId(1), 1);
    assert_eq!(c.node(1).role(), Role::Leader);
    let id = c.propose(NodeId(1), "x").unwrap();
    assert!(
        c.node(1).log().committed() < id.index,
        "not durable, not committed"
    );
    c.complete_disk(NodeId(1), usize::MAX);
    assert_eq!(c.node(1).log().committed(), id.index);
}

/// Three nodes with manual disks, node 1 a candidate (its pre-votes won,
/// its vote requests out, nothing durable yet): nobody else's timer fired.
fn lone_candidate() -> Cluster {
    let mut c = Cluster::new(3, 3);
    c.auto_disk = false;
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(NodeId(1));
    c.stabilize(); // pre-votes need no disk
    assert_eq!(c.node(1).role(), Role::Candidate);
    c
}

#[test]
fn a_vote_is_granted_only_after_it_is_durable() {
    let mut c = lone_candidate();
    c.deliver_first(|m| m.to == NodeId(2));
    assert_eq!(c.node(2).term(), c.node(1).term(), "voter adopted the term");
    let grant = |c: &Cluster| {
        c.network.iter().any(|m| {
            m.from == NodeId(2)
                && matches!(&m.body, MessageBody::VoteResponse(r) if r.granted && !r.pre_vote)
        })
    };
    assert!(!grant(&c), "grant must wait for the durable vote");
    c.complete_disk(NodeId(2), usize::MAX);
    assert!(grant(&c), "grant released once the vote is durable");
    // The candidate's own vote also needs its disk: one grant is not enough.
    c.deliver_first(|m| m.from == NodeId(2));
    assert_eq!(c.node(1).role(), Role::Candidate);
    c.complete_disk(NodeId(1), usize::MAX);
    assert_eq!(c.node(1).role(), Role::Leader);
}

#[test]
fn a_candidate_with_a_stale_log_loses_and_an_up_to_date_one_wins() {
    let mut c = Cluster::new(3, 4);
    let leader = c.elect();
    let stale = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    let fresh = c
        .nodes
        .keys()
        .copied()
        .find(|&id| id != leader && id != stale)
        .unwrap();
    c.isolate(stale);
    let id = c.propose(leader, "committed").unwrap();
    c.stabilize();
    assert!(c.nodes[&leader].raft.log().committed() >= id.index);
    c.crash(leader);
    c.heal();
    // Let the leader lease of the survivors lapse, then the stale node runs.
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(stale);
    c.stabilize();
    assert_ne!(
        c.nodes[&stale].raft.role(),
        Role::Leader,
        "stale log must not win"
    );
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(fresh);
    c.stabilize();
    assert_eq!(c.nodes[&fresh].raft.role(), Role::Leader);
    assert!(
        c.nodes[&stale].raft.log().matches(id),
        "the committed entry reached the stale node"
    );
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_disrupting_the_leader() {
    let mut c = Cluster::new(3, 5);
    let leader = c.elect();
    c.stabilize();
    let term = c.nodes[&leader].raft.term();
    let loner = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    c.isolate(loner);
    // Many election timeouts pass for the isolated node.
    c.run_until(10 * MS, Duration::from_secs(5), |_| false);
    assert_eq!(
        c.nodes[&loner].raft.term(),
        term,
        "pre-vote failed, so the term did not move"
    );
    c.heal();
    c.run_until(10 * MS, Duration::from_secs(2), |_| false);
    assert_eq!(c.leader(), Some(leader), "leader undisturbed");
    assert_eq!(c.nodes[&leader].raft.term(), term);
    assert_eq!(
        c.nodes[&loner].raft.leader(),
        Some(leader),
        "the loner follows again"
    );
}

#[test]
fn without_pre_vote_a_rejoining_node_disrupts_the_leader() {
    // The control for the test above: it shows the disruption pre-vote prevents.
    let mut c = Cluster::with_options(3, |id| oar::core::RaftOptions {
        pre_vote: false,
        check_quorum: false,
        ..harness::options(id, 5)
    });
    let leader = c.elect();
    let term = c.nodes[&leader].raft.term();
    let loner = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    c.isolate(loner);
    c.run_until(10 * MS, Duration::from_secs(5), |_| false);
    assert!(c.nodes[&loner].raft.term() > term);
    c.heal();
    c.run_until(10 * MS, Duration::from_secs(2), |_| false);
    assert!(c.leader().map(|l| c.nodes[&l].raft.term()) > Some(term));
}

#[test]
fn check_quorum_steps_down_a_partitioned_leader() {
    let mut c = Cluster::new(5, 6);
    let leader = c.elect();
    c.isolate(leader);
    let stepped_down = c.run_until(10 * MS, Duration::from_secs(1), |c| {
        c.nodes[&leader].raft.role() != Role::Leader
    });
    assert!(
        stepped_down,
        "a leader cut off from its quorum must step down"
    );
    let elapsed = c.now.as_nanos();
    assert!(elapsed > 0);
    // The majority side elected a new leader in a later term meanwhile or soon.
    let new_leader = c.run_until(10 * MS, Duration::from_secs(3), |c| {
        c.leader().is_some_and(|l| l != leader)
    });
    assert!(new_leader);
}

#[test]
fn a_leader_without_check_quorum_stays_leader_alone() {
    // The control for the test above.
    let mut c = Cluster::with_options(5, |id| oar::core::RaftOptions {
        check_quorum: false,
        ..harness::options(id, 6)
    });
    let leader = c.elect();
    c.isolate(leader);
    c.run_until(10 * MS, Duration::from_secs(1), |_| false);
    assert_eq!(c.nodes[&leader].raft.role(), Role::Leader);
}

#[test]
fn a_refused_candidate_does_not_restart_the_refusers_election_timer() {
    // Without pre-vote a candidate whose log is behind still bumps every
    // term. The node that refuses it must campaign when its own timer
    // fires (Raft §5.2, Figure 2: only a granted vote or the leader
    // restarts the timer); otherwise a lagging node that keeps timing out
    // first holds the cluster leaderless round after round (found by the
    // simulator's recovery bound: 4.6 s without a leader, seed 830).
    let mut c = Cluster::with_options(3, |id| oar::core::RaftOptions {
        pre_vote: false,
        check_quorum: false,
        ..harness::options(id, 4)
    });
    let leader = c.elect();
    let stale = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    let fresh = c
        .nodes
        .keys()
        .copied()
        .find(|&id| id != leader && id != stale)
        .unwrap();
    c.isolate(stale);
    let id = c.propose(leader, "committed").unwrap();
    c.stabilize();
    assert!(c.nodes[&fresh].raft.log().matches(id));
    c.crash(leader);
    c.heal();
    // The stale node's timer fires (only its own); its request reaches the
    // fresh node, which refuses it.
    c.now = c.nodes[&stale].raft.poll_timeout();
    c.tick_node(stale);
    let deadline = c.nodes[&fresh].raft.poll_timeout();
    let vote = |m: &oar::core::Message| {
        m.to == fresh && matches!(&m.body, MessageBody::VoteRequest(r) if !r.pre_vote)
    };
    assert!(c.deliver_first(vote));
    assert_eq!(c.nodes[&fresh].raft.term(), c.nodes[&stale].raft.term());
    assert_eq!(
        c.nodes[&fresh].raft.status().hard_state.voted_for,
        None,
        "refused"
    );
    assert_eq!(
        c.nodes[&fresh].raft.poll_timeout(),
        deadline,
        "a refused candidate left the timer alone"
    );
}

/// Found by `core_random` (the churn schedule, seed 3174, once the election
/// timer's draws changed): a candidate elected by the other voters alone led
/// term T before T was on its own disk. A crash made it forget T, and the
/// same voters, who had voted for it in T, elected it in T again: two
/// leaderships of one term with different logs, so two entries had one id
/// and nodes applied different commands at one index.
#[test]
fn a_candidate_leads_only_once_its_own_term_is_durable() {
    let mut c = lone_candidate();
    let term = c.node(1).term();
    // Both voters grant, their votes durable; the candidate's write is not.
    for voter in [NodeId(2), NodeId(3)] {
        c.deliver_first(|m| m.to == voter);
        c.complete_disk(voter, usize::MAX);
        c.deliver_first(|m| m.from == voter);
    }
    assert_eq!(
        c.node(1).role(),
        Role::Candidate,
        "a quorum of grants, but its own term is not durable"
    );
    c.complete_disk(NodeId(1), usize::MAX);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), term);
}
