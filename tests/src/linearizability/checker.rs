//! The checker's entry points: check a history key by key within the
//! search bounds, and combine the keys' verdicts into one.

use std::collections::BTreeMap;

use super::history::{HistoryError, Operation, Outcome};
use super::model::KeyModel;
use super::report::{CheckResult, Report};
use super::search::{Search, SearchOutcome};

/// Most search steps (looks at one invocation or return) for one key. A
/// history of a few clients needs a few steps per operation; running out
/// means one key had too many concurrent or unknown-outcome operations to
/// decide. About a second of work in an optimized build.
pub const SEARCH_STEPS_MAX_PER_KEY: u64 = 10_000_000;

/// Most bytes the memo cache of one key may hold (approximately: the sets
/// and values stored, not the hash table's slack). Each new set placed costs
/// one bit per operation on the key.
pub const CACHE_BYTES_MAX_PER_KEY: usize = 256 * 1024 * 1024;

/// Bounds on the search for one key; [`check`] uses [`Limits::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most search steps for one key.
    pub search_steps_max: u64,
    /// Most bytes, approximately, of memo cache for one key.
    pub cache_bytes_max: usize,
}

impl Limits {
    /// [`SEARCH_STEPS_MAX_PER_KEY`] and [`CACHE_BYTES_MAX_PER_KEY`].
    pub const DEFAULT: Limits = Limits {
        search_steps_max: SEARCH_STEPS_MAX_PER_KEY,
        cache_bytes_max: CACHE_BYTES_MAX_PER_KEY,
    };
}

/// Check `history` with [`Limits::DEFAULT`].
pub fn check(history: &[Operation]) -> Result<Report, HistoryError> {
    check_with_limits(history, Limits::DEFAULT)
}

/// Check `history`, each key on its own, within `limits` per key.
pub fn check_with_limits(history: &[Operation], limits: Limits) -> Result<Report, HistoryError> {
    validate(history)?;
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, operation) in history.iter().enumerate() {
        by_key.entry(operation.call.key()).or_default().push(index);
    }
    let mut keys = BTreeMap::new();
    let mut search_steps = 0;
    for (key, indices) in by_key {
        let (result, steps) = check_key(history, key, &indices, limits);
        search_steps += steps;
        keys.insert(key.to_string(), result);
    }
    Ok(Report {
        overall: overall(&keys),
        keys,
        search_steps,
    })
}

/// Check `history` and panic, printing the verdict, unless it is
/// linearizable (an undecided history fails too: it was not shown correct).
/// Write the history to a file first (see [`write_history`](super::write_history)) to keep it.
pub fn assert_linearizable(history: &[Operation]) -> Report {
    let report = check(history).unwrap_or_else(|error| panic!("malformed history: {error}"));
    assert!(
        report.overall == CheckResult::Linearizable,
        "history of {} operations: {report}",
        history.len()
    );
    report
}

/// Reject histories the checker cannot interpret.
fn validate(history: &[Operation]) -> Result<(), HistoryError> {
    for (index, operation) in history.iter().enumerate() {
        let Outcome::Ok(output) = &operation.outcome else {
            continue;
        };
        if !output.answers(&operation.call) {
            return Err(HistoryError::MismatchedOutput {
                index,
                call: operation.call.clone(),
                output: output.clone(),
            });
        }
        let Some(completed_ns) = operation.completed_ns else {
            return Err(HistoryError::MissingCompletion { index });
        };
        if completed_ns < operation.invoked_ns {
            return Err(HistoryError::CompletedBeforeInvoked {
                index,
                invoked_ns: operation.invoked_ns,
                completed_ns,
            });
        }
    }
    Ok(())
}

/// The verdict on a history from the verdicts on its keys.
fn overall(keys: &BTreeMap<String, CheckResult>) -> CheckResult {
    let first_violation = keys
        .values()
        .filter_map(|result| match result {
            CheckResult::Violation(violation) => Some(violation),
            _ => None,
        })
        .min_by_key(|violation| {
            let stuck = &violation.first_unlinearizable;
            (stuck.operation.completed_ns, stuck.index)
        });
    if let Some(violation) = first_violation {
        return CheckResult::Violation(violation.clone());
    }
    keys.values()
        .find(|result| matches!(result, CheckResult::Undecided { .. }))
        .cloned()
        .unwrap_or(CheckResult::Linearizable)
}

/// Check the operations on `key` (at `indices` in `history`); also returns
/// the search steps taken.
fn check_key(
    history: &[Operation],
    key: &str,
    indices: &[usize],
    limits: Limits,
) -> (CheckResult, u64) {
    let model = KeyModel::new(history, indices);
    let mut search = Search::new(&model.operations);
    let result = match search.run(limits) {
        SearchOutcome::Linearizable => CheckResult::Linearizable,
        SearchOutcome::Exhausted(mut reason) => {
            if let Some(stuck) = search.deepest {
                let index = model.operations[stuck.operation].index;
                reason.push_str(&format!(
                    "; furthest order found: {} operations, then no way to place #{index}",
                    stuck.depth
                ));
            }
            CheckResult::Undecided {
                key: key.to_string(),
                reason,
            }
        }
        SearchOutcome::Stuck(stuck) => {
            CheckResult::Violation(model.violation(history, key, indices, &stuck))
        }
    };
    (result, search.steps)
}
