//! The command file `plugin check --commands` reads: one step a line.
//!
//! - `COMMAND` — bytes given to `apply` (the rest of the line, trimmed);
//! - `?QUERY` — bytes given to `query`;
//! - blank lines and lines starting with `#` are skipped.

use crate::limits::{CHECK_SCRIPT_STEPS_MAX, COMMAND_BYTES_MAX, QUERY_BYTES_MAX};

/// One step of a check: a command to apply or a query to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bytes for `apply`.
    Apply(Vec<u8>),
    /// Bytes for `query`.
    Query(Vec<u8>),
}

impl Step {
    /// Whether this step is a query.
    pub fn is_query(&self) -> bool {
        matches!(self, Step::Query(_))
    }
}

/// Why a command file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A line longer than the host accepts for its kind.
    #[error("line {line}: {bytes} bytes, more than the {max} byte limit")]
    TooLong {
        line: usize,
        bytes: usize,
        max: usize,
    },
    /// More steps than one check runs.
    #[error("more than {max} steps")]
    TooManySteps { max: usize },
    /// Nothing to apply: every check needs at least one command.
    #[error("no commands (lines not starting with `?`)")]
    NoCommands,
}

/// Parse a command file.
pub fn parse(text: &str) -> Result<Vec<Step>, ScriptError> {
    let mut steps = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (step, max) = match line.strip_prefix('?') {
            Some(query) => (
                Step::Query(query.trim().as_bytes().to_vec()),
                QUERY_BYTES_MAX,
            ),
            None => (Step::Apply(line.as_bytes().to_vec()), COMMAND_BYTES_MAX),
        };
        let bytes = match &step {
            Step::Apply(bytes) | Step::Query(bytes) => bytes.len(),
        };
        if bytes > max {
            return Err(ScriptError::TooLong {
                line: number + 1,
                bytes,
                max,
            });
        }
        if steps.len() == CHECK_SCRIPT_STEPS_MAX {
            return Err(ScriptError::TooManySteps {
                max: CHECK_SCRIPT_STEPS_MAX,
            });
        }
        steps.push(step);
    }
    if steps.iter().all(Step::is_query) {
        return Err(ScriptError::NoCommands);
    }
    Ok(steps)
}

/// Up to `count` step numbers (from 1) of commands spread evenly over the
/// file, the last command always among them: where the round-trip check
/// snapshots and restores.
pub fn round_trip_points(steps: &[Step], count: usize) -> Vec<usize> {
    let commands: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, step)| !step.is_query())
        .map(|(index, _)| index + 1)
        .collect();
    let mut points: Vec<usize> = (1..=count)
        .map(|k| commands.len() * k / count)
        .filter(|&n| n > 0)
        .map(|n| commands[n - 1])
        .collect();
    points.dedup();
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_points_spread_over_the_commands() {
        let steps = parse("a\n?q\nb\nc\n?q\nd\ne\nf\ng\nh\n").unwrap();
        assert_eq!(round_trip_points(&steps, 4), vec![3, 6, 8, 10]);
        let one = parse("?q\na\n?q\n").unwrap();
        assert_eq!(round_trip_points(&one, 4), vec![2]);
    }

    #[test]
    fn commands_queries_comments_and_blanks() {
        let steps = parse("# kv\n{\"put\":1}\n\n  ?\"get\"  \n? {\"a\":2}\n").unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Apply(b"{\"put\":1}".to_vec()),
                Step::Query(b"\"get\"".to_vec()),
                Step::Query(b"{\"a\":2}".to_vec()),
            ]
        );
    }

    #[test]
    fn a_file_without_commands_is_refused() {
        assert_eq!(parse("# only\n?q\n"), Err(ScriptError::NoCommands));
        assert_eq!(parse(""), Err(ScriptError::NoCommands));
    }

    #[test]
    fn an_oversized_line_is_refused_with_its_number() {
        let text = format!("ok\n?{}\n", "x".repeat(QUERY_BYTES_MAX + 1));
        assert_eq!(
            parse(&text),
            Err(ScriptError::TooLong {
                line: 2,
                bytes: QUERY_BYTES_MAX + 1,
                max: QUERY_BYTES_MAX
            })
        );
    }

    #[test]
    fn too_many_steps_are_refused() {
        let text = "c\n".repeat(CHECK_SCRIPT_STEPS_MAX + 1);
        assert_eq!(
            parse(&text),
            Err(ScriptError::TooManySteps {
                max: CHECK_SCRIPT_STEPS_MAX
            })
        );
    }
}
