//! The moving parts of `cargo xtask bench --only growth`: writing a given
//! number of kv puts with concurrent in-process clients, waiting until a
//! node has applied what the leader has, timing a `clusterhost` command,
//! and writers that measure the longest write across a hot-swap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusterhost_client::Client;
use clusterhost_client::proto::apply_response::Result as Outcome;
use clusterhost_tests::{TestCluster, paths};

/// How often a node's applied index is polled while waiting for it.
const CATCH_UP_POLL: Duration = Duration::from_millis(50);
/// Attempts per put before the load gives up (a write may meet a
/// leadership change).
const PUT_ATTEMPTS: u32 = 3;
/// Longest one put may take before it counts as failed.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Writers kept busy across a hot-swap.
const SWAP_WRITERS: usize = 4;
/// Value size of those writers' puts.
const SWAP_VALUE_BYTES: usize = 256;
/// Puts one swap writer makes at most (a bound, far above what a swap
/// takes at this rate).
const SWAP_WRITES_MAX: u64 = 1_000_000;

/// What to write: `count` puts of `value_bytes` each, put number `i` at key
/// `i % key_space`, with `clients` concurrent connections.
#[derive(Debug, Clone, Copy)]
pub struct Puts {
    pub count: u64,
    pub key_space: u64,
    pub value_bytes: usize,
    pub clients: u64,
}

/// The kv (and kv_disk) put of `value_bytes` bytes at key `key`.
pub fn put_command(key: u64, value_bytes: usize) -> Vec<u8> {
    // A letter that varies by key, so no two values are alike.
    let letter = char::from(b'a' + (key % 26) as u8);
    let value: String = std::iter::repeat_n(letter, value_bytes).collect();
    format!(r#"{{"put":{{"key":"g{key:010}","value":"{value}"}}}}"#).into_bytes()
}

/// Write `puts` to `endpoint` within `limit`; fails with the first refusal
/// (the state quota, say) or when the time is up.
pub async fn write_puts(endpoint: &str, puts: Puts, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for client in 0..puts.clients {
        let endpoint = endpoint.to_string();
        writers.spawn(async move {
            let mut connection = Client::connect(&endpoint).await?;
            let mut number = client;
            while number < puts.count {
                let command = put_command(number % puts.key_space, puts.value_bytes);
                put(&mut connection, command).await?;
                number += puts.clients;
            }
            anyhow::Ok(())
        });
    }
    let all = async {
        while let Some(joined) = writers.join_next().await {
            joined.context("a writer panicked")??;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(limit, all)
        .await
        .with_context(|| format!("{} puts not done within {limit:?}", puts.count))??;
    Ok(started.elapsed())
}

/// One put, retried [`PUT_ATTEMPTS`] times on transport errors; a plugin
/// that refuses or faults fails it at once.
async fn put(connection: &mut Client, command: Vec<u8>) -> Result<()> {
    let mut last = String::new();
    for _ in 0..PUT_ATTEMPTS {
        match tokio::time::timeout(PUT_TIMEOUT, connection.apply(command.clone())).await {
            Ok(Ok(response)) => {
                return match response.result {
                    Some(Outcome::Ok(_)) => Ok(()),
                    Some(Outcome::Rejected(why)) => bail!("the plugin rejected a put: {why}"),
                    Some(Outcome::Fault(why)) => bail!("a put faulted: {why}"),
                    None => bail!("a put was answered without an outcome"),
                };
            }
            Ok(Err(error)) => {
                let text = error.to_string();
                // The quota and size limits do not pass with a retry.
                if text.contains("quota") || text.contains("exceed") {
                    bail!("{text}");
                }
                last = text;
            }
            Err(_) => last = format!("no answer within {PUT_TIMEOUT:?}"),
        }
    }
    bail!("a put failed {PUT_ATTEMPTS} times; last: {last}")
}

/// Wait until node `n` has applied at least what the leader has, polling
/// both; the time it took. Fails after `limit`.
pub async fn wait_caught_up(
    cluster: &TestCluster,
    n: usize,
    leader: usize,
    limit: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let mut last = String::from("no status yet");
    while started.elapsed() < limit {
        let statuses = (
            cluster.try_status(leader).await,
            cluster.try_status(n).await,
        );
        match statuses {
            (Ok(leader_status), Ok(status))
                if status.applied_index >= leader_status.applied_index =>
            {
                return Ok(started.elapsed());
            }
            (Ok(leader_status), Ok(status)) => {
                last = format!(
                    "applied {} of the leader's {}",
                    status.applied_index, leader_status.applied_index
                );
            }
            (Err(error), _) | (_, Err(error)) => last = error,
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
    bail!("node {n} did not catch up within {limit:?}: {last}")
}

/// Run `clusterhost ARGS` (stdout kept, stderr shown), killed after
/// `limit`; its stdout and how long it took.
pub async fn timed_cli(args: &[&str], limit: Duration) -> Result<(Duration, String)> {
    let started = Instant::now();
    let child = tokio::process::Command::new(paths::clusterhost_binary())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start clusterhost")?;
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("`clusterhost {}` took over {limit:?}", args.join(" ")))??;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "`clusterhost {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((
        elapsed,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Writers that keep putting to one endpoint until stopped.
pub struct SwapWriters {
    stop: Arc<AtomicBool>,
    writers: tokio::task::JoinSet<WriterTally>,
}

/// What one writer saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriterTally {
    pub writes: u64,
    pub errors: u64,
    pub longest: Duration,
}

impl SwapWriters {
    /// Start [`SWAP_WRITERS`] writers on `endpoint`.
    pub async fn start(endpoint: &str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..SWAP_WRITERS as u64 {
            let mut connection = Client::connect(endpoint).await?;
            let stop = stop.clone();
            writers.spawn(async move {
                let mut tally = WriterTally::default();
                while !stop.load(Ordering::Relaxed) && tally.writes < SWAP_WRITES_MAX {
                    let started = Instant::now();
                    let put = put(&mut connection, put_command(writer, SWAP_VALUE_BYTES));
                    if put.await.is_err() {
                        tally.errors += 1;
                    }
                    tally.writes += 1;
                    tally.longest = tally.longest.max(started.elapsed());
                }
                tally
            });
        }
        Ok(Self { stop, writers })
    }

    /// Stop the writers; what they saw together.
    pub async fn stop(mut self) -> WriterTally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = WriterTally::default();
        while let Some(Ok(tally)) = self.writers.join_next().await {
            total.writes += tally.writes;
            total.errors += tally.errors;
            total.longest = total.longest.max(tally.longest);
        }
        total
    }
}

/// `plugin` with a custom section appended: a build of the same plugin
/// that differs only in its bytes (and so its digest), for a hot-swap of
/// a plugin to itself.
pub fn with_custom_section(plugin: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = leb128(name.len() as u64);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut bytes = plugin.to_vec();
    // Section id 0 is a custom section, allowed between any two sections
    // of a module or component and ignored by the runtime.
    bytes.push(0);
    bytes.extend(leb128(body.len() as u64));
    bytes.extend(body);
    bytes
}

/// Unsigned LEB128, as the wasm binary format writes lengths.
fn leb128(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(low);
            return bytes;
        }
        bytes.push(low | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the load writes what the kv plugins parse, at the size asked,
    // and distinct keys stay distinct.
    #[test]
    fn puts_are_kv_json_of_the_asked_size() {
        let command = put_command(42, 5);
        let parsed: serde_json::Value = serde_json::from_slice(&command).unwrap();
        assert_eq!(parsed["put"]["key"], "g0000000042");
        assert_eq!(parsed["put"]["value"], "qqqqq");
        assert_ne!(put_command(1, 4), put_command(2, 4));
    }

    #[test]
    fn leb128_matches_the_spec_examples() {
        assert_eq!(leb128(0), vec![0]);
        assert_eq!(leb128(127), vec![0x7f]);
        assert_eq!(leb128(128), vec![0x80, 0x01]);
        assert_eq!(leb128(624_485), vec![0xe5, 0x8e, 0x26]);
    }

    // Goal: the second build is the first one plus exactly one well-formed
    // custom section.
    #[test]
    fn a_custom_section_is_appended_whole() {
        let plugin = b"\0asm\x0d\0\x01\0".to_vec();
        let bytes = with_custom_section(&plugin, "ab", b"xyz");
        assert_eq!(&bytes[..plugin.len()], &plugin[..]);
        assert_eq!(
            &bytes[plugin.len()..],
            &[0, 6, 2, b'a', b'b', b'x', b'y', b'z']
        );
    }
}
