//! What of a plugin's stdout/stderr reaches the host's log, decided purely:
//! each call may write a bounded number of bytes in a bounded number of
//! writes, and the node as a whole a bounded number of bytes per second
//! (the rest is dropped and counted); what is shown is escaped so a plugin
//! cannot forge log lines or send terminal control sequences to whoever
//! reads the log. Time is passed in, never read here, so tests can move it.

use std::time::{Duration, Instant};

use crate::limits::{PLUGIN_OUTPUT_BYTES_PER_CALL_MAX, PLUGIN_OUTPUT_WRITES_PER_CALL_MAX};

/// The output one call has written so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputBudget {
    shown_bytes: usize,
    shown_writes: usize,
    dropped_bytes: usize,
}

impl OutputBudget {
    /// How many bytes (from the start) of a write of `len` bytes are shown;
    /// the rest counts as dropped. A write past the per-call count of writes
    /// is dropped whole, so a plugin writing one byte at a time cannot turn
    /// its byte budget into thousands of log records.
    pub fn admit(&mut self, len: usize) -> usize {
        let room = if self.shown_writes < PLUGIN_OUTPUT_WRITES_PER_CALL_MAX {
            PLUGIN_OUTPUT_BYTES_PER_CALL_MAX.saturating_sub(self.shown_bytes)
        } else {
            0
        };
        let shown = len.min(room);
        if shown > 0 {
            self.shown_writes += 1;
        }
        self.shown_bytes += shown;
        self.dropped_bytes += len - shown;
        shown
    }

    /// Bytes this call wrote past its budget.
    pub fn dropped_bytes(&self) -> usize {
        self.dropped_bytes
    }
}

/// A token bucket over a node's plugin output: up to `burst_bytes` at
/// once, refilled at `bytes_per_second`.
#[derive(Debug, Clone)]
pub struct OutputRate {
    bytes_per_second: f64,
    burst_bytes: f64,
    /// Bytes that may be shown now (fractions accrue between writes).
    tokens: f64,
    /// When `tokens` was last brought up to date; `None`: never (full).
    refilled_at: Option<Instant>,
}

impl OutputRate {
    /// A full bucket.
    pub fn new(bytes_per_second: usize, burst_bytes: usize) -> Self {
        Self {
            bytes_per_second: bytes_per_second as f64,
            burst_bytes: burst_bytes as f64,
            tokens: burst_bytes as f64,
            refilled_at: None,
        }
    }

    /// How many bytes (from the start) of a write of `bytes` at `now` are
    /// shown; the rest is over the rate. A clock that goes backwards adds
    /// nothing.
    pub fn admit(&mut self, now: Instant, bytes: usize) -> usize {
        if let Some(then) = self.refilled_at {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.bytes_per_second).min(self.burst_bytes);
        }
        self.refilled_at = Some(self.refilled_at.map_or(now, |then| then.max(now)));
        // Whole bytes only; the fraction stays for the next write.
        let shown = (self.tokens.floor() as usize).min(bytes);
        self.tokens -= shown as f64;
        shown
    }
}

/// Bytes of output dropped, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedOutput {
    /// Past one call's bytes or writes.
    pub call_cap_bytes: u64,
    /// Past the node's rate.
    pub rate_bytes: u64,
}

impl DroppedOutput {
    fn is_empty(&self) -> bool {
        self.call_cap_bytes == 0 && self.rate_bytes == 0
    }
}

/// When to warn that output was dropped: at the first drop, then at most
/// once per `interval`, each warning summing the drops since the last.
#[derive(Debug, Clone)]
pub struct DropWarnings {
    interval: Duration,
    warned_at: Option<Instant>,
    unreported: DroppedOutput,
}

impl DropWarnings {
    /// No warning given yet.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            warned_at: None,
            unreported: DroppedOutput::default(),
        }
    }

    /// Record `dropped` at `now`; returns what to warn about now, if a
    /// warning is due.
    pub fn dropped(&mut self, now: Instant, dropped: DroppedOutput) -> Option<DroppedOutput> {
        self.unreported.call_cap_bytes += dropped.call_cap_bytes;
        self.unreported.rate_bytes += dropped.rate_bytes;
        let due = self
            .warned_at
            .is_none_or(|then| now.saturating_duration_since(then) >= self.interval);
        if !due || self.unreported.is_empty() {
            return None;
        }
        self.warned_at = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

/// `bytes` as one line of log text: invalid UTF-8 replaced, trailing
/// whitespace trimmed, and every control or bidirectional-formatting
/// character (newlines, escapes, carriage returns, overrides) written as a
/// visible escape, as is the backslash itself so escapes stay unambiguous.
pub fn escape_for_log(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if character == '\\' || character.is_control() || is_bidi_control(character) {
            escaped.extend(character.escape_default());
        } else {
            escaped.push(character);
        }
    }
    escaped
}

/// Characters that reorder how the text around them is displayed.
fn is_bidi_control(character: char) -> bool {
    matches!(
        character,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_cannot_forge_log_lines_or_send_terminal_controls() {
        let forged = b"ok\n2026-01-01T00:00:00Z  INFO clusterhost: leader elected\r\x1b[2J\x07";
        let line = escape_for_log(forged);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            line,
            "ok\\n2026-01-01T00:00:00Z  INFO clusterhost: leader elected\\r\\u{1b}[2J\\u{7}"
        );
        assert_eq!(escape_for_log("a\\nb".as_bytes()), "a\\\\nb", "backslash");
        assert_eq!(escape_for_log("x\u{202E}y".as_bytes()), "x\\u{202e}y");
        assert_eq!(escape_for_log(b"\x9b\xff"), "\u{FFFD}\u{FFFD}", "not UTF-8");
        assert_eq!(escape_for_log("naïve 🎉\t\n".as_bytes()), "naïve 🎉");
    }

    #[test]
    fn output_past_the_byte_budget_is_dropped_and_counted() {
        let mut budget = OutputBudget::default();
        assert_eq!(budget.admit(100), 100);
        assert_eq!(
            budget.admit(PLUGIN_OUTPUT_BYTES_PER_CALL_MAX),
            PLUGIN_OUTPUT_BYTES_PER_CALL_MAX - 100
        );
        assert_eq!(budget.admit(5), 0);
        assert_eq!(budget.dropped_bytes(), 105);
    }

    #[test]
    fn many_small_writes_are_bounded_in_count() {
        let mut budget = OutputBudget::default();
        let shown: usize = (0..PLUGIN_OUTPUT_WRITES_PER_CALL_MAX * 3)
            .map(|_| budget.admit(1))
            .sum();
        assert_eq!(shown, PLUGIN_OUTPUT_WRITES_PER_CALL_MAX);
        assert_eq!(
            budget.dropped_bytes(),
            PLUGIN_OUTPUT_WRITES_PER_CALL_MAX * 2
        );
    }

    // Goal: the node's output rate lets a burst through, then only the
    // refill rate, whatever the calls; time is a fake clock moved by hand.
    #[test]
    fn output_past_the_nodes_rate_is_dropped() {
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut rate = OutputRate::new(1_000, 4_000);
        assert_eq!(rate.admit(at(0), 3_000), 3_000, "within the burst");
        assert_eq!(rate.admit(at(0), 3_000), 1_000, "the burst's rest");
        assert_eq!(rate.admit(at(0), 10), 0, "empty");
        assert_eq!(rate.admit(at(500), 1_000), 500, "half a second's refill");
        assert_eq!(
            rate.admit(at(400), 1_000),
            0,
            "a clock going back adds nothing"
        );
        assert_eq!(
            rate.admit(at(60_000), 10_000),
            4_000,
            "refilled to the burst, no more"
        );
        // 10,000 calls a second each writing 16 KiB get the rate, not more.
        let mut shown = 0;
        for call in 0..10_000u64 {
            shown += rate.admit(at(60_000 + call / 10), PLUGIN_OUTPUT_BYTES_PER_CALL_MAX);
        }
        assert!((998..=1_000).contains(&shown), "{shown}");
    }

    // Goal: one warning at the first drop, then at most one per interval,
    // summing what was dropped since the last.
    #[test]
    fn drop_warnings_are_rate_limited_and_sum_the_drops() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let rate = |bytes| DroppedOutput {
            call_cap_bytes: 0,
            rate_bytes: bytes,
        };
        let mut warnings = DropWarnings::new(Duration::from_secs(10));
        assert_eq!(warnings.dropped(at(0), rate(0)), None, "nothing dropped");
        assert_eq!(warnings.dropped(at(0), rate(5)), Some(rate(5)));
        assert_eq!(warnings.dropped(at(1), rate(7)), None);
        let both = DroppedOutput {
            call_cap_bytes: 2,
            rate_bytes: 1,
        };
        assert_eq!(warnings.dropped(at(9), both), None);
        assert_eq!(
            warnings.dropped(at(10), rate(3)),
            Some(DroppedOutput {
                call_cap_bytes: 2,
                rate_bytes: 11,
            })
        );
    }
}
