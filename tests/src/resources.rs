//! What each running node costs the machine: CPU time and resident memory,
//! read from `/proc` (Linux).

use crate::cluster::TestCluster;

impl TestCluster {
    /// CPU time (user + system) each running node has used so far, in ms,
    /// in node order (0 when unreadable).
    pub fn cpu_ms(&self) -> Vec<u64> {
        self.running()
            .into_iter()
            .filter_map(|n| self.node(n).pid())
            .map(|pid| process_cpu_ms(pid).unwrap_or(0))
            .collect()
    }

    /// Resident memory of each running node, KiB, in node order.
    pub fn rss_kib(&self) -> Vec<u64> {
        self.per_node_proc("status", |status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
    }

    /// `/proc/<pid>/<file>` of each running node, parsed (0 when unreadable).
    fn per_node_proc(&self, file: &str, parse: impl Fn(&str) -> Option<u64>) -> Vec<u64> {
        self.running()
            .into_iter()
            .filter_map(|n| self.node(n).pid())
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/{file}"))
                    .ok()
                    .and_then(|text| parse(&text))
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// CPU time (user + system) process `pid` has used so far, in ms.
pub fn process_cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: utime and stime
    // are the 12th and 13th of them.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) * 1000 / clock_ticks_per_second())
}

/// The kernel's clock tick rate for /proc CPU times (100 on Linux unless
/// `getconf` says otherwise).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}
