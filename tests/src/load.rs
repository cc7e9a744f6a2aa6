//! [`WriteStream`]: concurrent writers that keep putting unique keys through
//! chosen endpoints until stopped, recording what was acknowledged (and
//! when) and what was merely attempted. Failed writes are not retried with
//! the same key: a failed write may or may not have committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clusterhost_client::proto::apply_response;
use clusterhost_client::{Client, ClientError};

use crate::invariants::Acknowledged;
use crate::kv;

/// Pause after a failed write or connect before the next attempt, so a dead
/// endpoint does not spin a core.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Writers running against one or more endpoints.
pub struct WriteStream {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
    acknowledged_at: Arc<Mutex<Vec<(Instant, Instant)>>>,
    errors: Arc<Mutex<BTreeMap<String, usize>>>,
    tasks: Vec<tokio::task::JoinHandle<Acknowledged>>,
}

impl WriteStream {
    /// Start one writer per entry of `endpoints` (repeat an endpoint for
    /// several writers on it), writing keys under `prefix`. A writer keeps
    /// going through failures (reconnecting) until [`Self::finish`].
    pub fn start(endpoints: &[String], prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Acknowledged::new()));
        let acknowledged_at = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = endpoints
            .iter()
            .enumerate()
            .map(|(writer, endpoint)| {
                tokio::spawn(write_until_stopped(
                    endpoint.clone(),
                    format!("{prefix}w{writer:02}-"),
                    stop.clone(),
                    acknowledged.clone(),
                    acknowledged_at.clone(),
                    errors.clone(),
                ))
            })
            .collect();
        Self {
            stop,
            acknowledged,
            acknowledged_at,
            errors,
            tasks,
        }
    }

    /// Failed writes so far, by kind (status code, or `unreachable`).
    pub fn errors(&self) -> BTreeMap<String, usize> {
        self.errors.lock().expect("errors lock").clone()
    }

    /// The writes acknowledged so far.
    pub fn acknowledged_so_far(&self) -> Acknowledged {
        self.acknowledged.lock().expect("acknowledged lock").clone()
    }

    /// Writes acknowledged so far.
    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().expect("acknowledged lock").len()
    }

    /// When the first write *sent* after `instant` was acknowledged (a
    /// write sent before may be acknowledged after it: it was committed
    /// earlier and its response was still on the way).
    pub fn first_acknowledged_after(&self, instant: Instant) -> Option<Instant> {
        self.acknowledged_at
            .lock()
            .expect("acknowledged_at lock")
            .iter()
            .filter(|(sent, _)| *sent > instant)
            .map(|(_, acknowledged)| *acknowledged)
            .min()
    }

    /// Stop every writer and return (acknowledged, attempted).
    pub async fn finish(self) -> (Acknowledged, Acknowledged) {
        self.stop.store(true, Ordering::Relaxed);
        let mut attempted = Acknowledged::new();
        for task in self.tasks {
            attempted.extend(task.await.expect("writer task"));
        }
        let acknowledged = self.acknowledged.lock().expect("acknowledged lock").clone();
        (acknowledged, attempted)
    }
}

/// One writer: put `{key_prefix}{sequence}` until `stop`; returns every
/// key it attempted with its value.
async fn write_until_stopped(
    endpoint: String,
    key_prefix: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
    acknowledged_at: Arc<Mutex<Vec<(Instant, Instant)>>>,
    errors: Arc<Mutex<BTreeMap<String, usize>>>,
) -> Acknowledged {
    let mut attempted = Acknowledged::new();
    let mut client: Option<Client> = None;
    let mut sequence: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let connected = match client.as_mut() {
            Some(connected) => connected,
            None => match Client::connect(&endpoint).await {
                Ok(connected) => client.insert(connected),
                Err(error) => {
                    *errors
                        .lock()
                        .expect("errors lock")
                        .entry(error_kind(&error))
                        .or_default() += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        let key = format!("{key_prefix}{sequence:06}");
        let value = format!("v{sequence}@{endpoint}");
        sequence += 1;
        attempted.insert(key.clone(), value.clone());
        let sent = Instant::now();
        match connected.apply(kv::put(&key, &value)).await {
            Ok(response) if matches!(response.result, Some(apply_response::Result::Ok(_))) => {
                acknowledged_at
                    .lock()
                    .expect("acknowledged_at lock")
                    .push((sent, Instant::now()));
                acknowledged
                    .lock()
                    .expect("acknowledged lock")
                    .insert(key, value);
            }
            Ok(response) => panic!("put {key} not accepted: {response:?}"),
            Err(error) => {
                let kind = error_kind(&error);
                if !["unreachable", "Unavailable"].contains(&kind.as_str()) {
                    // Rare and telling: say which write and why.
                    eprintln!("put {key} through {endpoint} failed: {error}");
                }
                *errors.lock().expect("errors lock").entry(kind).or_default() += 1;
                client = None;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    attempted
}

/// How hyper words a request it dropped, unsent, because its connection
/// closed (tonic reports it as `Cancelled`).
const DROPPED_UNSENT: &str = "operation was canceled";

/// A failed write's kind, for counting: the status code, or `unreachable`
/// (no connection, or a request dropped unsent when the node it was queued
/// for closed the connection, as a stopping node does).
fn error_kind(error: &ClientError) -> String {
    match error {
        ClientError::Unreachable { .. } => "unreachable".to_string(),
        ClientError::Status(status)
            if status.code() == tonic::Code::Cancelled && status.message() == DROPPED_UNSENT =>
        {
            "unreachable".to_string()
        }
        ClientError::Status(status) => format!("{:?}", status.code()),
    }
}
