//! The fault suite: every nemesis — crashes, pauses, partitions, a flapping
//! link, a restart of everything — on a 3-node and a 5-node cluster whose
//! nodes run on hosts of their own (network namespaces). Each run must show
//! a linearizable history, identical replicas and a cluster that takes
//! writes again after the heal. Runs one at a time: they load both cores.
//! Needs root (network namespaces). Without root a run is skipped, unless
//! [`REQUIRED_ENV`] is set (CI sets it), when it fails instead: a CI that
//! lost root must not pass without its fault runs.

use clusterhost_tests::faults::{self, Nemesis, RunConfig};

/// One run at a time: two clusters of debug builds at once would starve
/// each other's elections.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Set (to anything) where the fault suite must run, not be skipped.
const REQUIRED_ENV: &str = "CLUSTERHOST_FAULTS_REQUIRED";

/// Run `nemesis` on 3 and on 5 nodes.
async fn on_three_and_five_nodes(nemesis: Nemesis) {
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os(REQUIRED_ENV).is_none(),
            "{REQUIRED_ENV} is set, but {} cannot run: network namespaces need root",
            nemesis.name()
        );
        eprintln!("skipping {}: network namespaces need root", nemesis.name());
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    for nodes in [3, 5] {
        let report = faults::run(RunConfig::quick(nodes, nemesis)).await;
        assert_eq!(report.violations, 0);
        assert!(report.ok > 0, "no operation succeeded in {}", report.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_a_random_node() {
    on_three_and_five_nodes(Nemesis::KillRandom).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_the_leader() {
    on_three_and_five_nodes(Nemesis::KillLeader).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_the_leader() {
    on_three_and_five_nodes(Nemesis::PauseLeader).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_a_follower() {
    on_three_and_five_nodes(Nemesis::PauseFollower).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn isolate_the_leader() {
    on_three_and_five_nodes(Nemesis::IsolateLeader).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn split_majority_and_minority() {
    on_three_and_five_nodes(Nemesis::MajorityMinority).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_partition() {
    on_three_and_five_nodes(Nemesis::Bridge).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flapping_link() {
    on_three_and_five_nodes(Nemesis::FlappingLink).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_every_node_at_once() {
    on_three_and_five_nodes(Nemesis::RestartAll).await;
}
