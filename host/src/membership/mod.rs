//! Cluster membership driven by gossip: pure decisions in [`reconcile`] and
//! [`bootstrap`], the loop that observes and acts in [`autopilot`], operator
//! operations in [`operations`] and [`leave`], this node's own state in
//! [`local`], and the bound on gossip members outside Raft in [`unknown`].

pub mod autopilot;
pub mod bootstrap;
pub mod divergence;
pub mod leave;
pub mod local;
pub mod operations;
pub mod reconcile;
pub mod unknown;

pub use local::LocalMember;
