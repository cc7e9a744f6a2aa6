//! Cluster membership driven by gossip: pure decisions in [`reconcile`] and
//! [`bootstrap`] and [`identity`], the loop that observes and acts in
//! [`autopilot`], operator operations in [`operations`] and [`leave`], this
//! node's own state in [`local`], the gossip entries believed in
//! [`verified`] (the names verified kept on disk by [`bindings_file`]), and the bound on gossip members outside Raft in [`unknown`].

pub mod autopilot;
pub mod bindings_file;
pub mod bootstrap;
pub mod divergence;
pub mod identity;
pub mod leave;
pub mod local;
pub mod operations;
pub mod reconcile;
pub mod unknown;
pub mod verified;

pub use local::LocalMember;
