//! Looking at a running [`TestCluster`]: readiness, leaders, membership,
//! status and the CLI of each node, and their logs.

use std::time::Duration;

use clusterhost_client::Client;
use clusterhost_client::proto::StatusResponse;
use serde_json::Value;

use crate::cli::{CLI_TIMEOUT, CliOutput, run_cli, tail};
use crate::cluster::{LOG_TAIL_BYTES, START_TIMEOUT, TestCluster};
use crate::wait::wait_for;

impl TestCluster {
    /// Wait until node `n` serves: its status answers, it knows a leader and
    /// runs a plugin. Returns that status. Panics (with its log) if the
    /// process exits meanwhile.
    pub async fn wait_ready(&self, n: usize) -> clusterhost_client::proto::StatusResponse {
        let node = self.node(n);
        let process = node.process.clone().expect("node is running");
        let endpoint = node.endpoint();
        let tls = self.client_tls().cloned();
        let status = wait_for(
            &format!("node {n} to know a leader and run a plugin"),
            START_TIMEOUT,
            || {
                let process = process.clone();
                let endpoint = endpoint.clone();
                let tls = tls.clone();
                async move {
                    if let Some(exit) = process.try_exit() {
                        return Ok(Err(exit));
                    }
                    let mut client = Client::connect_with(&endpoint, tls.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = client.status().await.map_err(|e| e.to_string())?;
                    if status.leader_id.is_none() || status.plugin_digest.is_empty() {
                        return Err(format!(
                            "role {}, leader {:?}, plugin {:?}",
                            status.role, status.leader_id, status.plugin_digest
                        ));
                    }
                    Ok(Ok(status))
                }
            },
        )
        .await;
        let status = status.unwrap_or_else(|exit| {
            panic!(
                "node {n} exited before it was ready ({exit}); its log:\n{}",
                tail(&node.log(), LOG_TAIL_BYTES)
            )
        });
        *node.node_id.lock().expect("node id lock") = Some(status.node_id);
        status
    }

    /// Wait until some running node reports itself leader and return its index.
    pub async fn wait_for_leader(&self) -> usize {
        let running = self.running();
        let endpoints: Vec<(usize, String)> = running
            .iter()
            .map(|&n| (n, self.node(n).endpoint()))
            .collect();
        let tls = self.client_tls().cloned();
        wait_for("a leader among the running nodes", START_TIMEOUT, || {
            let endpoints = endpoints.clone();
            let tls = tls.clone();
            async move {
                for (n, endpoint) in endpoints {
                    let Ok(mut client) = Client::connect_with(&endpoint, tls.as_ref()).await else {
                        continue;
                    };
                    if let Ok(status) = client.status().await
                        && status.role == "leader"
                    {
                        return Some(n);
                    }
                }
                None
            }
        })
        .await
    }

    /// Node `n`'s status over gRPC, or why it could not be had (for polling;
    /// [`Self::status`] is the CLI's stable JSON).
    pub async fn try_status(&self, n: usize) -> Result<StatusResponse, String> {
        let mut client = Client::connect_with(&self.node(n).endpoint(), self.client_tls())
            .await
            .map_err(|error| format!("node {n}: {error}"))?;
        client
            .status()
            .await
            .map_err(|error| format!("node {n}: {error}"))
    }

    /// `clusterhost members --json` of node `n`.
    pub async fn members(&self, n: usize) -> Value {
        self.cli(n, &["members", "--json"]).await.success_json()
    }

    /// Wait (up to `timeout`) until every running node reports the same
    /// applied digest at the same index; that index.
    pub async fn wait_for_same_applied_digest(&self, timeout: Duration) -> u64 {
        let running = self.running();
        wait_for(
            "every replica to report the same applied digest",
            timeout,
            || async {
                let mut seen = Vec::new();
                for &n in &running {
                    let status = self.try_status(n).await?;
                    seen.push((status.applied_digest_index, status.applied_digest));
                }
                if seen.iter().all(|view| view == &seen[0]) {
                    Ok(seen[0].0)
                } else {
                    Err(format!("(digest index, digest) per node: {seen:?}"))
                }
            },
        )
        .await
    }

    /// The member ids node `n` lists.
    pub async fn member_ids(&self, n: usize) -> Vec<u64> {
        let members = self.members(n).await;
        members["members"]
            .as_array()
            .unwrap_or_else(|| panic!("no members list: {members}"))
            .iter()
            .filter_map(|member| member["id"].as_u64())
            .collect()
    }

    /// The index of the node whose id is `node_id`, among nodes seen ready.
    pub fn index_of(&self, node_id: u64) -> Option<usize> {
        self.nodes
            .iter()
            .find(|node| node.node_id() == Some(node_id))
            .map(|node| node.index)
    }

    /// Node `n`'s id; panics if it was never seen ready.
    #[track_caller]
    pub fn id_of(&self, n: usize) -> u64 {
        self.node(n)
            .node_id()
            .unwrap_or_else(|| panic!("node {n} was never seen ready"))
    }

    /// The leader every running node agrees on, as a node index; `Err` says
    /// why there is none (a node unreachable, no leader, disagreement).
    pub async fn leader_index(&self) -> Result<usize, String> {
        let mut leaders = Vec::new();
        for n in self.running() {
            let status = self.try_status(n).await?;
            leaders.push((n, status.leader_id));
        }
        let first = leaders.first().ok_or("no running node")?.1;
        let agreed = leaders.iter().all(|(_, leader)| *leader == first);
        match first.and_then(|id| self.index_of(id)) {
            Some(leader) if agreed && self.node(leader).is_running() => Ok(leader),
            _ => Err(format!("(node, leader id) per running node: {leaders:?}")),
        }
    }

    /// Wait until every running node reports the same membership of exactly
    /// `voters` voters and no learner, and agrees on a leader; returns the
    /// leader's index.
    pub async fn wait_for_voters(&self, voters: usize, timeout: Duration) -> usize {
        wait_for(
            &format!("every running node to see the same {voters} voters and one leader"),
            timeout,
            || async {
                let mut views = Vec::new();
                for n in self.running() {
                    let status = self.try_status(n).await?;
                    let mut members: Vec<(u64, String)> = status
                        .members
                        .iter()
                        .map(|member| (member.id, member.suffrage.clone()))
                        .collect();
                    members.sort();
                    if status.membership_changing {
                        return Err(format!("node {n}: a membership change is in progress"));
                    }
                    views.push((n, status.leader_id, members));
                }
                let (_, _, first) = views.first().ok_or("no running node")?;
                let all_voters =
                    first.len() == voters && first.iter().all(|(_, suffrage)| suffrage == "voter");
                let same = views.iter().all(|(_, _, members)| members == first);
                if !(all_voters && same) {
                    return Err(format!("(node, leader, members) per node: {views:?}"));
                }
                self.leader_index().await
            },
        )
        .await
    }

    /// (id, gRPC address, suffrage) of every member of the Raft
    /// membership, as node `n` records them, sorted.
    pub async fn recorded_members(&self, n: usize) -> Vec<(u64, String, String)> {
        let status = self
            .try_status(n)
            .await
            .unwrap_or_else(|error| panic!("status of node {n}: {error}"));
        let mut recorded: Vec<(u64, String, String)> = status
            .members
            .into_iter()
            .map(|member| (member.id, member.rpc_addr, member.suffrage))
            .collect();
        recorded.sort();
        recorded
    }

    /// A gRPC client connected to node `n`.
    pub async fn client(&self, n: usize) -> Client {
        let endpoint = self.node(n).endpoint();
        Client::connect_with(&endpoint, self.client_tls())
            .await
            .unwrap_or_else(|error| panic!("connect to node {n}: {error}"))
    }

    /// Run the real CLI against node `n`: `args` is the subcommand and its
    /// arguments (`["apply", "{...}"]`); the endpoint is passed through
    /// `CLUSTERHOST_ENDPOINT`.
    pub async fn cli(&self, n: usize, args: &[&str]) -> CliOutput {
        self.cli_within(n, args, CLI_TIMEOUT).await
    }

    /// [`cli`](Self::cli) with its own time bound: a deploy of a large
    /// component waits while every replica compiles it.
    pub async fn cli_within(&self, n: usize, args: &[&str], timeout: Duration) -> CliOutput {
        let endpoint = self.node(n).endpoint();
        let mut env = vec![("CLUSTERHOST_ENDPOINT".to_string(), endpoint)];
        if let Some(pki) = &self.pki {
            env.extend(pki.cli_env(&self.admin_cert));
        }
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        run_cli(args, &env, timeout).await
    }

    /// Run the real CLI with no node in particular (`plugin inspect`, ...).
    pub async fn cli_anywhere(&self, args: &[&str]) -> CliOutput {
        run_cli(args, &[], CLI_TIMEOUT).await
    }

    /// `clusterhost status --json` of node `n`, checked against the last
    /// status seen from the same process: `applied_index` never goes back.
    pub async fn status(&self, n: usize) -> Value {
        let status = self.cli(n, &["status", "--json"]).await.success_json();
        let applied = status["applied_index"]
            .as_u64()
            .unwrap_or_else(|| panic!("status of node {n} has no applied_index: {status}"));
        let mut floor = self
            .node(n)
            .applied_floor
            .lock()
            .expect("applied floor lock");
        assert!(
            applied >= *floor,
            "node {n}: applied_index went back from {} to {applied}",
            *floor
        );
        *floor = applied;
        status
    }

    /// The tail of every node's log, for failure reports.
    pub fn log_tails(&self) -> String {
        let mut report = String::new();
        for node in &self.nodes {
            report.push_str(&format!(
                "\n======== node {} ({}) log: {} ========\n{}\n",
                node.index,
                node.endpoint(),
                node.log_path().display(),
                tail(&node.log(), LOG_TAIL_BYTES)
            ));
        }
        report
    }

    /// Wait until every running node has applied the highest commit index
    /// any of them reports, and return that index.
    pub async fn wait_caught_up(&self, timeout: Duration) -> u64 {
        let running = self.running();
        wait_for(
            "every running node to apply the same index",
            timeout,
            || async {
                let mut indexes = Vec::new();
                for &n in &running {
                    let status = self.try_status(n).await?;
                    indexes.push((status.commit_index, status.applied_index));
                }
                let highest_commit = indexes.iter().map(|(commit, _)| *commit).max();
                let applied: Vec<u64> = indexes.iter().map(|(_, applied)| *applied).collect();
                if applied.iter().all(|index| Some(*index) == highest_commit) {
                    Ok(applied[0])
                } else {
                    Err(format!("(commit, applied) per node: {indexes:?}"))
                }
            },
        )
        .await
    }
}
