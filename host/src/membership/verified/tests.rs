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

/// Node ids answered at addresses, as the nodes there would report them.
fn answering(pairs: &[(&str, NodeId)]) -> AskNodeId {
    let table: HashMap<String, NodeId> = pairs
        .iter()
        .map(|(addr, node_id)| (addr.to_string(), *node_id))
        .collect();
    Arc::new(move |addr: String, _tls| {
        let answered = table
            .get(&addr)
            .copied()
            .ok_or_else(|| format!("no node id at {addr}"));
        Box::pin(async move { answered })
    })
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
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&real, 2), (&spoofer, 4)]));
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
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&member_two, 2), (&newcomer, 5)]));
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
async fn an_id_at_another_nodes_address_is_refused_and_keeps_no_one_out() {
    // A key holder claims a made-up id 3 at joining node 5's address (the
    // dial there shows node 5's certificate, and node 5 reports id 5): id
    // 3 is refused and does not keep node 5 out.
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let joining = node_server(&ca, "n5").await;
    let members = BTreeMap::from([(OWN_ID, member("own:1"))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&joining, 5)]));
    let candidates = [entry(5, 1, &joining, "n5"), entry(3, 1, &joining, "n5")];
    let peers = believed(&mut check, &candidates, &members).await;
    assert_eq!(peers.keys().copied().collect::<Vec<_>>(), vec![5]);
    let unnamed = [entry(3, 1, &joining, "")];
    let peers = believed(&mut check, &unnamed, &members).await;
    assert!(peers.is_empty(), "{peers:?}");
}

#[tokio::test]
async fn new_ids_behind_one_certificate_are_none_of_them_believed() {
    // One certificate (n5) served at two addresses, each reporting its own
    // new id: which one is n5 is unknown, so neither is believed.
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let first = node_server(&ca, "n5").await;
    let second = node_server(&ca, "n5").await;
    let members = BTreeMap::from([(OWN_ID, member("own:1"))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&first, 5), (&second, 3)]));
    let candidates = [entry(5, 1, &first, "n5"), entry(3, 1, &second, "n5")];
    let peers = believed(&mut check, &candidates, &members).await;
    assert!(peers.is_empty(), "{peers:?}");
}

#[tokio::test]
async fn a_joining_nodes_entry_not_yet_alive_still_contends_for_its_name() {
    // The race: a key holder keeps made-up id 3 alive at joining node 5's
    // address, gossiping its name, while node 5's own first entry is not
    // alive yet. Id 3 must not be believed (it would be added, and named).
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let joining = node_server(&ca, "n5").await;
    let members = BTreeMap::from([(OWN_ID, member("own:1"))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&joining, 5)]));
    let real = Peer {
        alive: false,
        ..entry(5, 1, "10.0.0.5:7400", "n5")
    };
    let candidates = [entry(3, 1, &joining, "n5"), real];
    let peers = believed(&mut check, &candidates, &members).await;
    assert!(peers.is_empty(), "{peers:?}");
}

#[tokio::test]
async fn a_name_recorded_in_the_membership_is_never_taken_on_first_use() {
    // Member 2 is recorded as n2 and gone from gossip; this node has no
    // binding for it (a lost bindings file). A spoofer (n4) claiming id 2
    // at its own address, uncontested, is not believed.
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let spoofer = node_server(&ca, "n4").await;
    let mut recorded = member("10.0.0.2:7400");
    recorded.name = Some("n2".into());
    let members = BTreeMap::from([(OWN_ID, member("own:1")), (2, recorded)]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&spoofer, 4)]));
    let candidates = [entry(2, 1, &spoofer, "n4")];
    let peers = believed(&mut check, &candidates, &members).await;
    assert!(peers.is_empty(), "{peers:?}");
}

#[tokio::test]
async fn a_corrupt_bindings_file_stops_first_use_and_is_left_as_it_is() {
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let moved = node_server(&ca, "n2").await;
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join(bindings_file::BINDINGS_FILE_NAME);
    std::fs::write(&path, "{corrupt").expect("write");
    let members = BTreeMap::from([(OWN_ID, member("own:1")), (2, member("10.0.0.2:7400"))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&moved, 2)]))
        .with_bindings_file(path.clone());
    // Member 2 (unnamed record) at a new address, uncontested: with a
    // readable file it would be named there on first use.
    let candidates = [entry(2, 1, &moved, "n2")];
    let peers = believed(&mut check, &candidates, &members).await;
    assert!(peers.is_empty(), "{peers:?}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "{corrupt");
}

#[tokio::test]
async fn a_failed_bindings_write_is_tried_again_next_round() {
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let two = node_server(&ca, "n2").await;
    let directory = tempfile::tempdir().expect("temp dir");
    let missing = directory.path().join("not-yet");
    let path = missing.join(bindings_file::BINDINGS_FILE_NAME);
    let members = BTreeMap::from([(OWN_ID, member("own:1")), (2, member(&two))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&two, 2)]))
        .with_bindings_file(path.clone());
    let candidates = [entry(2, 1, &two, "n2")];
    believed(&mut check, &candidates, &members).await;
    assert!(!path.exists(), "its directory is missing: the write failed");
    std::fs::create_dir(&missing).expect("create the directory");
    check.select(candidates.to_vec(), &members);
    let stored = bindings_file::load(&path).expect("stored now");
    assert_eq!(stored.name_of(2), Some("n2"));
}

#[tokio::test]
async fn never_alive_ids_gossiping_a_joining_nodes_name_do_not_keep_it_out() {
    // Churned ids, never alive and never verified at any address, gossip
    // joining node 5's name: node 5, alive at its own address, is believed.
    let ca = certs::new_ca().expect("CA");
    let own = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let joining = node_server(&ca, "n5").await;
    let members = BTreeMap::from([(OWN_ID, member("own:1"))]);
    let tls = Some(Arc::new(tls_of(&ca, &own)));
    let mut check = IdentityCheck::new(OWN_ID, tls, Metrics::default())
        .asking_with(answering(&[(&joining, 5)]));
    let churned = |node_id| Peer {
        alive: false,
        ..entry(node_id, 1, "10.0.0.9:7400", "n5")
    };
    let candidates = [entry(5, 1, &joining, "n5"), churned(6), churned(7)];
    let peers = believed(&mut check, &candidates, &members).await;
    assert_eq!(peers.keys().copied().collect::<Vec<_>>(), vec![5]);
}
