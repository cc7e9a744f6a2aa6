//! Running a request on the leader from any node: the one loop that follows
//! [`super::routing::next_step`] — serve here, forward, or wait for a leader
//! — and the cached connections forwarded requests travel on.
//!
//! A forwarded request is marked, and a node that is not the leader refuses
//! a marked request instead of forwarding it again; only "not the leader,
//! nothing proposed" and "could not connect, nothing sent" are retried, so a
//! command is never applied twice by a retry here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use clusterhost_client::proto::cluster_client::ClusterClient;
use clusterhost_client::{ClientError, connect_channel_with};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::routing::{Outcome, Refusal, Route, Step, next_step, route};
use crate::consensus::{Consensus, NodeId};
use crate::limits::{LEADER_RETRY_INTERVAL, REQUEST_TIMEOUT};

/// Metadata key marking a request a node forwarded.
pub const FORWARDED_HEADER: &str = "x-clusterhost-forwarded";
/// Metadata key on a refusal meaning "I am not the leader; nothing was
/// proposed": the only failure after which a forward is safely retried.
pub const NOT_LEADER_HEADER: &str = "x-clusterhost-not-leader";

/// How one attempt ended when it produced no answer.
#[derive(Debug)]
pub enum Attempt {
    /// Not the leader (any more); nothing was proposed: retry.
    NotLeader,
    /// The answer for the client: nothing more to try.
    Final(Status),
}

impl From<Status> for Attempt {
    fn from(status: Status) -> Self {
        Attempt::Final(status)
    }
}

/// The leader a forwarded attempt goes to.
pub struct Leader {
    /// Its id.
    pub leader_id: NodeId,
    /// Its gRPC address.
    pub rpc_addr: String,
    /// A connection to its `Cluster` service (requests marked forwarded
    /// through [`forwarded`]).
    pub client: ClusterClient<Channel>,
}

/// Runs leader-only requests from any node.
pub struct LeaderRunner {
    consensus: Consensus,
    connections: Mutex<HashMap<String, ClusterClient<Channel>>>,
}

impl LeaderRunner {
    /// Requests for `consensus`'s leader.
    pub fn new(consensus: Consensus) -> Self {
        Self {
            consensus,
            connections: Mutex::default(),
        }
    }

    /// Run a request on the leader: `here` when this node leads, `there`
    /// with a connection to the leader otherwise, waiting for a leader up to
    /// the request timeout. `forwarded`: the request came from another node.
    pub async fn run<T, Here, HereFuture, There, ThereFuture>(
        &self,
        forwarded: bool,
        here: Here,
        there: There,
    ) -> Result<T, Status>
    where
        Here: Fn() -> HereFuture,
        HereFuture: Future<Output = Result<T, Attempt>>,
        There: Fn(Leader) -> ThereFuture,
        ThereFuture: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut outcome = Outcome::Fresh;
        loop {
            match next_step(&self.route(), &outcome, forwarded) {
                Step::ServeHere => match here().await {
                    Ok(answer) => return Ok(answer),
                    Err(Attempt::NotLeader) => outcome = Outcome::NotLeader,
                    Err(Attempt::Final(status)) => return Err(status),
                },
                Step::Forward {
                    leader_id,
                    rpc_addr,
                } => {
                    let Some(client) = self.client(&rpc_addr).await else {
                        outcome = Outcome::Unreachable(rpc_addr);
                        continue;
                    };
                    let leader = Leader {
                        leader_id,
                        rpc_addr: rpc_addr.clone(),
                        client,
                    };
                    match classify(there(leader).await) {
                        Ok(answer) => return Ok(answer),
                        Err(ForwardFailure::NotLeader) => outcome = Outcome::NotLeader,
                        Err(ForwardFailure::Unreachable) => {
                            outcome = Outcome::Unreachable(rpc_addr)
                        }
                        Err(ForwardFailure::Final(status)) => {
                            if status.code() == Code::Unavailable {
                                self.forget(&rpc_addr);
                            }
                            return Err(status);
                        }
                    }
                }
                Step::Wait { forget } => {
                    if let Some(rpc_addr) = forget {
                        self.forget(&rpc_addr);
                    }
                    self.wait_for_leader_change(deadline).await?;
                    outcome = Outcome::Fresh;
                }
                Step::Refuse(Refusal::Stopping) => {
                    return Err(Status::unavailable("this node is shutting down"));
                }
                Step::Refuse(Refusal::ForwardedToNonLeader) => {
                    return Err(not_leader("this node is no longer the leader"));
                }
            }
        }
    }

    /// Where a leader-only request goes now.
    pub fn route(&self) -> Route {
        route(&self.consensus.view(), |node_id| {
            self.consensus.addresses().get(node_id)
        })
    }

    /// Wait (bounded by `deadline`) for the leader to change or appear;
    /// fail with `unavailable` naming the reason once the deadline passed.
    async fn wait_for_leader_change(&self, deadline: Instant) -> Result<(), Status> {
        let known = self.consensus.view().leader;
        let now = Instant::now();
        if now >= deadline {
            return Err(Status::unavailable(match known {
                None => "no leader: the cluster is electing one or has lost its quorum".to_string(),
                Some(leader) => {
                    format!("the leader (node {leader}) did not accept the request in time")
                }
            }));
        }
        let wait = LEADER_RETRY_INTERVAL.min(deadline - now);
        self.consensus.wait_leader_change(known, wait).await;
        Ok(())
    }

    /// A connection to the leader at `rpc_addr`, made on first use.
    async fn client(&self, rpc_addr: &str) -> Option<ClusterClient<Channel>> {
        if let Some(client) = self.lock().get(rpc_addr) {
            return Some(client.clone());
        }
        let channel = connect_channel_with(rpc_addr, self.consensus.peer_tls())
            .await
            .ok()?;
        let client = ClusterClient::new(channel)
            .max_decoding_message_size(crate::limits::CLIENT_GRPC_MESSAGE_BYTES_MAX * 4)
            .max_encoding_message_size(crate::limits::CLIENT_GRPC_MESSAGE_BYTES_MAX * 4);
        self.lock().insert(rpc_addr.to_string(), client.clone());
        Some(client)
    }

    fn forget(&self, rpc_addr: &str) {
        self.lock().remove(rpc_addr);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClusterClient<Channel>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a forwarded attempt ended when it produced no answer.
enum ForwardFailure {
    NotLeader,
    Unreachable,
    Final(Status),
}

fn classify<T>(answer: Result<T, ClientError>) -> Result<T, ForwardFailure> {
    answer.map_err(|error| match error {
        ClientError::Status(status) if is_not_leader(&status) => ForwardFailure::NotLeader,
        ClientError::Status(status) if is_connect_failure(&status) => ForwardFailure::Unreachable,
        // The request may have reached the leader and been applied there:
        // say so, rather than pass on a transport error that reads as
        // "surely not applied".
        ClientError::Status(status) if is_broken_mid_call(&status) => {
            ForwardFailure::Final(outcome_unknown(&format!(
                "the connection to the leader broke during the call: {}",
                status.message()
            )))
        }
        ClientError::Status(status) => ForwardFailure::Final(status),
        ClientError::Unreachable { .. } => ForwardFailure::Unreachable,
    })
}

/// `message` as a request marked forwarded.
pub fn forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED_HEADER, MetadataValue::from_static("1"));
    request
}

/// Whether a request arrived forwarded from another node.
pub fn was_forwarded(metadata: &MetadataMap) -> bool {
    metadata.contains_key(FORWARDED_HEADER)
}

/// A "not the leader" refusal that the origin may retry.
pub fn not_leader(message: impl Into<String>) -> Status {
    let mut status = Status::unavailable(message);
    status
        .metadata_mut()
        .insert(NOT_LEADER_HEADER, MetadataValue::from_static("1"));
    status
}

/// Whether a status is a clean "not the leader, nothing proposed".
fn is_not_leader(status: &Status) -> bool {
    status.metadata().contains_key(NOT_LEADER_HEADER)
}

/// Whether a status was made by this side's transport (it carries the
/// transport error as its source) after the request may have been sent,
/// rather than answered by the leader.
fn is_broken_mid_call(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        && matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal | Code::Aborted
        )
}

/// The answer when a command may or may not have been applied: its own
/// status (`unknown`, with the outcome header), never `unavailable`, which
/// says nothing was done.
pub fn outcome_unknown(reason: &str) -> Status {
    let mut status = Status::unknown(format!(
        "the outcome is unknown: the command may or may not have been applied ({reason}); \
         read the state to find out before sending it again, or retry in a session"
    ));
    status.metadata_mut().insert(
        clusterhost_client::headers::OUTCOME,
        MetadataValue::from_static(clusterhost_client::headers::OUTCOME_UNKNOWN),
    );
    status
}

/// Whether a call failed to connect at all, so nothing reached the server
/// and a retry cannot apply a command twice.
fn is_connect_failure(status: &Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let mut text = status.message().to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        text.push_str(&error.to_string());
        source = error.source();
    }
    // hyper's connector words every failure before a request is written so.
    text.contains("connect error") || text.contains("Connection refused")
}
