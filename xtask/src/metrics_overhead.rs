//! The metrics-overhead row of `cargo xtask bench` (alone: `cargo xtask
//! bench --only metrics-overhead`): write throughput and p99 with metrics on
//! (`--metrics-listen`, recording everything) and off (no listener, so
//! every recording call returns at once), in the on/off pairs of
//! [`crate::ab_pairs`].

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use clusterhost_tests::TestCluster;
use clusterhost_tests::ops::{free_ops_addr, scrape};

use crate::ab_pairs::{self, Feature, Load};

/// Metrics on: each node serves `--metrics-listen` on an address of its own.
#[derive(Default)]
pub struct Metrics {
    /// The metrics address of each node of the current run, in start order.
    ops: Vec<SocketAddr>,
}

impl Feature for Metrics {
    const NAME: &'static str = "metrics";

    async fn cluster(&mut self, directory: &Path, _on: bool) -> Result<TestCluster> {
        self.ops.clear();
        Ok(TestCluster::in_directory(directory))
    }

    fn node_args(&mut self, on: bool) -> Vec<String> {
        if !on {
            return Vec::new();
        }
        let addr = free_ops_addr();
        self.ops.push(addr);
        vec!["--metrics-listen".to_string(), addr.to_string()]
    }

    async fn bench_args(&self, _cluster: &TestCluster, _on: bool) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The "on" runs really recorded: the leader's proposals are counted.
    async fn check(&self, _cluster: &TestCluster, leader: usize, on: bool) -> Result<()> {
        if !on {
            return Ok(());
        }
        let addr = self
            .ops
            .get(leader)
            .with_context(|| format!("no metrics address for node {leader}"))?;
        let scraped = scrape(*addr).await.map_err(anyhow::Error::msg)?;
        let proposed = scraped
            .get("clusterhost_raft_proposals_total{outcome=\"ok\"}")
            .copied()
            .unwrap_or(0.0);
        anyhow::ensure!(proposed > 0.0, "metrics on, yet no proposal counted");
        Ok(())
    }
}

/// Every run and the medians with metrics on and off.
pub async fn measure(kv: &Path, out_dir: &Path, load: &Load<'_>) -> Result<Value> {
    ab_pairs::measure(&mut Metrics::default(), kv, out_dir, load).await
}

/// The overhead as a line of the report.
pub fn render(overhead: &Value) -> Vec<String> {
    ab_pairs::render(overhead, "Metrics overhead")
}
