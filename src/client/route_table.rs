//! The route table (braft's `route_table`): for each group, the members
//! with their addresses and the leader, as the freshest server said. Pure
//! bookkeeping: the client fills it from route lookups and `NotLeader`
//! hints.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::core::{NodeId, Term};
use crate::runtime::GroupId;
use crate::runtime::wire::proto;

/// What the client believes about one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRoute {
    /// The term the information is from.
    pub term: Term,
    /// The leader, if one is known.
    pub leader: Option<NodeId>,
    /// Every member and the address it serves clients on.
    pub members: BTreeMap<NodeId, SocketAddr>,
}

impl GroupRoute {
    /// The leader's address, if known.
    pub fn leader_addr(&self) -> Option<SocketAddr> {
        self.leader.and_then(|l| self.members.get(&l).copied())
    }
}

/// Every group's route, and the servers to ask when nothing is known.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    seeds: Vec<SocketAddr>,
    groups: BTreeMap<GroupId, GroupRoute>,
}

impl RouteTable {
    /// A table that knows only `seeds`.
    pub fn new(seeds: Vec<SocketAddr>) -> Self {
        RouteTable {
            seeds,
            groups: BTreeMap::new(),
        }
    }

    /// What is known of `group`.
    pub fn group(&self, group: GroupId) -> Option<&GroupRoute> {
        self.groups.get(&group)
    }

    /// The groups known.
    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &GroupRoute)> {
        self.groups.iter().map(|(g, r)| (*g, r))
    }

    /// The servers worth asking about `group`: its leader first, then its
    /// members, then the seeds (each once).
    pub fn candidates(&self, group: GroupId) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        if let Some(route) = self.groups.get(&group) {
            out.extend(route.leader_addr());
            out.extend(route.members.values().copied());
        }
        out.extend(self.seeds.iter().copied());
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|a| seen.insert(*a));
        out
    }

    /// Every server known (seeds and every group's members), each once.
    pub fn servers(&self) -> Vec<SocketAddr> {
        let mut all: std::collections::BTreeSet<SocketAddr> = self.seeds.iter().copied().collect();
        for route in self.groups.values() {
            all.extend(route.members.values().copied());
        }
        all.into_iter().collect()
    }

    /// Merges what a server said of a group: a newer term replaces the
    /// entry; the same term fills in a leader that was unknown.
    pub(crate) fn learn(&mut self, route: &proto::GroupRoute) {
        let members: BTreeMap<NodeId, SocketAddr> = route
            .members
            .iter()
            .filter_map(|m| Some((NodeId(m.id), m.addr.parse().ok()?)))
            .collect();
        let learned = GroupRoute {
            term: Term(route.term),
            leader: (route.leader != 0).then_some(NodeId(route.leader)),
            members,
        };
        let entry = self.groups.entry(GroupId(route.group_id)).or_default();
        let newer = learned.term > entry.term;
        let same_fills = learned.term == entry.term && entry.leader.is_none();
        if newer || same_fills || entry.members.is_empty() {
            *entry = learned;
        }
    }

    /// A `NotLeader` hint: `leader` leads `group` (at `addr`, if given).
    pub(crate) fn hint(&mut self, group: GroupId, leader: NodeId, addr: Option<SocketAddr>) {
        let entry = self.groups.entry(group).or_default();
        entry.leader = Some(leader);
        if let Some(addr) = addr {
            entry.members.insert(leader, addr);
        }
    }

    /// The leader of `group` did not answer as one: forget it.
    pub(crate) fn forget_leader(&mut self, group: GroupId) {
        if let Some(entry) = self.groups.get_mut(&group) {
            entry.leader = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(term: u64, leader: u64) -> proto::GroupRoute {
        proto::GroupRoute {
            group_id: 1,
            term,
            leader,
            members: (1..=3)
                .map(|i| proto::RouteMember {
                    id: i,
                    addr: format!("127.0.0.1:700{i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn the_freshest_term_wins_and_the_leader_goes_first() {
        let seed: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut table = RouteTable::new(vec![seed]);
        table.learn(&route(3, 2));
        table.learn(&route(2, 1)); // stale: ignored
        let g = table.group(GroupId(1)).unwrap();
        assert_eq!(g.leader, Some(NodeId(2)));
        let candidates = table.candidates(GroupId(1));
        assert_eq!(candidates[0], "127.0.0.1:7002".parse().unwrap());
        assert_eq!(candidates.len(), 4);
        assert_eq!(candidates[3], seed);
        table.forget_leader(GroupId(1));
        table.learn(&route(3, 3)); // same term fills in the unknown leader
        assert_eq!(table.group(GroupId(1)).unwrap().leader, Some(NodeId(3)));
        table.hint(GroupId(1), NodeId(1), None);
        assert_eq!(
            table.group(GroupId(1)).unwrap().leader_addr(),
            Some("127.0.0.1:7001".parse().unwrap())
        );
        assert_eq!(table.servers().len(), 4);
    }
}
