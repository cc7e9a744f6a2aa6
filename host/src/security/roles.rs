//! The roles a certificate carries and the methods each may call: one pure
//! decision, [`authorize`], that the server's authorization layer asks for
//! every call.
//!
//! | role   | may call                                                        |
//! |--------|-----------------------------------------------------------------|
//! | reader | Query, Status, Members, PluginHistory, GetSettings, reflection  |
//! | writer | reader's, and Apply                                             |
//! | admin  | writer's, and Snapshot, RemoveMember, TransferLeader, Leave,    |
//! |        | DeployPlugin, RollbackPlugin, SetSetting                        |
//! | node   | everything: the Raft service, and forwarding (the header)       |

use std::fmt;

/// Prefix of the SAN URI naming a certificate's role
/// (`clusterhost:role:admin`).
pub const ROLE_URI_PREFIX: &str = "clusterhost:role:";

/// Prefix of the SAN URI naming a node certificate's node
/// (`clusterhost:node:n1`).
pub const NODE_URI_PREFIX: &str = "clusterhost:node:";

/// What a certificate allows its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read state and cluster information.
    Reader,
    /// Also propose commands.
    Writer,
    /// Also change the cluster: plugins, members, leadership, settings.
    Admin,
    /// A cluster node: Raft messages and forwarded requests.
    Node,
}

impl Role {
    /// The role's name, as in certificates and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
            Role::Node => "node",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Reader, Role::Writer, Role::Admin, Role::Node]
            .into_iter()
            .find(|role| role.name() == name)
    }

    /// Whether this role may do what `required` may. Roles are ordered
    /// reader < writer < admin < node: a node forwards every kind of
    /// client request, so it needs them all.
    fn covers(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Why a call was refused. Every refusal happens before the call reaches a
/// handler, so it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer's certificate names no clusterhost role.
    #[error(
        "permission denied: the client certificate carries no clusterhost role ({ROLE_URI_PREFIX}<role>)"
    )]
    NoRole,
    /// The method needs a role the certificate does not have.
    #[error(
        "permission denied: {method} requires role {required}; this certificate has role {role}"
    )]
    RoleTooLow {
        /// The gRPC method path.
        method: String,
        /// The least role that may call it.
        required: Role,
        /// The caller's role.
        role: Role,
    },
    /// A request marked as forwarded by a node, from something else.
    #[error(
        "permission denied: only role node may send forwarded requests; this certificate has role {role}"
    )]
    ForwardedByNonNode {
        /// The caller's role.
        role: Role,
    },
    /// A method this server does not know how to authorize.
    #[error("permission denied: unknown method {method}")]
    UnknownMethod {
        /// The gRPC method path.
        method: String,
    },
}

/// The least role that may call `method` (a gRPC path such as
/// `/clusterhost.v1.Cluster/Apply`), or `None` for a method not known here
/// (refused: new methods must be added to this table on purpose).
pub fn required_role(method: &str) -> Option<Role> {
    let (service, name) = method.strip_prefix('/')?.split_once('/')?;
    match service {
        "clusterhost.raft.v1.Raft" => Some(Role::Node),
        "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection" => {
            Some(Role::Reader)
        }
        "clusterhost.v1.Cluster" => match name {
            "Query" | "Status" | "Members" | "PluginHistory" | "GetSettings" => Some(Role::Reader),
            "Apply" | "ApplyInSession" | "OpenSession" => Some(Role::Writer),
            // Commands nodes forward to the leader in batches.
            "ForwardBatch" => Some(Role::Node),
            // A backup carries the whole state, the plugin and its history.
            "Snapshot" | "Backup" | "RemoveMember" | "TransferLeader" | "Leave"
            | "DeployPlugin" | "RollbackPlugin" | "SetSetting" => Some(Role::Admin),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a caller with `role` (`None`: its certificate names none) may
/// call `method`, with the forwarded-request header present or not.
pub fn authorize(method: &str, role: Option<Role>, forwarded: bool) -> Result<(), Refusal> {
    let role = role.ok_or(Refusal::NoRole)?;
    if forwarded && role != Role::Node {
        return Err(Refusal::ForwardedByNonNode { role });
    }
    let required = required_role(method).ok_or_else(|| Refusal::UnknownMethod {
        method: method.to_string(),
    })?;
    if !role.covers(required) {
        return Err(Refusal::RoleTooLow {
            method: method.to_string(),
            required,
            role,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every method of the public API has a role: a new RPC without one
    /// would be refused to everyone once TLS is on.
    #[test]
    fn every_public_method_has_a_role() {
        let proto = include_str!("../../../client/proto/clusterhost.proto");
        let methods: Vec<&str> = proto
            .lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        assert!(methods.len() > 10, "{methods:?}");
        for method in methods {
            let path = format!("/clusterhost.v1.Cluster/{method}");
            assert!(required_role(&path).is_some(), "{path} has no role");
        }
    }

    use super::*;

    const APPLY: &str = "/clusterhost.v1.Cluster/Apply";
    const QUERY: &str = "/clusterhost.v1.Cluster/Query";
    const DEPLOY: &str = "/clusterhost.v1.Cluster/DeployPlugin";
    const RAFT: &str = "/clusterhost.raft.v1.Raft/Call";
    const SNAPSHOT: &str = "/clusterhost.raft.v1.Raft/InstallSnapshot";

    #[test]
    fn each_role_reaches_exactly_its_methods() {
        let reader = Some(Role::Reader);
        assert_eq!(authorize(QUERY, reader, false), Ok(()));
        assert_eq!(
            authorize("/clusterhost.v1.Cluster/Status", reader, false),
            Ok(())
        );
        assert!(matches!(
            authorize(APPLY, reader, false),
            Err(Refusal::RoleTooLow {
                required: Role::Writer,
                ..
            })
        ));
        let writer = Some(Role::Writer);
        assert_eq!(authorize(APPLY, writer, false), Ok(()));
        for admin_only in [
            "DeployPlugin",
            "Leave",
            "RemoveMember",
            "SetSetting",
            "Snapshot",
        ] {
            let method = format!("/clusterhost.v1.Cluster/{admin_only}");
            assert!(
                matches!(
                    authorize(&method, writer, false),
                    Err(Refusal::RoleTooLow {
                        required: Role::Admin,
                        ..
                    })
                ),
                "{method}"
            );
            assert_eq!(authorize(&method, Some(Role::Admin), false), Ok(()));
        }
    }

    #[test]
    fn only_nodes_reach_raft() {
        for method in [RAFT, SNAPSHOT] {
            assert!(matches!(
                authorize(method, Some(Role::Admin), false),
                Err(Refusal::RoleTooLow {
                    required: Role::Node,
                    ..
                })
            ));
            assert_eq!(authorize(method, Some(Role::Node), false), Ok(()));
        }
    }

    #[test]
    fn only_nodes_forward() {
        assert_eq!(
            authorize(APPLY, Some(Role::Admin), true),
            Err(Refusal::ForwardedByNonNode { role: Role::Admin })
        );
        assert_eq!(authorize(APPLY, Some(Role::Node), true), Ok(()));
        assert_eq!(authorize(DEPLOY, Some(Role::Node), true), Ok(()));
    }

    #[test]
    fn no_role_and_unknown_methods_are_refused() {
        assert_eq!(authorize(QUERY, None, false), Err(Refusal::NoRole));
        for method in [
            "/clusterhost.v1.Cluster/Nuke",
            "/other.Service/Query",
            "nonsense",
            "",
        ] {
            assert!(
                matches!(
                    authorize(method, Some(Role::Node), false),
                    Err(Refusal::UnknownMethod { .. })
                ),
                "{method}"
            );
        }
    }

    #[test]
    fn refusals_name_the_required_role() {
        let refusal = authorize(DEPLOY, Some(Role::Writer), false).expect_err("refused");
        let text = refusal.to_string();
        assert!(text.starts_with("permission denied"), "{text}");
        assert!(text.contains("requires role admin"), "{text}");
    }

    #[test]
    fn role_names_round_trip() {
        for role in [Role::Reader, Role::Writer, Role::Admin, Role::Node] {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("root"), None);
    }
}
