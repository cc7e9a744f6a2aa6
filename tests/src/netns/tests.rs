//! Goal: the test network's pure decisions (which links a fault cuts,
//! which subnet to take) are right, and, as root, real namespaces reach what
//! they should, faults drop exactly the packets they should, and nothing is
//! left behind.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::commands::{ip, succeeds};
use super::faults::{bridge_cuts, partition_cuts};
use super::namespace::{enter_namespace, namespace_c_path};
use super::subnet::{Occupant, choose_subnet, parse_prefix};
use super::topology::{delete_namespace, is_alive};
use super::{NAME_PREFIX, NETNS_DIRECTORY, TestNetwork};

/// How long a connection attempt gets: plenty on one machine, so one
/// that takes longer was dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether the test can run; prints why not when it can't.
fn running_as_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping {test}: creating network namespaces needs root");
    }
    root
}

/// A listener on each host's address, bound inside the host, and their
/// addresses. Nobody accepts: the kernel completes handshakes anyway.
fn listen_on_hosts(network: &TestNetwork) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let listeners: Vec<TcpListener> = (0..network.hosts())
        .map(|host| {
            let address = SocketAddr::new(network.address(host), 0);
            network
                .run_in_host(host, || TcpListener::bind(address))
                .expect("enter host")
                .expect("bind inside host")
        })
        .collect();
    let addresses = listeners
        .iter()
        .map(|listener| listener.local_addr().expect("listener address"))
        .collect();
    (listeners, addresses)
}

/// Connect to `to` from `host`, or from the client when `None`.
fn connect(
    network: &TestNetwork,
    from: Option<usize>,
    to: SocketAddr,
) -> std::io::Result<TcpStream> {
    match from {
        None => TcpStream::connect_timeout(&to, CONNECT_TIMEOUT),
        Some(host) => network
            .run_in_host(host, || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT))
            .expect("enter host"),
    }
}

#[track_caller]
fn assert_reaches(network: &TestNetwork, from: Option<usize>, to: SocketAddr) {
    if let Err(error) = connect(network, from, to) {
        panic!("{from:?} should reach {to}: {error}");
    }
}

/// The connection attempt times out: packets vanished, nobody refused.
#[track_caller]
fn assert_dropped(network: &TestNetwork, from: Option<usize>, to: SocketAddr) {
    match connect(network, from, to) {
        Ok(_) => panic!("{from:?} should not reach {to}"),
        Err(error) => assert_eq!(
            error.kind(),
            ErrorKind::TimedOut,
            "{from:?} to {to}: {error}"
        ),
    }
}

/// Whether a link with this name exists in the root namespace.
fn link_exists(name: &str) -> bool {
    succeeds("ip", &format!("link show dev {name}"))
}

fn namespace_exists(name: &str) -> bool {
    Path::new(NETNS_DIRECTORY).join(name).exists()
}

/// A pid that no process has (any more).
fn dead_pid() -> libc::pid_t {
    let mut child = Command::new("true").spawn().expect("spawn true");
    child.wait().expect("wait for true");
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    assert!(!is_alive(pid));
    pid
}

// Goal: the links a partition cuts are exactly those between groups.
#[test]
fn partition_cuts_every_link_between_groups() {
    let cuts = partition_cuts(4, &[vec![0], vec![1, 2], vec![3]]);
    let expected = BTreeSet::from([(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]);
    assert_eq!(cuts, expected);
    assert!(partition_cuts(3, &[vec![0, 1, 2]]).is_empty());
}

// Goal: a bridge partition cuts the sides apart and spares the bridge.
#[test]
fn bridge_cuts_spare_the_bridge_host() {
    let cuts = bridge_cuts(5, &[0, 1], &[3, 4], 2);
    let expected = BTreeSet::from([(0, 3), (0, 4), (1, 3), (1, 4)]);
    assert_eq!(cuts, expected);
}

#[test]
#[should_panic(expected = "in no group")]
fn partition_needs_every_host() {
    partition_cuts(3, &[vec![0], vec![1]]);
}

// Goal: subnets held by our other networks are skipped, anything else
// covering the chosen subnet is refused, default routes are fine.
#[test]
fn choose_subnet_skips_siblings_and_refuses_the_rest() {
    let occupant = |prefix: &str, device: Option<&str>| {
        let (network, prefix_length) = parse_prefix(prefix).expect("prefix");
        Occupant {
            network,
            prefix_length,
            device: device.map(str::to_string),
            description: prefix.to_string(),
        }
    };
    assert_eq!(choose_subnet(&[]).expect("free"), 0);
    let siblings = [
        occupant("192.0.2.0/24", Some("eth0")),
        occupant("10.213.0.0/24", Some("chn0")),
        occupant("10.213.0.1", Some("chn0")),
        occupant("10.213.1.255", Some("chn1")),
    ];
    assert_eq!(choose_subnet(&siblings).expect("free"), 2);
    for foreign in [
        occupant("10.0.0.0/8", Some("tun0")),
        occupant("10.213.0.0/16", None),
        occupant("10.213.0.7", Some("lo")),
        occupant("10.213.0.0/24", Some("chn1")),
    ] {
        let error = choose_subnet(std::slice::from_ref(&foreign)).expect_err("foreign route");
        assert!(error.to_string().contains(&foreign.description), "{error}");
    }
}

// Goal: the client reaches every host, hosts reach each other and their
// own loopback, and nothing outside the test network.
#[test]
fn client_reaches_every_host_and_hosts_reach_nothing_else() {
    if !running_as_root("client_reaches_every_host_and_hosts_reach_nothing_else") {
        return;
    }
    let network = TestNetwork::create(3).expect("create network");
    let (_listeners, hosts) = listen_on_hosts(&network);
    for &host in &hosts {
        assert_reaches(&network, None, host);
    }
    assert_reaches(&network, Some(0), hosts[1]);
    assert_reaches(&network, Some(2), hosts[0]);
    let loopback_listener = network
        .run_in_host(1, || TcpListener::bind("127.0.0.1:0"))
        .expect("enter host")
        .expect("bind loopback");
    let loopback = loopback_listener.local_addr().expect("loopback address");
    assert_reaches(&network, Some(1), loopback);
    // Host 0's loopback is its own: host 1's listener is not there.
    let error = connect(&network, Some(0), loopback).expect_err("other loopback");
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");
    let outside = SocketAddr::from(([192, 0, 2, 1], 80));
    let error = connect(&network, Some(0), outside).expect_err("outside");
    assert_eq!(error.kind(), ErrorKind::NetworkUnreachable, "{error}");
}

// Goal: a partition drops packets between groups silently (connections
// time out, established ones stall and resume on heal) while the client
// and each host keep reaching one another.
#[test]
fn partition_drops_packets_between_groups_only() {
    if !running_as_root("partition_drops_packets_between_groups_only") {
        return;
    }
    let network = TestNetwork::create(3).expect("create network");
    let (_listeners, hosts) = listen_on_hosts(&network);
    let client_listener =
        TcpListener::bind((network.client_address(), 0)).expect("client listener");
    let client = client_listener.local_addr().expect("client address");
    let server = network
        .run_in_host(1, || TcpListener::bind((network.address(1), 0)))
        .expect("enter host")
        .expect("bind");
    let mut established = connect(&network, Some(0), server.local_addr().expect("address"))
        .expect("connect before partition");
    let (mut accepted, _) = server.accept().expect("accept");

    network
        .partition(&[vec![0], vec![1, 2]])
        .expect("partition");
    assert_dropped(&network, Some(0), hosts[1]);
    assert_dropped(&network, Some(1), hosts[0]);
    assert_dropped(&network, Some(2), hosts[0]);
    assert_reaches(&network, Some(1), hosts[2]);
    for (host, &address) in hosts.iter().enumerate() {
        assert_reaches(&network, None, address);
        assert_reaches(&network, Some(host), client);
    }
    established.write_all(b"ping").expect("write is buffered");
    accepted
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .expect("read timeout");
    let mut buffer = [0; 4];
    let error = accepted.read_exact(&mut buffer).expect_err("stalled");
    assert_eq!(error.kind(), ErrorKind::WouldBlock, "{error}");

    network.heal().expect("heal");
    assert!(!network.is_cut(0, 1));
    assert_reaches(&network, Some(0), hosts[1]);
    assert_reaches(&network, Some(2), hosts[0]);
    // TCP retransmits the stalled bytes; backoff is under a second here.
    accepted
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    accepted
        .read_exact(&mut buffer)
        .expect("resumed after heal");
    assert_eq!(&buffer, b"ping");
}

// Goal: a bridge host talks to both sides, the sides don't talk.
#[test]
fn bridge_partition_keeps_the_bridge_host_in_touch() {
    if !running_as_root("bridge_partition_keeps_the_bridge_host_in_touch") {
        return;
    }
    let network = TestNetwork::create(3).expect("create network");
    let (_listeners, hosts) = listen_on_hosts(&network);
    network
        .bridge_partition(&[0], &[2], 1)
        .expect("bridge partition");
    assert_reaches(&network, Some(0), hosts[1]);
    assert_reaches(&network, Some(1), hosts[0]);
    assert_reaches(&network, Some(1), hosts[2]);
    assert_reaches(&network, Some(2), hosts[1]);
    assert_dropped(&network, Some(0), hosts[2]);
    assert_dropped(&network, Some(2), hosts[0]);
    for &host in &hosts {
        assert_reaches(&network, None, host);
    }
}

// Goal: one link cut and restored repeatedly (a flapping link) affects
// that link only, and a partition replaces single cuts.
#[test]
fn a_link_flaps_with_cut_and_restore() {
    if !running_as_root("a_link_flaps_with_cut_and_restore") {
        return;
    }
    let network = TestNetwork::create(3).expect("create network");
    let (_listeners, hosts) = listen_on_hosts(&network);
    for _ in 0..3 {
        network.cut(1, 0).expect("cut");
        assert!(network.is_cut(0, 1));
        assert_dropped(&network, Some(0), hosts[1]);
        assert_reaches(&network, Some(0), hosts[2]);
        assert_reaches(&network, Some(2), hosts[1]);
        network.restore(0, 1).expect("restore");
        assert_reaches(&network, Some(0), hosts[1]);
    }
    network.cut(0, 1).expect("cut");
    network.isolate(2).expect("isolate");
    assert_reaches(&network, Some(0), hosts[1]);
    assert_dropped(&network, Some(0), hosts[2]);
    assert_dropped(&network, Some(2), hosts[1]);
    assert_reaches(&network, None, hosts[2]);
    network.heal().expect("heal");
    assert_reaches(&network, Some(1), hosts[2]);
}

// Goal: `command` spawns the program itself inside the host, so its pid
// takes SIGSTOP, SIGCONT and SIGKILL.
#[test]
fn command_runs_the_program_itself_inside_the_host() {
    if !running_as_root("command_runs_the_program_itself_inside_the_host") {
        return;
    }
    let network = TestNetwork::create(2).expect("create network");
    let mut child = network
        .command(1, Path::new("sleep"))
        .arg("30")
        .spawn()
        .expect("spawn sleep in host 1");
    // `spawn` returns once the child has exec'd.
    let proc = PathBuf::from(format!("/proc/{}", child.id()));
    let comm = std::fs::read_to_string(proc.join("comm")).expect("comm");
    assert_eq!(comm.trim(), "sleep");
    let namespace = Path::new(NETNS_DIRECTORY).join(network.namespace(1));
    let inode = |path: &Path| std::fs::metadata(path).expect("stat").ino();
    assert_eq!(inode(&proc.join("ns/net")), inode(&namespace));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

// Goal: dropping a network, even while a test panics, removes its
// namespaces and links; teardown is idempotent and ends the faults API.
#[test]
fn drop_removes_everything_even_after_a_panic() {
    if !running_as_root("drop_removes_everything_even_after_a_panic") {
        return;
    }
    let names = Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let network = TestNetwork::create(2).expect("create network");
        network.cut(0, 1).expect("cut");
        let mut names = names.lock().expect("names");
        names.extend([network.namespace(0), network.namespace(1)]);
        names.extend([network.bridge(), network.port(0), network.port(1)]);
        drop(names);
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    let names = names.into_inner().expect("names");
    assert_eq!(names.len(), 5);
    for name in &names {
        assert!(
            !namespace_exists(name) && !link_exists(name),
            "{name} left behind"
        );
    }

    let network = TestNetwork::create(1).expect("create network");
    let namespace = network.namespace(0);
    network.teardown().expect("teardown");
    network.teardown().expect("teardown again");
    assert!(!namespace_exists(&namespace) && !link_exists(&network.bridge()));
    assert!(network.heal().is_err());
}

// Goal: leftovers of a dead test process are removed by the next create.
#[test]
fn leftovers_of_dead_processes_are_removed() {
    if !running_as_root("leftovers_of_dead_processes_are_removed") {
        return;
    }
    let pid = dead_pid();
    let namespace = format!("{NAME_PREFIX}-{pid}-0-0");
    let bridge = format!("{NAME_PREFIX}254");
    let orphan = format!("{NAME_PREFIX}253v0");
    ip(&format!("netns add {namespace}")).expect("stale namespace");
    ip(&format!("link add name {bridge} type bridge")).expect("stale bridge");
    let alias = format!("{NAME_PREFIX}-{pid}-0");
    ip(&format!("link set dev {bridge} alias {alias}")).expect("alias");
    ip(&format!("link add name {orphan} type bridge")).expect("orphan link");

    let _network = TestNetwork::create(1).expect("create network");
    assert!(!namespace_exists(&namespace), "{namespace} left behind");
    assert!(!link_exists(&bridge), "{bridge} left behind");
    assert!(!link_exists(&orphan), "{orphan} left behind");
}

// Goal: a subnet someone else routes or addresses is refused, and
// nothing is created. Runs in a scratch namespace standing for the root
// one, so the real routes stay untouched.
#[test]
fn refuses_a_subnet_in_use_elsewhere() {
    if !running_as_root("refuses_a_subnet_in_use_elsewhere") {
        return;
    }
    let scratch = format!("{NAME_PREFIX}-{}-scratch", std::process::id());
    ip(&format!("netns add {scratch}")).expect("scratch namespace");
    let in_scratch = |arguments: &str| ip(&format!("-netns {scratch} {arguments}"));
    let refusal = |expected: &str| {
        let path = namespace_c_path(&scratch);
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter_namespace(&path).expect("enter scratch namespace");
                    TestNetwork::create(1).map(|_| ())
                })
                .join()
                .expect("create thread")
        });
        let error = result.expect_err("refused");
        let message = format!("{error:#}");
        assert!(
            message.contains("refusing") && message.contains(expected),
            "{message}"
        );
        let links = in_scratch("-brief link").expect("links");
        assert!(!links.contains(NAME_PREFIX), "created links: {links}");
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        in_scratch("link set dev lo up").expect("lo up");
        in_scratch("route add blackhole 10.213.0.0/16").expect("route");
        refusal("blackhole");
        in_scratch("route del blackhole 10.213.0.0/16").expect("route");
        in_scratch("address add 10.213.0.7/32 dev lo").expect("address");
        refusal("10.213.0.7");
    }));
    delete_namespace(&scratch).expect("delete scratch namespace");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
