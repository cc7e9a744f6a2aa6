//! Flags and subcommands for mutual TLS: the client side's certificate
//! flags (as etcdctl names them), and `clusterhost certs`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use clusterhost_client::{ClientTls, TlsFileError};

use crate::security::Role;

/// `--cacert --cert --key`, on every client command.
#[derive(Debug, Clone, Args)]
pub struct ClientTlsArgs {
    /// CA certificate (PEM) the node's certificate must chain to; with
    /// --cert and --key, connects over mutual TLS.
    #[arg(long, env = "CLUSTERHOST_CACERT", requires_all = ["cert", "key"])]
    pub cacert: Option<PathBuf>,
    /// This client's certificate (PEM), carrying its role.
    #[arg(long, env = "CLUSTERHOST_CERT", requires_all = ["cacert", "key"])]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "CLUSTERHOST_KEY", requires_all = ["cacert", "cert"])]
    pub key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The files, read; `None` when no TLS flag was given.
    pub fn load(&self) -> Result<Option<ClientTls>, TlsFileError> {
        match (&self.cacert, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => ClientTls::from_files(ca, cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// `--tls-ca --tls-cert --tls-key` of `clusterhost run`.
#[derive(Debug, Clone, Args)]
pub struct NodeTlsArgs {
    /// CA certificate (PEM) that clients' and other nodes' certificates must
    /// chain to. With --tls-cert and --tls-key: mutual TLS on the gRPC port,
    /// roles checked on every call.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM; `clusterhost certs node`), presented to
    /// clients and to the nodes it dials.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
}

impl NodeTlsArgs {
    /// The files, read; `None` when no TLS flag was given.
    pub fn load(&self) -> Result<Option<ClientTls>, TlsFileError> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => ClientTls::from_files(ca, cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// Client roles, as `--role` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Query, Status, Members, plugin list, config get.
    Reader,
    /// Also apply.
    Writer,
    /// Also deploy, rollback, member remove, leader transfer, leave,
    /// snapshot, config set.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Reader => Role::Reader,
            RoleArg::Writer => Role::Writer,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// `clusterhost certs ...`: certificates for development and tests.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA (`ca.pem`, `ca-key.pem`) in --dir.
    Init {
        /// Directory for the CA and the certificates it signs.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
    },
    /// A node certificate (`<name>.pem`, `<name>-key.pem`): server and
    /// client use, role node.
    Node {
        /// The CA's directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The node's name (also the file name).
        #[arg(long)]
        name: String,
        /// An IP address clients and nodes reach it at; repeat for several.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// A DNS name clients and nodes reach it at; repeat for several.
        #[arg(long)]
        dns: Vec<String>,
    },
    /// A client certificate with a role.
    Client {
        /// The CA's directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The client's name (also the file name).
        #[arg(long)]
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

/// `clusterhost gossip ...`.
#[derive(Debug, Subcommand)]
pub enum GossipCommand {
    /// Print a new random gossip key (a line for --gossip-key-file).
    Keygen,
}
