//! `cargo xtask upgrade-test`: a rolling upgrade under load, from the
//! binary built at an earlier commit of this repository to the current one.
//!
//! The earlier commit is [`BASE_COMMIT`]: the last one before formats and
//! protocol levels were versioned, whose nodes know nothing of levels,
//! settings or digests — the hardest case to upgrade from. It is built once
//! into `target/upgrade/` (a cold build: many minutes; not in CI for that
//! reason) and reused.
//!
//! Three nodes of the old binary form a cluster; four clients write
//! throughout; each node in turn is stopped (SIGTERM) and started again on
//! its data dir with the new binary. Once all run the new one, the protocol
//! level is raised to 1 and a feature that needs it (a cluster setting) is
//! used, then to 2 and a write within a client session is retried and
//! answered from the session instead of applied twice, then to 3 and the
//! cluster's `plugin_signers` set, after which an unsigned deploy is refused,
//! then to 4 (membership records may carry node names — this cluster runs
//! without TLS, so it records none — and concurrent writes through a
//! follower travel in batches; below it each was forwarded alone), and
//! every node still takes writes.
//! No acknowledged write may be lost, and every client error must be the
//! brief unavailability of an election.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusterhost_tests::kv;
use clusterhost_tests::load::WriteStream;
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::{NodeOptions, TestCluster, assert_acknowledged_present, wait_for};

use crate::{command, plugins, toolchain};

/// The commit whose binary the cluster starts on.
const BASE_COMMIT: &str = "b9dc0fd";
/// Nodes in the cluster.
const NODES: usize = 3;
/// Concurrent writers.
const WRITERS: usize = 4;
/// How long the cluster may take to settle after each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Entry point of `cargo xtask upgrade-test`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    crate::expect_no_args("upgrade-test", args)?;
    plugins::run(root, &[])?;
    command::run(
        Command::new(toolchain::cargo())
            .current_dir(root)
            .args(["build", "--workspace"]),
    )?;
    let old = old_binary(root)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(rolling_upgrade(old))
}

/// The binary of [`BASE_COMMIT`], built once into `target/upgrade/`.
fn old_binary(root: &Path) -> Result<PathBuf> {
    let directory = root.join("target/upgrade");
    let binary = directory.join(format!("clusterhost-{BASE_COMMIT}"));
    if binary.is_file() {
        return Ok(binary);
    }
    let source = directory.join(format!("src-{BASE_COMMIT}"));
    if !source.exists() {
        command::run(Command::new("git").current_dir(root).args([
            "worktree",
            "add",
            "--detach",
            &source.to_string_lossy(),
            BASE_COMMIT,
        ]))?;
    }
    eprintln!("building clusterhost at {BASE_COMMIT} (once; a cold build takes many minutes)");
    command::run(
        Command::new(toolchain::cargo())
            .current_dir(&source)
            .env("CARGO_TARGET_DIR", directory.join("target"))
            .args(["build", "-p", "clusterhost"]),
    )?;
    std::fs::copy(directory.join("target/debug/clusterhost"), &binary)
        .context("cannot keep the old binary")?;
    Ok(binary)
}

async fn rolling_upgrade(old: PathBuf) -> Result<()> {
    let old_node = NodeOptions {
        stabilization: Some(Duration::from_secs(1)),
        binary: Some(old.clone()),
        ..NodeOptions::default()
    };
    let mut cluster = TestCluster::new();
    cluster.bootstrap_node(&kv_plugin(), old_node.clone()).await;
    for _ in 1..NODES {
        cluster.start_joining(0, old_node.clone()).await;
    }
    cluster.wait_for_voters(NODES, STEP_TIMEOUT).await;
    for n in 0..NODES {
        let others: Vec<usize> = (0..NODES).filter(|other| *other != n).collect();
        cluster.set_join(n, &others);
    }
    let endpoints: Vec<String> = (0..WRITERS)
        .map(|writer| cluster.node(writer % NODES).endpoint())
        .collect();
    let writes = WriteStream::start(&endpoints, "upgrade/");
    for n in 0..NODES {
        let stopped = Instant::now();
        cluster.terminate(n).await;
        cluster.set_binary(n, None);
        cluster.restart(n).await;
        cluster.wait_for_voters(NODES, STEP_TIMEOUT).await;
        eprintln!(
            "node {n} runs the new binary; it was out for {:.1?}",
            stopped.elapsed()
        );
    }
    let errors = writes.errors();
    let (acknowledged, attempted) = writes.finish().await;
    eprintln!(
        "{} writes acknowledged of {} attempted during the upgrade; failed writes by kind: {errors:?}",
        acknowledged.len(),
        attempted.len()
    );
    // A client of a node being replaced cannot reach it (`unreachable`: no
    // connection, or a write dropped unsent as the stopping node closed its
    // connection), and one of a node waiting for a new leader hears
    // `Unavailable`; anything else would be a defect.
    let unexpected: Vec<&String> = errors
        .keys()
        .filter(|kind| !["unreachable", "Unavailable"].contains(&kind.as_str()))
        .collect();
    anyhow::ensure!(
        unexpected.is_empty(),
        "unexpected client errors: {errors:?}"
    );
    raise_level_and_use_it(&cluster).await?;
    assert_acknowledged_present(&cluster, &acknowledged).await;
    eprintln!("rolling upgrade from {BASE_COMMIT}: every acknowledged write present");
    Ok(())
}

/// Raise the protocol level now that every node supports it, and use a
/// feature that needs it.
async fn raise_level_and_use_it(cluster: &TestCluster) -> Result<()> {
    let refused = cluster
        .cli(0, &["config", "set", "fuel_per_call", "2000000000"])
        .await;
    if refused.code == Some(0) {
        bail!("a cluster setting was accepted before the protocol level was raised");
    }
    let raised = wait_for("every node to announce level 1", STEP_TIMEOUT, || async {
        let output = cluster
            .cli(0, &["config", "set", "protocol_level", "1"])
            .await;
        (output.code == Some(0)).then_some(output)
    })
    .await;
    eprint!("{}", raised.stdout);
    cluster
        .cli(0, &["config", "set", "fuel_per_call", "2000000000"])
        .await
        .success();
    wait_for("node 1 to apply the new settings", STEP_TIMEOUT, || async {
        let settings = cluster
            .cli(1, &["config", "get", "--json"])
            .await
            .success_json();
        settings["fuel_per_call"] == 2_000_000_000u64 && settings["protocol_level"] == 1
    })
    .await;
    raise_to_sessions_and_use_them(cluster).await
}

/// Raise the level to 2 and check a retried session write is replayed.
async fn raise_to_sessions_and_use_them(cluster: &TestCluster) -> Result<()> {
    cluster
        .cli(0, &["config", "set", "protocol_level", "2"])
        .await
        .success();
    let mut client = clusterhost_client::Client::connect(&cluster.node(1).endpoint()).await?;
    let session = client.open_session(0).await?;
    let stamp = clusterhost_client::proto::SessionStamp {
        client_id: session.client_id,
        sequence: 1,
        first_outstanding: 1,
    };
    let command = kv::put("upgrade/session", "once");
    let first = client.apply_stamped(command.clone(), stamp).await?;
    let retry = client.apply_stamped(command, stamp).await?;
    anyhow::ensure!(
        retry.replayed && retry.index == first.index,
        "a retried session write was applied again: {first:?} then {retry:?}"
    );
    eprintln!("level 2: a retried session write was answered from the session");
    raise_to_signers_and_use_them(cluster).await
}

/// Raise the level to 3, set `plugin_signers` and check an unsigned
/// deploy is refused.
async fn raise_to_signers_and_use_them(cluster: &TestCluster) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let public = clusterhost_tests::signing::sign_kv_plugins(scratch.path()).await;
    let signers = scratch
        .path()
        .join("signers")
        .to_string_lossy()
        .into_owned();
    let set_signers = ["config", "set", "plugin_signers", signers.as_str()];
    if cluster.cli(0, &set_signers).await.code == Some(0) {
        bail!("plugin_signers was accepted before the protocol level was raised to 3");
    }
    cluster
        .cli(0, &["config", "set", "protocol_level", "3"])
        .await
        .success();
    cluster.cli(1, &set_signers).await.success();
    wait_for("node 2 to apply plugin_signers", STEP_TIMEOUT, || async {
        let settings = cluster
            .cli(2, &["config", "get", "--json"])
            .await
            .success_json();
        settings["plugin_signers"] == serde_json::json!([public])
    })
    .await;
    let unsigned = clusterhost_tests::paths::plugin("kv_v2.wasm");
    let refused = cluster
        .cli(2, &["plugin", "deploy", &unsigned.to_string_lossy()])
        .await;
    refused.failure(clusterhost_tests::exit::PERMISSION_DENIED, &["not signed"]);
    eprintln!("level 3: plugin_signers set through the log; an unsigned deploy was refused");
    raise_to_batches_and_use_them(cluster).await
}

/// Writers sending at once through a follower at level 4.
const BATCH_WRITERS: usize = 16;

/// Raise the level to 4 (names in membership records, batched forwarding),
/// write through every node, then through a follower from many clients at
/// once: forwarded in batches, each write is acknowledged.
async fn raise_to_batches_and_use_them(cluster: &TestCluster) -> Result<()> {
    cluster
        .cli(0, &["config", "set", "protocol_level", "4"])
        .await
        .success();
    for n in 0..NODES {
        let put = format!(r#"{{"put":{{"key":"level4/{n}","value":"yes"}}}}"#);
        cluster.cli(n, &["apply", &put]).await.success();
    }
    eprintln!("level 4: raised; every node still takes writes");
    let leader = cluster.leader_index().await.map_err(anyhow::Error::msg)?;
    let follower = (leader + 1) % NODES;
    wait_for("the follower to apply level 4", STEP_TIMEOUT, || async {
        let settings = cluster
            .cli(follower, &["config", "get", "--json"])
            .await
            .success_json();
        settings["protocol_level"] == 4
    })
    .await;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..BATCH_WRITERS {
        let mut client = cluster.client(follower).await;
        writers.spawn(async move {
            let key = format!("upgrade/batch-{writer}");
            kv::apply_ok(&mut client, kv::put(&key, "batched")).await
        });
    }
    let acknowledged = writers.join_all().await.len();
    anyhow::ensure!(
        acknowledged == BATCH_WRITERS,
        "{acknowledged} writes acknowledged"
    );
    eprintln!("level 4: {BATCH_WRITERS} concurrent writes through a follower acknowledged");
    Ok(())
}
