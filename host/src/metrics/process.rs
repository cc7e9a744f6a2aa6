//! The usual process metrics — CPU time, resident memory, open files,
//! threads — read from `/proc/self` when scraped (Linux; elsewhere they
//! stay 0). Parsing is pure; reading is [`ProcessMetrics::refresh`].

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// What `/proc/self/stat` and `/proc/self/statm` say, in their units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
    /// Resident pages.
    pub resident_pages: u64,
}

/// Parse `/proc/self/stat` and `/proc/self/statm`. The command name in
/// `stat` may hold spaces and parentheses, so fields count from its last `)`.
pub fn parse(stat: &str, statm: &str) -> Option<ProcStat> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), so field n is at n - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let resident_pages = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcStat {
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        resident_pages,
    })
}

/// The registered process metrics.
pub struct ProcessMetrics {
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
    threads: Gauge,
}

impl ProcessMetrics {
    /// Register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            cpu_seconds: Counter::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            threads: Gauge::default(),
        };
        registry.register_with_unit(
            "process_cpu",
            "User and system CPU time this process used",
            Unit::Seconds,
            metrics.cpu_seconds.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of this process",
            Unit::Bytes,
            metrics.resident_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            metrics.open_fds.clone(),
        );
        registry.register("process_threads", "OS threads", metrics.threads.clone());
        metrics
    }

    /// Read `/proc/self` now. A value that cannot be read keeps its last.
    pub fn refresh(&self) {
        let stat = std::fs::read_to_string("/proc/self/stat");
        let statm = std::fs::read_to_string("/proc/self/statm");
        if let (Ok(stat), Ok(statm)) = (stat, statm)
            && let Some(parsed) = parse(&stat, &statm)
        {
            let (ticks_per_second, page_bytes) = system_units();
            let cpu_seconds = parsed.cpu_ticks as f64 / ticks_per_second;
            // A counter only goes up: add what was used since the last scrape.
            let delta = cpu_seconds - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
            self.resident_bytes
                .set((parsed.resident_pages * page_bytes) as i64);
            self.threads.set(parsed.threads as i64);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(entries.count() as i64);
        }
    }
}

/// Clock ticks per second and bytes per page.
fn system_units() -> (f64, u64) {
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let page = if page > 0 { page as u64 } else { 4096 };
    (ticks, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_end_of_the_command_name() {
        let stat = "4242 (a (strange) name) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 9 0 1234 100000 2000 18446744073709551615";
        let parsed = parse(stat, "25000 1500 700 100 0 3000 0").expect("parses");
        assert_eq!(
            parsed,
            ProcStat {
                cpu_ticks: 200,
                threads: 9,
                resident_pages: 1500,
            }
        );
        assert_eq!(parse("garbage", "1 2"), None);
    }
}
