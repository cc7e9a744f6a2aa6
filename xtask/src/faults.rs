//! `cargo xtask faults [--soak 30m]`: the fault suite outside `cargo test`.
//! Without `--soak`, every nemesis once on 3 and on 5 nodes (what CI runs
//! as a test); with it, random nemeses on random cluster sizes, with longer
//! fault cycles, until the time is up. Needs root (network namespaces).
//! Every run's report is appended to `target/faults/summary.jsonl`; a
//! failing run keeps its history and node logs under `target/faults/`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusterhost_tests::faults::{self, Nemesis, RunConfig};

use crate::{command, plugins, toolchain};

/// Fault cycles per soak run (CI runs two).
const SOAK_CYCLES: usize = 6;

/// Entry point of `cargo xtask faults`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let soak = match args {
        [] => None,
        [flag, duration] if flag == "--soak" => Some(parse_duration(duration)?),
        _ => bail!("usage: cargo xtask faults [--soak 30m]"),
    };
    plugins::run(root, &[])?;
    command::run(
        Command::new(toolchain::cargo())
            .current_dir(root)
            .args(["build", "--workspace"]),
    )?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match soak {
            None => {
                for nemesis in Nemesis::ALL {
                    for nodes in [3, 5] {
                        faults::run(RunConfig::quick(nodes, nemesis)).await;
                    }
                }
            }
            Some(duration) => soak_for(duration).await,
        }
    });
    eprintln!("every run passed; reports in target/faults/summary.jsonl");
    Ok(())
}

/// Random nemeses on 3 or 5 nodes until `duration` has passed.
async fn soak_for(duration: Duration) {
    let started = Instant::now();
    let mut random: u64 = 0x2545_F491_4F6C_DD1D;
    while started.elapsed() < duration {
        random = random.wrapping_mul(6364136223846793005).wrapping_add(1);
        let nemesis = Nemesis::ALL[(random >> 33) as usize % Nemesis::ALL.len()];
        let nodes = if (random >> 17).is_multiple_of(2) {
            3
        } else {
            5
        };
        let mut config = RunConfig::quick(nodes, nemesis);
        config.cycles = SOAK_CYCLES;
        config.seed = random;
        faults::run(config).await;
    }
}

/// `30m`, `2h`, `90s`.
fn parse_duration(text: &str) -> Result<Duration> {
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration like 90s, 30m or 2h"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        _ => bail!("`{text}`: use s, m or h"),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_durations_parse() {
        assert_eq!(parse_duration("30m").ok(), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h").ok(), Some(Duration::from_secs(7200)));
        assert!(parse_duration("30").is_err());
    }
}
