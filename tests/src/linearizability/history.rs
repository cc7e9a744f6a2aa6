//! What a history is made of: the kv calls, their outputs and outcomes,
//! the operations that join them, and the mistakes that make a history
//! impossible to check; also the kv plugin's wire format of a call and how
//! each is shown to people.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a client asked the kv plugin to do, with the kv plugin's JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Set `key` to `value`; answers the previous value.
    Put {
        /// The key written.
        key: String,
        /// The value written.
        value: String,
    },
    /// Remove `key`; answers the previous value.
    Delete {
        /// The key removed.
        key: String,
    },
    /// Set `key` to `value` if it holds `expected` (`None`: absent); answers
    /// whether it swapped and the value after the operation.
    Cas {
        /// The key compared and written.
        key: String,
        /// The value required for the swap; `None` requires the key absent.
        expected: Option<String>,
        /// The value written on a swap.
        value: String,
    },
    /// Read `key` (a linearizable query); answers its value.
    Get {
        /// The key read.
        key: String,
    },
}

/// What the kv plugin answered to a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// `put` and `delete`: the value before the operation.
    Previous(Option<String>),
    /// `cas`: whether it swapped, and the value after the operation.
    Swapped {
        /// Whether the value was swapped.
        ok: bool,
        /// The value after the operation.
        current: Option<String>,
    },
    /// `get`: the value read.
    Value(Option<String>),
}

/// How an operation ended, as far as its client knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Took effect, answering this.
    Ok(Output),
    /// Definitely did not take effect (refused before it was proposed).
    Failed,
    /// May or may not have taken effect, at any time after invocation (a
    /// timeout, a broken connection): treated as never returning.
    Unknown,
}

/// One client operation: what was called, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Which client issued it; shown in reports only.
    pub client: u64,
    /// When the client sent it, in nanoseconds from the history's origin.
    pub invoked_ns: u64,
    /// When the client got its answer (or gave up), in nanoseconds from the
    /// history's origin. Required for [`Outcome::Ok`]; ignored otherwise.
    pub completed_ns: Option<u64>,
    /// What was asked.
    pub call: Call,
    /// How it ended.
    pub outcome: Outcome,
}

/// An operation with its position in the history checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedOperation {
    /// Position in the history slice given to [`check`](super::check).
    pub index: usize,
    /// The operation.
    pub operation: Operation,
}

/// A history that cannot be checked: a recording mistake, not a
/// linearizability violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The output is of another call's kind (a `get` answered with a swap).
    #[error("operation #{index}: {call} cannot answer {output}")]
    MismatchedOutput {
        /// Position in the history.
        index: usize,
        /// The call.
        call: Call,
        /// The output recorded for it.
        output: Output,
    },
    /// An [`Outcome::Ok`] operation without a completion time.
    #[error("operation #{index} succeeded but has no completion time")]
    MissingCompletion {
        /// Position in the history.
        index: usize,
    },
    /// An operation that completed before it was invoked.
    #[error(
        "operation #{index} completed at {completed_ns} ns, before its invocation at {invoked_ns} ns"
    )]
    CompletedBeforeInvoked {
        /// Position in the history.
        index: usize,
        /// When it was invoked.
        invoked_ns: u64,
        /// When it completed.
        completed_ns: u64,
    },
}

impl Call {
    /// The key the call acts on.
    pub fn key(&self) -> &str {
        match self {
            Call::Put { key, .. }
            | Call::Delete { key }
            | Call::Cas { key, .. }
            | Call::Get { key } => key,
        }
    }

    /// Whether the call is a query (`get`) rather than a command to apply.
    pub fn is_query(&self) -> bool {
        matches!(self, Call::Get { .. })
    }

    /// The kv plugin's encoding of the call: a command for `apply`, or for a
    /// `get` a query (see [`Call::is_query`]).
    pub fn request(&self) -> Vec<u8> {
        let request = match self {
            Call::Put { key, value } => json!({"put": {"key": key, "value": value}}),
            Call::Delete { key } => json!({"delete": {"key": key}}),
            Call::Cas {
                key,
                expected,
                value,
            } => json!({"cas": {"key": key, "expected": expected, "value": value}}),
            Call::Get { key } => json!({"get": {"key": key}}),
        };
        request.to_string().into_bytes()
    }

    /// The kv plugin's JSON answer to this call as an [`Output`], or `None`
    /// if it is not the answer this call gets.
    pub fn parse_response(&self, response: &Value) -> Option<Output> {
        match self {
            Call::Put { .. } | Call::Delete { .. } => {
                optional_string(response.get("prev")?).map(Output::Previous)
            }
            Call::Cas { .. } => Some(Output::Swapped {
                ok: response.get("ok")?.as_bool()?,
                current: optional_string(response.get("current")?)?,
            }),
            Call::Get { .. } => optional_string(response.get("value")?).map(Output::Value),
        }
    }
}

/// A JSON string or null as an optional string.
fn optional_string(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(string) => Some(Some(string.clone())),
        _ => None,
    }
}

impl Output {
    /// Whether this is the kind of answer `call` gets.
    pub(super) fn answers(&self, call: &Call) -> bool {
        matches!(
            (call, self),
            (Call::Put { .. } | Call::Delete { .. }, Output::Previous(_))
                | (Call::Cas { .. }, Output::Swapped { .. })
                | (Call::Get { .. }, Output::Value(_))
        )
    }
}

/// A value as shown to people: quoted, or `absent`.
pub(super) fn show(value: Option<&str>) -> String {
    match value {
        Some(value) => format!("{value:?}"),
        None => "absent".to_string(),
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Put { key, value } => write!(f, "put({key:?}, {value:?})"),
            Call::Delete { key } => write!(f, "delete({key:?})"),
            Call::Cas {
                key,
                expected,
                value,
            } => write!(f, "cas({key:?}, {}, {value:?})", show(expected.as_deref())),
            Call::Get { key } => write!(f, "get({key:?})"),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Previous(previous) => write!(f, "previous {}", show(previous.as_deref())),
            Output::Swapped { ok, current } => {
                let swapped = if *ok { "swapped" } else { "not swapped" };
                write!(f, "{swapped}, now {}", show(current.as_deref()))
            }
            Output::Value(value) => write!(f, "{}", show(value.as_deref())),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(output) => write!(f, "{output}"),
            Outcome::Failed => write!(f, "failed"),
            Outcome::Unknown => write!(f, "unknown"),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed = match self.completed_ns {
            Some(completed_ns) => format!("{completed_ns} ns"),
            None => "-".to_string(),
        };
        write!(
            f,
            "client {} [{} ns, {completed}] {} -> {}",
            self.client, self.invoked_ns, self.call, self.outcome
        )
    }
}

impl fmt::Display for IndexedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.index, self.operation)
    }
}
