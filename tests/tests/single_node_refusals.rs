//! End-to-end scenarios in which one real `clusterhost` process refuses bad
//! input and changes nothing: oversized commands and garbage on its port,
//! files that are not plugins, conflicting use of a data dir or port, and
//! bad flags.

use std::time::{Duration, Instant};

use clusterhost_tests::cli::run_cli;
use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::paths::{kv_plugin, plugin, workspace_root};
use clusterhost_tests::{Acknowledged, TestCluster, assert_acknowledged_present, exit};

/// Longest a `run` that must be refused may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Run `clusterhost run ARGS` (which must be refused) on fresh loopback ports.
async fn run_refused(args: &[&str]) -> clusterhost_tests::CliOutput {
    let (listen, gossip) = clusterhost_tests::cluster::free_addresses();
    let (listen, gossip) = (listen.to_string(), gossip.to_string());
    let mut full = vec!["run", "--listen", &listen, "--gossip", &gossip];
    full.extend_from_slice(args);
    let started = Instant::now();
    let output = run_cli(&full, &[], REFUSAL_TIMEOUT).await;
    assert_ne!(output.code, Some(exit::OK), "run was not refused: {output}");
    eprintln!(
        "refused in {:.1?}: {}",
        started.elapsed(),
        output.command_line
    );
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_commands_and_garbage_bytes_leave_the_node_serving() {
    // Goal: a command over the 1 MiB limit is refused with exit 5 before it
    // reaches the log, and junk on the gRPC port (random bytes, an HTTP/1
    // request, a truncated HTTP/2 preface) does not hurt the node: it keeps
    // serving reads and writes and its state is intact.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let mut client = cluster.client(0).await;
    apply_ok(&mut client, kv::put("before", "junk")).await;
    let applied_before = cluster.status(0).await["applied_index"].as_u64().unwrap();

    let file = cluster.root().join("big-command.json");
    for size in [1024 * 1024 + 1, 3 * 1024 * 1024] {
        let value = "x".repeat(size);
        std::fs::write(&file, kv::put("big", &value)).unwrap();
        let argument = format!("@{}", file.display());
        let output = cluster.cli(0, &["apply", &argument]).await;
        output.failure(exit::INVALID_INPUT, &[]);
    }
    let status = cluster.status(0).await;
    assert_eq!(
        status["applied_index"].as_u64(),
        Some(applied_before),
        "an oversized command reached the log: {status}"
    );

    let endpoint = cluster.node(0).endpoint();
    let junk: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let payloads: [&[u8]; 3] = [
        &junk,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\xff\x04\x00\x00\x00\x00\x00garbage",
    ];
    for payload in payloads {
        let mut stream = tokio::net::TcpStream::connect(&endpoint)
            .await
            .expect("connect");
        // The server may close the connection mid-write; that is fine.
        let _ = stream.write_all(payload).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    }

    assert!(
        cluster.node(0).is_running(),
        "the node died:\n{}",
        cluster.log_tails()
    );
    let mut client = cluster.client(0).await;
    apply_ok(&mut client, kv::put("after", "junk")).await;
    let acknowledged = Acknowledged::from([
        ("before".to_string(), "junk".to_string()),
        ("after".to_string(), "junk".to_string()),
    ]);
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_eq!(state, acknowledged);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_files_that_are_not_plugins() {
    // Goal: `run --bootstrap --plugin X` with X not a clusterhost plugin (a
    // TOML file, a core wasm module, a component of the wrong world, one with
    // a forbidden import, a missing file) exits non-zero quickly with
    // `Error:` naming the problem, and leaves no identity or log behind.
    let scratch = tempfile::tempdir().unwrap();
    let core_module = scratch.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let cargo_toml = workspace_root().join("Cargo.toml");
    let cases = [
        (cargo_toml, "not a valid plugin"),
        (core_module, "not a valid plugin"),
        (plugin("test/wrong_world.wasm"), "not a valid plugin"),
        (plugin("test/bad_import.wasm"), "not a valid plugin"),
        (scratch.path().join("missing.wasm"), "cannot read plugin"),
    ];
    for (number, (file, needle)) in cases.iter().enumerate() {
        let data_dir = scratch.path().join(format!("data-{number}"));
        let (file_arg, dir_arg) = (file.to_string_lossy(), data_dir.to_string_lossy());
        let output =
            run_refused(&["--bootstrap", "--plugin", &file_arg, "--data-dir", &dir_arg]).await;
        output.failure(exit::FAILURE, &[needle, &file_arg]);
        for leftover in ["node.json", "raft.redb"] {
            assert!(
                !data_dir.join(leftover).exists(),
                "refused start left {leftover} behind: {output}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_conflicting_use_of_a_data_dir_or_port() {
    // Goal: each misuse of an existing data dir or a taken port is refused
    // with a clear error and does no damage: a second process on a live data
    // dir, a port already bound, `--bootstrap` again, a different `--plugin`
    // on an initialized dir. Afterwards the node restarts with its data.
    let mut cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let mut client = cluster.client(0).await;
    apply_ok(&mut client, kv::put("kept", "yes")).await;
    let data_dir = cluster.node(0).data_dir().to_string_lossy().into_owned();
    let identity_before = std::fs::read(cluster.node(0).data_dir().join("node.json")).unwrap();

    let output = run_refused(&["--data-dir", &data_dir]).await;
    output.failure(exit::FAILURE, &["another clusterhost process"]);

    let fresh = cluster.root().join("fresh").to_string_lossy().into_owned();
    let (_, gossip) = clusterhost_tests::cluster::free_addresses();
    let busy = cluster.node(0).endpoint();
    let output = run_cli(
        [
            "run",
            "--listen",
            &busy,
            "--gossip",
            &gossip.to_string(),
            "--data-dir",
            &fresh,
            "--bootstrap",
            "--plugin",
            &kv_plugin().to_string_lossy(),
        ],
        &[],
        REFUSAL_TIMEOUT,
    )
    .await;
    output.failure(exit::UNAVAILABLE, &["cannot listen on", &busy]);

    let status = cluster.terminate(0).await;
    assert!(status.success(), "SIGTERM exit: {status}");
    let kv_path = kv_plugin().to_string_lossy().into_owned();
    let output = run_refused(&["--data-dir", &data_dir, "--bootstrap", "--plugin", &kv_path]).await;
    output.failure(exit::FAILURE, &["already bootstrapped"]);
    let counter = plugin("counter.wasm").to_string_lossy().into_owned();
    let output = run_refused(&["--data-dir", &data_dir, "--plugin", &counter]).await;
    output.failure(exit::FAILURE, &["plugin", "not"]);
    let output = run_refused(&["--data-dir", &data_dir, "--bootstrap"]).await;
    output.failure(exit::FAILURE, &["bootstrap"]);

    let identity_after = std::fs::read(cluster.node(0).data_dir().join("node.json")).unwrap();
    assert_eq!(
        identity_before, identity_after,
        "a refused start rewrote node.json"
    );
    cluster.restart(0).await;
    assert_acknowledged_present(
        &cluster,
        &Acknowledged::from([("kept".into(), "yes".into())]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_exit_with_usage_errors() {
    // Goal: flags clap rejects exit 2 without starting anything.
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data").to_string_lossy().into_owned();
    for args in [
        vec!["run", "--node-id", "0", "--data-dir", &data_dir],
        vec!["run", "--no-such-flag", "--data-dir", &data_dir],
        vec!["run", "--snapshot-every", "0", "--data-dir", &data_dir],
        vec!["run", "--listen", "not-an-address", "--data-dir", &data_dir],
        vec!["apply"],
        vec!["query", "--consistency", "eventual", "{}"],
    ] {
        let output = run_cli(&args, &[], REFUSAL_TIMEOUT).await;
        assert_eq!(output.code, Some(exit::USAGE), "{output}");
        assert!(output.stderr.contains("error"), "{output}");
    }
    assert!(
        !scratch.path().join("data").exists(),
        "a usage error created the data dir"
    );
}
