//! The pure half of `plugin check`: comparing what two runs answered, and
//! describing the first difference briefly enough for a terminal.

use serde::Serialize;

use crate::limits::CHECK_DIFF_CONTEXT_BYTES;

/// What one step answered, as the check compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The plugin's `ok` bytes.
    Ok(Vec<u8>),
    /// The plugin's `err` message.
    Err(String),
    /// The host stopped the call (trap, fuel, memory, oversized output).
    Fault(String),
}

impl Answer {
    /// The answer as one line of text: `ok …`, `err …` or `fault …`.
    pub fn render(&self) -> String {
        match self {
            Answer::Ok(bytes) => format!("ok {}", String::from_utf8_lossy(bytes)),
            Answer::Err(message) => format!("err {message}"),
            Answer::Fault(message) => format!("fault {message}"),
        }
    }
}

/// One step's answer, with the step's number (1-based, counting every step
/// of the command file, so it points at the line the user wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// Step number, from 1.
    pub step: usize,
    /// What it answered.
    pub answer: Answer,
}

/// Where two runs first disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The step (from 1) whose answer differs, or after which the snapshot
    /// differs.
    pub step: usize,
    /// What differs: `response` or `snapshot`.
    pub what: &'static str,
    /// The reference run's side, shortened around the difference.
    pub expected: String,
    /// The other run's side, shortened around the difference.
    pub actual: String,
}

/// The first step at which `actual` answered differently from `expected`
/// (matched by step number; a step missing from either side differs too).
pub fn first_answer_difference(expected: &[Answered], actual: &[Answered]) -> Option<Mismatch> {
    let length = expected.len().max(actual.len());
    (0..length).find_map(|position| {
        let (left, right) = (expected.get(position), actual.get(position));
        if left == right {
            return None;
        }
        let step = left.or(right).map_or(0, |answered| answered.step);
        let side = |answered: Option<&Answered>| {
            answered.map_or_else(|| "(no answer)".to_string(), |a| a.answer.render())
        };
        let (expected, actual) = (side(left), side(right));
        let start = common_prefix(expected.as_bytes(), actual.as_bytes());
        Some(Mismatch {
            step,
            what: "response",
            expected: excerpt(expected.as_bytes(), start),
            actual: excerpt(actual.as_bytes(), start),
        })
    })
}

/// A mismatch if the snapshots taken after `step` differ.
pub fn snapshot_difference(step: usize, expected: &[u8], actual: &[u8]) -> Option<Mismatch> {
    if expected == actual {
        return None;
    }
    let start = common_prefix(expected, actual);
    Some(Mismatch {
        step,
        what: "snapshot",
        expected: format!("{} bytes: {}", expected.len(), excerpt(expected, start)),
        actual: format!("{} bytes: {}", actual.len(), excerpt(actual, start)),
    })
}

/// The first point at which the snapshots of two runs differ (matched in
/// order; a snapshot missing from either side differs too).
pub fn first_snapshot_difference(
    expected: &[(usize, Vec<u8>)],
    actual: &[(usize, Vec<u8>)],
) -> Option<Mismatch> {
    let length = expected.len().max(actual.len());
    (0..length).find_map(
        |position| match (expected.get(position), actual.get(position)) {
            (Some((step, left)), Some((_, right))) => snapshot_difference(*step, left, right),
            (Some((step, _)), None) | (None, Some((step, _))) => Some(Mismatch {
                step: *step,
                what: "snapshot",
                expected: "a snapshot".into(),
                actual: "none (the run stopped earlier)".into(),
            }),
            (None, None) => None,
        },
    )
}

fn common_prefix(left: &[u8], right: &[u8]) -> usize {
    left.iter().zip(right).take_while(|(l, r)| l == r).count()
}

/// `bytes` around `start`, lossily as text, with `…` where cut, so a diff of
/// two large snapshots shows where they part and not the whole state.
pub fn excerpt(bytes: &[u8], start: usize) -> String {
    let start = start.min(bytes.len());
    let from = start.saturating_sub(CHECK_DIFF_CONTEXT_BYTES);
    let to = bytes.len().min(start + CHECK_DIFF_CONTEXT_BYTES);
    let from = from.min(to);
    let mut text = String::new();
    if from > 0 {
        text.push('…');
    }
    // Control characters escaped, so one answer stays on one line; quotes
    // kept, so JSON reads as JSON.
    for character in String::from_utf8_lossy(&bytes[from..to]).chars() {
        if character.is_control() {
            text.extend(character.escape_default());
        } else {
            text.push(character);
        }
    }
    if to < bytes.len() {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(step: usize, text: &str) -> Answered {
        Answered {
            step,
            answer: Answer::Ok(text.as_bytes().to_vec()),
        }
    }

    #[test]
    fn equal_runs_have_no_difference() {
        let run = vec![ok(1, "a"), ok(2, "b")];
        assert_eq!(first_answer_difference(&run, &run), None);
        assert_eq!(snapshot_difference(2, b"x", b"x"), None);
    }

    #[test]
    fn the_first_differing_step_is_named() {
        let left = vec![ok(1, "a"), ok(3, r#"{"value":1}"#), ok(4, "x")];
        let right = vec![ok(1, "a"), ok(3, r#"{"value":2}"#), ok(4, "y")];
        let mismatch = first_answer_difference(&left, &right).unwrap();
        assert_eq!(mismatch.step, 3);
        assert_eq!(mismatch.what, "response");
        assert!(mismatch.expected.contains("1}"), "{mismatch:?}");
        assert!(mismatch.actual.contains("2}"), "{mismatch:?}");
    }

    #[test]
    fn a_missing_answer_differs() {
        let left = vec![ok(1, "a"), ok(2, "b")];
        let mismatch = first_answer_difference(&left, &left[..1]).unwrap();
        assert_eq!(mismatch.step, 2);
        assert_eq!(mismatch.actual, "(no answer)");
    }

    #[test]
    fn errors_and_faults_differ_from_ok() {
        let left = vec![ok(1, "a")];
        let right = vec![Answered {
            step: 1,
            answer: Answer::Fault("trapped".into()),
        }];
        let mismatch = first_answer_difference(&left, &right).unwrap();
        assert!(mismatch.actual.contains("fault trapped"), "{mismatch:?}");
    }

    #[test]
    fn a_snapshot_diff_shows_sizes_and_where_they_part() {
        let long = "k".repeat(500);
        let left = format!("{long}[\"a\",\"1\"],[\"b\",\"2\"]]");
        let right = format!("{long}[\"a\",\"1\"]]");
        let mismatch = snapshot_difference(7, left.as_bytes(), right.as_bytes()).unwrap();
        assert_eq!(mismatch.step, 7);
        assert!(
            mismatch
                .expected
                .starts_with(&format!("{} bytes: …", left.len()))
        );
        assert!(mismatch.expected.contains(r#"["b","2"]"#), "{mismatch:?}");
        assert!(mismatch.actual.len() < 200, "shortened: {mismatch:?}");
    }

    #[test]
    fn excerpts_cut_both_ends() {
        let bytes = vec![b'x'; 1000];
        let text = excerpt(&bytes, 500);
        assert!(text.starts_with('…') && text.ends_with('…'));
        assert_eq!(excerpt(b"short", 0), "short");
        assert_eq!(excerpt(b"short", 99), "short");
        assert_eq!(excerpt(b"a\nb", 0), "a\\nb", "one line");
    }
}
