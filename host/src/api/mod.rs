//! The public gRPC API a node serves (the `Cluster` service of
//! `clusterhost-client`'s proto). tonic is used here and in
//! `consensus::transport` (the internal Raft service), nowhere else.
//!
//! - [`cluster_service`]: the handlers: decode, call, map errors.
//! - [`backup`]: streaming a backup from the leader.
//! - [`routing`]: where a leader-only request goes, decided purely.
//! - [`leader`]: the loop that follows those decisions, and forwarding.
//! - [`writes`]: client commands, proposed here or forwarded; a forwarded
//!   batch answered on the leader, within [`batch_answers`]' bounds.
//! - [`forwarder`]: forwarded commands sent in batches per leader;
//!   [`forward_gate`] decides whether batches may go, [`batch_lane`] when
//!   and which, [`forward_codec`] maps each command's answer both ways.
//! - [`report`]: status, members and health as pure functions.
//! - [`settings_change`]: a settings request checked before it is proposed.
//! - [`convert`]: node results to API messages and status codes.
//! - [`grpc_metrics`]: requests counted and timed per method and code.
//! - [`server`]: serving the port.
//! - [`authorize`]: the layer that checks every call against the caller's
//!   certificate role (`security::authorize`).

pub mod authorize;
pub mod backup;
pub mod batch_answers;
pub mod batch_lane;
pub mod cluster_service;
pub mod convert;
pub mod cut_connections;
pub mod forward_codec;
pub mod forward_gate;
pub mod forwarder;
pub mod grpc_metrics;
pub mod leader;
pub mod report;
pub mod routing;
pub mod server;
pub mod settings_change;
pub mod writes;

pub use cluster_service::ClusterService;
