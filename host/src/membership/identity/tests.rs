//! The identity decision: each way a claim is refused, and the bindings
//! that let existing clusters and new nodes through.

use super::*;

const ADDR: &str = "10.0.0.1:7400";
const OTHER_ADDR: &str = "10.0.0.9:7400";

fn node(name: &str) -> PeerIdentity {
    PeerIdentity {
        role: Some(Role::Node),
        node_name: Some(name.to_string()),
    }
}

fn claim(node_id: NodeId, name: Option<&'static str>, rpc_addr: &'static str) -> Claim<'static> {
    Claim {
        node_id,
        name,
        rpc_addr,
        contested: false,
        shared: false,
        first_use_allowed: true,
        names_recorded: false,
        answered_id: node_id,
    }
}

fn bound(pairs: &[(NodeId, &str)]) -> Bindings {
    let mut bindings = Bindings::default();
    for (node_id, name) in pairs {
        bindings.bind(*node_id, name.to_string());
    }
    bindings
}

#[test]
fn a_new_node_proving_its_name_is_believed_but_not_bound() {
    // Bound only once it is a member, at the address recorded for it.
    let verdict = judge(claim(4, Some("n4"), ADDR), &node("n4"), None, &bound(&[]));
    assert_eq!(verdict, Verdict::Accept);
}

#[test]
fn a_bound_member_at_a_new_address_is_accepted() {
    let verdict = judge(
        claim(1, Some("n1"), OTHER_ADDR),
        &node("n1"),
        Some(ADDR),
        &bound(&[(1, "n1")]),
    );
    assert_eq!(verdict, Verdict::Accept);
}

#[test]
fn a_spoofer_claiming_a_members_id_is_refused() {
    // Its own certificate at its own address: the id is someone else's.
    let verdict = judge(
        claim(1, Some("n4"), OTHER_ADDR),
        &node("n4"),
        Some(ADDR),
        &bound(&[(1, "n1"), (4, "n4")]),
    );
    assert!(
        matches!(&verdict, Verdict::Refuse(Mismatch::IdBoundToOther { bound, presented, .. })
            if bound == "n1" && presented == "n4"),
        "{verdict:?}"
    );
}

#[test]
fn a_claimed_name_the_certificate_does_not_carry_is_refused() {
    // Gossip says n1; the address presents n4's certificate.
    let verdict = judge(
        claim(1, Some("n1"), OTHER_ADDR),
        &node("n4"),
        Some(ADDR),
        &bound(&[(1, "n1")]),
    );
    let Verdict::Refuse(mismatch) = verdict else {
        panic!("accepted: {verdict:?}");
    };
    let text = mismatch.to_string();
    assert!(text.contains("n1") && text.contains("n4"), "{text}");
}

#[test]
fn another_nodes_address_is_refused() {
    // A new node advertising n2's address: n2's certificate is presented.
    let verdict = judge(
        claim(7, Some("n7"), ADDR),
        &node("n2"),
        None,
        &bound(&[(2, "n2")]),
    );
    assert!(
        matches!(verdict, Verdict::Refuse(Mismatch::OtherCertificate { .. })),
        "{verdict:?}"
    );
    // Without a gossiped name, the name's binding still refuses it.
    let verdict = judge(
        claim(7, None, ADDR),
        &node("n2"),
        None,
        &bound(&[(2, "n2")]),
    );
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::NameBoundToOther { holder: 2, .. })
        ),
        "{verdict:?}"
    );
}

#[test]
fn an_unbound_member_is_named_at_its_recorded_address() {
    // An existing cluster: members recorded before names were checked.
    let verdict = judge(
        claim(2, Some("n2"), ADDR),
        &node("n2"),
        Some(ADDR),
        &bound(&[]),
    );
    assert_eq!(verdict, Verdict::AcceptAndBind("n2".into()));
}

#[test]
fn an_unbound_member_that_moved_is_named_on_first_use_when_uncontested() {
    // A whole cluster restarted elsewhere from data dirs without bindings.
    let verdict = judge(
        claim(2, Some("n2"), OTHER_ADDR),
        &node("n2"),
        Some(ADDR),
        &bound(&[(1, "n1")]),
    );
    assert_eq!(verdict, Verdict::AcceptAndBind("n2".into()));
}

#[test]
fn first_use_is_refused_when_the_id_is_contested_or_the_name_taken() {
    let mut contested = claim(2, Some("n4"), OTHER_ADDR);
    contested.contested = true;
    let verdict = judge(contested, &node("n4"), Some(ADDR), &bound(&[]));
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::UnverifiedMemberMoved { .. })
        ),
        "{verdict:?}"
    );
    let verdict = judge(
        claim(2, Some("n1"), OTHER_ADDR),
        &node("n1"),
        Some(ADDR),
        &bound(&[(1, "n1")]),
    );
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::NameBoundToOther { holder: 1, .. })
        ),
        "{verdict:?}"
    );
}

#[test]
fn first_use_is_refused_while_the_bindings_file_is_unusable() {
    let mut unbacked = claim(2, Some("n2"), OTHER_ADDR);
    unbacked.first_use_allowed = false;
    let verdict = judge(unbacked, &node("n2"), Some(ADDR), &bound(&[]));
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::UnverifiedMemberMoved { .. })
        ),
        "{verdict:?}"
    );
    // At its recorded address it is still named.
    let at_home = Claim {
        rpc_addr: ADDR,
        ..unbacked
    };
    let verdict = judge(at_home, &node("n2"), Some(ADDR), &bound(&[]));
    assert_eq!(verdict, Verdict::AcceptAndBind("n2".into()));
}

#[test]
fn recorded_names_override_names_bound_before() {
    // A name bound on first use to the wrong id gives way to the record.
    let mut bindings = bound(&[(7, "n2"), (1, "n1")]);
    bindings.take_recorded([(2, "n2")]);
    assert_eq!(bindings.name_of(2), Some("n2"));
    assert_eq!(bindings.name_of(7), None);
    assert_eq!(bindings.name_of(1), Some("n1"));
    let verdict = judge(
        claim(7, Some("n2"), ADDR),
        &node("n2"),
        Some(ADDR),
        &bindings,
    );
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::NameBoundToOther { holder: 2, .. })
        ),
        "{verdict:?}"
    );
}

#[test]
fn client_and_nameless_certificates_are_refused() {
    let client = PeerIdentity {
        role: Some(Role::Admin),
        node_name: Some("n1".into()),
    };
    let verdict = judge(claim(1, Some("n1"), ADDR), &client, None, &bound(&[]));
    assert!(
        matches!(&verdict, Verdict::Refuse(Mismatch::NotANode { role, .. }) if role == "admin"),
        "{verdict:?}"
    );
    let nameless = PeerIdentity {
        role: Some(Role::Node),
        node_name: None,
    };
    let verdict = judge(claim(1, None, ADDR), &nameless, None, &bound(&[]));
    assert!(
        matches!(verdict, Verdict::Refuse(Mismatch::Unnamed { .. })),
        "{verdict:?}"
    );
    let verdict = judge(
        claim(1, None, ADDR),
        &PeerIdentity::default(),
        None,
        &bound(&[]),
    );
    assert!(
        matches!(&verdict, Verdict::Refuse(Mismatch::NotANode { role, .. }) if role == "none"),
        "{verdict:?}"
    );
}

#[test]
fn a_removed_nodes_name_is_free_again() {
    let mut bindings = bound(&[(1, "n1"), (2, "n2")]);
    bindings.retain(|node_id| node_id != 2);
    assert_eq!(bindings.holder_of("n2"), None);
    let verdict = judge(claim(9, Some("n2"), ADDR), &node("n2"), None, &bindings);
    assert_eq!(verdict, Verdict::Accept);
}

#[test]
fn a_new_node_gossiping_no_name_is_refused() {
    // A key holder claiming a made-up id at a joining node's address, with
    // no name, would otherwise be added there in its place.
    let verdict = judge(claim(3, None, ADDR), &node("n5"), None, &bound(&[]));
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::NewNodeUnnamed { node_id: 3, .. })
        ),
        "{verdict:?}"
    );
}

#[test]
fn new_ids_sharing_an_address_or_name_are_all_refused() {
    let mut shared = claim(3, Some("n5"), ADDR);
    shared.shared = true;
    let verdict = judge(shared, &node("n5"), None, &bound(&[]));
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::SharedByNewIds { node_id: 3, .. })
        ),
        "{verdict:?}"
    );
}

// Goal: once the cluster records names, a member recorded without a name
// is not named at a new address on first use (the leader would write that
// name into its record for good); at its recorded address it still is.
#[test]
fn no_first_use_once_names_are_recorded() {
    let mut moved = claim(2, Some("evil"), OTHER_ADDR);
    moved.names_recorded = true;
    let verdict = judge(moved, &node("evil"), Some(ADDR), &bound(&[]));
    let Verdict::Refuse(mismatch) = verdict else {
        panic!("named on first use: {verdict:?}");
    };
    assert!(
        matches!(mismatch, Mismatch::UnnamedMemberMoved { node_id: 2, .. }),
        "{mismatch:?}"
    );
    assert!(
        mismatch.to_string().contains("members remove 2"),
        "{mismatch}"
    );
    let at_home = Claim {
        rpc_addr: ADDR,
        name: Some("n2"),
        ..moved
    };
    let verdict = judge(at_home, &node("n2"), Some(ADDR), &bound(&[]));
    assert_eq!(verdict, Verdict::AcceptAndBind("n2".into()));
}

// Goal: an entry claiming an id at an address whose node reports another
// id is refused, whatever certificate is presented there.
#[test]
fn an_id_the_node_at_the_address_does_not_report_is_refused() {
    let mut elsewhere = claim(3, Some("n5"), OTHER_ADDR);
    elsewhere.answered_id = 5;
    let verdict = judge(elsewhere, &node("n5"), None, &bound(&[]));
    assert!(
        matches!(
            verdict,
            Verdict::Refuse(Mismatch::OtherNodeId {
                node_id: 3,
                answered: 5,
                ..
            })
        ),
        "{verdict:?}"
    );
}
