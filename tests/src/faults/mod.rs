//! The fault suite: a cluster of real `clusterhost` processes, each on its
//! own test host (a network namespace), under concurrent clients, with
//! faults injected and healed in turn (see [`nemesis`]). Afterwards the
//! history the clients saw must be linearizable, every replica must hold
//! the same state, and the cluster must take a write again soon after the
//! last heal.
//!
//! A run alternates a healthy period and a faulty one `cycles` times, heals
//! everything, measures the time to the first acknowledged write, lets the
//! clients go on for a healthy period, stops them, and checks. A failing
//! run keeps its history and node logs under `target/faults/<run>/`.

pub mod nemesis;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterhost_client::Client;
use clusterhost_client::proto::{Consistency, apply_response};
use serde::Serialize;

pub use nemesis::Nemesis;
pub use workload::{Workload, WorkloadConfig};

use crate::linearizability::{self, CheckResult, Operation, Outcome, Recorder};
use crate::netns::TestNetwork;
use crate::paths::{kv_plugin, workspace_root};
use crate::{NodeOptions, TestCluster, assert_replicas_agree, wait_for};

/// How long the cluster may take to form, or to agree on a leader.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a probe write may take while the cluster recovers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the cluster may take to take writes again after the heal
/// before the run fails (the goal is far less; the time is reported).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// The client id final reads are recorded under.
const FINAL_READER: u64 = 1_000_000;

/// What one run does.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// Nodes in the cluster (each on its own host).
    pub nodes: usize,
    /// The fault injected in every faulty period.
    pub nemesis: Nemesis,
    /// Healthy + faulty periods.
    pub cycles: usize,
    /// How long each healthy period lasts.
    pub healthy: Duration,
    /// How long each fault lasts.
    pub faulty: Duration,
    /// The clients.
    pub workload: WorkloadConfig,
    /// Picks nodes for the faults.
    pub seed: u64,
}

impl RunConfig {
    /// A run sized for CI: two short fault cycles.
    pub fn quick(nodes: usize, nemesis: Nemesis) -> Self {
        Self {
            nodes,
            nemesis,
            cycles: 2,
            healthy: Duration::from_secs(2),
            faulty: Duration::from_secs(3),
            workload: WorkloadConfig {
                keys: nodes + 1,
                clients_per_node: 1,
                operation_timeout: Duration::from_secs(3),
            },
            seed: nodes as u64 * 7919 + nemesis as u64,
        }
    }

    fn name(&self) -> String {
        format!("{}-{}-nodes", self.nemesis.name(), self.nodes)
    }
}

/// What a run saw.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Nemesis and cluster size.
    pub name: String,
    /// Operations the clients invoked.
    pub operations: usize,
    /// Of which acknowledged.
    pub ok: usize,
    /// Of which surely without effect.
    pub failed: usize,
    /// Of which the outcome is unknown (timed out, connection lost).
    pub unknown: usize,
    /// Faults injected.
    pub faults: usize,
    /// Operations that could not be linearized (the run fails on any).
    pub violations: usize,
    /// From the last heal to the first acknowledged write.
    pub recovery_ms: u64,
    /// The whole run.
    pub elapsed_ms: u64,
}

/// Run `config` and check what it saw; panics on a violation, a replica
/// that differs, or a cluster that does not recover.
pub async fn run(config: RunConfig) -> RunReport {
    let started = Instant::now();
    let network = Arc::new(TestNetwork::create(config.nodes).expect("create the test hosts"));
    let mut cluster = form(config.nodes, network.clone()).await;
    let recorder = Recorder::new(Instant::now());
    let _keep = KeepOnFailure::new(config.name(), &cluster, &recorder);
    let endpoints: Vec<String> = (0..config.nodes)
        .map(|n| cluster.node(n).endpoint())
        .collect();
    let workload = Workload::start(&endpoints, config.workload, &recorder);
    let mut random = config.seed;
    for _ in 0..config.cycles {
        tokio::time::sleep(config.healthy).await;
        let leader = wait_for("a leader", FORMATION_TIMEOUT, || cluster.leader_index()).await;
        random = random.wrapping_mul(6364136223846793005).wrapping_add(1);
        let fault = nemesis::inject(config.nemesis, &mut cluster, &network, leader, random >> 16);
        tokio::time::sleep(config.faulty).await;
        nemesis::heal(fault, &mut cluster, &network).await;
    }
    let recovery = first_write_after_heal(&endpoints).await;
    tokio::time::sleep(config.healthy).await;
    workload.stop().await;
    settle_and_compare(&cluster).await;
    read_final_state(&cluster, &recorder, config.workload.keys).await;
    let history = recorder.history();
    let report = RunReport {
        name: config.name(),
        operations: history.len(),
        ok: count(&history, |outcome| matches!(outcome, Outcome::Ok(_))),
        failed: count(&history, |outcome| matches!(outcome, Outcome::Failed)),
        unknown: count(&history, |outcome| matches!(outcome, Outcome::Unknown)),
        faults: config.cycles,
        violations: 0,
        recovery_ms: recovery.as_millis() as u64,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    check(&config.name(), &history);
    record_summary(&report);
    report
}

/// Node 0 bootstraps, the others join; every node knows every other's
/// gossip address, so any of them can restart alone.
async fn form(nodes: usize, network: Arc<TestNetwork>) -> TestCluster {
    let mut cluster = TestCluster::on_network(network);
    let options = |id: u64| NodeOptions {
        node_id: Some(id),
        stabilization: Some(Duration::from_secs(1)),
        ..NodeOptions::default()
    };
    cluster.bootstrap_node(&kv_plugin(), options(1)).await;
    for n in 1..nodes {
        cluster.start_joining(0, options(n as u64 + 1)).await;
    }
    cluster.wait_for_voters(nodes, FORMATION_TIMEOUT).await;
    for n in 0..nodes {
        let others: Vec<usize> = (0..nodes).filter(|other| *other != n).collect();
        cluster.set_join(n, &others);
    }
    cluster
}

/// Write through each node in turn until one write is acknowledged; how
/// long that took.
async fn first_write_after_heal(endpoints: &[String]) -> Duration {
    let healed = Instant::now();
    let mut attempt = 0usize;
    loop {
        let endpoint = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        let write = async {
            let mut client = Client::connect(endpoint).await.ok()?;
            let put = br#"{"put":{"key":"probe","value":"after-heal"}}"#.to_vec();
            let response = client.apply(put).await.ok()?;
            matches!(response.result, Some(apply_response::Result::Ok(_))).then_some(())
        };
        if let Ok(Some(())) = tokio::time::timeout(PROBE_TIMEOUT, write).await {
            return healed.elapsed();
        }
        assert!(
            healed.elapsed() < RECOVERY_TIMEOUT,
            "no write was acknowledged within {RECOVERY_TIMEOUT:?} of the heal"
        );
    }
}

/// Every node applies the same index and holds the same state, and none
/// was ever taken for corrupt (no false alarm under faults).
async fn settle_and_compare(cluster: &TestCluster) {
    wait_for("every node to answer", FORMATION_TIMEOUT, || async {
        for n in cluster.running() {
            cluster.try_status(n).await?;
        }
        Ok::<(), String>(())
    })
    .await;
    assert_replicas_agree(cluster).await;
    for n in cluster.running() {
        let status = cluster.try_status(n).await.expect("status");
        assert_eq!(
            status.corrupt_since, None,
            "node {n} was marked corrupt under faults alone (a false alarm)"
        );
    }
}

/// Read every key through the leader, recorded like any other operation:
/// the history must explain the final state too.
async fn read_final_state(cluster: &TestCluster, recorder: &Recorder, keys: usize) {
    let leader = wait_for("a leader", FORMATION_TIMEOUT, || cluster.leader_index()).await;
    let mut client = cluster.client(leader).await;
    for key in (0..keys).map(|key| format!("k{key}")) {
        let call = linearizability::Call::Get { key };
        let invocation = recorder.invoke(FINAL_READER, call.clone());
        let response = client
            .query(call.request(), Consistency::Linearizable)
            .await
            .expect("a final read");
        let json = match response.result {
            Some(clusterhost_client::proto::query_response::Result::Ok(bytes)) => {
                serde_json::from_slice(&bytes).expect("kv answers JSON")
            }
            other => panic!("final read of {call:?}: {other:?}"),
        };
        invocation.ok(call.parse_response(&json).expect("a kv answer"));
    }
}

fn check(name: &str, history: &[Operation]) {
    let report = linearizability::check(history).expect("a well-formed history");
    match &report.overall {
        CheckResult::Linearizable => {}
        other => {
            let directory = keep_directory(name);
            let _ = linearizability::write_history(&directory.join("history.jsonl"), history);
            panic!(
                "run {name}: {other}\n(history and node logs kept in {})",
                directory.display()
            );
        }
    }
}

fn count(history: &[Operation], matches: impl Fn(&Outcome) -> bool) -> usize {
    history
        .iter()
        .filter(|operation| matches(&operation.outcome))
        .count()
}

/// Where a run's history and logs are kept.
fn keep_directory(name: &str) -> PathBuf {
    let directory = workspace_root().join("target/faults").join(name);
    let _ = std::fs::create_dir_all(&directory);
    directory
}

/// Append `report` to `target/faults/summary.jsonl`, for the README and
/// the closing note.
fn record_summary(report: &RunReport) {
    use std::io::Write;
    let path = workspace_root().join("target/faults/summary.jsonl");
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(&path));
    if let (Ok(mut file), Ok(line)) = (
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path),
        serde_json::to_string(report),
    ) {
        let _ = writeln!(file, "{line}");
    }
    eprintln!(
        "fault run: {line}",
        line = serde_json::to_string(report).unwrap_or_default()
    );
}

/// Keeps a failing run's history and node logs under `target/faults/`.
struct KeepOnFailure {
    name: String,
    root: PathBuf,
    recorder: Recorder,
}

impl KeepOnFailure {
    fn new(name: String, cluster: &TestCluster, recorder: &Recorder) -> Self {
        Self {
            name,
            root: cluster.root().to_path_buf(),
            recorder: recorder.clone(),
        }
    }
}

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let directory = keep_directory(&self.name);
        let history = directory.join("history.jsonl");
        if !history.exists() {
            let _ = linearizability::write_history(&history, &self.recorder.history());
        }
        for entry in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let log = entry.path().join("node.log");
            let name = format!("{}.log", entry.file_name().to_string_lossy());
            let _ = std::fs::copy(&log, directory.join(name));
        }
        eprintln!(
            "fault run {}: history and node logs kept in {}",
            self.name,
            directory.display()
        );
    }
}
