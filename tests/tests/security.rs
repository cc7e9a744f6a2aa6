//! End-to-end scenarios of a cluster running mutual TLS: who is refused at
//! the handshake (on the gRPC port and the ops listener), what each role
//! may do, that refusals change nothing, and that a node serving a real
//! network without TLS refuses to start.

use std::time::Duration;

use clusterhost::consensus::transport::codec;
use clusterhost::consensus::transport::proto::RaftCall;
use clusterhost::consensus::types::{TypeConfig, Vote};
use clusterhost_client::proto::cluster_client::ClusterClient;
use clusterhost_client::{Client, ClientError, ClientTls, connect_channel_with};
use clusterhost_tests::cli::{CLI_TIMEOUT, run_cli};
use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::ops::{
    free_ops_addr, http_get, https_get, scrape_tls, value_or_zero, with_ops,
};
use clusterhost_tests::paths::{clusterhost_binary, kv_plugin};
use clusterhost_tests::process::Process;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::signing::sign_kv_plugins;
use clusterhost_tests::tls::TestPki;
use clusterhost_tests::{TestCluster, exit, wait_for};
use tonic::Code;

/// Gossip datagrams a node dropped unread (no key opened them).
const GOSSIP_DROPPED: &str = "clusterhost_gossip_datagrams_dropped_total";

/// A one-node TLS cluster running kv, with `key` = `value` written.
async fn tls_node_with(key: &str, value: &str) -> TestCluster {
    let mut cluster = TestCluster::with_tls().await;
    cluster.bootstrap_node(&kv_plugin(), fast(1)).await;
    // The node records its own name in the membership (an entry) soon
    // after it leads: wait for it, so no test sees it land mid-way.
    wait_for("node-0's name to be recorded", MEMBERSHIP_TIMEOUT, || {
        let recorded = cluster.node(0).log().lines().any(|line| {
            line.contains("membership change committed") && line.contains("Some(\"node-0\")")
        });
        async move { recorded.then_some(()) }
    })
    .await;
    apply_ok(&mut cluster.client(0).await, kv::put(key, value)).await;
    cluster
}

/// The CLI against node 0 presenting certificate `name`.
async fn cli_as(cluster: &TestCluster, name: &str, args: &[&str]) -> clusterhost_tests::CliOutput {
    let pki = cluster.pki().expect("a TLS cluster");
    let mut env = pki.cli_env(name);
    env.push(("CLUSTERHOST_ENDPOINT".into(), cluster.node(0).endpoint()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_cli(args, &env, CLI_TIMEOUT).await
}

fn assert_permission_denied(error: ClientError, role: &str) {
    match error {
        ClientError::Status(status) => {
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            assert!(
                status.message().contains(&format!("role {role}")),
                "{status:?}"
            );
        }
        other => panic!("expected permission denied, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_and_foreign_certificates_are_refused() {
    // Goal: with TLS on, a plaintext client and a client whose certificate
    // comes from another CA never get an answer; the CLI without
    // certificates fails as unreachable; the harness's admin still works.
    let cluster = tls_node_with("k", "v").await;
    let endpoint = cluster.node(0).endpoint();

    let plaintext = async { Client::connect(&endpoint).await?.status().await };
    assert!(plaintext.await.is_err(), "a plaintext client got a status");

    let other = tempfile::tempdir().unwrap();
    let foreign = TestPki::create(other.path()).await;
    let foreign_admin = foreign.client("intruder", "admin").await;
    let foreign_call = async {
        Client::connect_with(&endpoint, Some(&foreign_admin))
            .await?
            .apply(kv::put("k", "forged"))
            .await
    };
    assert!(
        foreign_call.await.is_err(),
        "a foreign CA's certificate was accepted"
    );

    let output = run_cli(
        ["status"],
        &[("CLUSTERHOST_ENDPOINT", &endpoint)],
        CLI_TIMEOUT,
    )
    .await;
    // How the broken handshake surfaces varies (reset, cancelled, protocol
    // error); that it fails with one error line does not.
    assert_ne!(output.code, Some(exit::OK), "{output}");
    assert!(output.stderr.contains("Error: "), "{output}");

    let mut admin = cluster.client(0).await;
    let value = kv::get_value(&mut admin, "k", Default::default()).await;
    assert_eq!(value.as_deref(), Some("v"), "state changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_is_refused_what_it_may_not_do_and_nothing_changes() {
    // Goal: a reader may read but not apply; a writer may apply but not
    // deploy, leave or remove a member; every refusal is `permission
    // denied` naming the role needed and leaves the log as it was.
    let cluster = tls_node_with("k", "v").await;
    let pki = cluster.pki().unwrap();
    pki.client("reader", "reader").await;
    pki.client("writer", "writer").await;
    let before = cluster.try_status(0).await.unwrap();

    let query = cli_as(&cluster, "reader", &["query", r#"{"get":{"key":"k"}}"#]).await;
    assert!(query.success().contains('v'), "{query}");
    let apply = cli_as(
        &cluster,
        "reader",
        &["apply", &String::from_utf8(kv::put("k", "r")).unwrap()],
    )
    .await;
    apply.failure(
        exit::PERMISSION_DENIED,
        &["permission denied", "requires role writer"],
    );

    let node_id = before.node_id.to_string();
    let kv_path = kv_plugin().to_string_lossy().into_owned();
    for args in [
        vec!["plugin", "deploy", kv_path.as_str()],
        vec!["leave"],
        vec!["members", "remove", node_id.as_str()],
        vec!["config", "set", "fuel_per_call", "5"],
    ] {
        let output = cli_as(&cluster, "writer", &args).await;
        output.failure(
            exit::PERMISSION_DENIED,
            &["permission denied", "requires role admin"],
        );
    }
    let after = cluster.try_status(0).await.unwrap();
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "a refusal reached the log"
    );
    assert_eq!(after.members.len(), 1);
    assert!(
        cluster.node(0).is_running(),
        "a refused leave stopped the node"
    );

    let writer = pki.load("writer");
    let mut client = Client::connect_with(&cluster.node(0).endpoint(), Some(&writer))
        .await
        .unwrap();
    apply_ok(&mut client, kv::put("k", "w")).await;
    let error = client
        .deploy_plugin(std::fs::read(kv_plugin()).unwrap())
        .await;
    assert_permission_denied(error.expect_err("a writer deployed"), "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_cannot_speak_raft_or_forward() {
    // Goal: an admin client certificate sending a Raft vote with a higher
    // term, or an AppendEntries, gets `permission denied` and the node's
    // term and log stay as they were; an Apply marked as forwarded by a
    // node is refused from a client certificate.
    let cluster = tls_node_with("k", "v").await;
    let admin = cluster.client_tls().unwrap().clone();
    let before = cluster.try_status(0).await.unwrap();
    let endpoint = cluster.node(0).endpoint();

    let forged = Vote::new(before.term + 100, 4242);
    let vote = openraft::raft::VoteRequest::<TypeConfig>::new(forged, None);
    for call in [RaftCall::Vote, RaftCall::AppendEntries] {
        let mut raft = codec::raft_client(&endpoint, Some(&admin)).unwrap();
        let request = codec::request(call, &vote, before.node_id).unwrap();
        let status = raft.call(request).await.expect_err("a client spoke raft");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("requires role node"),
            "{status:?}"
        );
    }

    let channel = connect_channel_with(&endpoint, Some(&admin)).await.unwrap();
    let mut request = tonic::Request::new(clusterhost_client::proto::ApplyRequest {
        command: kv::put("k", "forwarded"),
    });
    request
        .metadata_mut()
        .insert("x-clusterhost-forwarded", "1".parse().unwrap());
    let status = ClusterClient::new(channel)
        .apply(request)
        .await
        .expect_err("a client forwarded");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("only role node"), "{status:?}");

    let after = cluster.try_status(0).await.unwrap();
    assert_eq!(after.term, before.term, "a forged vote moved the term");
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "the log changed"
    );
    assert_eq!(after.role, "leader");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_tls_nodes_elect_replicate_and_forward() {
    // Goal: nodes dial each other with their node certificates: a 3-node
    // TLS cluster forms, a write through a follower is forwarded to the
    // leader, and every replica serves it.
    let mut cluster = TestCluster::with_tls().await;
    cluster.bootstrap_node(&kv_plugin(), fast(1)).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.start_joining(1, fast(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let put = String::from_utf8(kv::put("through", "follower")).unwrap();
    cluster.cli(follower, &["apply", &put]).await.success();
    for n in 0..3 {
        let client = cluster.client(n).await;
        let read = wait_for(
            &format!("node {n} to serve the write"),
            Duration::from_secs(20),
            || {
                let mut client = client.clone();
                async move {
                    kv::get_value(
                        &mut client,
                        "through",
                        clusterhost_client::proto::Consistency::Stale,
                    )
                    .await
                    .filter(|value| value == "follower")
                }
            },
        )
        .await;
        assert_eq!(read, "follower");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_network_without_tls_needs_insecure() {
    // Goal: listening beyond loopback without TLS is refused before
    // anything is written, naming the way out; with --insecure the same
    // node starts.
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let (listen, gossip) = clusterhost_tests::cluster::free_addresses();
    let everywhere = format!("0.0.0.0:{}", listen.port());
    let args: Vec<String> = [
        "run",
        "--listen",
        &everywhere,
        "--advertise",
        &listen.to_string(),
        "--gossip",
        &gossip.to_string(),
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--bootstrap",
        "--plugin",
        &kv_plugin().to_string_lossy(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let output = run_cli(&args, &[], CLI_TIMEOUT).await;
    output.failure(
        exit::INVALID_INPUT,
        &["unprotected", "needs TLS", "--insecure", &everywhere],
    );
    assert!(!data_dir.exists(), "a refused start created its data dir");

    let mut insecure = args.clone();
    insecure.push("--insecure".into());
    let log = scratch.path().join("node.log");
    let process = Process::spawn(clusterhost_binary(), &insecure, &log).unwrap();
    let started = wait_for(
        "the --insecure node to start",
        Duration::from_secs(60),
        || {
            let process = process.clone();
            let log = log.clone();
            async move {
                if let Some(exit) = process.try_exit() {
                    return Some(Err(exit));
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.contains("node started").then_some(Ok(()))
            }
        },
    )
    .await;
    process.kill();
    assert!(
        started.is_ok(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_gossip_advertise_address_is_refused() {
    // Goal: a --gossip-advertise address peers cannot send to (every
    // address, or port 0) is refused by name before anything is written.
    let scratch = tempfile::tempdir().unwrap();
    let (listen, gossip) = clusterhost_tests::cluster::free_addresses();
    for (name, advertise) in [
        ("every-address", format!("0.0.0.0:{}", gossip.port())),
        ("port-0", "127.0.0.1:0".to_string()),
    ] {
        let data_dir = scratch.path().join(name);
        let args = [
            "run".to_string(),
            "--listen".to_string(),
            listen.to_string(),
            "--gossip".to_string(),
            gossip.to_string(),
            "--gossip-advertise".to_string(),
            advertise.clone(),
            "--data-dir".to_string(),
            data_dir.to_string_lossy().into_owned(),
            "--bootstrap".to_string(),
            "--plugin".to_string(),
            kv_plugin().to_string_lossy().into_owned(),
        ];
        let output = run_cli(&args, &[], CLI_TIMEOUT).await;
        output.failure(
            exit::FAILURE,
            &[
                &format!("--gossip-advertise {advertise}"),
                "other nodes can reach",
            ],
        );
        assert!(!data_dir.exists(), "a refused start created its data dir");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ops_listener_beyond_loopback_without_tls_needs_insecure() {
    // Goal: `--metrics-listen` follows the rule gRPC and gossip do: beyond
    // loopback without TLS it is refused before anything is written, naming
    // the flag and the way out.
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let (listen, gossip) = clusterhost_tests::cluster::free_addresses();
    let everywhere = format!("0.0.0.0:{}", free_ops_addr().port());
    let args = [
        "run",
        "--listen",
        &listen.to_string(),
        "--gossip",
        &gossip.to_string(),
        "--metrics-listen",
        &everywhere,
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--bootstrap",
        "--plugin",
        &kv_plugin().to_string_lossy(),
    ]
    .map(|arg| arg.to_string());
    let output = run_cli(&args, &[], CLI_TIMEOUT).await;
    output.failure(
        exit::INVALID_INPUT,
        &[
            "the ops listener (--metrics-listen) on",
            &everywhere,
            "needs TLS",
            "--insecure",
        ],
    );
    assert!(!output.stderr.contains("gRPC on"), "{output}");
    assert!(!data_dir.exists(), "a refused start created its data dir");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ops_listener_of_a_tls_node_serves_only_certificates_of_its_ca() {
    // Goal: with TLS on, the ops listener serves HTTPS only, loopback
    // included: a plaintext request, a client presenting no certificate
    // and one presenting another CA's get nothing; a reader's certificate
    // (what Prometheus would present) gets the metrics and health checks.
    let ops = free_ops_addr();
    let mut cluster = TestCluster::with_tls().await;
    cluster.bootstrap_node(&kv_plugin(), with_ops(1, ops)).await;
    let pki = cluster.pki().expect("a TLS cluster");
    let prometheus = pki.client("prometheus", "reader").await;

    let plaintext = http_get(ops, "/metrics").await;
    assert!(plaintext.is_err(), "plain HTTP was answered: {plaintext:?}");
    let anonymous = https_get(ops, "/metrics", &prometheus, false).await;
    assert!(
        anonymous.is_err(),
        "no certificate was answered: {anonymous:?}"
    );
    let other = tempfile::tempdir().unwrap();
    let foreign = TestPki::create(other.path()).await;
    let intruder = foreign.client("intruder", "admin").await;
    let forged = ClientTls {
        // It trusts this cluster's CA, and presents another's certificate.
        ca_pem: prometheus.ca_pem.clone(),
        ..intruder
    };
    let forged = https_get(ops, "/metrics", &forged, true).await;
    assert!(
        forged.is_err(),
        "another CA's certificate was answered: {forged:?}"
    );

    let (code, body) = https_get(ops, "/metrics", &prometheus, true)
        .await
        .expect("a scrape over TLS");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("clusterhost_raft_term"), "{body}");
    let (code, body) = https_get(ops, "/healthz", &prometheus, true)
        .await
        .expect("healthz over TLS");
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_another_gossip_key_never_joins_and_is_counted() {
    // Goal: gossip is sealed: a node with valid TLS certificates but a
    // different gossip key is never added, and the datagrams it sends are
    // dropped and counted by the node it tries to join: in its metrics
    // (`clusterhost_gossip_datagrams_dropped_total`) and its log.
    let mut cluster = TestCluster::with_tls().await;
    let tls = cluster.client_tls().expect("a client certificate").clone();
    let ops = free_ops_addr();
    cluster.bootstrap_node(&kv_plugin(), with_ops(1, ops)).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.wait_for_voters(2, MEMBERSHIP_TIMEOUT).await;
    let before = value_or_zero(&scrape_tls(ops, &tls).await.unwrap(), GOSSIP_DROPPED);
    assert_eq!(before, 0.0, "nodes sharing the key drop nothing");

    let wrong_key = cluster.pki().unwrap().gossip_key("wrong.key").await;
    let mut options = fast(3);
    options.extra_args = vec![
        "--gossip-key-file".into(),
        wrong_key.to_string_lossy().into_owned(),
    ];
    let intruder = cluster.add_node(options);
    cluster.set_join(intruder, &[0]);
    cluster.restart_without_waiting(intruder).await;
    // 8 dropped datagrams are several gossip rounds: ample time to join.
    wait_for(
        "node 0 to count the intruder's datagrams in its metrics",
        Duration::from_secs(30),
        || {
            let tls = tls.clone();
            async move {
                let dropped = value_or_zero(&scrape_tls(ops, &tls).await?, GOSSIP_DROPPED);
                if dropped >= 8.0 {
                    Ok(())
                } else {
                    Err(format!("{GOSSIP_DROPPED} is {dropped}"))
                }
            }
        },
    )
    .await;
    wait_for("node 0 to log the count", Duration::from_secs(10), || {
        let log = cluster.node(0).log();
        async move { log.contains("gossip_datagrams_dropped=8") }
    })
    .await;
    let ids = cluster.member_ids(0).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids.contains(&3), "the intruder joined: {ids:?}");
    let status = cluster.try_status(intruder).await.unwrap();
    assert_eq!(status.leader_id, None, "the intruder found a leader");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_signed_plugins_are_deployed_with_plugin_signers() {
    // Goal: with --plugin-signers, an unsigned plugin is refused at start
    // and at deploy (permission denied, the log unchanged), and a plugin
    // signed with `clusterhost plugin sign` by a listed key deploys.
    let scratch = tempfile::tempdir().unwrap();
    let path = |name: &str| scratch.path().join(name).to_string_lossy().into_owned();
    let v2 = clusterhost_tests::paths::plugin("kv_v2.wasm");
    sign_kv_plugins(scratch.path()).await;

    let mut options = fast(1);
    options.extra_args = vec!["--plugin-signers".into(), path("signers")];
    let (listen, gossip) = clusterhost_tests::cluster::free_addresses();
    let unsigned_start = run_cli(
        [
            "run",
            "--listen",
            &listen.to_string(),
            "--gossip",
            &gossip.to_string(),
            "--data-dir",
            &path("refused"),
            "--bootstrap",
            "--plugin",
            &kv_plugin().to_string_lossy(),
            "--plugin-signers",
            &path("signers"),
        ],
        &[],
        CLI_TIMEOUT,
    )
    .await;
    unsigned_start.failure(exit::FAILURE, &["not signed"]);

    let signed_kv = scratch.path().join("kv.signed.wasm");
    let cluster = TestCluster::start_bootstrap_with(&signed_kv, options).await;
    apply_ok(&mut cluster.client(0).await, kv::put("k", "v")).await;
    let before = cluster.try_status(0).await.unwrap();
    let unsigned = cluster
        .cli(0, &["plugin", "deploy", &v2.to_string_lossy()])
        .await;
    unsigned.failure(exit::PERMISSION_DENIED, &["deploy refused", "not signed"]);
    let after = cluster.try_status(0).await.unwrap();
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "a refused deploy reached the log"
    );
    assert_eq!(after.cluster_version, before.cluster_version);

    let signed = cluster
        .cli(0, &["plugin", "deploy", &path("kv_v2.signed.wasm")])
        .await;
    assert!(signed.success().contains("deployed"), "{signed}");
}

/// A chitchat 0.13 SynAck (protocol V0, blocks uncompressed) from a made-up
/// member `intruder`: its digest makes the receiver know the member, and
/// its delta sets a key at version 10, then claims max version 5. chitchat
/// decodes this and, applying it, `assert!`s (max version went backwards),
/// which would end the receiver's gossip task.
fn crash_datagram() -> Vec<u8> {
    let mut member = Vec::new();
    member.extend(8u16.to_le_bytes());
    member.extend(b"intruder");
    member.extend(1u64.to_le_bytes()); // generation
    member.extend([4, 127, 0, 0, 1]);
    member.extend(9u16.to_le_bytes()); // port
    let mut datagram = 45_139u16.to_le_bytes().to_vec(); // magic
    datagram.extend([0, 1]); // protocol V0, SynAck
    datagram.extend(1u16.to_le_bytes()); // one digest entry
    datagram.extend(&member);
    for field in [1u64, 0, 0] {
        datagram.extend(field.to_le_bytes()); // heartbeat, last GC, max version
    }
    let mut ops = vec![0]; // node
    ops.extend(&member);
    ops.extend([0u8; 16]); // last GC, from version
    ops.extend([1, 1, 0, b'k', 1, 0, b'v']); // key-value k=v...
    ops.extend(10u64.to_le_bytes()); // ...at version 10
    ops.push(0); // set
    ops.push(2); // set max version...
    ops.extend(5u64.to_le_bytes()); // ...to 5
    datagram.push(2); // an uncompressed block
    datagram.extend(u16::try_from(ops.len()).unwrap().to_le_bytes());
    datagram.extend(ops);
    datagram.push(0); // no more blocks
    datagram
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gossip_datagram_chitchat_would_panic_on_leaves_gossip_alive() {
    // Goal: a crafted datagram that chitchat would accept and `assert!` on
    // is refused before chitchat reads it, counted, and gossip keeps
    // working: a node that joins afterwards is found. Unsealed, so the
    // datagram reaches the check (with a gossip key it is not even opened).
    let mut cluster = TestCluster::new();
    cluster.bootstrap_node(&kv_plugin(), fast(1)).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(&crash_datagram(), cluster.node(0).gossip_addr())
        .unwrap();
    wait_for(
        "node 0 to refuse the datagram",
        Duration::from_secs(30),
        || {
            let log = cluster.node(0).log();
            async move {
                log.contains("gossip datagram refused: gossip delta with max version 5")
                    .then_some(())
            }
        },
    )
    .await;
    cluster.start_joining(0, fast(2)).await;
    cluster.wait_for_voters(2, MEMBERSHIP_TIMEOUT).await;
    assert!(cluster.node(0).is_running(), "node 0 exited");
}
