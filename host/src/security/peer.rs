//! What the certificate a peer presented says about it: its role and, for
//! a node, its name. Parsing failures and missing or conflicting role
//! entries all mean "no role", which [`super::authorize`] refuses.

use x509_parser::extensions::GeneralName;

use super::roles::{NODE_URI_PREFIX, ROLE_URI_PREFIX, Role};

/// Who a certificate says its holder is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The role, when the certificate names exactly one.
    pub role: Option<Role>,
    /// The node name (`clusterhost:node:<name>`), on node certificates.
    pub node_name: Option<String>,
}

/// Read the clusterhost SAN URIs of a DER certificate.
pub fn identity_of(der: &[u8]) -> PeerIdentity {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
        return PeerIdentity::default();
    };
    let Ok(Some(names)) = certificate.subject_alternative_name() else {
        return PeerIdentity::default();
    };
    let uris: Vec<&str> = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    identity_from_uris(&uris)
}

/// The identity named by SAN URIs. Two different roles (or node names) in
/// one certificate name none: a certificate must not be ambiguous.
pub fn identity_from_uris(uris: &[&str]) -> PeerIdentity {
    let roles: Vec<Option<Role>> = uris
        .iter()
        .filter_map(|uri| uri.strip_prefix(ROLE_URI_PREFIX))
        .map(Role::from_name)
        .collect();
    let names: Vec<&str> = uris
        .iter()
        .filter_map(|uri| uri.strip_prefix(NODE_URI_PREFIX))
        .collect();
    let role = match roles.as_slice() {
        [Some(role)] => Some(*role),
        _ => None,
    };
    let node_name = match names.as_slice() {
        [name] => Some((*name).to_string()),
        _ => None,
    };
    PeerIdentity { role, node_name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_role_is_read_and_ambiguity_names_none() {
        let node = identity_from_uris(&["clusterhost:role:node", "clusterhost:node:n1"]);
        assert_eq!(node.role, Some(Role::Node));
        assert_eq!(node.node_name.as_deref(), Some("n1"));
        let two = identity_from_uris(&["clusterhost:role:reader", "clusterhost:role:admin"]);
        assert_eq!(two.role, None);
        let unknown = identity_from_uris(&["clusterhost:role:root"]);
        assert_eq!(unknown.role, None);
        assert_eq!(identity_from_uris(&["https://example.test"]).role, None);
    }

    #[test]
    fn garbage_certificates_name_nothing() {
        assert_eq!(identity_of(b"not a certificate"), PeerIdentity::default());
    }
}
