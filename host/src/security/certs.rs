//! Making certificates for a cluster (`clusterhost certs`): a CA, node
//! certificates (server and client use, role `node`) and client
//! certificates carrying a role. Meant for development and tests; real
//! deployments may bring their own CA as long as certificates carry the
//! same SAN URIs (see [`super::roles`]).
//!
//! Files in the directory: `ca.pem`, `ca-key.pem`, `<name>.pem`,
//! `<name>-key.pem`. Keys are written 0600 and never overwritten.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::roles::{NODE_URI_PREFIX, ROLE_URI_PREFIX, Role};
use crate::limits::CERT_NAME_BYTES_MAX;

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A name that cannot go into a certificate or a file name.
    #[error(
        "`{0}` is not a valid name: use 1 to {CERT_NAME_BYTES_MAX} letters, digits, `.`, `_` or `-`"
    )]
    BadName(String),
    /// A node certificate with no address to be reached at.
    #[error("a node certificate needs at least one --ip or --dns")]
    NoAddress,
    /// Generating or signing failed.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// A new self-signed CA.
pub fn new_ca() -> Result<Pem, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "clusterhost CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A node certificate signed by `ca`: valid for TLS servers at `ips` and
/// `dns` names and as a client, with role `node` and node name `name`.
pub fn node_cert(ca: &Pem, name: &str, ips: &[IpAddr], dns: &[String]) -> Result<Pem, CertError> {
    check_name(name)?;
    if ips.is_empty() && dns.is_empty() {
        return Err(CertError::NoAddress);
    }
    let mut params = CertificateParams::new(dns.to_vec())?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf(ca, name, Role::Node, params)
}

/// A client certificate signed by `ca` with `role`.
pub fn client_cert(ca: &Pem, name: &str, role: Role) -> Result<Pem, CertError> {
    check_name(name)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf(ca, name, role, params)
}

/// Finish `params` as an end-entity certificate for `name` with `role`,
/// signed by `ca`.
fn leaf(ca: &Pem, name: &str, role: Role, mut params: CertificateParams) -> Result<Pem, CertError> {
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params
        .subject_alt_names
        .push(SanType::URI(format!("{ROLE_URI_PREFIX}{role}").try_into()?));
    if role == Role::Node {
        params
            .subject_alt_names
            .push(SanType::URI(format!("{NODE_URI_PREFIX}{name}").try_into()?));
    }
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn check_name(name: &str) -> Result<(), CertError> {
    let valid = !name.is_empty()
        && name.len() <= CERT_NAME_BYTES_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(CertError::BadName(name.to_string()))
    }
}

/// Create `dir` with a new CA in it; refuses if a CA is already there.
pub fn init_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::File {
        path: dir.to_path_buf(),
        source,
    })?;
    write_pair(dir, "ca", &new_ca()?)
}

/// Read the CA in `dir`.
pub fn read_ca(dir: &Path) -> Result<Pem, CertError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|source| CertError::File { path, source })
    };
    Ok(Pem {
        cert: read("ca.pem")?,
        key: read("ca-key.pem")?,
    })
}

/// Write `<name>.pem` and `<name>-key.pem` into `dir` (the key 0600),
/// never replacing existing files. Returns the certificate's path.
pub fn write_pair(dir: &Path, name: &str, pem: &Pem) -> Result<(), CertError> {
    write_new(&dir.join(format!("{name}-key.pem")), &pem.key, 0o600)?;
    write_new(&dir.join(format!("{name}.pem")), &pem.cert, 0o644)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_error = |source| CertError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(file_error)?;
    file.write_all(contents.as_bytes()).map_err(file_error)?;
    file.sync_all().map_err(file_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::peer::identity_of;

    fn der(pem: &str) -> Vec<u8> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        block.contents
    }

    #[test]
    fn certificates_carry_their_role() {
        let ca = new_ca().expect("ca");
        let node = node_cert(&ca, "n1", &["127.0.0.1".parse().expect("ip")], &[]).expect("node");
        let identity = identity_of(&der(&node.cert));
        assert_eq!(identity.role, Some(Role::Node));
        assert_eq!(identity.node_name.as_deref(), Some("n1"));
        let reader = client_cert(&ca, "ops", Role::Reader).expect("client");
        let identity = identity_of(&der(&reader.cert));
        assert_eq!(identity.role, Some(Role::Reader));
        assert_eq!(identity.node_name, None);
    }

    #[test]
    fn bad_names_and_addressless_nodes_are_refused() {
        let ca = new_ca().expect("ca");
        assert!(matches!(
            client_cert(&ca, "../etc", Role::Admin),
            Err(CertError::BadName(_))
        ));
        assert!(matches!(
            client_cert(&ca, "", Role::Admin),
            Err(CertError::BadName(_))
        ));
        assert!(matches!(
            node_cert(&ca, "n1", &[], &[]),
            Err(CertError::NoAddress)
        ));
    }

    #[test]
    fn keys_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        init_dir(dir.path()).expect("init");
        let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            init_dir(dir.path()).is_err(),
            "a second init must not replace the CA"
        );
        read_ca(dir.path()).expect("the CA reads back");
    }
}
