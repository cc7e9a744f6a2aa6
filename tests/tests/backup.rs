//! End-to-end tests of `clusterhost backup save|inspect|restore` on real
//! processes: a backup taken under writes restores into a new cluster with
//! every write acknowledged before it, which another node then joins; a
//! damaged file is refused and writes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use clusterhost_client::proto::Consistency;
use clusterhost_tests::invariants::Acknowledged;
use clusterhost_tests::kv::scan_all;
use clusterhost_tests::load::WriteStream;
use clusterhost_tests::scenario::{ELECTION_TIMEOUT, MEMBERSHIP_TIMEOUT, fast, three_nodes};
use clusterhost_tests::{NodeOptions, TestCluster, exit, wait_for};

/// The id the restored node gets.
const RESTORED_ID: u64 = 21;

/// `backup restore` of `file` into node `n` of `cluster` (not started yet).
async fn restore(cluster: &TestCluster, n: usize, file: &Path) -> clusterhost_tests::CliOutput {
    let data_dir = cluster.node(n).data_dir();
    cluster
        .cli_anywhere(&[
            "backup",
            "restore",
            &file.to_string_lossy(),
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--node-id",
            &RESTORED_ID.to_string(),
            "--advertise",
            &cluster.node(n).endpoint(),
        ])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_saved_under_writes_restores_into_a_new_cluster_others_join() {
    // Goal: save a backup through a follower while clients write; restore
    // it as a new single-node cluster: every write acknowledged before the
    // save began is there with its value, and a new node joins the restored
    // cluster and holds the same state.
    let cluster = three_nodes(fast(0)).await;
    let file = cluster.root().join("cluster.backup");
    let before_save = save_under_writes(&cluster, &file).await;
    let inspected = cluster
        .cli_anywhere(&["backup", "inspect", &file.to_string_lossy()])
        .await;
    assert!(inspected.success().contains("checksum: OK"));

    let (mut restored, seed) = restore_new_cluster(&file).await;
    let mut client = restored.client(seed).await;
    let state = scan_all(&mut client, "", Consistency::Linearizable).await;
    let missing: Vec<&String> = before_save
        .iter()
        .filter(|(key, value)| state.get(*key) != Some(*value))
        .map(|(key, _)| key)
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the save, missing after the restore: {missing:?}"
    );
    let joined = restored.start_joining(seed, fast(RESTORED_ID + 1)).await;
    restored.wait_for_voters(2, MEMBERSHIP_TIMEOUT).await;
    wait_until_node_holds(&restored.node(joined).endpoint(), &state).await;
}

/// Save a backup of `cluster` into `file` through a follower while six
/// clients write; returns the writes acknowledged before the save began.
async fn save_under_writes(cluster: &TestCluster, file: &Path) -> Acknowledged {
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let endpoints: Vec<String> = (0..6).map(|w| cluster.node(w % 3).endpoint()).collect();
    let stream = WriteStream::start(&endpoints, "backup-");
    wait_for("200 acknowledged writes", ELECTION_TIMEOUT, || async {
        stream.acknowledged_count() >= 200
    })
    .await;
    let before_save = stream.acknowledged_so_far();
    let saved = cluster
        .cli(follower, &["backup", "save", &file.to_string_lossy()])
        .await;
    let after_save = stream.acknowledged_count();
    let (acknowledged, _) = stream.finish().await;
    let report = saved.success();
    assert!(report.contains("checksum: OK"), "{report}");
    assert!(
        after_save > before_save.len(),
        "writes went on during the save"
    );
    eprintln!(
        "saved with {} writes acknowledged before, {} at the end:\n{report}",
        before_save.len(),
        acknowledged.len()
    );
    before_save
}

/// Restore `file` as a new single-node cluster and start it; returns the
/// cluster and its node.
async fn restore_new_cluster(file: &Path) -> (TestCluster, usize) {
    let mut restored = TestCluster::new();
    let seed = restored.add_node(NodeOptions {
        node_id: Some(RESTORED_ID),
        ..fast(RESTORED_ID)
    });
    let output = restore(&restored, seed, file).await;
    assert!(output.success().contains("new cluster"), "{output}");
    restored.restart(seed).await;
    let status = restored.status(seed).await;
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    (restored, seed)
}

/// Wait until the node at `endpoint` holds exactly `state`.
async fn wait_until_node_holds(endpoint: &str, state: &BTreeMap<String, String>) {
    wait_for(
        "the joined node to hold the restored state",
        ELECTION_TIMEOUT,
        || async move {
            let mut client = clusterhost_client::Client::connect(endpoint)
                .await
                .map_err(|error| error.to_string())?;
            let copy = scan_all(&mut client, "", Consistency::Stale).await;
            if &copy == state {
                Ok(())
            } else {
                Err(format!("{} of {} keys", copy.len(), state.len()))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_or_a_truncated_backup_is_refused_and_writes_nothing() {
    // Goal: a backup with one flipped byte, or cut short, is refused by
    // inspect and by restore with a clear message and exit 5, and restore
    // creates no data dir.
    let cluster = TestCluster::start_bootstrap(&clusterhost_tests::paths::kv_plugin()).await;
    clusterhost_tests::scenario::put_through(&cluster, 0, "k", "v").await;
    let file = cluster.root().join("good.backup");
    cluster
        .cli(0, &["backup", "save", &file.to_string_lossy()])
        .await
        .success();
    let bytes = std::fs::read(&file).expect("read the backup");
    let mut flipped = bytes.clone();
    let middle = bytes.len() / 2;
    flipped[middle] ^= 0x40;
    let flipped_file = cluster.root().join("flipped.backup");
    std::fs::write(&flipped_file, &flipped).expect("write");
    let truncated_file = cluster.root().join("truncated.backup");
    std::fs::write(&truncated_file, &bytes[..bytes.len() - 100]).expect("write");

    for (damaged, needle) in [(&flipped_file, "checksum"), (&truncated_file, "truncated")] {
        cluster
            .cli_anywhere(&["backup", "inspect", &damaged.to_string_lossy()])
            .await
            .failure(exit::INVALID_INPUT, &[needle]);
        let mut target = TestCluster::new();
        let n = target.add_node(NodeOptions::default());
        restore(&target, n, damaged)
            .await
            .failure(exit::INVALID_INPUT, &[needle]);
        assert!(
            !target.node(n).data_dir().exists(),
            "a refused restore created {}",
            target.node(n).data_dir().display()
        );
    }
}
