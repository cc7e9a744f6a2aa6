//! `clusterhost bench --first-write`: how soon a cluster acknowledges a
//! write again, e.g. after its leader was killed. A new attempt starts every
//! [`FIRST_WRITE_ATTEMPT_INTERVAL`] without waiting for earlier ones, so the
//! answer does not depend on how long a system keeps a doomed request (etcd
//! holds a proposal dropped during an election until its request timeout;
//! clusterhost holds it until a leader appears): both are measured to the
//! same resolution.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::target::{System, write_once};

/// Time between two attempts.
pub const FIRST_WRITE_ATTEMPT_INTERVAL: Duration = Duration::from_millis(20);
/// Longest one attempt may run; bounds the attempts in flight to this over
/// the interval.
pub const FIRST_WRITE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Key number the probe writes (outside the load runs' key space).
const FIRST_WRITE_KEY: u64 = 99_999_999;

/// The outcome of a probe.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FirstWriteReport {
    /// What was probed.
    pub system: System,
    /// From the start of the probe to the first acknowledgement.
    pub first_write_ms: u64,
    /// Attempts started.
    pub attempts: u64,
}

/// Write to `endpoint` until one write is acknowledged or `deadline` passes.
pub async fn first_write(
    system: System,
    endpoint: &str,
    deadline: Duration,
) -> anyhow::Result<FirstWriteReport> {
    let started = Instant::now();
    let mut attempts: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut started_attempts = 0;
    let mut last_error = String::from("no attempt finished");
    while started.elapsed() < deadline {
        let endpoint = endpoint.to_string();
        attempts.spawn(async move {
            write_once(
                system,
                &endpoint,
                FIRST_WRITE_KEY,
                "x",
                FIRST_WRITE_ATTEMPT_TIMEOUT,
            )
            .await
        });
        started_attempts += 1;
        let next_attempt = tokio::time::sleep(FIRST_WRITE_ATTEMPT_INTERVAL);
        tokio::pin!(next_attempt);
        loop {
            tokio::select! {
                _ = &mut next_attempt => break,
                Some(finished) = attempts.join_next() => match finished {
                    Ok(Ok(())) => {
                        return Ok(FirstWriteReport {
                            system,
                            first_write_ms: started.elapsed().as_millis() as u64,
                            attempts: started_attempts,
                        });
                    }
                    Ok(Err(error)) => last_error = format!("{error:#}"),
                    Err(error) => last_error = error.to_string(),
                },
            }
        }
    }
    anyhow::bail!(
        "no write acknowledged by {endpoint} within {deadline:?} ({started_attempts} attempts; last: {last_error})"
    )
}
