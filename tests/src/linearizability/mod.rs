//! A linearizability checker for histories of kv plugin operations, as
//! recorded by fault-injection scenarios (in the style of Jepsen and
//! Porcupine): [`Recorder`] collects [`Operation`]s, [`check`] decides.
//!
//! Model: every key is an independent register holding an optional string
//! (linearizability is compositional, so keys are checked one at a time);
//! `put`, `delete`, `cas` and `get` act on it as `plugins/kv` does. An
//! operation that [`Outcome::Failed`] never took effect and is dropped. One
//! whose outcome is [`Outcome::Unknown`] never returns: it may take effect at
//! any moment after its invocation, or never, and its result is unconstrained.
//!
//! Algorithm: Wing & Gong's search with Lowe's just-in-time linearization
//! and memoization, as in Porcupine. Invocations and returns are sorted by
//! time into a linked list. A depth-first search repeatedly takes out
//! ("lifts") a pending invocation whose result fits the register's value,
//! until it meets the return of an operation it has not placed; then it
//! backtracks. A cache of the (set of operations placed, register value)
//! pairs already explored cuts repeated work; operations are numbered by
//! invocation so a set is stored as its short tail past the fully placed
//! prefix. A write of unknown outcome is dropped once every operation that
//! reports or expects its value has returned: placing it later explains
//! nothing. The search is bounded per key ([`Limits`]) and answers
//! [`CheckResult::Undecided`] when a bound is hit.
//!
//! Times are nanoseconds from any origin the whole history shares. At equal
//! times invocations sort before returns, so an operation that returns at
//! the instant another is invoked counts as concurrent with it: ties never
//! produce a false violation.
//!
//! Layout:
//! - `checker`: [`check`], [`check_with_limits`], [`assert_linearizable`] and
//!   their [`Limits`]; validates a history and checks it key by key.
//! - `history`: [`Call`], [`Output`], [`Outcome`], [`Operation`] and
//!   [`HistoryError`]; the kv plugin's wire format of a call.
//! - `record`: [`Recorder`] and [`Invocation`]; histories as JSON Lines
//!   ([`write_history`], [`read_history`]).
//! - `model`: one key's operations as register operations on interned values.
//! - `entries`, `memo`, `search`: the search's event list, its memo cache,
//!   and the search itself.
//! - `report`: [`CheckResult`], [`Violation`], [`Report`]: verdicts and how
//!   they are explained and shown.

mod checker;
mod entries;
mod history;
mod memo;
mod model;
mod record;
mod report;
mod search;
#[cfg(test)]
mod tests;

pub use checker::{
    CACHE_BYTES_MAX_PER_KEY, Limits, SEARCH_STEPS_MAX_PER_KEY, assert_linearizable, check,
    check_with_limits,
};
pub use history::{Call, HistoryError, IndexedOperation, Operation, Outcome, Output};
pub use record::{Invocation, Recorder, read_history, write_history};
pub use report::{CheckResult, NEARBY_OPERATIONS, Report, Violation};
