//! Everything a node needs to start, and the checks that refuse impossible
//! combinations before anything is touched.

use std::net::SocketAddr;
use std::path::PathBuf;

use clusterhost_client::ClientTls;

use crate::consensus::NodeId;
use crate::consensus::settings::{PROTOCOL_LEVEL_SUPPORTED, Setting};
use crate::consensus::trusted_signers::TrustedSigners;
use crate::discovery::is_reachable;
use crate::limits::{
    DEAD_GRACE_DEFAULT_TIME, LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT, PROMOTION_LAG_ENTRIES_MAX,
    PluginLimits, SNAPSHOT_EVERY_ENTRIES_DEFAULT, STABILIZATION_DEFAULT_TIME, VOTER_CAP_DEFAULT,
    VOTERS_MAX,
};
use crate::membership::reconcile::Policy;

/// The gRPC address a node listens on unless told otherwise.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7400";
/// The gossip address a node uses unless told otherwise.
pub const GOSSIP_DEFAULT: &str = "127.0.0.1:7401";
/// The cluster name nodes gossip under unless told otherwise.
pub const CLUSTER_NAME_DEFAULT: &str = "clusterhost";

pub fn default_addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| unreachable!("{text} is a socket address"))
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// The plugin to create a new cluster with.
    pub plugin: Option<PathBuf>,
    /// Initialize a new single-node cluster (first start only).
    pub bootstrap: bool,
    /// Form a cluster once this many nodes (started with the same flag) see
    /// each other; 0 = off.
    pub bootstrap_expect: usize,
    /// Gossip seed addresses of any existing nodes.
    pub join: Vec<String>,
    /// UDP address to gossip on.
    pub gossip_listen: SocketAddr,
    /// UDP address peers gossip to, when it differs from `gossip_listen`.
    pub gossip_advertise: Option<SocketAddr>,
    /// Nodes only gossip within the same cluster name.
    pub cluster_name: String,
    /// Membership policy (voter cap, stabilization, dead grace, minimum).
    pub policy: Policy,
    /// Address other nodes and clients use to reach this node's gRPC port;
    /// defaults to the listen address.
    pub advertise: Option<String>,
    /// Raft node id; generated and persisted when absent.
    pub node_id: Option<NodeId>,
    /// Entries between automatic snapshots.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot.
    pub log_entries_kept: u64,
    /// Bounds on every plugin call, as the flags name them: they seed a new
    /// cluster's settings; afterwards the cluster's settings apply.
    pub plugin_limits: PluginLimits,
    /// The cluster settings the flags named explicitly (flag, setting,
    /// value), to warn about when the cluster's differ.
    pub flagged_settings: Vec<(&'static str, Setting, u64)>,
    /// Where to serve metrics, health checks and the status page (HTTP).
    pub metrics_listen: Option<SocketAddr>,
    /// Mutual TLS on the gRPC port, and the certificate this node presents
    /// when it dials others; `None`: plaintext.
    pub tls: Option<ClientTls>,
    /// Serve gRPC server reflection.
    pub reflection: bool,
    /// Seal gossip with these keys; `None`: plaintext gossip.
    pub gossip_keyring: Option<std::sync::Arc<crate::discovery::Keyring>>,
    /// `--plugin-signers`: the keys a new cluster's `plugin_signers`
    /// setting starts with (afterwards the cluster's setting decides, on
    /// every node alike), and the keys `--plugin` must be signed by.
    pub plugin_signers: Option<TrustedSigners>,
    /// `--protocol-level`: the level a new cluster starts at (afterwards
    /// `clusterhost config set protocol_level` raises it).
    pub protocol_level: u32,
}

impl NodeConfig {
    /// Refuse settings that contradict each other, naming the flags.
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap && self.bootstrap_expect > 0 {
            return Err("--bootstrap and --bootstrap-expect exclude each other".to_string());
        }
        if self.bootstrap_expect as u64 > VOTERS_MAX {
            return Err(format!(
                "--bootstrap-expect {} is above {VOTERS_MAX}, the most voters a cluster has",
                self.bootstrap_expect
            ));
        }
        if self.bootstrap && !self.join.is_empty() {
            return Err(
                "--bootstrap creates a new cluster; --join joins an existing one: use one"
                    .to_string(),
            );
        }
        if self.policy.min_voters > self.policy.voter_cap {
            return Err(format!(
                "--min-voters {} is above --voter-cap {}: dead voters could never be removed",
                self.policy.min_voters, self.policy.voter_cap
            ));
        }
        if self.plugin_limits.fuel_per_bulk_call < self.plugin_limits.fuel_per_call {
            return Err(format!(
                "--plugin-bulk-fuel {} is below --plugin-fuel {}: a snapshot or restore may \
                 need at least what one apply does",
                self.plugin_limits.fuel_per_bulk_call, self.plugin_limits.fuel_per_call
            ));
        }
        if let Some(advertise) = &self.advertise
            && advertise_is_unspecified(advertise)
        {
            return Err(format!(
                "--advertise {advertise} is not an address others can reach; name this node's address"
            ));
        }
        match self.gossip_advertise {
            // Peers would be told to gossip to 0.0.0.0 (themselves) or to
            // port 0 (nowhere).
            Some(advertise) if !is_reachable(advertise) => {
                return Err(format!(
                    "--gossip-advertise {advertise} is not an address other nodes can reach; \
                     name this node's gossip address and port"
                ));
            }
            Some(_) => {}
            None if self.gossip_listen.ip().is_unspecified() => {
                return Err(format!(
                    "--gossip {} listens on every address; give --gossip-advertise with the one \
                     other nodes should use",
                    self.gossip_listen
                ));
            }
            None if self.gossip_listen.port() == 0 => {
                return Err(format!(
                    "--gossip {} has no fixed port; other nodes could not reach it: name one",
                    self.gossip_listen
                ));
            }
            None => {}
        }
        Ok(())
    }
}

impl Default for NodeConfig {
    /// What `clusterhost run` does without flags.
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            plugin: None,
            bootstrap: false,
            bootstrap_expect: 0,
            join: Vec::new(),
            gossip_listen: default_addr(GOSSIP_DEFAULT),
            gossip_advertise: None,
            cluster_name: CLUSTER_NAME_DEFAULT.to_string(),
            policy: Policy {
                voter_cap: VOTER_CAP_DEFAULT as usize,
                stabilization: STABILIZATION_DEFAULT_TIME,
                dead_grace: DEAD_GRACE_DEFAULT_TIME,
                min_voters: 1,
                caught_up_lag_entries: PROMOTION_LAG_ENTRIES_MAX,
            },
            advertise: None,
            node_id: None,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            log_entries_kept: LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT,
            plugin_limits: PluginLimits::default(),
            flagged_settings: Vec::new(),
            metrics_listen: None,
            tls: None,
            reflection: false,
            gossip_keyring: None,
            plugin_signers: None,
            protocol_level: PROTOCOL_LEVEL_SUPPORTED,
        }
    }
}

/// Whether `addr` (host:port) names no particular host (0.0.0.0 or ::) or
/// port 0. A host name is left to whoever dials it.
fn advertise_is_unspecified(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|addr| !is_reachable(addr))
}

/// A valid configuration for unit tests.
#[cfg(test)]
pub(crate) fn example() -> NodeConfig {
    NodeConfig {
        data_dir: PathBuf::from("d"),
        cluster_name: "c".to_string(),
        ..NodeConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(example().validate(), Ok(()));
    }

    #[test]
    fn contradictions_are_refused_with_the_flags_named() {
        let mut both = example();
        both.bootstrap = true;
        both.bootstrap_expect = 3;
        assert!(
            both.validate()
                .expect_err("refused")
                .contains("--bootstrap-expect")
        );

        let mut too_many = example();
        too_many.bootstrap_expect = VOTERS_MAX as usize + 1;
        assert!(
            too_many
                .validate()
                .expect_err("refused")
                .contains("--bootstrap-expect")
        );

        let mut joining = example();
        joining.bootstrap = true;
        joining.join = vec!["a:1".to_string()];
        assert!(joining.validate().expect_err("refused").contains("--join"));

        let mut voters = example();
        voters.policy.min_voters = 7;
        assert!(
            voters
                .validate()
                .expect_err("refused")
                .contains("--min-voters 7")
        );

        let mut fuel = example();
        fuel.plugin_limits.fuel_per_bulk_call = 10;
        assert!(
            fuel.validate()
                .expect_err("refused")
                .contains("--plugin-bulk-fuel")
        );

        for unreachable in ["0.0.0.0:7400", "[::]:7400", "10.0.0.1:0"] {
            let mut advertise = example();
            advertise.advertise = Some(unreachable.to_string());
            assert!(
                advertise
                    .validate()
                    .expect_err("refused")
                    .contains("--advertise")
            );
        }

        let mut gossip = example();
        gossip.gossip_listen = "0.0.0.0:7401".parse().expect("address");
        assert!(
            gossip
                .validate()
                .expect_err("refused")
                .contains("--gossip-advertise")
        );

        let mut no_port = example();
        no_port.gossip_listen = "127.0.0.1:0".parse().expect("address");
        assert!(
            no_port
                .validate()
                .expect_err("refused")
                .contains("--gossip")
        );
    }

    // Goal: a gossip address others cannot send to is refused by name,
    // whether it listens on every address or has no port; a real one passes.
    #[test]
    fn an_unreachable_gossip_advertise_address_is_refused() {
        for unreachable in ["0.0.0.0:7401", "[::]:7401", "10.0.0.1:0"] {
            let mut config = example();
            config.gossip_listen = "0.0.0.0:7401".parse().expect("address");
            config.gossip_advertise = Some(unreachable.parse().expect("address"));
            let refusal = config.validate().expect_err(unreachable);
            assert!(
                refusal.contains(&format!("--gossip-advertise {unreachable}")),
                "{refusal}"
            );
        }
        let mut config = example();
        config.gossip_listen = "0.0.0.0:7401".parse().expect("address");
        config.gossip_advertise = Some("10.0.0.1:7401".parse().expect("address"));
        assert_eq!(config.validate(), Ok(()));
    }
}
