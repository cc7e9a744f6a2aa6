//! [`TestNetwork`]: test hosts in Linux network namespaces behind one bridge,
//! for fault-injection tests. Each `clusterhost` process runs inside its own
//! host; the test itself, the client, stays in the root namespace and reaches
//! every host whatever faults are in place.
//!
//! ```text
//!                  root namespace: the test (client) at 10.213.X.1
//!                                        |
//!                        bridge chnX, subnet 10.213.X.0/24
//!               +------------------------+------------------------+
//!         port chnXv0              port chnXv1              port chnXv2   <- fault rules
//!               | veth                   | veth                   | veth
//!   netns chn-<pid>-<n>-0    netns chn-<pid>-<n>-1    netns chn-<pid>-<n>-2
//!     lo, eth0 10.213.X.10     lo, eth0 10.213.X.11     lo, eth0 10.213.X.12
//! ```
//!
//! A host has loopback and one address on the bridge, and no other route:
//! it can talk to itself, to the other hosts and to the client, and nothing
//! else. IPv6 is off on every link but loopback, so the IPv4 fault rules
//! cover all traffic between hosts.
//! The subnet is the first free `/24` of `10.213.0.0/16`; [`TestNetwork::create`]
//! refuses to start if anything outside our own networks already routes or
//! holds an address in it, so test traffic can never leak to a real network.
//!
//! Faults are packet filters on the bridge ports, in the root namespace. Each
//! port's egress has an HTB qdisc: unclassified packets pass untouched, and
//! one class drains into `pfifo limit 0`, which drops everything — a black
//! hole. Cutting the link between hosts `a` and `b` adds a u32 filter on
//! `a`'s port sending packets whose *source* is `b` into the black hole, and
//! the mirror filter on `b`'s port. Packets vanish inside the "network", as
//! in a real partition: the sender gets no error and TCP retransmits until it
//! times out. (ARP still passes, so nobody gets a quick "no route to host".)
//! The filters match host source addresses only, never the client's, and
//! packets from a host to the client are delivered to the bridge itself, not
//! through a port: the client keeps driving and observing every side of a
//! partition.
//!
//! Why this mechanism: it needs only iproute2 and kernel support that even a
//! minimal VM kernel has (bridge, veth, HTB, pfifo, u32). The usual tools are
//! missing on our test machine: its kernel has no `netem` qdisc (so no
//! `netem loss 100%`, and no `delay`: there is no way to emulate latency) and
//! no `gact` action (so no `action drop`), and neither iptables nor nftables
//! is installed.
//!
//! Everything a network creates is removed by [`TestNetwork::teardown`] or on
//! drop, also when a test panics. Names carry the creating process id, and
//! [`TestNetwork::create`] first removes what dead processes left behind.
//! Needs root.
//!
//! Layout:
//! - `topology`: creating a network (bridge, hosts, addresses), tearing it
//!   down, and removing what dead test processes left behind.
//! - `subnet`: choosing a free subnet and refusing one that anything else
//!   routes or holds.
//! - `faults`: partitions, cut and restored links, heal: the filters on the
//!   bridge ports.
//! - `namespace`: running a program or a thread inside a host.
//! - `commands`: running `ip` and `tc`.

mod commands;
mod faults;
mod namespace;
mod subnet;
#[cfg(test)]
mod tests;
mod topology;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Result, ensure};

use faults::Link;

/// Prefix of every namespace and link a [`TestNetwork`] creates.
pub const NAME_PREFIX: &str = "chn";

/// The `/16` test subnets are taken from: `10.213.X.0/24` for some `X`.
pub const SUBNET_RANGE: [u8; 2] = [10, 213];

/// Length of one network's subnet prefix.
pub const SUBNET_PREFIX_LENGTH: u8 = 24;

/// Last octet of the client's address on the bridge.
pub const CLIENT_OCTET: u8 = 1;

/// Last octet of host 0's address; host `h` has `HOST_FIRST_OCTET + h`.
pub const HOST_FIRST_OCTET: u8 = 10;

/// Most hosts in one network.
pub const HOSTS_MAX: usize = 32;

/// Where `ip netns` keeps the namespaces it names.
pub const NETNS_DIRECTORY: &str = "/run/netns";

/// Lock file serializing the creation of networks across test processes, so
/// that two of them never pick the same subnet.
pub const LOCK_PATH: &str = "/run/clusterhost-netns.lock";

/// Linux interface names are at most this long (IFNAMSIZ minus the NUL).
const INTERFACE_NAME_LENGTH_MAX: usize = 15;

/// Longest interface name we make: `chn255v31`.
const _: () =
    assert!(NAME_PREFIX.len() + "255".len() + "v".len() + "31".len() <= INTERFACE_NAME_LENGTH_MAX);
const _: () = assert!(HOSTS_MAX <= 99, "port names hold two digits of host");
const _: () = assert!(HOST_FIRST_OCTET as usize + HOSTS_MAX <= 255);
const _: () = assert!(CLIENT_OCTET < HOST_FIRST_OCTET);
const _: () = assert!(
    SUBNET_PREFIX_LENGTH == 24,
    "subnet octet arithmetic assumes /24"
);

/// Hosts in network namespaces behind one bridge, with faults between hosts.
/// See the module documentation for the topology.
pub struct TestNetwork {
    /// `chn-<pid>-<n>`: the stem of the namespace names, and the alias of
    /// every link, which tells whose they are.
    name: String,
    /// `X` in `10.213.X.0/24`.
    subnet_octet: u8,
    hosts: usize,
    state: Mutex<State>,
}

struct State {
    /// Links whose traffic is dropped right now.
    cuts: BTreeSet<Link>,
    /// Hosts whose namespace and port exist (all of them once created).
    hosts_built: usize,
    torn_down: bool,
}

impl TestNetwork {
    /// How many hosts the network has.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// The address of `host` (its `eth0`), reachable from the client.
    pub fn address(&self, host: usize) -> IpAddr {
        IpAddr::V4(self.host_address(host))
    }

    /// The client's address: the root namespace's address on the bridge.
    pub fn client_address(&self) -> IpAddr {
        IpAddr::V4(self.subnet_address(CLIENT_OCTET))
    }

    fn bridge(&self) -> String {
        format!("{NAME_PREFIX}{}", self.subnet_octet)
    }

    /// The bridge-side end of `host`'s veth pair.
    fn port(&self, host: usize) -> String {
        format!("{NAME_PREFIX}{}v{host}", self.subnet_octet)
    }

    fn host_address(&self, host: usize) -> Ipv4Addr {
        self.assert_host(host);
        let octet = u8::try_from(usize::from(HOST_FIRST_OCTET) + host).expect("host octet");
        self.subnet_address(octet)
    }

    fn subnet_address(&self, octet: u8) -> Ipv4Addr {
        let [first, second] = SUBNET_RANGE;
        Ipv4Addr::new(first, second, self.subnet_octet, octet)
    }

    fn link(&self, a: usize, b: usize) -> Link {
        self.assert_host(a);
        self.assert_host(b);
        assert_ne!(a, b, "a link joins two different hosts");
        (a.min(b), a.max(b))
    }

    #[track_caller]
    fn assert_host(&self, host: usize) {
        assert!(
            host < self.hosts,
            "host {host} out of range: the network has {} hosts",
            self.hosts
        );
    }

    /// The state, unless the network is torn down.
    fn live_state(&self) -> Result<MutexGuard<'_, State>> {
        let state = self.lock_state();
        ensure!(!state.torn_down, "test network {} is torn down", self.name);
        Ok(state)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
