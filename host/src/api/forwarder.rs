//! Commands a follower forwards to the leader, sent in batches on the
//! cached connection to it: one `ForwardBatch` call carries every command
//! that arrived while earlier batches were in flight ([`super::batch_lane`]
//! decides), and each command's answer is delivered as soon as it streams
//! back. Whether batches may go at all is the caller's to decide (the
//! cluster's protocol level, [`super::forward_gate`]); a leader that still
//! refuses the method gets each command in a call of its own for a while,
//! and a batch the leader refuses whole before running it goes again as
//! single calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use clusterhost_client::ClientError;
use clusterhost_client::proto::{self, cluster_client::ClusterClient};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tracing::Instrument;

use super::batch_lane::{Lane, Queued, Submitted};
use super::forward_codec::{BatchEnd, Forwarded, Refusal, decode_answer, refusal, unanswered};
use super::forward_gate::Refusals;
use super::leader::{forwarded, outcome_unknown};
use crate::limits::FORWARD_BATCH_TIMEOUT;

/// A forwarded command waiting for its batch.
struct Pending {
    command: proto::ForwardedCommand,
    reply: oneshot::Sender<Forwarded>,
}

impl Queued for Pending {
    fn command_bytes(&self) -> usize {
        self.command.command.len()
    }

    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// The lane to one leader address and the connection its batches use.
struct LaneState {
    lane: Lane<Pending>,
    client: ClusterClient<Channel>,
}

/// Batches forwarded commands per leader address.
pub struct Forwarder {
    /// This node's id, for the senders' tracing span.
    node_id: u64,
    lanes: Mutex<HashMap<String, LaneState>>,
    /// Leaders that refused the method lately: commands go alone.
    refusals: Mutex<Refusals>,
}

impl Forwarder {
    /// The forwarder of node `node_id`.
    pub fn new(node_id: u64) -> Self {
        Self {
            node_id,
            lanes: Mutex::default(),
            refusals: Mutex::default(),
        }
    }

    /// Forward `command` to the leader at `rpc_addr` over `client`, in the
    /// next batch to it.
    pub async fn forward(
        self: &Arc<Self>,
        rpc_addr: &str,
        client: ClusterClient<Channel>,
        command: proto::ForwardedCommand,
    ) -> Forwarded {
        if !lock(&self.refusals).takes_batches(rpc_addr, Instant::now()) {
            return Forwarded::SendAlone;
        }
        let (reply, answer) = oneshot::channel();
        let submitted = {
            let mut lanes = lock(&self.lanes);
            let state = lanes
                .entry(rpc_addr.to_string())
                .or_insert_with(|| LaneState {
                    lane: Lane::default(),
                    client: client.clone(),
                });
            // The runner's connection is the current one (it replaces a
            // connection it found broken).
            state.client = client;
            state.lane.submit(Pending { command, reply })
        };
        match submitted {
            Submitted::StartSender => {
                // Its own span: the sender serves every client whose command
                // it carries, not the one that happened to start it.
                let span = tracing::info_span!(
                    parent: None,
                    "forward_batches",
                    node_id = self.node_id,
                    leader = %rpc_addr
                );
                let forwarder = self.clone();
                let rpc_addr = rpc_addr.to_string();
                tokio::spawn(forwarder.send_batches(rpc_addr).instrument(span));
            }
            Submitted::Queued => {}
            Submitted::Full(_) => return Forwarded::SendAlone,
        }
        answer.await.unwrap_or_else(|_| {
            // The sender went away with the command: it may have been sent.
            Forwarded::Answer(Err(ClientError::Status(outcome_unknown(
                "the batch carrying it was dropped",
            ))))
        })
    }

    /// Send batches to `rpc_addr` until its queue is empty.
    async fn send_batches(self: Arc<Self>, rpc_addr: String) {
        loop {
            let next = {
                let mut lanes = lock(&self.lanes);
                let Some(state) = lanes.get_mut(&rpc_addr) else {
                    return;
                };
                let next = state
                    .lane
                    .next_batch()
                    .map(|batch| (batch, state.client.clone()));
                if next.is_none() && state.lane.in_flight() == 0 && state.lane.queued() == 0 {
                    // Leaders come and go: keep lanes to current ones only.
                    lanes.remove(&rpc_addr);
                }
                next
            };
            let Some((batch, client)) = next else {
                return;
            };
            if send(client, batch).await {
                lock(&self.refusals).record(&rpc_addr, Instant::now());
            }
        }
    }
}

/// Send one batch and deliver every command's answer. True when the leader
/// turned out to take no batches (its commands are then sent alone, as
/// are those of a batch it refused whole).
async fn send(mut client: ClusterClient<Channel>, batch: Vec<Pending>) -> bool {
    let (commands, mut replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.command, Some(pending.reply)))
        .unzip();
    let request = forwarded(proto::ForwardBatchRequest { commands });
    // Headers come back at once on a stream, so the channel's own timeout
    // does not bound the answers: this does, as it bounds a single call.
    let receiving = receive(&mut client, request, &mut replies);
    let end = tokio::time::timeout(FORWARD_BATCH_TIMEOUT, receiving)
        .await
        .unwrap_or(BatchEnd::TimedOut);
    let answered_any = replies.iter().any(Option::is_none);
    let refused = refusal(&end, answered_any);
    if let Some(refused) = &refused {
        tracing::info!(
            ?refused,
            ?end,
            "the leader refused a batch: its commands go alone"
        );
    }
    for reply in replies.into_iter().flatten() {
        let _ = reply.send(unanswered(&end, answered_any));
    }
    refused == Some(Refusal::NoBatches)
}

/// Make the call and deliver each answer as it streams in; how it ended.
async fn receive(
    client: &mut ClusterClient<Channel>,
    request: tonic::Request<proto::ForwardBatchRequest>,
    replies: &mut [Option<oneshot::Sender<Forwarded>>],
) -> BatchEnd {
    let mut answers = match client.forward_batch(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return BatchEnd::Refused(status),
    };
    loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                let (position, result) = decode_answer(answer);
                // A position out of range or answered twice is ignored;
                // its command stays unanswered.
                if let Some(reply) = replies.get_mut(position).and_then(Option::take) {
                    let _ = reply.send(Forwarded::Answer(result));
                }
            }
            Ok(None) => return BatchEnd::Finished,
            Err(status) => return BatchEnd::Failed(status),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
