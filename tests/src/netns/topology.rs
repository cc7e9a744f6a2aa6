//! Building a [`TestNetwork`]: its bridge, and per host a namespace, a veth
//! pair and addresses; tearing it down, on drop too; and removing what test
//! processes that died left behind.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail, ensure};

use super::commands::{ip, ip_json, succeeds};
use super::subnet::{choose_subnet, occupants};
use super::{
    HOSTS_MAX, LOCK_PATH, NAME_PREFIX, NETNS_DIRECTORY, SUBNET_PREFIX_LENGTH, State, TestNetwork,
};

/// Networks created by this process so far, for unique names.
static NETWORKS_CREATED: AtomicU32 = AtomicU32::new(0);

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
    /// and the port's black hole (see [`TestNetwork::install_black_hole`]).
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
        self.install_black_hole(&port)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        if let Err(error) = self.teardown() {
            eprintln!("{error:#}");
        }
    }
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

pub(super) fn is_alive(pid: libc::pid_t) -> bool {
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

pub(super) fn delete_namespace(name: &str) -> Result<()> {
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
