//! The node's gate on plugin output: every call of every plugin instance a
//! node runs passes its stdout/stderr through one [`OutputGate`], which
//! applies the node's rate ([`OutputRate`]) after each call's own cap,
//! counts what either drops, and warns at most once per
//! [`PLUGIN_OUTPUT_DROPPED_WARNING_INTERVAL`].
//!
//! Determinism: the gate reads the real clock and is shared by calls on
//! different entries, so what reaches the log differs between replicas and
//! runs. That is harmless because the plugin never learns it: its writes
//! always succeed in full whatever is shown (see `sandbox::LogOutput`), so
//! results, state and fuel do not depend on the gate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::output::{DropWarnings, DroppedOutput, OutputRate};
use crate::limits::{
    PLUGIN_OUTPUT_BURST_BYTES, PLUGIN_OUTPUT_BYTES_PER_CALL_MAX, PLUGIN_OUTPUT_BYTES_PER_SECOND,
    PLUGIN_OUTPUT_DROPPED_WARNING_INTERVAL, PLUGIN_OUTPUT_WRITES_PER_CALL_MAX,
};

/// One node's plugin output gate. Cloning shares it.
#[derive(Clone)]
pub struct OutputGate(Arc<Inner>);

struct Inner {
    state: Mutex<State>,
    call_cap_bytes: AtomicU64,
    rate_bytes: AtomicU64,
}

struct State {
    rate: OutputRate,
    warnings: DropWarnings,
}

impl std::fmt::Debug for OutputGate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("OutputGate")
    }
}

impl Default for OutputGate {
    /// A gate at the node's limits ([`PLUGIN_OUTPUT_BYTES_PER_SECOND`],
    /// [`PLUGIN_OUTPUT_BURST_BYTES`]).
    fn default() -> Self {
        Self::new(OutputRate::new(
            PLUGIN_OUTPUT_BYTES_PER_SECOND,
            PLUGIN_OUTPUT_BURST_BYTES,
        ))
    }
}

impl OutputGate {
    /// A gate applying `rate`.
    pub fn new(rate: OutputRate) -> Self {
        Self(Arc::new(Inner {
            state: Mutex::new(State {
                rate,
                warnings: DropWarnings::new(PLUGIN_OUTPUT_DROPPED_WARNING_INTERVAL),
            }),
            call_cap_bytes: AtomicU64::new(0),
            rate_bytes: AtomicU64::new(0),
        }))
    }

    /// A write of `len` bytes of which the call's own cap let
    /// `call_shown` through: how many (from the start) are shown.
    pub fn admit(&self, len: usize, call_shown: usize) -> usize {
        self.admit_at(Instant::now(), len, call_shown)
    }

    fn admit_at(&self, now: Instant, len: usize, call_shown: usize) -> usize {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        let shown = state.rate.admit(now, call_shown);
        let dropped = DroppedOutput {
            call_cap_bytes: (len - call_shown) as u64,
            rate_bytes: (call_shown - shown) as u64,
        };
        self.0
            .call_cap_bytes
            .fetch_add(dropped.call_cap_bytes, Ordering::Relaxed);
        self.0
            .rate_bytes
            .fetch_add(dropped.rate_bytes, Ordering::Relaxed);
        if let Some(report) = state.warnings.dropped(now, dropped) {
            tracing::warn!(
                call_cap_bytes = report.call_cap_bytes,
                rate_bytes = report.rate_bytes,
                "plugin output dropped since the last warning: past a call's \
                 {PLUGIN_OUTPUT_BYTES_PER_CALL_MAX} bytes or {PLUGIN_OUTPUT_WRITES_PER_CALL_MAX} \
                 writes, or past the node's {PLUGIN_OUTPUT_BYTES_PER_SECOND} bytes/s \
                 (clusterhost_plugin_output_dropped_bytes_total)"
            );
        }
        shown
    }

    /// Bytes dropped since start, by why.
    pub fn dropped(&self) -> DroppedOutput {
        DroppedOutput {
            call_cap_bytes: self.0.call_cap_bytes.load(Ordering::Relaxed),
            rate_bytes: self.0.rate_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // Goal: clones share one bucket and one count, as a node's instances
    // do; both kinds of drop are counted apart.
    #[test]
    fn instances_share_the_nodes_rate_and_counts() {
        let gate = OutputGate::new(OutputRate::new(100, 100));
        let other_instance = gate.clone();
        let now = Instant::now();
        assert_eq!(gate.admit_at(now, 80, 60), 60);
        assert_eq!(other_instance.admit_at(now, 50, 50), 40);
        assert_eq!(
            gate.dropped(),
            DroppedOutput {
                call_cap_bytes: 20,
                rate_bytes: 10,
            }
        );
        let later = now + Duration::from_millis(500);
        assert_eq!(other_instance.admit_at(later, 50, 50), 50);
    }
}
