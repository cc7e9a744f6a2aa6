//! Whether a forwarded command may travel in a `ForwardBatch` call, without
//! I/O: only once the cluster's protocol level says every member answers
//! one, and not to a leader that refused one a moment ago.
//!
//! The level is what decides: a cluster below it may still have members
//! whose binary lacks the method (during a rolling upgrade, or to keep a
//! rollback possible), and there each command goes in a call of its own. A
//! binary that lacks the method cannot run at the level (it stops at the
//! entry that raised it, and the leader does not add it), so a refusal
//! there is a safety net only; it expires so batches resume by themselves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::consensus::settings::PROTOCOL_LEVEL_FORWARD_BATCHES;
use crate::limits::FORWARD_BATCH_RETRY_AFTER;

/// Whether a cluster at `protocol_level` may forward commands in batches.
pub fn level_takes_batches(protocol_level: u32) -> bool {
    protocol_level >= PROTOCOL_LEVEL_FORWARD_BATCHES
}

/// Leaders that refused the method (`unimplemented`, or with TLS a role
/// check that does not know it), and when: their commands go alone for
/// [`FORWARD_BATCH_RETRY_AFTER`], then batches are tried again.
#[derive(Debug, Default)]
pub struct Refusals {
    refused_at: HashMap<String, Instant>,
}

impl Refusals {
    /// The leader at `rpc_addr` refused a batch at `now`.
    pub fn record(&mut self, rpc_addr: &str, now: Instant) {
        // Leaders are few; expired entries go whenever one is added, so the
        // map holds only those refused within the interval.
        self.refused_at
            .retain(|_, refused_at| !expired(*refused_at, now, FORWARD_BATCH_RETRY_AFTER));
        self.refused_at.insert(rpc_addr.to_string(), now);
    }

    /// Whether a batch may go to the leader at `rpc_addr` at `now`.
    pub fn takes_batches(&mut self, rpc_addr: &str, now: Instant) -> bool {
        match self.refused_at.get(rpc_addr) {
            Some(refused_at) if !expired(*refused_at, now, FORWARD_BATCH_RETRY_AFTER) => false,
            Some(_) => {
                self.refused_at.remove(rpc_addr);
                true
            }
            None => true,
        }
    }
}

fn expired(at: Instant, now: Instant, after: Duration) -> bool {
    now.saturating_duration_since(at) >= after
}

#[cfg(test)]
mod tests {
    //! Goal: batches go only from the level on, and a refusing leader gets
    //! single calls for the named interval, then batches again.
    use super::*;
    use crate::consensus::settings::{PROTOCOL_LEVEL_SIGNERS, PROTOCOL_LEVEL_SUPPORTED};

    #[test]
    fn batches_start_at_their_protocol_level() {
        assert!(!level_takes_batches(0));
        assert!(!level_takes_batches(PROTOCOL_LEVEL_SIGNERS));
        assert!(!level_takes_batches(PROTOCOL_LEVEL_FORWARD_BATCHES - 1));
        assert!(level_takes_batches(PROTOCOL_LEVEL_FORWARD_BATCHES));
        assert!(level_takes_batches(PROTOCOL_LEVEL_SUPPORTED));
    }

    #[test]
    fn a_refusal_holds_for_the_interval_then_expires() {
        let start = Instant::now();
        let mut refusals = Refusals::default();
        assert!(refusals.takes_batches("a:1", start));
        refusals.record("a:1", start);
        assert!(!refusals.takes_batches("a:1", start));
        assert!(refusals.takes_batches("b:1", start), "only that leader");
        let almost = start + FORWARD_BATCH_RETRY_AFTER - Duration::from_millis(1);
        assert!(!refusals.takes_batches("a:1", almost));
        assert!(refusals.takes_batches("a:1", start + FORWARD_BATCH_RETRY_AFTER));
        assert!(refusals.refused_at.is_empty(), "an expired entry is gone");
    }

    #[test]
    fn recording_drops_expired_refusals() {
        let start = Instant::now();
        let mut refusals = Refusals::default();
        refusals.record("a:1", start);
        refusals.record("b:1", start + FORWARD_BATCH_RETRY_AFTER);
        assert_eq!(refusals.refused_at.len(), 1);
        assert!(refusals.takes_batches("a:1", start + FORWARD_BATCH_RETRY_AFTER));
    }
}
