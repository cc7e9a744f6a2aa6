//! The membership rules, one scenario per test.

use super::*;

const LEADER: NodeId = 1;

fn policy() -> Policy {
    Policy {
        voter_cap: 5,
        stabilization: Duration::from_secs(5),
        dead_grace: Duration::from_secs(60),
        min_voters: 1,
        caught_up_lag_entries: 10,
    }
}

struct Scenario {
    start: Instant,
    tracker: Tracker,
    observation: Observation,
}

impl Scenario {
    fn new(voters: &[NodeId], learners: &[NodeId]) -> Self {
        let start = Instant::now();
        let mut members = BTreeMap::new();
        for id in voters {
            members.insert(*id, member(true));
        }
        for id in learners {
            members.insert(*id, member(false));
        }
        let gossip = voters
            .iter()
            .chain(learners)
            .filter(|id| **id != LEADER)
            .map(|id| (*id, gossip(true)))
            .collect();
        Self {
            start,
            tracker: Tracker::default(),
            observation: Observation {
                now: start,
                leader_id: LEADER,
                last_log_index: 100,
                members,
                change_in_flight: false,
                joint_committed: false,
                protocol_level: 1,
                names_recorded: false,
                gossip,
            },
        }
    }

    fn at(&mut self, seconds: u64) -> (Option<Action>, Vec<Holding>) {
        self.observation.now = self.start + Duration::from_secs(seconds);
        self.tracker.observe(&self.observation);
        decide(&self.observation, &self.tracker, &policy())
    }

    fn set_alive(&mut self, node_id: NodeId, alive: bool) {
        self.observation
            .gossip
            .entry(node_id)
            .or_insert_with(|| gossip(alive))
            .alive = alive;
    }
}

fn member(voter: bool) -> MemberView {
    MemberView {
        voter,
        rpc_addr: "127.0.0.1:1".to_string(),
        name: None,
        matched_index: Some(100),
        raft_heard_ago: None,
    }
}

#[test]
fn a_member_that_moved_gets_its_new_address_recorded() {
    let mut scenario = Scenario::new(&[LEADER, 2], &[]);
    scenario.observation.gossip.get_mut(&2).unwrap().rpc_addr = "127.0.0.1:2".to_string();
    assert_eq!(
        scenario.at(0).0,
        Some(Action::UpdateAddress {
            node_id: 2,
            rpc_addr: "127.0.0.1:2".to_string(),
            name: None,
        })
    );
}

fn gossip(alive: bool) -> GossipView {
    GossipView {
        rpc_addr: "127.0.0.1:1".to_string(),
        alive,
        leaving: false,
        protocol_level: 1,
        verified_name: None,
    }
}

#[test]
fn a_node_too_old_for_the_protocol_level_is_not_added() {
    let mut scenario = Scenario::new(&[LEADER], &[]);
    scenario.observation.protocol_level = 2;
    scenario.set_alive(2, true);
    let (action, holding) = scenario.at(0);
    assert_eq!(action, None);
    assert_eq!(
        holding,
        vec![Holding::TooOldToJoin {
            node_id: 2,
            supported: 1,
            active: 2
        }]
    );
}

#[test]
fn a_new_live_node_is_added_as_learner() {
    let mut scenario = Scenario::new(&[LEADER], &[]);
    scenario.set_alive(2, true);
    assert_eq!(
        scenario.at(0).0,
        Some(Action::AddLearner {
            node_id: 2,
            rpc_addr: "127.0.0.1:1".to_string(),
            name: None,
        })
    );
}

#[test]
fn a_learner_is_promoted_only_after_stabilizing_and_catching_up() {
    let mut scenario = Scenario::new(&[LEADER], &[2]);
    assert_eq!(scenario.at(0).0, None, "not stable yet");
    assert_eq!(scenario.at(4).0, None, "still not stable");
    scenario
        .observation
        .members
        .get_mut(&2)
        .unwrap()
        .matched_index = Some(50);
    assert_eq!(scenario.at(6).0, None, "stable but lagging");
    scenario
        .observation
        .members
        .get_mut(&2)
        .unwrap()
        .matched_index = Some(95);
    assert_eq!(scenario.at(7).0, Some(Action::Promote { node_id: 2 }));
}

#[test]
fn voters_are_capped_and_extra_nodes_stay_learners() {
    let mut scenario = Scenario::new(&[LEADER, 2, 3, 4, 5], &[6]);
    scenario.at(0);
    assert_eq!(scenario.at(10).0, None);
}

#[test]
fn a_dying_voter_is_kept_until_the_grace_period_ends() {
    let mut scenario = Scenario::new(&[LEADER, 2, 3], &[]);
    scenario.at(0);
    scenario.set_alive(3, false);
    assert_eq!(scenario.at(1).0, None);
    assert_eq!(
        scenario.at(30).0,
        None,
        "failure detector alone never removes"
    );
    assert_eq!(scenario.at(61).0, Some(Action::RemoveVoter { node_id: 3 }));
}

#[test]
fn nothing_is_removed_without_quorum() {
    let mut scenario = Scenario::new(&[LEADER, 2, 3], &[]);
    scenario.at(0);
    scenario.set_alive(2, false);
    scenario.set_alive(3, false);
    scenario.at(1);
    let (action, holding) = scenario.at(120);
    assert_eq!(action, None);
    assert!(
        matches!(&holding[0], Holding::CannotRemoveDeadVoter { reason, .. } if reason.contains("1 of 3")),
        "{holding:?}"
    );
}

#[test]
fn never_below_the_minimum_voter_count() {
    let mut scenario = Scenario::new(&[LEADER, 2], &[]);
    scenario.at(0);
    scenario.set_alive(2, false);
    scenario.at(1);
    // 1 of 2 alive is no quorum either; with min 1 it is quorum that holds.
    let (action, _) = scenario.at(120);
    assert_eq!(action, None);
}

#[test]
fn a_node_coming_back_resets_its_grace() {
    let mut scenario = Scenario::new(&[LEADER, 2, 3], &[]);
    scenario.at(0);
    scenario.set_alive(3, false);
    scenario.at(10);
    scenario.set_alive(3, true);
    scenario.at(50);
    scenario.set_alive(3, false);
    assert_eq!(scenario.at(80).0, None, "dead only 30 s this time");
}

#[test]
fn leaving_nodes_are_not_added_and_leaving_learners_are_removed() {
    let mut scenario = Scenario::new(&[LEADER], &[3]);
    scenario.observation.gossip.insert(
        2,
        GossipView {
            leaving: true,
            ..gossip(true)
        },
    );
    scenario.observation.gossip.get_mut(&3).unwrap().leaving = true;
    assert_eq!(scenario.at(0).0, None, "leaving for no time yet");
    assert_eq!(
        scenario.at(60).0,
        Some(Action::RemoveLearner { node_id: 3 })
    );
    scenario.observation.members.remove(&3);
    assert_eq!(scenario.at(61).0, None);
}

#[test]
fn a_learner_answering_raft_is_not_removed_for_gossiping_leaving() {
    // A gossip-key holder can forge a `leaving` entry at a learner's
    // address: while the learner answers Raft it stays.
    let mut scenario = Scenario::new(&[LEADER], &[3]);
    scenario.observation.gossip.get_mut(&3).unwrap().leaving = true;
    let member = scenario.observation.members.get_mut(&3).expect("member");
    member.raft_heard_ago = Some(Duration::from_secs(1));
    scenario.at(0);
    assert_eq!(scenario.at(600).0, None, "it answers Raft");
    // Leaving stopped and started again: the grace restarts.
    scenario.observation.gossip.get_mut(&3).unwrap().leaving = false;
    scenario.at(601);
    scenario.observation.gossip.get_mut(&3).unwrap().leaving = true;
    let member = scenario.observation.members.get_mut(&3).expect("member");
    member.raft_heard_ago = None;
    assert_eq!(scenario.at(602).0, None, "leaving for 1 s only");
    assert_eq!(
        scenario.at(662).0,
        Some(Action::RemoveLearner { node_id: 3 })
    );
}

#[test]
fn a_new_node_is_recorded_with_its_verified_name() {
    let mut scenario = Scenario::new(&[LEADER], &[]);
    scenario.set_alive(2, true);
    scenario
        .observation
        .gossip
        .get_mut(&2)
        .unwrap()
        .verified_name = Some("n2".into());
    assert_eq!(
        scenario.at(0).0,
        Some(Action::AddLearner {
            node_id: 2,
            rpc_addr: "127.0.0.1:1".to_string(),
            name: Some("n2".into()),
        })
    );
}

#[test]
fn an_unnamed_record_is_named_at_its_recorded_address_and_a_move_keeps_the_name() {
    let mut scenario = Scenario::new(&[LEADER, 2], &[]);
    scenario
        .observation
        .gossip
        .get_mut(&2)
        .unwrap()
        .verified_name = Some("n2".into());
    let named = Action::UpdateAddress {
        node_id: 2,
        rpc_addr: "127.0.0.1:1".to_string(),
        name: Some("n2".into()),
    };
    assert_eq!(scenario.at(0).0, Some(named));
    scenario.observation.members.get_mut(&2).unwrap().name = Some("n2".into());
    assert_eq!(scenario.at(1).0, None, "named already");
    // Seen at a new address: the move keeps the recorded name.
    let gossip = scenario.observation.gossip.get_mut(&2).unwrap();
    gossip.rpc_addr = "127.0.0.1:2".to_string();
    gossip.verified_name = Some("other".into());
    assert_eq!(
        scenario.at(2).0,
        Some(Action::UpdateAddress {
            node_id: 2,
            rpc_addr: "127.0.0.1:2".to_string(),
            name: Some("n2".into()),
        })
    );
}

// Goal: once names are recorded, a member recorded without a name that
// shows up at a new address is neither moved nor named there (that name
// would stay in its record for good); without recorded names it is moved,
// as before.
#[test]
fn an_unnamed_record_is_not_moved_once_names_are_recorded() {
    let mut scenario = Scenario::new(&[LEADER, 2], &[]);
    scenario.observation.names_recorded = true;
    let gossip = scenario.observation.gossip.get_mut(&2).unwrap();
    gossip.rpc_addr = "127.0.0.1:2".to_string();
    gossip.verified_name = Some("evil".into());
    assert_eq!(scenario.at(0).0, None, "moved or named at a new address");
    scenario.observation.names_recorded = false;
    assert_eq!(
        scenario.at(1).0,
        Some(Action::UpdateAddress {
            node_id: 2,
            rpc_addr: "127.0.0.1:2".to_string(),
            name: None,
        })
    );
}

#[test]
fn a_change_left_joint_is_finished_before_anything_else() {
    let mut scenario = Scenario::new(&[LEADER, 2], &[]);
    scenario.set_alive(3, true);
    scenario.observation.change_in_flight = true;
    scenario.observation.joint_committed = true;
    assert_eq!(scenario.at(0).0, Some(Action::FinishChange));
    scenario.observation.joint_committed = false;
    assert_eq!(scenario.at(1).0, None, "the second step is under way");
}

#[test]
fn nothing_happens_while_a_change_is_in_flight() {
    let mut scenario = Scenario::new(&[LEADER], &[]);
    scenario.set_alive(2, true);
    scenario.observation.change_in_flight = true;
    assert_eq!(scenario.at(0).0, None);
}

#[test]
fn every_action_maps_to_one_membership_change() {
    assert_eq!(
        membership_change(&Action::Promote { node_id: 2 }),
        MembershipChange::AddVoter(2)
    );
    assert_eq!(
        membership_change(&Action::RemoveLearner { node_id: 3 }),
        MembershipChange::RemoveNode(3)
    );
    assert_eq!(
        membership_change(&Action::UpdateAddress {
            node_id: 4,
            rpc_addr: "a:1".to_string(),
            name: Some("n4".to_string()),
        }),
        MembershipChange::SetAddress {
            node_id: 4,
            rpc_addr: "a:1".to_string(),
            name: Some("n4".to_string()),
        }
    );
}

#[test]
fn a_member_answering_raft_is_never_removed_as_dead() {
    // A gossip-key holder can make a member look dead in gossip (its entry
    // outranked, then silent): the Raft responses the leader gets decide.
    let mut scenario = Scenario::new(&[1, 2, 3, 4, 5], &[6]);
    scenario.at(0);
    for id in [5, 6] {
        scenario.set_alive(id, false);
        let member = scenario.observation.members.get_mut(&id).expect("member");
        member.raft_heard_ago = Some(Duration::from_secs(1));
    }
    scenario.at(1);
    assert_eq!(scenario.at(120).0, None, "both answer Raft");
    // Raft silent for less than the grace period: still kept.
    for id in [5, 6] {
        let member = scenario.observation.members.get_mut(&id).expect("member");
        member.raft_heard_ago = Some(Duration::from_secs(59));
    }
    assert_eq!(scenario.at(121).0, None, "Raft silent 59 s only");
    // Silent for Raft too: removed (the learner first, it costs nothing).
    for id in [5, 6] {
        let member = scenario.observation.members.get_mut(&id).expect("member");
        member.raft_heard_ago = Some(Duration::from_secs(60));
    }
    assert_eq!(
        scenario.at(122).0,
        Some(Action::RemoveLearner { node_id: 6 })
    );
    scenario.observation.members.remove(&6);
    scenario.observation.gossip.remove(&6);
    assert_eq!(scenario.at(123).0, Some(Action::RemoveVoter { node_id: 5 }));
}

#[test]
fn a_voter_answering_raft_counts_towards_quorum() {
    // Voters 2 and 3 look dead in gossip but 3 answers Raft: 1 and 3 are a
    // quorum of 3, so 2 (silent everywhere) can be removed.
    let mut scenario = Scenario::new(&[1, 2, 3], &[]);
    scenario.at(0);
    scenario.set_alive(2, false);
    scenario.set_alive(3, false);
    let member = scenario.observation.members.get_mut(&3).expect("member");
    member.raft_heard_ago = Some(Duration::from_secs(1));
    scenario.at(1);
    assert_eq!(scenario.at(120).0, Some(Action::RemoveVoter { node_id: 2 }));
}
