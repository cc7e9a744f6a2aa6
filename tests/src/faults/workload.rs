//! The clients of a fault run: each sticks to one node (as a user on that
//! side of a partition would), does linearizable reads, puts and
//! compare-and-sets on a few keys, and records every operation with its
//! invocation and completion time and what it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clusterhost_client::Client;
use clusterhost_client::proto::{Consistency, apply_response, query_response};
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::linearizability::{Call, Invocation, Recorder};

/// Pause after a failed operation, so a client facing a dead node does not
/// spin.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(50);

/// What the clients do.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadConfig {
    /// Keys the clients work on (few, so operations contend).
    pub keys: usize,
    /// Clients per node.
    pub clients_per_node: usize,
    /// How long one operation may take before its outcome is unknown.
    pub operation_timeout: Duration,
}

/// Clients running until [`Workload::stop`].
pub struct Workload {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Start the clients, `config.clients_per_node` on each endpoint,
    /// recording into `recorder`.
    pub fn start(endpoints: &[String], config: WorkloadConfig, recorder: &Recorder) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = endpoints
            .iter()
            .flat_map(|endpoint| std::iter::repeat_n(endpoint, config.clients_per_node))
            .enumerate()
            .map(|(id, endpoint)| {
                let client = ClientLoop {
                    id: id as u64,
                    client: lazy_client(endpoint, config.operation_timeout),
                    recorder: recorder.clone(),
                    keys: config.keys,
                    random: (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                    sequence: 0,
                };
                tokio::spawn(client.run(stop.clone()))
            })
            .collect();
        Self { stop, clients }
    }

    /// Stop the clients once their current operations end.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            let _ = client.await;
        }
    }
}

/// A client that never fails to exist: it connects on first use and again
/// after failures, and gives every request `timeout`.
fn lazy_client(endpoint: &str, timeout: Duration) -> Client {
    let channel = Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("a valid endpoint")
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    Client::from_channel(channel)
}

struct ClientLoop {
    id: u64,
    client: Client,
    recorder: Recorder,
    keys: usize,
    random: u64,
    sequence: u64,
}

impl ClientLoop {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            let call = self.next_call();
            let invocation = self.recorder.invoke(self.id, call.clone());
            if !self.perform(&call, invocation).await {
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            }
        }
    }

    /// Half reads, a third puts, the rest compare-and-sets, on a random key.
    fn next_call(&mut self) -> Call {
        let choice = self.next_random() % 6;
        let key = format!("k{}", self.next_random() % self.keys as u64);
        self.sequence += 1;
        let value = format!("c{}-{}", self.id, self.sequence);
        match choice {
            0..=2 => Call::Get { key },
            3 | 4 => Call::Put { key, value },
            _ => {
                // Expect a value this client may have written, or absence.
                let expected = (self.sequence > 1 && !self.next_random().is_multiple_of(4))
                    .then(|| format!("c{}-{}", self.id, self.sequence - 1));
                Call::Cas {
                    key,
                    expected,
                    value,
                }
            }
        }
    }

    /// Run `call` and record its outcome; whether it succeeded.
    async fn perform(&mut self, call: &Call, invocation: Invocation) -> bool {
        let parse = |bytes: Vec<u8>| {
            serde_json::from_slice(&bytes)
                .ok()
                .and_then(|json| call.parse_response(&json))
        };
        if call.is_query() {
            let answer = self
                .client
                .query(call.request(), Consistency::Linearizable)
                .await;
            // A read that failed had no effect: it is simply left out.
            return match answer.map(|response| response.result) {
                Ok(Some(query_response::Result::Ok(bytes))) => match parse(bytes) {
                    Some(output) => {
                        invocation.ok(output);
                        true
                    }
                    None => {
                        invocation.failed();
                        false
                    }
                },
                _ => {
                    invocation.failed();
                    false
                }
            };
        }
        match self
            .client
            .apply(call.request())
            .await
            .map(|response| response.result)
        {
            Ok(Some(apply_response::Result::Ok(bytes))) => match parse(bytes) {
                Some(output) => {
                    invocation.ok(output);
                    true
                }
                None => {
                    invocation.unknown();
                    false
                }
            },
            // The plugin refused it: committed, but without effect.
            Ok(_) => {
                invocation.failed();
                false
            }
            // A write that timed out or lost its connection may still
            // commit: its outcome is unknown.
            Err(_) => {
                invocation.unknown();
                false
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: cheap, seeded per client, reproducible per run.
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }
}
