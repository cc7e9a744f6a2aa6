//! What of a plugin's stdout/stderr reaches the host's log, decided purely:
//! each call may write a bounded number of bytes in a bounded number of
//! writes (the rest is dropped and counted), and what is shown is escaped so
//! a plugin cannot forge log lines or send terminal control sequences to
//! whoever reads the log.

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
}
