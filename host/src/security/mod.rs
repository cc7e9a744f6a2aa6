//! Who may do what: mutual TLS material, the roles certificates carry, and
//! the one decision that lets a call through or refuses it.
//!
//! - [`roles`]: the roles and which gRPC methods each may call (pure).
//! - [`certs`]: making a CA and node and client certificates
//!   (`clusterhost certs`).
//! - [`peer`]: reading the role out of the certificate a peer presented.
//! - [`presented`]: dialing a node to read the certificate it presents.
//! - [`exposure`]: refusing to serve a real network without TLS (pure).
//! - [`rustls_config`]: rustls client and server configurations from the
//!   node's TLS files (the ops listener's, and dialing a peer's).
//! - [`signing`]: ed25519 signatures carried inside plugins (pure).

pub mod certs;
pub mod exposure;
pub mod peer;
pub mod presented;
pub mod roles;
pub mod rustls_config;
pub mod signing;

pub use roles::{Refusal, Role, authorize};
