//! Who this node is: its flags checked against what its data dir remembers,
//! decided purely (a new node id comes from the caller).

use super::config::NodeConfig;
use crate::consensus::NodeId;
use crate::plugin::PluginDigest;
use crate::storage::NodeIdentity;
use crate::storage::data_dir::LAYOUT_VERSION;

/// Check the flags against the data dir's identity (`existing`; `None`: a
/// new data dir) and decide this node's identity. `new_node_id` is called
/// only for a new node without `--node-id`.
pub fn decide_identity(
    config: &NodeConfig,
    existing: Option<&NodeIdentity>,
    plugin_digest: Option<PluginDigest>,
    new_node_id: impl FnOnce() -> NodeId,
) -> Result<NodeIdentity, String> {
    let plugin_hex = plugin_digest.map(|digest| digest.to_hex());
    let Some(identity) = existing else {
        if config.bootstrap && plugin_hex.is_none() {
            return Err(
                "--bootstrap needs --plugin: a new cluster is defined by its plugin".to_string(),
            );
        }
        if config.bootstrap_expect > 0 && plugin_hex.is_none() {
            return Err(
                "--bootstrap-expect needs --plugin: whichever node leads the new cluster deploys it"
                    .to_string(),
            );
        }
        if !config.bootstrap && config.bootstrap_expect == 0 && plugin_hex.is_some() {
            return Err(
                "--plugin is only used to create a cluster (--bootstrap or --bootstrap-expect); \
                 nodes that join get the plugin from the cluster"
                    .to_string(),
            );
        }
        return Ok(NodeIdentity {
            layout_version: LAYOUT_VERSION,
            node_id: config.node_id.unwrap_or_else(new_node_id),
            bootstrapped: false,
            plugin_digest: plugin_hex,
        });
    };
    if let Some(requested) = config.node_id
        && requested != identity.node_id
    {
        return Err(format!(
            "--node-id {requested} does not match this data dir, which belongs to node {}",
            identity.node_id
        ));
    }
    if config.bootstrap && identity.bootstrapped {
        return Err(format!(
            "this data dir already bootstrapped a cluster (node {}); start it without --bootstrap to resume",
            identity.node_id
        ));
    }
    if let (Some(requested), Some(recorded)) = (&plugin_hex, &identity.plugin_digest)
        && requested != recorded
    {
        return Err(format!(
            "this data dir belongs to a cluster running plugin {}, not {}; start it without --plugin \
             (use a new --data-dir for a new cluster)",
            short(recorded),
            short(requested)
        ));
    }
    Ok(NodeIdentity {
        plugin_digest: identity.plugin_digest.clone().or(plugin_hex),
        ..identity.clone()
    })
}

/// The first 12 hex digits of a digest, for messages.
fn short(digest_hex: &str) -> &str {
    digest_hex.get(..12).unwrap_or(digest_hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::config::example as config;

    fn digest(byte: u8) -> PluginDigest {
        PluginDigest([byte; 32])
    }

    #[test]
    fn a_new_node_gets_the_id_it_asked_for_or_a_fresh_one() {
        let fresh = decide_identity(&config(), None, None, || 42).expect("a joining node");
        assert_eq!(fresh.node_id, 42);
        assert!(!fresh.bootstrapped);
        let mut named = config();
        named.node_id = Some(7);
        let identity = decide_identity(&named, None, None, || unreachable!("not asked"))
            .expect("a named node");
        assert_eq!(identity.node_id, 7);
    }

    #[test]
    fn a_new_cluster_needs_a_plugin_and_a_joining_node_takes_none() {
        let mut bootstrap = config();
        bootstrap.bootstrap = true;
        let error = decide_identity(&bootstrap, None, None, || 1).expect_err("no plugin");
        assert!(error.contains("--bootstrap needs --plugin"), "{error}");
        let error = decide_identity(&config(), None, Some(digest(1)), || 1).expect_err("joining");
        assert!(error.contains("--plugin is only used"), "{error}");
        let identity = decide_identity(&bootstrap, None, Some(digest(1)), || 1)
            .expect("bootstrap with plugin");
        assert_eq!(identity.plugin_digest, Some(digest(1).to_hex()));
    }

    #[test]
    fn a_used_data_dir_keeps_its_id_cluster_and_plugin() {
        let existing = NodeIdentity {
            layout_version: LAYOUT_VERSION,
            node_id: 9,
            bootstrapped: true,
            plugin_digest: Some(digest(1).to_hex()),
        };
        let mut other_id = config();
        other_id.node_id = Some(3);
        let error = decide_identity(&other_id, Some(&existing), None, || 1).expect_err("id");
        assert!(error.contains("--node-id 3 does not match"), "{error}");
        let mut again = config();
        again.bootstrap = true;
        let error = decide_identity(&again, Some(&existing), None, || 1).expect_err("twice");
        assert!(error.contains("already bootstrapped"), "{error}");
        let error = decide_identity(&config(), Some(&existing), Some(digest(2)), || 1)
            .expect_err("another plugin");
        assert!(
            error.contains("belongs to a cluster running plugin"),
            "{error}"
        );
        assert_eq!(
            decide_identity(&config(), Some(&existing), None, || 1),
            Ok(existing.clone())
        );
    }
}
