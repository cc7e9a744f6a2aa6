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

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

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

/// The HTB class whose queue drops every packet.
const BLACK_HOLE_CLASS: &str = "1:1";

/// The black hole class needs a rate; nothing is ever dequeued from it.
const BLACK_HOLE_RATE: &str = "1mbit";

/// Priority of every fault filter (they never overlap, so one is enough).
const FILTER_PRIORITY: &str = "10";

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

/// Networks created by this process so far, for unique names.
static NETWORKS_CREATED: AtomicU32 = AtomicU32::new(0);

/// A link between two hosts, lower index first.
type Link = (usize, usize);

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
    /// Build a network of `hosts` hosts (1 to [`HOSTS_MAX`]), every link up.
    /// Refuses if the chosen subnet is routed or addressed by anything but
    /// our own networks.
    pub fn create(hosts: usize) -> Result<TestNetwork> {
        ensure!(
            (1..=HOSTS_MAX).contains(&hosts),
            "a test network has 1 to {HOSTS_MAX} hosts, not {hosts}"
        );
        let lock = File::create(LOCK_PATH).with_context(|| format!("create {LOCK_PATH}"))?;
        lock.lock().with_context(|| format!("lock {LOCK_PATH}"))?;
        remove_stale()?;
        let subnet_octet = choose_subnet(&occupants()?)?;
        let network = TestNetwork {
            name: format!(
                "{NAME_PREFIX}-{}-{}",
                std::process::id(),
                NETWORKS_CREATED.fetch_add(1, Ordering::Relaxed)
            ),
            subnet_octet,
            hosts,
            state: Mutex::new(State {
                cuts: BTreeSet::new(),
                hosts_built: 0,
                torn_down: false,
            }),
        };
        // From here on, a failure drops `network`, which removes what exists.
        network.build_bridge()?;
        for host in 0..hosts {
            // Counted before it is built, so a half-built host is removed too.
            network.lock_state().hosts_built = host + 1;
            network.build_host(host)?;
        }
        network.verify_routes()?;
        Ok(network)
    }

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

    /// The name of `host`'s network namespace (for `ip netns exec` by hand).
    pub fn namespace(&self, host: usize) -> String {
        self.assert_host(host);
        format!("{}-{host}", self.name)
    }

    /// A command running `program` inside `host`'s namespace. The child
    /// enters the namespace between fork and exec (`setns`), so the spawned
    /// process is `program` itself: its pid is the one to SIGKILL, SIGSTOP
    /// or SIGCONT. Spawning fails if the network was torn down.
    pub fn command(&self, host: usize, program: &Path) -> Command {
        let path = namespace_c_path(&self.namespace(host));
        let mut command = Command::new(program);
        // SAFETY: the closure only calls open, setns and close, which are
        // async-signal-safe, on a path allocated before the fork.
        unsafe {
            command.pre_exec(move || enter_namespace(&path));
        }
        command
    }

    /// Run `work` on a thread inside `host`'s namespace and return its
    /// result. Sockets it creates stay in that namespace after it returns,
    /// so a test can bind or connect "as" a host. A panic in `work` is
    /// propagated.
    pub fn run_in_host<T, F>(&self, host: usize, work: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let namespace = self.namespace(host);
        let path = namespace_c_path(&namespace);
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                enter_namespace(&path).with_context(|| format!("enter namespace {namespace}"))?;
                Ok(work())
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Drop traffic between hosts in different groups; every host must be
    /// in exactly one group. Replaces any faults in place.
    pub fn partition(&self, groups: &[Vec<usize>]) -> Result<()> {
        let target = partition_cuts(self.hosts, groups);
        self.apply(|_| target)
    }

    /// Drop traffic between `host` and every other host. Replaces any
    /// faults in place.
    pub fn isolate(&self, host: usize) -> Result<()> {
        self.assert_host(host);
        let others = (0..self.hosts).filter(|other| *other != host).collect();
        self.partition(&[vec![host], others])
    }

    /// Drop traffic between `a_side` and `b_side`, while `bridge_host`
    /// still talks to both. Hosts in none of them keep every link. Replaces
    /// any faults in place.
    pub fn bridge_partition(
        &self,
        a_side: &[usize],
        b_side: &[usize],
        bridge_host: usize,
    ) -> Result<()> {
        let target = bridge_cuts(self.hosts, a_side, b_side, bridge_host);
        self.apply(|_| target)
    }

    /// Drop traffic between hosts `a` and `b`, both ways, keeping other
    /// faults. Toggle with [`TestNetwork::restore`] for a flapping link.
    pub fn cut(&self, a: usize, b: usize) -> Result<()> {
        let link = self.link(a, b);
        self.apply(|cuts| {
            let mut cuts = cuts.clone();
            cuts.insert(link);
            cuts
        })
    }

    /// Let traffic between hosts `a` and `b` through again, keeping other
    /// faults.
    pub fn restore(&self, a: usize, b: usize) -> Result<()> {
        let link = self.link(a, b);
        self.apply(|cuts| {
            let mut cuts = cuts.clone();
            cuts.remove(&link);
            cuts
        })
    }

    /// Remove every fault: all filters on every port, also any left by a
    /// fault operation that failed halfway.
    pub fn heal(&self) -> Result<()> {
        let mut state = self.live_state()?;
        for host in 0..state.hosts_built {
            tc(&format!("filter del dev {} parent 1:", self.port(host)))?;
        }
        state.cuts.clear();
        Ok(())
    }

    /// Whether traffic between hosts `a` and `b` is dropped right now.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        let link = self.link(a, b);
        self.lock_state().cuts.contains(&link)
    }

    /// Remove the namespaces, links and rules this network created. Called
    /// on drop too; calling it again does nothing. Processes still running
    /// in a host lose its network but are not killed.
    pub fn teardown(&self) -> Result<()> {
        let mut state = self.lock_state();
        if state.torn_down {
            return Ok(());
        }
        state.torn_down = true;
        let mut failures = Vec::new();
        for host in 0..state.hosts_built {
            // Deleting one end of a veth pair deletes both.
            if let Err(error) = delete_link(&self.port(host)) {
                failures.push(format!("{error:#}"));
            }
            if let Err(error) = delete_namespace(&self.namespace(host)) {
                failures.push(format!("{error:#}"));
            }
        }
        if let Err(error) = delete_link(&self.bridge()) {
            failures.push(format!("{error:#}"));
        }
        state.cuts.clear();
        if failures.is_empty() {
            Ok(())
        } else {
            bail!(
                "tearing down test network {}: {}",
                self.name,
                failures.join("; ")
            )
        }
    }

    /// Install and remove filters until exactly the links `change` returns
    /// (given those cut now) are cut. One fault operation at a time.
    fn apply(&self, change: impl FnOnce(&BTreeSet<Link>) -> BTreeSet<Link>) -> Result<()> {
        let mut state = self.live_state()?;
        let target = change(&state.cuts);
        let to_restore: Vec<Link> = state.cuts.difference(&target).copied().collect();
        for link in to_restore {
            self.set_link_filters(link, false)?;
            state.cuts.remove(&link);
        }
        let to_cut: Vec<Link> = target.difference(&state.cuts).copied().collect();
        for link in to_cut {
            self.set_link_filters(link, true)?;
            state.cuts.insert(link);
        }
        Ok(())
    }

    /// Add (or delete) the filters dropping `link`'s traffic: on each
    /// end's port, packets from the other end.
    fn set_link_filters(&self, (a, b): Link, cut: bool) -> Result<()> {
        let verb = if cut { "add" } else { "del" };
        for (port_host, source_host) in [(a, b), (b, a)] {
            let port = self.port(port_host);
            // u32 node handles are hex; 0 means "pick one", so offset by 1.
            let handle = format!("800::{:x}", source_host + 1);
            let mut line = format!(
                "filter {verb} dev {port} parent 1: protocol ip prio {FILTER_PRIORITY} \
                 handle {handle} u32"
            );
            if cut {
                let source = self.host_address(source_host);
                line.push_str(&format!(
                    " match ip src {source}/32 flowid {BLACK_HOLE_CLASS}"
                ));
            }
            tc(&line)?;
        }
        Ok(())
    }

    fn build_bridge(&self) -> Result<()> {
        let bridge = self.bridge();
        ip(&format!("link add name {bridge} type bridge"))?;
        ip(&format!("link set dev {bridge} alias {}", self.name))?;
        disable_ipv6(&bridge)?;
        let client = self.client_address();
        ip(&format!(
            "address add {client}/{SUBNET_PREFIX_LENGTH} dev {bridge}"
        ))?;
        ip(&format!("link set dev {bridge} up"))?;
        Ok(())
    }

    /// The namespace, the veth pair between it and the bridge, addresses,
    /// and the port's black hole.
    fn build_host(&self, host: usize) -> Result<()> {
        let namespace = self.namespace(host);
        let port = self.port(host);
        ip(&format!("netns add {namespace}"))?;
        ip(&format!(
            "link add name {port} type veth peer name eth0 netns {namespace}"
        ))?;
        ip(&format!("link set dev {port} alias {}", self.name))?;
        disable_ipv6(&port)?;
        ip(&format!("link set dev {port} master {} up", self.bridge()))?;
        self.run_in_host(host, || disable_ipv6("eth0"))??;
        let address = self.address(host);
        ip(&format!(
            "-netns {namespace} address add {address}/{SUBNET_PREFIX_LENGTH} dev eth0"
        ))?;
        ip(&format!("-netns {namespace} link set dev eth0 up"))?;
        ip(&format!("-netns {namespace} link set dev lo up"))?;
        // Unclassified packets bypass HTB's classes untouched; the filters
        // of `set_link_filters` send packets into the class that drops.
        tc(&format!("qdisc add dev {port} root handle 1: htb"))?;
        tc(&format!(
            "class add dev {port} parent 1: classid {BLACK_HOLE_CLASS} htb rate {BLACK_HOLE_RATE}"
        ))?;
        tc(&format!(
            "qdisc add dev {port} parent {BLACK_HOLE_CLASS} handle 10: pfifo limit 0"
        ))?;
        Ok(())
    }

    /// Check that the root namespace routes every host address through our
    /// bridge, directly: nothing else claims them.
    fn verify_routes(&self) -> Result<()> {
        for host in 0..self.hosts {
            let address = self.address(host).to_string();
            let routes = ip_json(&format!("route get {address}"))?;
            let route = routes
                .as_array()
                .and_then(|routes| routes.first())
                .with_context(|| format!("no route to {address}"))?;
            ensure!(
                route["dev"] == self.bridge().as_str() && route.get("gateway").is_none(),
                "refusing test network: {address} is routed by {route}, not by bridge {}",
                self.bridge()
            );
        }
        Ok(())
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
    fn live_state(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        let state = self.lock_state();
        ensure!(!state.torn_down, "test network {} is torn down", self.name);
        Ok(state)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        if let Err(error) = self.teardown() {
            eprintln!("{error:#}");
        }
    }
}

/// The links to cut so that hosts in different groups can't talk.
fn partition_cuts(hosts: usize, groups: &[Vec<usize>]) -> BTreeSet<Link> {
    let mut group_of = vec![None; hosts];
    for (group, members) in groups.iter().enumerate() {
        for &host in members {
            assert!(host < hosts, "host {host} out of range in {groups:?}");
            assert!(
                group_of[host].replace(group).is_none(),
                "host {host} is in two groups of {groups:?}"
            );
        }
    }
    let group_of: Vec<usize> = group_of
        .iter()
        .enumerate()
        .map(|(host, group)| {
            group.unwrap_or_else(|| panic!("host {host} in no group of {groups:?}"))
        })
        .collect();
    let mut cuts = BTreeSet::new();
    for a in 0..hosts {
        for b in a + 1..hosts {
            if group_of[a] != group_of[b] {
                cuts.insert((a, b));
            }
        }
    }
    cuts
}

/// The links to cut so that `a_side` and `b_side` can't talk; `bridge_host`
/// belongs to neither.
fn bridge_cuts(
    hosts: usize,
    a_side: &[usize],
    b_side: &[usize],
    bridge_host: usize,
) -> BTreeSet<Link> {
    assert!(
        bridge_host < hosts,
        "bridge host {bridge_host} out of range"
    );
    let mut cuts = BTreeSet::new();
    for &a in a_side {
        for &b in b_side {
            assert!(
                a < hosts && b < hosts,
                "host out of range in {a_side:?} / {b_side:?}"
            );
            assert!(
                a != b && a != bridge_host && b != bridge_host,
                "sides {a_side:?} and {b_side:?} and bridge host {bridge_host} overlap"
            );
            cuts.insert((a.min(b), a.max(b)));
        }
    }
    cuts
}

/// An IPv4 prefix in the root namespace, and what holds it.
#[derive(Debug, Clone, PartialEq)]
struct Occupant {
    network: Ipv4Addr,
    prefix_length: u8,
    /// The interface, when the route or address has one.
    device: Option<String>,
    /// For messages: the route or address as `ip` prints it.
    description: String,
}

impl Occupant {
    fn overlaps(&self, network: Ipv4Addr, prefix_length: u8) -> bool {
        let shorter = self.prefix_length.min(prefix_length);
        let mask = u32::MAX.checked_shl(32 - u32::from(shorter)).unwrap_or(0);
        u32::from(self.network) & mask == u32::from(network) & mask
    }
}

/// The first `X` such that `10.213.X.0/24` is free. A subnet held only by our
/// bridge for it belongs to another live network and is skipped; held by
/// anything else, it is refused. Default routes are not occupants (the
/// caller leaves them out): the subnet's own route is more specific.
fn choose_subnet(occupants: &[Occupant]) -> Result<u8> {
    let [first, second] = SUBNET_RANGE;
    for octet in 0..=u8::MAX {
        let subnet = Ipv4Addr::new(first, second, octet, 0);
        let bridge = format!("{NAME_PREFIX}{octet}");
        let overlapping: Vec<&Occupant> = occupants
            .iter()
            .filter(|occupant| occupant.overlaps(subnet, SUBNET_PREFIX_LENGTH))
            .collect();
        if overlapping.is_empty() {
            return Ok(octet);
        }
        if let Some(foreign) = overlapping
            .iter()
            .find(|occupant| occupant.device.as_deref() != Some(bridge.as_str()))
        {
            bail!(
                "refusing to build a test network on {subnet}/{SUBNET_PREFIX_LENGTH}: it is \
                 already in use outside our test networks by {}",
                foreign.description
            );
        }
    }
    bail!("every test subnet of {first}.{second}.0.0/16 is in use by a live test network")
}

/// Every IPv4 route (all tables, except default routes) and address of the
/// root namespace.
fn occupants() -> Result<Vec<Occupant>> {
    let mut occupants = Vec::new();
    let routes = ip_json("-4 route show table all")?;
    for route in routes.as_array().into_iter().flatten() {
        let destination = route["dst"].as_str().context("route without dst")?;
        if destination == "default" {
            continue;
        }
        let (network, prefix_length) = parse_prefix(destination)?;
        occupants.push(Occupant {
            network,
            prefix_length,
            device: route["dev"].as_str().map(str::to_string),
            description: format!("route {route}"),
        });
    }
    let interfaces = ip_json("-4 address show")?;
    for interface in interfaces.as_array().into_iter().flatten() {
        let device = interface["ifname"].as_str().map(str::to_string);
        for address in interface["addr_info"].as_array().into_iter().flatten() {
            let local = address["local"].as_str().context("address without local")?;
            occupants.push(Occupant {
                network: local.parse().with_context(|| format!("address {local}"))?,
                prefix_length: 32,
                device: device.clone(),
                description: format!("address {local} on {}", device.as_deref().unwrap_or("?")),
            });
        }
    }
    Ok(occupants)
}

/// `a.b.c.d/len`, or `a.b.c.d` for a host route.
fn parse_prefix(text: &str) -> Result<(Ipv4Addr, u8)> {
    let (address, length) = text.split_once('/').unwrap_or((text, "32"));
    let address = address
        .parse()
        .with_context(|| format!("route destination {text}"))?;
    let length: u8 = length
        .parse()
        .with_context(|| format!("route destination {text}"))?;
    ensure!(length <= 32, "route destination {text}");
    Ok((address, length))
}

/// Delete namespaces and links left by test processes that are gone: names
/// and aliases `chn-<pid>-...` whose pid is dead, and our links without an
/// alias (their creator died between creating and naming them; creation
/// holds the lock we hold, so no live process is in that window). A pid
/// reused meanwhile keeps its leftovers until it dies too.
/// Called with [`LOCK_PATH`] held.
fn remove_stale() -> Result<()> {
    let namespaces = match std::fs::read_dir(NETNS_DIRECTORY) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>()?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error).context(NETNS_DIRECTORY),
    };
    for entry in namespaces {
        let name = entry.file_name().to_string_lossy().into_owned();
        if owner_pid(&name).is_some_and(|pid| !is_alive(pid)) {
            delete_namespace(&name)?;
        }
    }
    let links = ip_json("link show")?;
    for link in links.as_array().into_iter().flatten() {
        let name = link["ifname"].as_str().unwrap_or_default();
        let ours = name
            .strip_prefix(NAME_PREFIX)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        let owner = link["ifalias"].as_str().and_then(owner_pid);
        if ours && owner.is_none_or(|pid| !is_alive(pid)) {
            delete_link(name)?;
        }
    }
    Ok(())
}

/// The pid in `chn-<pid>-...`.
fn owner_pid(name: &str) -> Option<libc::pid_t> {
    let rest = name.strip_prefix(NAME_PREFIX)?.strip_prefix('-')?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

fn is_alive(pid: libc::pid_t) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn delete_link(name: &str) -> Result<()> {
    // Gone already when its namespace took it along.
    if succeeds("ip", &format!("link show dev {name}")) {
        ip(&format!("link delete dev {name}"))?;
    }
    Ok(())
}

fn delete_namespace(name: &str) -> Result<()> {
    if Path::new(NETNS_DIRECTORY).join(name).exists() {
        ip(&format!("netns delete {name}"))?;
    }
    Ok(())
}

/// Turn IPv6 off on `device` in the calling thread's namespace.
fn disable_ipv6(device: &str) -> Result<()> {
    // A kernel without IPv6 has nothing to turn off.
    if !Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    let path = PathBuf::from("/proc/sys/net/ipv6/conf")
        .join(device)
        .join("disable_ipv6");
    std::fs::write(&path, "1").with_context(|| format!("write 1 to {}", path.display()))
}

fn namespace_c_path(namespace: &str) -> CString {
    let path = Path::new(NETNS_DIRECTORY).join(namespace);
    CString::new(path.as_os_str().as_bytes()).expect("namespace path has no NUL")
}

/// Move the calling thread into the network namespace at `path`. Only
/// async-signal-safe calls: it runs between fork and exec.
fn enter_namespace(path: &CStr) -> std::io::Result<()> {
    // SAFETY: `path` is a valid C string; the descriptor is closed below.
    let descriptor = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if descriptor == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: setns on a descriptor we own; it changes only this thread.
    let entered = unsafe { libc::setns(descriptor, libc::CLONE_NEWNET) };
    let result = if entered == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: we opened it and nothing else uses it.
    unsafe { libc::close(descriptor) };
    result
}

/// `ip arguments`; see [`run`].
fn ip(arguments: &str) -> Result<String> {
    run("ip", arguments)
}

/// `tc arguments`; see [`run`].
fn tc(arguments: &str) -> Result<String> {
    run("tc", arguments)
}

/// `ip -json arguments`, parsed.
fn ip_json(arguments: &str) -> Result<Value> {
    let output = run("ip", &format!("-json {arguments}"))?;
    if output.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&output)
        .with_context(|| format!("`ip -json {arguments}` printed {output}"))
}

/// Run `program` with `arguments` split at whitespace (names and addresses
/// here have none) and return its stdout. A failure names the command line
/// and carries its stderr.
fn run(program: &str, arguments: &str) -> Result<String> {
    let output = Command::new(program)
        .args(arguments.split_whitespace())
        .output()
        .with_context(|| format!("run `{program} {arguments}`"))?;
    ensure!(
        output.status.success(),
        "`{program} {arguments}` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `program arguments` exits successfully (its output discarded).
fn succeeds(program: &str, arguments: &str) -> bool {
    Command::new(program)
        .args(arguments.split_whitespace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

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
}
