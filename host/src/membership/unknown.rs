//! Bounding the gossip members that are not Raft members (pure).
//!
//! Anyone who can gossip (holding the key, or on an unsealed network) can
//! announce any number of made-up node ids, and chitchat 0.13 keeps a
//! silent node's state for [`GOSSIP_DEAD_NODE_FORGET_AFTER`] without a way
//! to delete it. So the membership loop looks at gossip through
//! [`UnknownPeers`]: of the members that are not in the Raft membership
//! (joining, or never added), at most [`GOSSIP_UNKNOWN_MEMBERS_MAX`] are
//! considered, those seen first winning (a flood of new ids cannot push
//! out a node already joining), and one silent for longer than
//! [`GOSSIP_UNKNOWN_MEMBER_SILENT_EXPIRY`] is no longer considered until
//! it is heard alive again. Raft members are never bounded here: their
//! liveness is what the autopilot acts on.
//!
//! [`GOSSIP_DEAD_NODE_FORGET_AFTER`]: crate::limits::GOSSIP_DEAD_NODE_FORGET_AFTER

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::consensus::NodeId;
use crate::limits::{
    GOSSIP_UNKNOWN_MEMBER_SILENT_EXPIRY, GOSSIP_UNKNOWN_MEMBERS_MAX,
    GOSSIP_UNKNOWN_MEMBERS_TRACKED_MAX,
};

/// When an unknown member was first seen, and last seen alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sighting {
    first_seen: Instant,
    last_alive: Instant,
}

/// The limits [`UnknownPeers`] applies (the named constants in a node;
/// smaller ones in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownLimits {
    /// Most unknown members considered at once.
    pub considered_max: usize,
    /// Most unknown members remembered (considered, expired, or waiting
    /// for a free place); beyond it new ones are ignored unremembered.
    pub tracked_max: usize,
    /// How long an unknown member may be silent and still be considered.
    pub silent_expiry: Duration,
}

impl Default for UnknownLimits {
    fn default() -> Self {
        Self {
            considered_max: GOSSIP_UNKNOWN_MEMBERS_MAX,
            tracked_max: GOSSIP_UNKNOWN_MEMBERS_TRACKED_MAX,
            silent_expiry: GOSSIP_UNKNOWN_MEMBER_SILENT_EXPIRY,
        }
    }
}

/// The unknown members left out of one round, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignored {
    /// Beyond the number considered (or remembered).
    pub over_cap: BTreeSet<NodeId>,
    /// Silent for longer than the expiry.
    pub expired: BTreeSet<NodeId>,
}

impl Ignored {
    /// How many in all.
    pub fn len(&self) -> usize {
        self.over_cap.len() + self.expired.len()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `node_id` is left out.
    pub fn contains(&self, node_id: &NodeId) -> bool {
        self.over_cap.contains(node_id) || self.expired.contains(node_id)
    }
}

/// What the loop remembers of unknown members from round to round.
#[derive(Debug, Clone, Default)]
pub struct UnknownPeers {
    limits: UnknownLimits,
    tracked: BTreeMap<NodeId, Sighting>,
}

impl UnknownPeers {
    /// A tracker with `limits`.
    pub fn new(limits: UnknownLimits) -> Self {
        Self {
            limits,
            tracked: BTreeMap::new(),
        }
    }

    /// One round: `unknown` are the gossip members (id, alive) that are not
    /// Raft members, as seen at `now`. Returns the ones not to consider.
    pub fn observe(&mut self, now: Instant, unknown: &BTreeMap<NodeId, bool>) -> Ignored {
        // Forget members that left gossip or joined Raft.
        self.tracked.retain(|id, _| unknown.contains_key(id));
        let mut ignored = Ignored::default();
        for (&id, &alive) in unknown {
            let room = self.tracked.len() < self.limits.tracked_max;
            match self.tracked.get_mut(&id) {
                Some(sighting) => {
                    if alive {
                        sighting.last_alive = now;
                    }
                }
                None if room => {
                    // Newly learned through gossip: heard just now.
                    let sighting = Sighting {
                        first_seen: now,
                        last_alive: now,
                    };
                    self.tracked.insert(id, sighting);
                }
                None => {
                    ignored.over_cap.insert(id);
                }
            }
        }
        let mut current: Vec<(Instant, NodeId)> = Vec::new();
        for (&id, sighting) in &self.tracked {
            if now.saturating_duration_since(sighting.last_alive) > self.limits.silent_expiry {
                ignored.expired.insert(id);
            } else {
                current.push((sighting.first_seen, id));
            }
        }
        current.sort_unstable();
        ignored.over_cap.extend(
            current
                .into_iter()
                .skip(self.limits.considered_max)
                .map(|(_, id)| id),
        );
        ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn small() -> UnknownPeers {
        UnknownPeers::new(UnknownLimits {
            considered_max: 2,
            tracked_max: 4,
            silent_expiry: 10 * SECOND,
        })
    }

    fn seen(members: &[(NodeId, bool)]) -> BTreeMap<NodeId, bool> {
        members.iter().copied().collect()
    }

    fn ids(set: &BTreeSet<NodeId>) -> Vec<NodeId> {
        set.iter().copied().collect()
    }

    #[test]
    fn at_most_the_cap_is_considered_those_seen_first_winning() {
        let mut peers = small();
        let start = Instant::now();
        assert!(peers.observe(start, &seen(&[(9, true)])).is_empty());
        let later = start + SECOND;
        let ignored = peers.observe(later, &seen(&[(1, true), (2, true), (9, true)]));
        // 9 came first; of 1 and 2 (seen together) the smaller id wins.
        assert_eq!(ids(&ignored.over_cap), vec![2]);
        assert!(ignored.expired.is_empty());
        assert!(!ignored.contains(&9) && !ignored.contains(&1));
    }

    #[test]
    fn beyond_what_is_remembered_new_ids_are_ignored() {
        let mut peers = small();
        let now = Instant::now();
        let flood: Vec<(NodeId, bool)> = (1..=6).map(|id| (id, true)).collect();
        let ignored = peers.observe(now, &seen(&flood));
        assert_eq!(ids(&ignored.over_cap), vec![3, 4, 5, 6]);
        assert_eq!(peers.tracked.len(), 4, "remembered beyond tracked_max");
        // Members that joined Raft leave the tracker, freeing places.
        let ignored = peers.observe(now + SECOND, &seen(&flood[2..]));
        assert_eq!(ids(&ignored.over_cap), vec![5, 6]);
    }

    #[test]
    fn a_silent_member_expires_and_frees_its_place() {
        let mut peers = small();
        let start = Instant::now();
        peers.observe(start, &seen(&[(1, true), (2, true)]));
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        // 1 falls silent; 3 waits for a place.
        let round = seen(&[(1, false), (2, true), (3, true)]);
        assert_eq!(ids(&peers.observe(at(5), &round).over_cap), vec![3]);
        assert!(
            peers.observe(at(10), &round).expired.is_empty(),
            "expired early"
        );
        let ignored = peers.observe(at(11), &round);
        assert_eq!(ids(&ignored.expired), vec![1]);
        assert!(
            ignored.over_cap.is_empty(),
            "3 did not take the place: {ignored:?}"
        );
        // Heard again, it is considered again, and the member seen first
        // comes first again.
        let back = seen(&[(1, true), (2, true), (3, true)]);
        let ignored = peers.observe(at(12), &back);
        assert!(ignored.expired.is_empty());
        assert_eq!(ids(&ignored.over_cap), vec![3]);
    }

    #[test]
    fn a_member_first_seen_dead_expires_too() {
        let mut peers = small();
        let start = Instant::now();
        let dead = seen(&[(7, false)]);
        assert!(peers.observe(start, &dead).is_empty());
        let ignored = peers.observe(start + 11 * SECOND, &dead);
        assert_eq!(ids(&ignored.expired), vec![7]);
    }
}
