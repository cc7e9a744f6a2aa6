//! The faults a run injects — crashes, pauses and network partitions — and
//! how each is healed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::TestCluster;
use crate::netns::TestNetwork;

/// How long a flapping link stays in each state.
const FLAP_PERIOD: Duration = Duration::from_millis(300);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nemesis {
    /// kill -9 a random node; it restarts at heal.
    KillRandom,
    /// kill -9 the leader; it restarts at heal.
    KillLeader,
    /// SIGSTOP the leader; SIGCONT at heal.
    PauseLeader,
    /// SIGSTOP a follower; SIGCONT at heal.
    PauseFollower,
    /// Cut the leader off from every other node.
    IsolateLeader,
    /// Split the nodes into a random majority and minority.
    MajorityMinority,
    /// Two sides that cannot see each other, and one node that sees both.
    Bridge,
    /// A link between the leader and a follower that goes down and up.
    FlappingLink,
    /// kill -9 every node; all restart at heal.
    RestartAll,
}

impl Nemesis {
    /// Every nemesis.
    pub const ALL: [Nemesis; 9] = [
        Nemesis::KillRandom,
        Nemesis::KillLeader,
        Nemesis::PauseLeader,
        Nemesis::PauseFollower,
        Nemesis::IsolateLeader,
        Nemesis::MajorityMinority,
        Nemesis::Bridge,
        Nemesis::FlappingLink,
        Nemesis::RestartAll,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillRandom => "kill-random",
            Nemesis::KillLeader => "kill-leader",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::PauseFollower => "pause-follower",
            Nemesis::IsolateLeader => "isolate-leader",
            Nemesis::MajorityMinority => "majority-minority",
            Nemesis::Bridge => "bridge",
            Nemesis::FlappingLink => "flapping-link",
            Nemesis::RestartAll => "restart-all",
        }
    }
}

/// A fault in place, and what undoing it takes.
pub enum Fault {
    /// These nodes were killed.
    Killed(Vec<usize>),
    /// These nodes are paused.
    Paused(Vec<usize>),
    /// The network is partitioned.
    Partitioned,
    /// A link is flapping until `stop` is set.
    Flapping {
        /// Tells the flapper to stop.
        stop: Arc<AtomicBool>,
        /// The flapper.
        task: JoinHandle<()>,
    },
}

/// Inject `nemesis` into `cluster` (whose nodes run on `network`). `random`
/// picks nodes; `leader` is the current leader.
pub fn inject(
    nemesis: Nemesis,
    cluster: &mut TestCluster,
    network: &Arc<TestNetwork>,
    leader: usize,
    random: u64,
) -> Fault {
    let nodes = cluster.nodes().len();
    let follower = (leader + 1 + random as usize % (nodes - 1)) % nodes;
    match nemesis {
        Nemesis::KillRandom => kill(cluster, vec![random as usize % nodes]),
        Nemesis::KillLeader => kill(cluster, vec![leader]),
        Nemesis::RestartAll => kill(cluster, (0..nodes).collect()),
        Nemesis::PauseLeader => pause(cluster, leader),
        Nemesis::PauseFollower => pause(cluster, follower),
        Nemesis::IsolateLeader => {
            network.isolate(leader).expect("isolate the leader");
            Fault::Partitioned
        }
        Nemesis::MajorityMinority => {
            let order = shuffled(nodes, random);
            let (minority, majority) = order.split_at((nodes - 1) / 2);
            network
                .partition(&[minority.to_vec(), majority.to_vec()])
                .expect("split the cluster");
            Fault::Partitioned
        }
        Nemesis::Bridge => {
            let order = shuffled(nodes, random);
            let side = (nodes - 1) / 2;
            network
                .bridge_partition(&order[..side], &order[side + 1..], order[side])
                .expect("bridge partition");
            Fault::Partitioned
        }
        Nemesis::FlappingLink => flap(network.clone(), leader, follower),
    }
}

/// Undo `fault`: restart killed nodes (without waiting for them), resume
/// paused ones, heal the network.
pub async fn heal(fault: Fault, cluster: &mut TestCluster, network: &TestNetwork) {
    match fault {
        Fault::Killed(nodes) => {
            for n in nodes {
                cluster.restart_without_waiting(n).await;
            }
        }
        Fault::Paused(nodes) => {
            for n in nodes {
                cluster.resume(n);
            }
        }
        Fault::Partitioned => network.heal().expect("heal the network"),
        Fault::Flapping { stop, task } => {
            stop.store(true, Ordering::SeqCst);
            let _ = task.await;
            network.heal().expect("heal the network");
        }
    }
}

fn kill(cluster: &mut TestCluster, nodes: Vec<usize>) -> Fault {
    for &n in &nodes {
        cluster.kill9(n);
    }
    Fault::Killed(nodes)
}

fn pause(cluster: &TestCluster, n: usize) -> Fault {
    cluster.pause(n);
    Fault::Paused(vec![n])
}

fn flap(network: Arc<TestNetwork>, a: usize, b: usize) -> Fault {
    let stop = Arc::new(AtomicBool::new(false));
    let flapping = stop.clone();
    let task = tokio::spawn(async move {
        let mut cut = false;
        while !flapping.load(Ordering::SeqCst) {
            cut = !cut;
            let changed = if cut {
                network.cut(a, b)
            } else {
                network.restore(a, b)
            };
            changed.expect("flap the link");
            tokio::time::sleep(FLAP_PERIOD).await;
        }
    });
    Fault::Flapping { stop, task }
}

/// `0..nodes` in an order drawn from `random`.
fn shuffled(nodes: usize, mut random: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes).collect();
    for i in (1..nodes).rev() {
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (random >> 33) as usize % (i + 1));
    }
    order
}
