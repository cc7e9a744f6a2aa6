use clusterhost_tests::kv;
use clusterhost_tests::paths::plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::{NodeOptions, TestCluster};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn measure_restart() {
    let keys: usize = std::env::var("KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let opts = |id| NodeOptions {
        snapshot_every: Some((keys as u64) * 3 / 4),
        ..fast(id)
    };
    let mut cluster = TestCluster::start_bootstrap_with(&plugin("kv_disk.wasm"), opts(1)).await;
    cluster.start_joining(0, opts(2)).await;
    cluster.start_joining(1, opts(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    let leader = cluster.leader_index().await.expect("leader");
    let follower = (leader + 1) % 3;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let mut client = cluster.client(leader).await;
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while n < keys {
                let value = "v".repeat(1000);
                client
                    .apply(kv::put(&format!("key-{n:06}"), &value))
                    .await
                    .expect("apply");
                n += 16;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let applied = cluster.wait_caught_up(Duration::from_secs(120)).await;
    let status = cluster.status(follower).await;
    eprintln!(
        "MEASURE loaded {keys} keys in {:?}; applied {applied}; follower snapshot_index {}",
        started.elapsed(),
        status["snapshot_index"]
    );
    cluster.kill9(follower);
    let restart = Instant::now();
    cluster.restart(follower).await;
    let ready = restart.elapsed();
    cluster.wait_caught_up(Duration::from_secs(300)).await;
    eprintln!(
        "MEASURE restart: ready {:?}, caught up {:?}",
        ready,
        restart.elapsed()
    );
    let log = cluster.node(follower).log();
    for line in log.lines().filter(|l| {
        l.contains("resumed") || l.contains("rebuilding the plugin") || l.contains("re-apply log")
    }) {
        eprintln!("MEASURE log: {}", &line[..line.len().min(300)]);
    }
}
