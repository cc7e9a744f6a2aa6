//! Client commands, in a session or not, from any node: checked, then
//! proposed on the leader — here, or forwarded in the next batch to it
//! ([`super::forwarder`]) once the cluster's protocol level allows batches
//! ([`super::forward_gate`]), each alone before — and, on the leader, a
//! forwarded batch answered command by command as each completes. A [`Writer`] is cheap to clone,
//! so each command of a batch runs on its own, as a call of its own would.

use std::pin::Pin;
use std::sync::Arc;

use clusterhost_client::ClientError;
use clusterhost_client::proto;
use futures::stream::{FuturesUnordered, Stream};
use tokio::sync::watch;
use tonic::Status;

use super::batch_answers::{Bounds, bounded};
use super::convert;
use super::forward_codec::{Forwarded, encode_answer};
use super::forward_gate::level_takes_batches;
use super::forwarder::Forwarder;
use super::leader::{Attempt, Leader, LeaderRunner, forwarded};
use crate::consensus::{Consensus, MachineStatus, ProposeError};
use crate::limits::COMMAND_BYTES_MAX;
use crate::plugin::PluginHandle;

/// The answers to a forwarded batch, streamed as each command completes.
pub type AnswerStream =
    Pin<Box<dyn Stream<Item = Result<proto::ForwardedAnswer, Status>> + Send + 'static>>;

/// What proposing client commands works with.
#[derive(Clone)]
pub struct Writer {
    /// This node's id.
    pub node_id: u64,
    /// Raft.
    pub consensus: Consensus,
    /// Leader-only requests from any node.
    pub leader: Arc<LeaderRunner>,
    /// Forwarded commands, batched per leader.
    pub forwarder: Arc<Forwarder>,
    /// The plugin, for the state's size.
    pub plugin: PluginHandle,
    /// What the state machine publishes.
    pub machine: watch::Receiver<MachineStatus>,
}

impl Writer {
    /// A command, in a session or not: checked, then proposed on the leader
    /// (here, or forwarded with the same stamp).
    pub async fn apply_command(
        &self,
        forwarded_here: bool,
        command: Vec<u8>,
        session: Option<proto::SessionStamp>,
    ) -> Result<proto::ApplyResponse, Status> {
        let stamp = session.map(convert::session_stamp);
        // Borrowed, not cloned: the status carries the plugin history and
        // checkpoints, and this runs for every command (twice when forwarded).
        let command_bytes_max = self.machine.borrow().settings.command_bytes_max;
        let command_bytes_max = usize::try_from(command_bytes_max).unwrap_or(COMMAND_BYTES_MAX);
        super::cluster_service::check_size("command", command.len(), command_bytes_max)?;
        self.check_serving(&self.machine.borrow())?;
        let here = || async {
            self.check_quota().map_err(Attempt::Final)?;
            let answered = match stamp {
                None => self
                    .consensus
                    .propose_command(command.clone())
                    .await
                    .map(|(index, outcome)| Ok(convert::apply_response(index, outcome))),
                Some(stamp) => self
                    .consensus
                    .propose_session_command(stamp, command.clone())
                    .await
                    .map(convert::command_answer),
            };
            match answered {
                Ok(answer) => answer.map_err(Attempt::Final),
                Err(ProposeError::NotLeader) => Err(Attempt::NotLeader),
                Err(error) => Err(Attempt::Final(convert::propose_status(error))),
            }
        };
        let there = |leader: Leader| {
            let command = proto::ForwardedCommand {
                command: command.clone(),
                session,
            };
            async move {
                let reply = self.forward(&leader, command).await;
                // The hint that lets the client skip this hop next time.
                reply.map(|response| proto::ApplyResponse {
                    leader_addr: leader.rpc_addr,
                    ..response
                })
            }
        };
        self.leader.run(forwarded_here, here, there).await
    }

    /// `command` on `leader`: in a batch when the cluster's level allows
    /// them, alone otherwise (or when it goes in no batch).
    async fn forward(
        &self,
        leader: &Leader,
        command: proto::ForwardedCommand,
    ) -> Result<proto::ApplyResponse, ClientError> {
        let level = self.machine.borrow().settings.protocol_level;
        if level_takes_batches(level) {
            let sent = self
                .forwarder
                .forward(&leader.rpc_addr, leader.client.clone(), command.clone())
                .await;
            if let Forwarded::Answer(answer) = sent {
                return answer;
            }
        }
        let mut client = leader.client.clone();
        let proto::ForwardedCommand { command, session } = command;
        let reply = match session {
            None => {
                let request = forwarded(proto::ApplyRequest { command });
                client.apply(request).await
            }
            Some(stamp) => {
                let request = forwarded(proto::SessionApplyRequest {
                    command,
                    session: Some(stamp),
                });
                client.apply_in_session(request).await
            }
        };
        Ok(reply?.into_inner())
    }

    /// On the leader: each command of a forwarded batch proposed as if it
    /// had come alone, all at once; the answers in the order they complete,
    /// within [`Bounds::LIMITS`].
    pub fn answer_batch(&self, commands: Vec<proto::ForwardedCommand>) -> AnswerStream {
        let answers: FuturesUnordered<_> = commands
            .into_iter()
            .enumerate()
            .map(|(position, forwarded_command)| {
                let writer = self.clone();
                async move {
                    let proto::ForwardedCommand { command, session } = forwarded_command;
                    let outcome = writer.apply_command(true, command, session).await;
                    encode_answer(position, outcome)
                }
            })
            .collect();
        bounded(answers, Bounds::LIMITS)
    }

    /// Refuse clients when this replica must not serve them: it is
    /// corrupt, or the replicas have no majority.
    pub fn check_serving(&self, machine: &MachineStatus) -> Result<(), Status> {
        match machine.alarms.refusal(self.node_id) {
            Some(why) => Err(Status::failed_precondition(why)),
            None => Ok(()),
        }
    }

    /// Refuse writes once the state has reached its quota (as etcd's
    /// `--quota-backend-bytes`): reads are still served, and raising the
    /// quota (`config set state_quota_bytes`) lets writes in again.
    fn check_quota(&self) -> Result<(), Status> {
        let quota = self.machine.borrow().settings.state_quota_bytes;
        match self.plugin.state_size_bytes() {
            Some(size) if size >= quota => Err(Status::resource_exhausted(format!(
                "the state is {size} bytes, at its quota of {quota} (state_quota_bytes): the cluster \
                 takes no writes until the quota is raised (clusterhost config set state_quota_bytes N); \
                 reads are still served"
            ))),
            _ => Ok(()),
        }
    }
}
