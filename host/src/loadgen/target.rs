//! What a bench client talks to: a clusterhost cluster through the client
//! library, or an etcd cluster through its v3 API, with the same operations
//! on the same keys and values, so the two can be compared row by row.

use std::time::Duration;

use clusterhost_client::{Client, Cluster, Consistency, Options};

use super::etcd::EtcdClient;

/// The system under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// clusterhost with the kv plugin.
    #[default]
    Clusterhost,
    /// etcd (v3 API).
    Etcd,
}

/// One client bound to one endpoint.
pub enum Target {
    /// A clusterhost client (one attempt per operation).
    Clusterhost(Cluster),
    /// An etcd client.
    Etcd(Box<EtcdClient>),
}

impl Target {
    /// A client of `system` at `endpoint`; clusterhost clients use `options`.
    pub async fn connect(
        system: System,
        endpoint: &str,
        options: &Options,
    ) -> anyhow::Result<Self> {
        Ok(match system {
            System::Clusterhost => {
                Target::Clusterhost(Cluster::connect_with([endpoint], options.clone()).await?)
            }
            System::Etcd => Target::Etcd(Box::new(EtcdClient::connect(endpoint).await?)),
        })
    }

    /// One round trip that proves the endpoint answers.
    pub async fn probe(&mut self) -> anyhow::Result<()> {
        match self {
            Target::Clusterhost(cluster) => {
                cluster.status().await?;
            }
            Target::Etcd(etcd) => {
                etcd.status().await?;
            }
        }
        Ok(())
    }

    /// Write `value` at key number `key`; `Ok` once acknowledged.
    pub async fn write(&mut self, key: u64, value: &str) -> anyhow::Result<()> {
        match self {
            Target::Clusterhost(cluster) => {
                cluster.apply(put_command(key, value)).await?;
            }
            Target::Etcd(etcd) => {
                etcd.put(key_bytes(key), value.as_bytes().to_vec()).await?;
            }
        }
        Ok(())
    }

    /// Read key number `key`, linearizable unless `stale`.
    pub async fn read(&mut self, key: u64, stale: bool) -> anyhow::Result<()> {
        match self {
            Target::Clusterhost(cluster) => {
                let consistency = if stale {
                    Consistency::Stale
                } else {
                    Consistency::Linearizable
                };
                cluster.query(get_request(key), consistency).await?;
            }
            Target::Etcd(etcd) => {
                etcd.get(key_bytes(key), stale).await?;
            }
        }
        Ok(())
    }
}

/// One write attempt on a fresh connection to `endpoint`, given at most
/// `timeout`: `Ok` once acknowledged. Used to find the first write a cluster
/// acknowledges after losing its leader.
pub async fn write_once(
    system: System,
    endpoint: &str,
    key: u64,
    value: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let attempt = async {
        match system {
            System::Clusterhost => {
                let mut node = Client::connect(endpoint).await?;
                let response = node.apply(put_command(key, value)).await?;
                anyhow::ensure!(
                    matches!(
                        response.result,
                        Some(clusterhost_client::proto::apply_response::Result::Ok(_))
                    ),
                    "the write was not applied: {response:?}"
                );
            }
            System::Etcd => {
                let mut etcd = EtcdClient::connect(endpoint).await?;
                etcd.put(key_bytes(key), value.as_bytes().to_vec()).await?;
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
}

/// The key both systems use for key number `key`.
fn key_name(key: u64) -> String {
    format!("k{key:08}")
}

fn key_bytes(key: u64) -> Vec<u8> {
    key_name(key).into_bytes()
}

/// The kv plugin's put of `value` at key number `key`.
pub fn put_command(key: u64, value: &str) -> Vec<u8> {
    format!(
        r#"{{"put":{{"key":"{}","value":"{value}"}}}}"#,
        key_name(key)
    )
    .into_bytes()
}

fn get_request(key: u64) -> Vec<u8> {
    format!(r#"{{"get":{{"key":"{}"}}}}"#, key_name(key)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: both systems see the same key names, and the kv plugin's put
    // carries exactly the key and value an etcd put would.
    #[test]
    fn both_systems_write_the_same_key_and_value() {
        assert_eq!(key_bytes(42), b"k00000042");
        let command: serde_json::Value = serde_json::from_slice(&put_command(42, "vv")).unwrap();
        assert_eq!(command["put"]["key"], "k00000042");
        assert_eq!(command["put"]["value"], "vv");
    }
}
