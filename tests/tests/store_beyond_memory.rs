//! State larger than a plugin's memory: with the plugin memory cap at
//! 32 MiB, three nodes store 176 MiB through `kv_disk` (in the host store,
//! not in the plugin's memory), and every key reads back on every node.

use std::time::{Duration, Instant};

use clusterhost_client::Client;
use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{get_value, put_concurrently};
use clusterhost_tests::paths::plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::{NodeOptions, TestCluster};

/// The plugin memory cap of these nodes (`--plugin-memory-mib`).
const MEMORY_CAP_MIB: u64 = 32;
/// State stored: five and a half times the memory cap, under the default
/// state quota (192 MiB; a snapshot still carries the whole store, so the
/// quota stays under the 256 MiB snapshot bound).
const STATE_BYTES: usize = 176 * 1024 * 1024;
/// Each value: as large as a command may carry with its JSON around it
/// (commands are at most 1 MiB; the store takes values up to 1 MiB).
const VALUE_BYTES: usize = 1024 * 1024 - 512;
/// Clients writing at once.
const WRITERS: usize = 4;
/// How long replicas may take to report the same applied digest.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(60);

fn key(number: usize) -> String {
    format!("big-{number:04}")
}

/// Value `number`: its number, then a letter that differs from its
/// neighbours', so a value read under the wrong key is caught.
fn value(number: usize) -> String {
    let head = format!("{number}:");
    let letter = char::from(b'a' + (number % 26) as u8);
    let mut value = head.clone();
    value.extend(std::iter::repeat_n(letter, VALUE_BYTES - head.len()));
    value
}

async fn three_kv_disk_nodes_with_capped_memory() -> TestCluster {
    let options = |id| NodeOptions {
        plugin_memory_mib: Some(MEMORY_CAP_MIB),
        ..fast(id)
    };
    let mut cluster = TestCluster::start_bootstrap_with(&plugin("kv_disk.wasm"), options(1)).await;
    cluster.start_joining(0, options(2)).await;
    cluster.start_joining(1, options(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    cluster
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_disk_stores_176_mib_under_a_32_mib_memory_cap_and_every_node_reads_it_back() {
    // Goal: the cluster runs with the 32 MiB cap (a cluster setting every
    // node applies), takes 176 MiB of values, and every value reads back
    // byte for byte from every node's own store, with one applied digest.
    let cluster = three_kv_disk_nodes_with_capped_memory().await;
    let settings = cluster
        .cli(2, &["config", "get", "--json"])
        .await
        .success_json();
    assert_eq!(
        settings["memory_bytes_max"],
        MEMORY_CAP_MIB * 1024 * 1024,
        "{settings}"
    );
    let count = STATE_BYTES.div_ceil(VALUE_BYTES);
    let pairs: Vec<(String, String)> = (0..count).map(|n| (key(n), value(n))).collect();
    let leader = cluster.leader_index().await.expect("a leader");
    let mut clients = Vec::new();
    for _ in 0..WRITERS {
        clients.push(cluster.client(leader).await);
    }
    let started = Instant::now();
    put_concurrently(clients, &pairs).await;
    drop(pairs);
    eprintln!(
        "stored {count} values of {VALUE_BYTES} bytes in {:.1?}",
        started.elapsed()
    );

    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    let started = Instant::now();
    let mut readers = Vec::new();
    for n in 0..3 {
        let client = cluster.client(n).await;
        readers.push(tokio::spawn(read_back(n, client, count)));
    }
    for reader in readers {
        reader.await.expect("a reader task");
    }
    eprintln!("read back on 3 nodes in {:.1?}", started.elapsed());
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}

/// Read every value back from node `n`'s own store (stale reads).
async fn read_back(n: usize, mut client: Client, count: usize) {
    for number in 0..count {
        let read = get_value(&mut client, &key(number), Consistency::Stale).await;
        assert!(
            read.as_deref() == Some(value(number).as_str()),
            "node {n}: {} reads back {:?} bytes starting {:?}",
            key(number),
            read.as_ref().map(String::len),
            read.as_ref().map(|read| &read[..read.len().min(16)])
        );
    }
}
