//! Cluster membership driven by gossip: pure decisions in [`reconcile`], the
//! loop that observes and acts in [`autopilot`].

pub mod autopilot;
pub mod operations;
pub mod reconcile;
