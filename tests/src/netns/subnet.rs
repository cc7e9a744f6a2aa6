//! Where a [`TestNetwork`] may live: the first free `/24` of the test range,
//! refused if anything outside our own networks routes or holds an address
//! in it, and its routes checked once built, so test traffic can never leak
//! to a real network.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail, ensure};

use super::commands::ip_json;
use super::{NAME_PREFIX, SUBNET_PREFIX_LENGTH, SUBNET_RANGE, TestNetwork};

impl TestNetwork {
    /// Check that the root namespace routes every host address through our
    /// bridge, directly: nothing else claims them.
    pub(super) fn verify_routes(&self) -> Result<()> {
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
}

/// An IPv4 prefix in the root namespace, and what holds it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Occupant {
    pub(super) network: Ipv4Addr,
    pub(super) prefix_length: u8,
    /// The interface, when the route or address has one.
    pub(super) device: Option<String>,
    /// For messages: the route or address as `ip` prints it.
    pub(super) description: String,
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
pub(super) fn choose_subnet(occupants: &[Occupant]) -> Result<u8> {
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
pub(super) fn occupants() -> Result<Vec<Occupant>> {
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
pub(super) fn parse_prefix(text: &str) -> Result<(Ipv4Addr, u8)> {
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
