//! The failover row of `cargo xtask bench`: kill -9 the leader, time until a
//! survivor acknowledges a write (`clusterhost bench --first-write`, the
//! same probe for clusterhost and etcd), bring the killed member back and
//! wait until the cluster is whole again before the next run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use clusterhost_tests::{TestCluster, paths};

use crate::etcd::EtcdCluster;

/// How long the cluster gets to reach an expected state.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the probe keeps trying to write.
const PROBE_DEADLINE: &str = "60s";

/// One clusterhost failover: ms from kill -9 of the leader to the first
/// write a survivor acknowledged.
pub async fn clusterhost_once(cluster: &mut TestCluster) -> Result<u128> {
    let count = cluster.nodes().len();
    let leader = cluster.leader_index().await.map_err(anyhow::Error::msg)?;
    let survivor = (0..count).find(|n| *n != leader).context("no survivor")?;
    let survivor_endpoint = cluster.node(survivor).endpoint();
    cluster.kill9(leader);
    let killed = Instant::now();
    probe("clusterhost", &survivor_endpoint)?;
    let elapsed = killed.elapsed().as_millis();
    eprintln!(
        "failover (clusterhost): first acknowledged write {elapsed} ms after kill -9 of the leader"
    );
    cluster.set_join(leader, &[survivor]);
    cluster.restart(leader).await;
    cluster.wait_for_voters(count, WAIT_TIMEOUT).await;
    cluster.wait_caught_up(WAIT_TIMEOUT).await;
    Ok(elapsed)
}

/// One etcd failover, measured the same way.
pub async fn etcd_once(etcd: &mut EtcdCluster) -> Result<u128> {
    let leader = etcd.wait_ready(WAIT_TIMEOUT).await?;
    let survivor = etcd
        .running()
        .into_iter()
        .find(|n| *n != leader)
        .context("no etcd survivor")?;
    let survivor_endpoint = etcd.endpoint(survivor);
    etcd.kill9(leader);
    let killed = Instant::now();
    probe("etcd", &survivor_endpoint)?;
    let elapsed = killed.elapsed().as_millis();
    eprintln!("failover (etcd): first acknowledged write {elapsed} ms after kill -9 of the leader");
    etcd.restart(leader)?;
    etcd.wait_ready(WAIT_TIMEOUT).await?;
    Ok(elapsed)
}

/// Run the first-write probe against `endpoint` until it succeeds.
fn probe(system: &str, endpoint: &str) -> Result<()> {
    let output = Command::new(paths::clusterhost_binary())
        .args(["bench", "--first-write", "--system", system])
        .args(["--endpoints", endpoint, "--duration", PROBE_DEADLINE])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("no write succeeded on {system} after the leader was killed");
    }
    let report: Value = serde_json::from_slice(&output.stdout)?;
    anyhow::ensure!(
        report["first_write_ms"].is_u64(),
        "the probe answered without a time: {report}"
    );
    Ok(())
}

/// The median of `times` (the lower middle one for an even count).
pub fn median(times: &[u128]) -> Option<u128> {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the failover row reports the middle run, not the mean, so one
    // unlucky election does not decide it.
    #[test]
    fn the_median_is_the_middle_run() {
        assert_eq!(median(&[900, 700, 5000, 800, 750]), Some(800));
        assert_eq!(median(&[2, 1]), Some(1));
        assert_eq!(median(&[]), None);
    }
}
