//! Three clusterhost nodes inside one program: the first creates the
//! cluster with the kv plugin, two join it by gossip, a write through one is
//! read through another, then all stop.
//!
//! ```sh
//! cargo xtask plugins   # builds target/plugins/kv.wasm
//! cargo run --example embedded_cluster -- target/plugins/kv.wasm
//! ```

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use clusterhost::{Consistency, EmbedError, Node};

/// How long the joining nodes get to find a leader.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let plugin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/plugins/kv.wasm".to_string());
    let directory = tempfile::tempdir()?;
    let mut gossip_seed: Option<SocketAddr> = None;
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let (listen, gossip) = (free_tcp()?, free_udp()?);
        let builder = Node::builder()
            .data_dir(directory.path().join(name))
            .listen(listen)
            .gossip(gossip)
            .stabilization(Duration::from_secs(1));
        let builder = match &gossip_seed {
            None => builder.bootstrap().plugin_file(&plugin),
            Some(seed) => builder.join([seed.to_string()]),
        };
        let node = builder.start().await?;
        println!("{name}: node {} serving on {}", node.id(), node.endpoint());
        gossip_seed.get_or_insert(gossip);
        nodes.push(node);
    }
    let answer = apply_when_ready(&nodes[2], br#"{"put":{"key":"hello","value":"world"}}"#).await?;
    println!("put through n3: {}", String::from_utf8_lossy(&answer));
    let value = nodes[1]
        .query(
            br#"{"get":{"key":"hello"}}"#.to_vec(),
            Consistency::Linearizable,
        )
        .await?;
    println!("get through n2: {}", String::from_utf8_lossy(&value));
    while let Some(node) = nodes.pop() {
        node.shutdown().await?;
    }
    println!("all nodes stopped");
    Ok(())
}

/// A node that just joined learns the leader within seconds; retry until then.
async fn apply_when_ready(node: &Node, command: &[u8]) -> Result<Vec<u8>, EmbedError> {
    let started = Instant::now();
    loop {
        match node.apply(command.to_vec()).await {
            Ok(answer) => return Ok(answer),
            Err(error) if started.elapsed() < JOIN_TIMEOUT => {
                eprintln!("waiting for the cluster: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

fn free_tcp() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn free_udp() -> std::io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}
