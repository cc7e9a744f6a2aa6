//! The identity checks against real TLS servers in-process: which gossip
//! entries are believed once their certificates are read.

use std::net::SocketAddr;

use super::*;
use crate::discovery::Announcement;
use crate::security::certs::{self, Pem};
use crate::security::presented::tests::{LOOPBACK, serve, tls_of};

const OWN_ID: NodeId = 1;

fn entry(node_id: NodeId, generation: u64, rpc_addr: &str, name: &str) -> Peer {
    let gossip_addr: SocketAddr = "127.0.0.1:9".parse().expect("address");
    Peer {
        node_id,
        gossip_addr,
        alive: true,
        generation,
        announcement: Announcement {
            rpc_addr: rpc_addr.to_string(),
            node_name: name.to_string(),
            ..Announcement::default()
        },
        version: String::new(),
    }
}

fn member(rpc_addr: &str) -> MemberView {
    MemberView {
        rpc_addr: rpc_addr.to_string(),
        name: None,
        voter: true,
    }
}

/// A server presenting a node certificate for `name`.
async fn node_server(ca: &Pem, name: &str) -> String {
    let pem = certs::node_cert(ca, name, &[LOOPBACK], &[]).expect("node certificate");
    serve(tls_of(ca, &pem)).await
}

/// `select` twice around the dials it starts: what it believes once the
/// certificates are read.
async fn believed(
    check: &mut IdentityCheck,
    candidates: &[Peer],
    members: &BTreeMap<NodeId, MemberView>,
) -> BTreeMap<NodeId, Peer> {
    check.select(candidates.to_vec(), members);
    check.settle().await;
    check.select(candidates.to_vec(), members)
}

#[tokio::test]
async fn a_spoofers_newer_entry_for_a_member_is_passed_over() {
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let real = node_server(&ca, "n2").await;
    let spoofer = node_server(&ca, "n4").await;
    let members = BTreeMap::from([(OWN_ID, member("own:1")), (2, member(&real))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default());
    assert_eq!(check.own_name(), Some("n1"));
    // The spoofer's entry is newer, names its own certificate and address.
    let candidates = [entry(2, 1, &real, "n2"), entry(2, 2, &spoofer, "n4")];
    let peers = believed(&mut check, &candidates, &members).await;
    assert_eq!(peers[&2].announcement.rpc_addr, real);
    // The member itself moving there later is not believed either.
    let moved = [entry(2, 3, &spoofer, "n2")];
    let peers = believed(&mut check, &moved, &members).await;
    assert!(!peers.contains_key(&2), "{peers:?}");
}

#[tokio::test]
async fn a_new_node_is_believed_at_its_own_address_only() {
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let member_two = node_server(&ca, "n2").await;
    let newcomer = node_server(&ca, "n5").await;
    let members = BTreeMap::from([(OWN_ID, member("own:1")), (2, member(&member_two))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default());
    let candidates = [
        entry(2, 1, &member_two, "n2"),
        entry(5, 1, &newcomer, "n5"),
        // Advertises member 2's address.
        entry(7, 1, &member_two, "n7"),
    ];
    let peers = believed(&mut check, &candidates, &members).await;
    let ids: Vec<NodeId> = peers.keys().copied().collect();
    assert_eq!(ids, vec![2, 5]);
}

#[tokio::test]
async fn without_tls_the_newest_entry_is_believed() {
    let mut check = IdentityCheck::new(OWN_ID, None, Metrics::default());
    let candidates = [entry(2, 1, "a:1", ""), entry(2, 2, "b:1", "")];
    let peers = check.select(candidates.to_vec(), &BTreeMap::new());
    assert_eq!(peers[&2].announcement.rpc_addr, "b:1");
}

#[tokio::test]
async fn new_ids_at_one_address_or_certificate_are_none_of_them_believed() {
    // A key holder claims a made-up id 3 at joining node 5's address (the
    // dial there shows node 5's certificate): neither id is believed, so
    // id 3 is never added in node 5's place.
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let joining = node_server(&ca, "n5").await;
    let members = BTreeMap::from([(OWN_ID, member("own:1"))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default());
    let candidates = [entry(5, 1, &joining, "n5"), entry(3, 1, &joining, "n5")];
    let peers = believed(&mut check, &candidates, &members).await;
    assert!(peers.is_empty(), "{peers:?}");
    // With a name left out it is refused alone, and node 5 is believed.
    let candidates = [entry(5, 1, &joining, "n5")];
    let peers = believed(&mut check, &candidates, &members).await;
    assert_eq!(peers.keys().copied().collect::<Vec<_>>(), vec![5]);
    let unnamed = [entry(3, 1, &joining, "")];
    let peers = believed(&mut check, &unnamed, &members).await;
    assert!(peers.is_empty(), "{peers:?}");
}
