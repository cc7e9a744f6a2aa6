//! The TLS-overhead row of `cargo xtask bench` (alone: `cargo xtask bench
//! --only tls-overhead`): write throughput and p99 on a cluster running
//! mutual TLS (the test harness's TLS cluster: certificates made by
//! `clusterhost certs` in the run's directory, gossip sealed with a key)
//! and on one started with `--insecure` and no TLS, in the on/off pairs of
//! [`crate::ab_pairs`]. With TLS on, `clusterhost bench` presents a
//! `writer` client certificate.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use clusterhost_tests::cli::{CLI_TIMEOUT, run_cli};
use clusterhost_tests::{TestCluster, exit};

use crate::ab_pairs::{self, Feature, Load};

/// The client certificate `clusterhost bench` presents: the least role
/// that may write.
const BENCH_CERT: &str = "bench-writer";
const BENCH_ROLE: &str = "writer";

/// TLS on: mutual TLS on gRPC and sealed gossip; off: `--insecure`.
struct Tls;

impl Feature for Tls {
    const NAME: &'static str = "tls";

    async fn cluster(&mut self, directory: &Path, on: bool) -> Result<TestCluster> {
        Ok(if on {
            TestCluster::in_directory_with_tls(directory).await
        } else {
            TestCluster::in_directory(directory)
        })
    }

    fn node_args(&mut self, on: bool) -> Vec<String> {
        if on {
            Vec::new()
        } else {
            vec!["--insecure".to_string()]
        }
    }

    async fn bench_args(&self, cluster: &TestCluster, on: bool) -> Result<Vec<String>> {
        if !on {
            return Ok(Vec::new());
        }
        let pki = cluster
            .pki()
            .context("a TLS cluster without certificates")?;
        pki.client(BENCH_CERT, BENCH_ROLE).await;
        let (cert, key) = pki.pair(BENCH_CERT);
        Ok([("--cacert", pki.ca()), ("--cert", cert), ("--key", key)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_string(), path.to_string_lossy().into_owned()])
            .collect())
    }

    /// The "on" runs really ran TLS: the leader refuses a plaintext client;
    /// the "off" runs really did not: it answers one.
    async fn check(&self, cluster: &TestCluster, leader: usize, on: bool) -> Result<()> {
        let endpoint = cluster.node(leader).endpoint();
        let plaintext = run_cli(["status", "--endpoint", &endpoint], &[], CLI_TIMEOUT).await;
        anyhow::ensure!(
            plaintext.code != Some(exit::USAGE),
            "{} is not a usable check: {}",
            plaintext.command_line,
            plaintext.stderr
        );
        let answered = plaintext.code == Some(exit::OK);
        anyhow::ensure!(
            answered != on,
            "TLS {}, yet a plaintext `clusterhost status` {}: {}",
            if on { "on" } else { "off" },
            if answered { "was answered" } else { "failed" },
            plaintext.stderr
        );
        Ok(())
    }
}

/// Every run and the medians with TLS on and off.
pub async fn measure(kv: &Path, out_dir: &Path, load: &Load<'_>) -> Result<Value> {
    ab_pairs::measure(&mut Tls, kv, out_dir, load).await
}

/// The overhead as a line of the report.
pub fn render(overhead: &Value) -> Vec<String> {
    ab_pairs::render(overhead, "TLS overhead")
}
