//! Verdicts, per key and on a whole history, and how a violation is
//! explained in words and shown with the operations around it.

use std::collections::BTreeMap;
use std::fmt;

use super::history::{Call, IndexedOperation, Operation, Outcome, Output, show};
use super::model::KeyModel;
use super::search::Stuck;

/// Operations shown on each side of the one that could not be linearized.
pub const NEARBY_OPERATIONS: usize = 3;

/// The verdict on one key, or on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Some order of the operations, each placed between its invocation and
    /// its return, explains every result.
    Linearizable,
    /// No such order exists.
    Violation(Violation),
    /// The search hit a [`Limits`](super::Limits) bound before deciding.
    Undecided {
        /// The key whose search stopped.
        key: String,
        /// Which bound was hit.
        reason: String,
    },
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose history is not linearizable.
    pub key: String,
    /// The operation that could not be placed: the earliest-returning one
    /// pending where the longest consistent partial order got stuck.
    pub first_unlinearizable: IndexedOperation,
    /// How many operations that partial order placed.
    pub partial_linearization_len: usize,
    /// Why the operation could not be placed, in words.
    pub explanation: String,
    /// Operations on the key around it, by invocation time, itself included.
    pub nearby: Vec<IndexedOperation>,
}

/// The verdict on a history: overall and per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The first violation (by completion of the operation that could not be
    /// placed) if any; else the first undecided key if any; else linearizable.
    pub overall: CheckResult,
    /// The verdict on each key.
    pub keys: BTreeMap<String, CheckResult>,
    /// Search steps taken over all keys.
    pub search_steps: u64,
}

impl KeyModel<'_> {
    /// Describe where the search for `key` got stuck.
    pub(super) fn violation(
        &self,
        history: &[Operation],
        key: &str,
        indices: &[usize],
        stuck: &Stuck,
    ) -> Violation {
        let register_operation = &self.operations[stuck.operation];
        let index = register_operation.index;
        let operation = history[index].clone();
        let held = show(stuck.register.and_then(|id| self.values.get(id).copied()));
        let depth = stuck.depth;
        let explanation = if register_operation.step(stuck.register).is_some() {
            format!(
                "its result fits the value {held} the longest consistent order found \
                 ({depth} operations) leaves, but no operation that returned after it \
                 can then be placed"
            )
        } else {
            format!(
                "no order of the operations before its return explains every result up to \
                 it: in the longest consistent order found ({depth} operations) the key held \
                 {held} when it had to take effect, but {}",
                requirement(&operation)
            )
        };
        Violation {
            key: key.to_string(),
            first_unlinearizable: IndexedOperation { index, operation },
            partial_linearization_len: depth,
            explanation,
            nearby: nearby(history, indices, index),
        }
    }
}

/// What an operation's result says about the value it found, in words.
fn requirement(operation: &Operation) -> String {
    match (&operation.call, &operation.outcome) {
        (_, Outcome::Ok(Output::Value(value))) => format!("it read {}", show(value.as_deref())),
        (_, Outcome::Ok(Output::Previous(previous))) => {
            format!(
                "it reported the previous value {}",
                show(previous.as_deref())
            )
        }
        (Call::Cas { expected, .. }, Outcome::Ok(Output::Swapped { ok: true, .. })) => {
            format!("it swapped, which needs {}", show(expected.as_deref()))
        }
        (_, Outcome::Ok(Output::Swapped { current, .. })) => {
            format!("it did not swap and reported {}", show(current.as_deref()))
        }
        _ => "its result does not fit".to_string(),
    }
}

/// The operations of a key around the one at `index`, by invocation time.
fn nearby(history: &[Operation], indices: &[usize], index: usize) -> Vec<IndexedOperation> {
    let mut by_time = indices.to_vec();
    by_time.sort_by_key(|&other| (history[other].invoked_ns, other));
    let position = by_time
        .iter()
        .position(|&other| other == index)
        .unwrap_or(0);
    let start = position.saturating_sub(NEARBY_OPERATIONS);
    let end = by_time.len().min(position + NEARBY_OPERATIONS + 1);
    by_time[start..end]
        .iter()
        .map(|&other| IndexedOperation {
            index: other,
            operation: history[other].clone(),
        })
        .collect()
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stuck = &self.first_unlinearizable;
        writeln!(
            f,
            "key {:?}: operation #{} cannot be linearized (longest consistent order: {} operations)",
            self.key, stuck.index, self.partial_linearization_len
        )?;
        writeln!(f, "  {stuck}")?;
        writeln!(f, "  {}", self.explanation)?;
        write!(f, "  operations on {:?} by invocation time:", self.key)?;
        for operation in &self.nearby {
            let marker = if operation.index == stuck.index {
                ">>"
            } else {
                "  "
            };
            write!(f, "\n  {marker} {operation}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable => write!(f, "linearizable"),
            CheckResult::Violation(violation) => write!(f, "not linearizable: {violation}"),
            CheckResult::Undecided { key, reason } => write!(f, "undecided: key {key:?}: {reason}"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys, {} search steps: {}",
            self.keys.len(),
            self.search_steps,
            self.overall
        )
    }
}
