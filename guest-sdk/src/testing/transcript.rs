//! Golden transcripts for [`Harness::assert_transcript`]: a script of host
//! calls, each followed by the exact answer the plugin gave.

use super::Harness;
use crate::RawStateMachine;
use std::fmt::Write;

/// Marks a line holding a call.
const CALL_PREFIX: &str = "> ";

impl<T: RawStateMachine> Harness<T> {
    /// Run every call in `golden` against this harness, in order, and check
    /// that each answer equals the one written under it. On a mismatch,
    /// panics with the differing calls and the whole actual transcript, ready
    /// to paste in place of the old one after checking it by eye.
    ///
    /// A golden transcript pins a plugin's wire format (responses, error
    /// strings, snapshot bytes), so a refactoring that changes any of it
    /// fails loudly, and it reads as documentation of that format:
    ///
    /// ```text
    /// # Comments and blank lines are kept as they are.
    /// > apply {"put":{"key":"a","value":"1"}}
    /// ok {"prev":null}
    /// > query {"scan":{"limit":5000}}
    /// err scan limit 5000 exceeds the maximum 1000
    /// > snapshot
    /// ok {"version":1,"entries":[["a","1"]]}
    /// > restore {"version":9}
    /// err snapshot version 9 is newer than this plugin understands
    /// ```
    ///
    /// A call is a line `> apply BYTES`, `> query BYTES`, `> snapshot` or
    /// `> restore BYTES`, where `BYTES` is the rest of the line (possibly
    /// empty); the line after it is the answer: `ok BYTES` or `err MESSAGE`
    /// (a bare `ok` when there are no bytes, as after a successful restore).
    /// Answers are shown as UTF-8 (lossy), with control characters escaped so
    /// every answer stays on one line. Leading white space on every line is
    /// ignored, so the transcript may be indented.
    pub fn assert_transcript(&mut self, golden: &str) {
        let mut actual = String::new();
        let mut differences = String::new();
        let mut lines = golden.lines().map(str::trim_start).peekable();
        while let Some(line) = lines.next() {
            let Some(call) = line.strip_prefix(CALL_PREFIX) else {
                assert!(
                    is_comment(line),
                    "transcript line is neither a call, an answer after one, \
                     nor a comment: {line:?}"
                );
                actual.push_str(line);
                actual.push('\n');
                continue;
            };
            let answer = self.call(call);
            let expected = lines.next_if(|next| !is_call(next) && !is_comment(next));
            if expected != Some(answer.as_str()) {
                let _ = writeln!(
                    differences,
                    "{CALL_PREFIX}{call}\n  expected: {}\n  actual:   {answer}",
                    expected.unwrap_or("(no answer written)")
                );
            }
            let _ = writeln!(actual, "{line}\n{answer}");
        }
        assert!(
            differences.is_empty(),
            "transcript differs:\n{differences}\nactual transcript:\n{actual}"
        );
    }

    /// Perform one call line (without its prefix) and render the answer.
    fn call(&mut self, call: &str) -> String {
        let (verb, argument) = call.split_once(' ').unwrap_or((call, ""));
        let argument = argument.as_bytes();
        match verb {
            "apply" => render(self.apply_raw(argument)),
            "query" => render(self.query_raw(argument)),
            "snapshot" => render(Ok(self.snapshot())),
            "restore" => render(self.restore(argument).map(|()| Vec::new())),
            other => panic!("unknown transcript call {other:?} in {call:?}"),
        }
    }
}

fn is_call(line: &str) -> bool {
    line.starts_with(CALL_PREFIX)
}

fn is_comment(line: &str) -> bool {
    line.is_empty() || line.starts_with('#')
}

/// `ok BYTES` (a bare `ok` for no bytes) or `err MESSAGE`.
fn render(result: Result<Vec<u8>, String>) -> String {
    match result {
        Ok(bytes) if bytes.is_empty() => "ok".to_string(),
        Ok(bytes) => format!("ok {}", one_line(&String::from_utf8_lossy(&bytes))),
        Err(error) => format!("err {}", one_line(&error)),
    }
}

/// Escape control characters (newlines above all) so an answer is one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_control() {
                character.escape_default().to_string()
            } else {
                character.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Goal: a transcript that matches passes; any differing answer, missing
    //! answer or malformed line fails with the actual transcript to paste.
    use super::*;
    use crate::Entry;

    /// Echoes commands, answers queries with the command count, refuses
    /// snapshots that are not a number.
    #[derive(Default)]
    struct Echo {
        commands: u64,
    }

    impl RawStateMachine for Echo {
        fn apply(&mut self, _entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
            if command == b"fail" {
                return Err("failed\non purpose".into());
            }
            self.commands += 1;
            Ok(command.to_vec())
        }
        fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
            Ok(self.commands.to_string().into_bytes())
        }
        fn snapshot(&self) -> Vec<u8> {
            self.commands.to_string().into_bytes()
        }
        fn restore(snapshot: &[u8]) -> Result<Self, String> {
            let text = std::str::from_utf8(snapshot).map_err(|error| error.to_string())?;
            let commands = text.parse().map_err(|_| format!("not a count: {text}"))?;
            Ok(Echo { commands })
        }
    }

    const GOLDEN: &str = r#"
        # Every kind of call.
        > apply {"a":1}
        ok {"a":1}
        > apply
        ok
        > apply fail
        err failed\non purpose
        > query anything
        ok 2

        > snapshot
        ok 2
        > restore x
        err not a count: x
        > restore 7
        ok
        > query
        ok 7
    "#;

    #[test]
    fn a_matching_transcript_passes() {
        Harness::<Echo>::new().assert_transcript(GOLDEN);
    }

    #[test]
    #[should_panic(expected = "expected: ok 3\n  actual:   ok 2")]
    fn a_differing_answer_fails() {
        Harness::<Echo>::new().assert_transcript(&GOLDEN.replace("ok 2\n\n", "ok 3\n\n"));
    }

    #[test]
    #[should_panic(expected = "expected: (no answer written)")]
    fn a_missing_answer_fails() {
        Harness::<Echo>::new().assert_transcript("> apply x\n> query\nok 1");
    }

    #[test]
    #[should_panic(expected = "neither a call")]
    fn a_stray_line_fails() {
        Harness::<Echo>::new().assert_transcript("> apply x\nok x\nok x");
    }

    #[test]
    #[should_panic(expected = "unknown transcript call")]
    fn an_unknown_call_fails() {
        Harness::<Echo>::new().assert_transcript("> delete x\nok");
    }

    #[test]
    fn the_failure_shows_the_whole_actual_transcript() {
        let result = std::panic::catch_unwind(|| {
            Harness::<Echo>::new().assert_transcript("# first\n> apply x\nok y\n> query\nok 1")
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.ends_with("actual transcript:\n# first\n> apply x\nok x\n> query\nok 1\n"),
            "{message}"
        );
    }
}
