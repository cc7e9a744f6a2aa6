//! A 3-member etcd cluster on loopback for `cargo xtask bench --compare
//! etcd`: Debian's `etcd-server` (installed with apt-get when missing, like
//! any other dependency), ephemeral ports, data under the bench directory on
//! the same disk as the clusterhost nodes'. Every member is killed when the
//! [`EtcdCluster`] is dropped, whether the bench succeeded or not.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusterhost::loadgen::{EtcdClient, MemberStatus};
use clusterhost_tests::resources;

use crate::command;

/// Where Debian's package puts the server.
const ETCD: &str = "/usr/bin/etcd";
/// How often the cluster is asked whether it is ready.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long one status call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// etcd's server, installed first if missing.
pub fn ensure_installed() -> Result<PathBuf> {
    let path = PathBuf::from(ETCD);
    if path.exists() {
        return Ok(path);
    }
    eprintln!("{ETCD} is missing: installing Debian's etcd-server");
    command::run(Command::new("apt-get").args(["update", "-q"]))?;
    command::run(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "etcd-server",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("cannot install etcd-server; install it yourself: apt-get install -y etcd-server")?;
    anyhow::ensure!(
        path.exists(),
        "etcd-server installed, but {ETCD} is missing"
    );
    Ok(path)
}

struct Member {
    name: String,
    client_address: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

/// A running etcd cluster; its members are killed on drop.
pub struct EtcdCluster {
    binary: PathBuf,
    initial_cluster: String,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Start `count` members under `directory` and wait until they agree on
    /// a leader.
    pub async fn start(
        binary: &Path,
        directory: &Path,
        count: usize,
        timeout: Duration,
    ) -> Result<Self> {
        std::fs::create_dir_all(directory)?;
        let mut members = Vec::new();
        for n in 0..count {
            members.push(Member {
                name: format!("m{n}"),
                client_address: free_loopback_address()?,
                peer_url: format!("http://{}", free_loopback_address()?),
                data_dir: directory.join(format!("m{n}")),
                log: directory.join(format!("m{n}.log")),
                process: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}={}", member.name, member.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            binary: binary.to_path_buf(),
            initial_cluster,
            members,
        };
        for n in 0..count {
            cluster.launch(n)?;
        }
        cluster.wait_ready(timeout).await?;
        Ok(cluster)
    }

    fn launch(&mut self, n: usize) -> Result<()> {
        let member = &self.members[n];
        let client_url = format!("http://{}", member.client_address);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log)?;
        let child = Command::new(&self.binary)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &member.peer_url])
            .args(["--initial-advertise-peer-urls", &member.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "clusterhost-bench"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.members[n].process = Some(child);
        Ok(())
    }

    /// Client addresses (`host:port`) of all members, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| member.client_address.clone())
            .collect()
    }

    /// The client address of member `n`.
    pub fn endpoint(&self, n: usize) -> String {
        self.members[n].client_address.clone()
    }

    /// Indexes of the running members.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|n| self.members[*n].process.is_some())
            .collect()
    }

    /// The status of every running member, in order; `None` for one that
    /// does not answer.
    async fn statuses(&self) -> Vec<(usize, Option<MemberStatus>)> {
        let mut statuses = Vec::new();
        for n in self.running() {
            let endpoint = self.endpoint(n);
            let status = tokio::time::timeout(STATUS_TIMEOUT, async {
                EtcdClient::connect(&endpoint).await?.status().await
            })
            .await
            .ok()
            .and_then(Result::ok);
            statuses.push((n, status));
        }
        statuses
    }

    /// The running member that leads, when all running members agree.
    pub async fn leader_index(&self) -> Option<usize> {
        let statuses = self.statuses().await;
        let leader_id = statuses.first()?.1?.leader_id;
        let agreed = statuses
            .iter()
            .all(|(_, status)| status.is_some_and(|status| status.leader_id == leader_id));
        statuses
            .iter()
            .find(|(_, status)| status.is_some_and(|status| status.is_leader()))
            .filter(|_| agreed)
            .map(|(n, _)| *n)
    }

    /// The leader's Raft term (0 when there is no agreed leader).
    pub async fn term(&self) -> u64 {
        let Some(leader) = self.leader_index().await else {
            return 0;
        };
        let statuses = self.statuses().await;
        statuses
            .iter()
            .find(|(n, _)| *n == leader)
            .and_then(|(_, status)| status.map(|status| status.term))
            .unwrap_or(0)
    }

    /// Wait until every running member answers and all agree on a leader.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<usize> {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.leader_index().await {
                return Ok(leader);
            }
            if started.elapsed() > timeout {
                bail!(
                    "etcd did not agree on a leader within {timeout:?}; logs in {}",
                    self.members[0]
                        .log
                        .parent()
                        .map_or(String::new(), |dir| dir.display().to_string())
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILL member `n`.
    pub fn kill9(&mut self, n: usize) {
        if let Some(mut process) = self.members[n].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Start member `n` again on its data.
    pub fn restart(&mut self, n: usize) -> Result<()> {
        self.launch(n)
    }

    /// CPU time (user + system) of each member so far, ms, in member order
    /// (0 for a stopped one).
    pub fn cpu_ms(&self) -> Vec<u64> {
        self.members
            .iter()
            .map(|member| {
                member
                    .process
                    .as_ref()
                    .and_then(|process| resources::process_cpu_ms(process.id()))
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for n in 0..self.members.len() {
            self.kill9(n);
        }
    }
}

/// A loopback address with a port free right now (released before etcd
/// binds it; a collision shows as etcd failing to start).
fn free_loopback_address() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port")?;
    Ok(listener.local_addr()?.to_string())
}
