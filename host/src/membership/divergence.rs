//! Whether replicas applied the same thing, decided purely from the applied
//! digests they report at checkpoints (see `consensus::digest`). The leader
//! compares, and raises an alarm through the log when a replica differs from
//! the majority, or no majority agrees.

use std::collections::{BTreeMap, BTreeSet};

use crate::consensus::alarms::{Alarm, Alarms};
use crate::consensus::digest::DigestBytes;
use crate::consensus::{NodeId, quorum_size};

/// Digests at checkpoint indexes, as one replica reports them.
pub type Checkpoints = BTreeMap<u64, DigestBytes>;

/// What the comparison found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No disagreement seen (or not enough reports yet).
    Agree,
    /// These replicas differ from the majority, first at these indexes.
    Corrupt(BTreeMap<NodeId, u64>),
    /// Every voter reported at `index` and no digest has a majority.
    NoMajority {
        /// The checkpoint.
        index: u64,
    },
}

/// Compare the `reports` (every replica's checkpoints, the leader's own
/// included) at each checkpoint index the `leader` itself reports, oldest
/// first. A digest held by a majority of `voters` there is the truth; any
/// replica (voter or learner) with another digest at that index is corrupt.
/// Only the leader's own indexes count: chains start afresh where a legacy
/// cluster raised its protocol level, and older checkpoints still in gossip
/// compare chains that were never meant to agree.
pub fn compare(
    voters: &BTreeSet<NodeId>,
    leader: NodeId,
    reports: &BTreeMap<NodeId, Checkpoints>,
) -> Verdict {
    let indexes: BTreeSet<u64> = reports
        .get(&leader)
        .map(|points| points.keys().copied().collect())
        .unwrap_or_default();
    let quorum = quorum_size(voters.len());
    let mut corrupt = BTreeMap::new();
    for index in indexes {
        let at_index: BTreeMap<NodeId, DigestBytes> = reports
            .iter()
            .filter_map(|(node, points)| points.get(&index).map(|digest| (*node, *digest)))
            .collect();
        let mut votes: BTreeMap<DigestBytes, usize> = BTreeMap::new();
        for (node, digest) in &at_index {
            if voters.contains(node) {
                *votes.entry(*digest).or_default() += 1;
            }
        }
        match votes.iter().find(|(_, count)| **count >= quorum) {
            Some((truth, _)) => {
                for (node, digest) in &at_index {
                    if digest != truth {
                        corrupt.entry(*node).or_insert(index);
                    }
                }
            }
            None => {
                let all_voters_reported = voters.iter().all(|voter| at_index.contains_key(voter));
                if all_voters_reported && votes.len() > 1 {
                    return Verdict::NoMajority { index };
                }
            }
        }
    }
    if corrupt.is_empty() {
        Verdict::Agree
    } else {
        Verdict::Corrupt(corrupt)
    }
}

/// The alarms the leader should raise or clear, given the `verdict`, the
/// alarms in force and everyone's `reports` (the leader's own among them,
/// under `leader`). A corrupt replica is cleared once its newest checkpoint
/// agrees with the leader's at the same index (it was repaired: a replica
/// that diverged never agrees again, the digest being a chain).
pub fn alarms_to_raise(
    verdict: &Verdict,
    alarms: &Alarms,
    leader: NodeId,
    reports: &BTreeMap<NodeId, Checkpoints>,
) -> Vec<Alarm> {
    let mut raise = Vec::new();
    match verdict {
        Verdict::Agree => {}
        Verdict::Corrupt(nodes) => {
            for (node, index) in nodes {
                if alarms.corrupt_since(*node).is_none() {
                    raise.push(Alarm::Corrupt {
                        node: *node,
                        index: *index,
                    });
                }
            }
        }
        Verdict::NoMajority { index } => {
            if alarms.no_majority.is_none() {
                raise.push(Alarm::NoMajority { index: *index });
            }
        }
    }
    let own = reports.get(&leader);
    for (node, since) in &alarms.corrupt {
        let repaired = reports
            .get(node)
            .and_then(|points| points.last_key_value())
            .is_some_and(|(index, digest)| {
                *index > *since && own.and_then(|own| own.get(index)) == Some(digest)
            });
        if repaired {
            raise.push(Alarm::Cleared { node: *node });
        }
    }
    raise
}

/// Checkpoints as gossip carries them: `index:hex` pairs, comma separated.
pub fn encode_checkpoints(checkpoints: &Checkpoints, newest: usize) -> String {
    checkpoints
        .iter()
        .rev()
        .take(newest)
        .map(|(index, digest)| format!("{index}:{}", hex::encode(digest)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checkpoints read back from gossip; malformed pairs are skipped.
pub fn decode_checkpoints(text: &str) -> Checkpoints {
    text.split(',')
        .filter_map(|pair| {
            let (index, digest) = pair.split_once(':')?;
            let digest: DigestBytes = hex::decode(digest).ok()?.try_into().ok()?;
            Some((index.parse().ok()?, digest))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(points: &[(u64, u8)]) -> Checkpoints {
        points
            .iter()
            .map(|(index, digest)| (*index, [*digest; 32]))
            .collect()
    }

    fn voters(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn agreeing_replicas_agree_even_when_some_lag() {
        let reports = BTreeMap::from([
            (1, report(&[(64, 1), (128, 2)])),
            (2, report(&[(64, 1), (128, 2)])),
            (3, report(&[(64, 1)])),
        ]);
        assert_eq!(compare(&voters(&[1, 2, 3]), 1, &reports), Verdict::Agree);
    }

    #[test]
    fn the_minority_replica_is_corrupt_from_its_first_difference() {
        let reports = BTreeMap::from([
            (1, report(&[(64, 1), (128, 2), (192, 3)])),
            (2, report(&[(64, 1), (128, 2), (192, 3)])),
            (3, report(&[(64, 1), (128, 9), (192, 9)])),
            (4, report(&[(128, 7)])),
        ]);
        assert_eq!(
            compare(&voters(&[1, 2, 3]), 1, &reports),
            Verdict::Corrupt(BTreeMap::from([(3, 128), (4, 128)])),
            "a learner (4) is judged by the voters' majority too"
        );
    }

    #[test]
    fn a_split_without_majority_is_reported_once_everyone_reported() {
        let split = BTreeMap::from([(1, report(&[(64, 1)])), (2, report(&[(64, 2)]))]);
        assert_eq!(
            compare(&voters(&[1, 2, 3]), 1, &split),
            Verdict::Agree,
            "node 3 may still decide it"
        );
        let mut all = split.clone();
        all.insert(3, report(&[(64, 3)]));
        assert_eq!(
            compare(&voters(&[1, 2, 3]), 1, &all),
            Verdict::NoMajority { index: 64 }
        );
    }

    #[test]
    fn only_checkpoints_the_leader_reports_are_compared() {
        // After a level raise the leader's chain starts afresh; older
        // checkpoints still gossiped by others must not count.
        let reports = BTreeMap::from([
            (1, report(&[(256, 5)])),
            (2, report(&[(64, 1), (256, 5)])),
            (3, report(&[(64, 2), (256, 5)])),
        ]);
        assert_eq!(compare(&voters(&[1, 2, 3]), 1, &reports), Verdict::Agree);
    }

    #[test]
    fn alarms_are_raised_once_and_cleared_when_the_replica_agrees_again() {
        let corrupt = Verdict::Corrupt(BTreeMap::from([(3, 128)]));
        let reports = BTreeMap::from([(1, report(&[(128, 2)])), (3, report(&[(128, 9)]))]);
        let none = Alarms::default();
        assert_eq!(
            alarms_to_raise(&corrupt, &none, 1, &reports),
            vec![Alarm::Corrupt {
                node: 3,
                index: 128
            }]
        );
        let mut raised = none.clone();
        raised.raise(Alarm::Corrupt {
            node: 3,
            index: 128,
        });
        assert_eq!(
            alarms_to_raise(&corrupt, &raised, 1, &reports),
            vec![],
            "once"
        );
        let repaired = BTreeMap::from([(1, report(&[(192, 4)])), (3, report(&[(192, 4)]))]);
        assert_eq!(
            alarms_to_raise(&Verdict::Agree, &raised, 1, &repaired),
            vec![Alarm::Cleared { node: 3 }]
        );
    }

    #[test]
    fn checkpoints_survive_gossip() {
        let points = report(&[(64, 1), (128, 2), (192, 3)]);
        let text = encode_checkpoints(&points, 2);
        let back = decode_checkpoints(&text);
        assert_eq!(back, report(&[(128, 2), (192, 3)]));
        assert_eq!(decode_checkpoints("garbage,12:zz"), Checkpoints::new());
    }
}
