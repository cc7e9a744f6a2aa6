//! A minimal etcd v3 client for the benchmark's side-by-side runs: put, get
//! (linearizable or serializable) and a member's status, over the subset of
//! etcd's gRPC API in `proto/etcd_kv.proto`, on the same tonic stack the
//! clusterhost clients use.

use clusterhost_client::{ClientError, connect_channel_with};
use tonic::transport::Channel;

/// The generated etcd types and clients.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("etcdserverpb");
}

use proto::kv_client::KvClient;
use proto::maintenance_client::MaintenanceClient;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No connection could be made.
    #[error("cannot reach etcd at {endpoint}: {reason}")]
    Unreachable {
        /// The member's client address.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The member answered with an error.
    #[error("etcd: {0}")]
    Status(#[from] tonic::Status),
}

/// What a member says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    /// Its own member id.
    pub member_id: u64,
    /// The member it believes leads (0: none).
    pub leader_id: u64,
    /// Its Raft term.
    pub term: u64,
}

impl MemberStatus {
    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader_id != 0 && self.leader_id == self.member_id
    }
}

/// A connection to one etcd member (`host:port` of its client URL).
#[derive(Clone)]
pub struct EtcdClient {
    kv: KvClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
}

impl EtcdClient {
    /// Connect to the member at `endpoint`.
    pub async fn connect(endpoint: &str) -> Result<Self, EtcdError> {
        let channel = connect_channel_with(endpoint, None)
            .await
            .map_err(|error| match error {
                ClientError::Unreachable { endpoint, reason } => {
                    EtcdError::Unreachable { endpoint, reason }
                }
                ClientError::Status(status) => EtcdError::Status(status),
            })?;
        Ok(Self {
            kv: KvClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel),
        })
    }

    /// Put `value` at `key`; acknowledged once committed by a quorum.
    pub async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), EtcdError> {
        self.kv.put(proto::PutRequest { key, value }).await?;
        Ok(())
    }

    /// The value at `key`, if any; `stale`: served by this member alone
    /// (etcd's serializable read), otherwise linearizable.
    pub async fn get(&mut self, key: Vec<u8>, stale: bool) -> Result<Option<Vec<u8>>, EtcdError> {
        let response = self
            .kv
            .range(proto::RangeRequest {
                key,
                serializable: stale,
            })
            .await?
            .into_inner();
        Ok(response.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// This member's id, the leader it knows and its term.
    pub async fn status(&mut self) -> Result<MemberStatus, EtcdError> {
        let response = self
            .maintenance
            .status(proto::StatusRequest {})
            .await?
            .into_inner();
        Ok(MemberStatus {
            member_id: response.header.map_or(0, |header| header.member_id),
            leader_id: response.leader,
            term: response.raft_term,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a member knows it leads only when it names itself, and a member
    // that knows no leader (id 0) is never taken for one.
    #[test]
    fn a_member_leads_only_when_it_names_itself() {
        let status = |member_id, leader_id| MemberStatus {
            member_id,
            leader_id,
            term: 2,
        };
        assert!(status(7, 7).is_leader());
        assert!(!status(7, 9).is_leader());
        assert!(!status(0, 0).is_leader());
    }
}
