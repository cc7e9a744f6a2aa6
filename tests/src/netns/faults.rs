//! Faults between the hosts of a [`TestNetwork`]: partitions, a bridge host,
//! links cut and restored, heal. Each port's egress has a black hole class;
//! cutting a link adds, on each end's port, a filter sending packets from
//! the other end into it.

use std::collections::BTreeSet;

use anyhow::Result;

use super::TestNetwork;
use super::commands::tc;

/// The HTB class whose queue drops every packet.
const BLACK_HOLE_CLASS: &str = "1:1";

/// The black hole class needs a rate; nothing is ever dequeued from it.
const BLACK_HOLE_RATE: &str = "1mbit";

/// Priority of every fault filter (they never overlap, so one is enough).
const FILTER_PRIORITY: &str = "10";

/// A link between two hosts, lower index first.
pub(super) type Link = (usize, usize);

impl TestNetwork {
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

    /// The HTB qdisc on `port` with the class that drops every packet.
    pub(super) fn install_black_hole(&self, port: &str) -> Result<()> {
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
}

/// The links to cut so that hosts in different groups can't talk.
pub(super) fn partition_cuts(hosts: usize, groups: &[Vec<usize>]) -> BTreeSet<Link> {
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
pub(super) fn bridge_cuts(
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
