//! Where a request that needs the leader is served, decided purely: here,
//! forwarded to the leader, or after waiting for one — and what each
//! outcome of an attempt leads to. [`super::leader`] carries the steps out.

use crate::consensus::{ConsensusView, NodeId, Role};

/// Where a leader-only request should go, as this node sees Raft now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node is the leader.
    Local,
    /// Forward to the leader at this gRPC address.
    Forward {
        /// Leader id.
        leader_id: NodeId,
        /// Leader gRPC address.
        rpc_addr: String,
    },
    /// No leader is known right now (an election may be in progress).
    NoLeader,
    /// This node is shutting down: nothing more will be served.
    Stopping,
}

/// Decide where a leader-only request goes. `gossip_addr_of` gives the
/// address gossip last saw for a node (fresher than the membership's).
pub fn route(view: &ConsensusView, gossip_addr_of: impl Fn(NodeId) -> Option<String>) -> Route {
    match (view.role, view.leader) {
        (Role::Shutdown, _) => Route::Stopping,
        (Role::Leader, _) => Route::Local,
        // Stale metrics naming this node while it is not leader: wait.
        (_, Some(leader_id)) if leader_id == view.node_id => Route::NoLeader,
        (_, Some(leader_id)) => {
            match gossip_addr_of(leader_id)
                .or_else(|| view.member_addr(leader_id).map(str::to_string))
            {
                Some(rpc_addr) => Route::Forward {
                    leader_id,
                    rpc_addr,
                },
                None => Route::NoLeader,
            }
        }
        (_, None) => Route::NoLeader,
    }
}

/// How the previous attempt ended, when it did not produce the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No attempt yet (or waited since the last one).
    Fresh,
    /// The node tried was not the leader; nothing was proposed.
    NotLeader,
    /// The leader at this address could not be reached; nothing was sent.
    Unreachable(String),
}

/// Why a request is refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This node is shutting down.
    Stopping,
    /// The request was already forwarded once and this node is not the
    /// leader either: the origin waits for the leader and retries, so a
    /// request never loops between nodes.
    ForwardedToNonLeader,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Serve the request on this node, the leader.
    ServeHere,
    /// Forward it to the leader.
    Forward {
        /// Leader id.
        leader_id: NodeId,
        /// Leader gRPC address.
        rpc_addr: String,
    },
    /// Wait for a leader (or a new one), forgetting a broken connection,
    /// then decide again.
    Wait {
        /// A connection to drop first.
        forget: Option<String>,
    },
    /// Refuse the request.
    Refuse(Refusal),
}

/// The next step for a request (`forwarded`: it came from another node)
/// given the route now and how the previous attempt ended.
pub fn next_step(route: &Route, outcome: &Outcome, forwarded: bool) -> Step {
    match outcome {
        Outcome::NotLeader => return Step::Wait { forget: None },
        Outcome::Unreachable(rpc_addr) => {
            return Step::Wait {
                forget: Some(rpc_addr.clone()),
            };
        }
        Outcome::Fresh => {}
    }
    match route {
        Route::Stopping => Step::Refuse(Refusal::Stopping),
        Route::Local => Step::ServeHere,
        Route::Forward { .. } if forwarded => Step::Refuse(Refusal::ForwardedToNonLeader),
        Route::Forward {
            leader_id,
            rpc_addr,
        } => Step::Forward {
            leader_id: *leader_id,
            rpc_addr: rpc_addr.clone(),
        },
        Route::NoLeader => Step::Wait { forget: None },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::consensus::view::MemberView;

    fn view(node_id: NodeId, role: Role, leader: Option<NodeId>) -> ConsensusView {
        ConsensusView {
            node_id,
            role,
            term: 1,
            leader,
            last_log_index: 0,
            committed_index: 0,
            applied_index: 0,
            snapshot_index: None,
            purged_index: 0,
            members: BTreeMap::from([(
                1,
                MemberView {
                    rpc_addr: "m:1".to_string(),
                    name: None,
                    voter: true,
                },
            )]),
            change_in_flight: false,
            joint_committed: false,
            matched: BTreeMap::new(),
            heartbeat_age: BTreeMap::new(),
        }
    }

    fn no_gossip(_: NodeId) -> Option<String> {
        None
    }

    #[test]
    fn leaders_serve_followers_forward_and_unknown_waits() {
        assert_eq!(
            route(&view(1, Role::Leader, Some(1)), no_gossip),
            Route::Local
        );
        assert_eq!(
            route(&view(2, Role::Follower, Some(1)), no_gossip),
            Route::Forward {
                leader_id: 1,
                rpc_addr: "m:1".to_string()
            }
        );
        assert_eq!(
            route(&view(2, Role::Follower, Some(1)), |_| Some(
                "g:1".to_string()
            )),
            Route::Forward {
                leader_id: 1,
                rpc_addr: "g:1".to_string()
            },
            "gossip's address is fresher"
        );
        assert_eq!(
            route(&view(2, Role::Candidate, None), no_gossip),
            Route::NoLeader
        );
        assert_eq!(
            route(&view(2, Role::Follower, Some(5)), no_gossip),
            Route::NoLeader,
            "a leader with no known address"
        );
        assert_eq!(
            route(&view(1, Role::Shutdown, Some(1)), no_gossip),
            Route::Stopping
        );
        assert_eq!(
            route(&view(2, Role::Follower, Some(2)), no_gossip),
            Route::NoLeader,
            "stale metrics naming this node"
        );
    }

    #[test]
    fn each_outcome_leads_to_one_step() {
        let forward = Route::Forward {
            leader_id: 1,
            rpc_addr: "a:1".to_string(),
        };
        assert_eq!(
            next_step(&Route::Local, &Outcome::Fresh, false),
            Step::ServeHere
        );
        assert_eq!(
            next_step(&forward, &Outcome::Fresh, false),
            Step::Forward {
                leader_id: 1,
                rpc_addr: "a:1".to_string()
            }
        );
        assert_eq!(
            next_step(&forward, &Outcome::Fresh, true),
            Step::Refuse(Refusal::ForwardedToNonLeader),
            "a forwarded request is never forwarded again"
        );
        assert_eq!(
            next_step(&Route::Local, &Outcome::Fresh, true),
            Step::ServeHere,
            "the leader serves forwarded requests"
        );
        assert_eq!(
            next_step(&Route::NoLeader, &Outcome::Fresh, false),
            Step::Wait { forget: None }
        );
        assert_eq!(
            next_step(&Route::Stopping, &Outcome::Fresh, false),
            Step::Refuse(Refusal::Stopping)
        );
        assert_eq!(
            next_step(&Route::Local, &Outcome::NotLeader, false),
            Step::Wait { forget: None },
            "leadership moved: wait, then decide again"
        );
        assert_eq!(
            next_step(&forward, &Outcome::Unreachable("a:1".to_string()), false),
            Step::Wait {
                forget: Some("a:1".to_string())
            }
        );
    }
}
