//! Alarms raised through the log, as etcd's CORRUPT alarm: a replica whose
//! applied digest differs from the majority's is marked corrupt (it stops
//! serving and never leads, but still votes and replicates until it is
//! repaired), and a majority that disagrees with itself stops the cluster
//! taking writes. Pure data; the leader decides, the log carries it.

use std::collections::BTreeMap;

use super::types::NodeId;

/// One alarm, as an entry carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Alarm {
    /// `node` applied something else than the majority; first seen at the
    /// checkpoint `index`.
    Corrupt {
        /// The replica.
        node: NodeId,
        /// The first checkpoint index where it differs.
        index: u64,
    },
    /// `node` agrees with the majority again (it was repaired).
    Cleared {
        /// The replica.
        node: NodeId,
    },
    /// No digest at checkpoint `index` is shared by a majority of voters.
    NoMajority {
        /// The checkpoint.
        index: u64,
    },
}

/// The alarms in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alarms {
    /// Corrupt replicas and the first index where each differs.
    pub corrupt: BTreeMap<NodeId, u64>,
    /// A checkpoint where the voters had no majority digest.
    pub no_majority: Option<u64>,
}

impl Alarms {
    /// Take `alarm` into account.
    pub fn raise(&mut self, alarm: Alarm) {
        match alarm {
            Alarm::Corrupt { node, index } => {
                self.corrupt.entry(node).or_insert(index);
            }
            Alarm::Cleared { node } => {
                self.corrupt.remove(&node);
            }
            Alarm::NoMajority { index } => {
                self.no_majority.get_or_insert(index);
            }
        }
    }

    /// Since which index `node` is corrupt, if it is.
    pub fn corrupt_since(&self, node: NodeId) -> Option<u64> {
        self.corrupt.get(&node).copied()
    }

    /// Why this replica must not serve clients, if it must not.
    pub fn refusal(&self, node: NodeId) -> Option<String> {
        if let Some(index) = self.corrupt_since(node) {
            return Some(format!(
                "this replica is corrupt: what it applied differs from the majority since index {index}; \
                 it serves nothing until repaired (stop it, delete its data dir, start it again: it copies the state from the cluster)"
            ));
        }
        self.no_majority.map(|index| {
            format!(
                "the replicas disagree and no majority agrees on what was applied at index {index}; \
                 the cluster takes no writes until an operator repairs it"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_replica_is_refused_until_cleared() {
        let mut alarms = Alarms::default();
        alarms.raise(Alarm::Corrupt {
            node: 2,
            index: 128,
        });
        alarms.raise(Alarm::Corrupt {
            node: 2,
            index: 192,
        });
        assert_eq!(alarms.corrupt_since(2), Some(128), "the first index stays");
        assert!(
            alarms
                .refusal(2)
                .is_some_and(|why| why.contains("index 128"))
        );
        assert_eq!(alarms.refusal(1), None);
        alarms.raise(Alarm::Cleared { node: 2 });
        assert_eq!(alarms.refusal(2), None);
    }

    #[test]
    fn no_majority_refuses_everyone() {
        let mut alarms = Alarms::default();
        alarms.raise(Alarm::NoMajority { index: 64 });
        assert!(
            alarms
                .refusal(1)
                .is_some_and(|why| why.contains("no majority"))
        );
    }
}
